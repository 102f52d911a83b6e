//! Logging and tracing setup.
//!
//! Logs go to stderr so that stdout stays reserved for what the CLI promises to print (the
//! `listening on http://ADDR` line, `verify` results, `keygen`'s public key).

use std::io::{IsTerminal as _, Write};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// Default filter when `RUST_LOG` is not set.
pub const DEFAULT_FILTER: &str = "info";

/// Output format of log lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Why telemetry could not be initialised.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The filter directive (from `RUST_LOG` or the caller) does not parse.
    #[error("invalid log filter {filter:?}: {message}")]
    Filter {
        /// The directive as given.
        filter: String,
        /// The parser's message.
        message: String,
    },
    /// A global subscriber is already installed.
    #[error("a global tracing subscriber is already installed")]
    AlreadyInstalled,
}

/// Installs the global subscriber writing to stderr. `filter` overrides `RUST_LOG`; without
/// either the level is `info`.
pub fn init(format: LogFormat, filter: Option<&str>) -> Result<(), TelemetryError> {
    init_with_writer(format, filter, std::io::stderr)
}

/// Installs the global subscriber with a custom sink (tests pass `std::io::sink` unless they
/// want to see logs).
pub fn init_with_writer<W>(
    format: LogFormat,
    filter: Option<&str>,
    writer: W,
) -> Result<(), TelemetryError>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let directive = match filter {
        Some(f) => f.to_owned(),
        None => std::env::var(EnvFilter::DEFAULT_ENV).unwrap_or_else(|_| DEFAULT_FILTER.to_owned()),
    };
    let env_filter = EnvFilter::try_new(&directive).map_err(|e| TelemetryError::Filter {
        filter: directive.clone(),
        message: e.to_string(),
    })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(env_filter)
        .with_writer(writer)
        .with_target(true)
        // Colour codes only help a human at a terminal; in files and pipes they are noise.
        .with_ansi(std::io::stderr().is_terminal());
    let installed = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    installed.map_err(|_| TelemetryError::AlreadyInstalled)
}

/// Prints a line to stdout and flushes it, so a parent process reading the pipe sees it at
/// once (stdout is block-buffered when it is not a terminal).
pub fn print_line(line: &str) {
    let mut out = std::io::stdout().lock();
    // A closed stdout (the reader went away) is not a reason to stop the hub.
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn bad_filter_is_reported_with_the_directive() {
        let err = init_with_writer(LogFormat::Text, Some("info,[[["), std::io::sink).unwrap_err();
        assert!(err.to_string().contains("[[["), "{err}");
    }
}
