//! Logging and tracing setup.
//!
//! Logs go to stderr so that stdout stays reserved for what the CLI promises to print (the
//! `listening on http://ADDR` line, `verify` results, `keygen`'s public key).
//!
//! Traces ([`otel`]) are off unless an OTLP endpoint is configured. Off means off: the hub's
//! own spans are built through [`span!`](crate::telemetry::span), which checks one relaxed
//! atomic flag and hands back `Span::none()` without touching the subscriber. On, spans go
//! through `tracing-opentelemetry` to a batch exporter on its own thread, and JSON log lines
//! carry the `trace_id` and `span_id` of the span they were written in.

mod json;
pub mod otel;

use std::io::{IsTerminal as _, Write};
use std::sync::atomic::{AtomicBool, Ordering};

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::settings::TelemetrySettings;

pub use otel::TracesGuard;

/// Default filter when `RUST_LOG` is not set.
pub const DEFAULT_FILTER: &str = "info";

/// Set once an exporter is installed: the hub builds its spans only then.
static TRACES_ON: AtomicBool = AtomicBool::new(false);

/// Whether spans are exported (and therefore worth building).
#[inline]
pub fn traces_on() -> bool {
    TRACES_ON.load(Ordering::Relaxed)
}

/// The current span when traces are exported (to carry into a spawned task), else
/// `Span::none()` without asking the subscriber.
pub fn current_span() -> tracing::Span {
    if traces_on() {
        tracing::Span::current()
    } else {
        tracing::Span::none()
    }
}

/// An info-level span when traces are exported, else `Span::none()` at the cost of one
/// atomic load: the hot paths (search, invoke) call it unconditionally.
macro_rules! span {
    ($($arg:tt)*) => {
        if $crate::telemetry::traces_on() {
            ::tracing::info_span!($($arg)*)
        } else {
            ::tracing::Span::none()
        }
    };
}
pub(crate) use span;

/// Output format of log lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log shippers (with `trace_id`/`span_id` when traces
    /// are exported).
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
    /// The OTLP exporter could not be built from the settings.
    #[error("cannot set up the OTLP trace exporter: {0}")]
    Exporter(String),
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
    init_with_traces(format, filter, writer, None).map(|_| ())
}

/// Installs the global subscriber and, when `traces` names an endpoint, the OTLP exporter.
/// Keep the returned guard for the life of the process: dropping it flushes and stops the
/// exporter.
pub fn init_with_traces<W>(
    format: LogFormat,
    filter: Option<&str>,
    writer: W,
    traces: Option<&TelemetrySettings>,
) -> Result<Option<TracesGuard>, TelemetryError>
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
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_target(true)
        // Colour codes only help a human at a terminal; in files and pipes they are noise.
        .with_ansi(std::io::stderr().is_terminal());
    let mut layers: Vec<Box<dyn Layer<Registry> + Send + Sync>> = Vec::with_capacity(2);
    layers.push(match format {
        LogFormat::Text => fmt.with_filter(env_filter).boxed(),
        LogFormat::Json => fmt
            .json()
            .event_format(json::WithTraceIds::new(
                tracing_subscriber::fmt::format().json().flatten_event(true),
            ))
            .with_filter(env_filter)
            .boxed(),
    });
    let guard = match traces.filter(|t| t.enabled()) {
        Some(settings) => {
            let (layer, guard) = otel::layer(settings)?;
            layers.push(layer);
            Some(guard)
        }
        None => None,
    };
    tracing_subscriber::registry()
        .with(layers)
        .try_init()
        .map_err(|_| TelemetryError::AlreadyInstalled)?;
    if guard.is_some() {
        TRACES_ON.store(true, Ordering::Relaxed);
    }
    Ok(guard)
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

    #[test]
    fn spans_are_not_built_while_traces_are_off() {
        assert!(!traces_on());
        assert!(span!("anything", x = 1).is_none());
    }
}
