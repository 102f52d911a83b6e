//! The command line: `aimarket-hub [serve] | keygen | verify | crawl | demo | search | invoke |
//! run | peers | escrow`.
//!
//! Each subcommand lives in its own module and returns an [`ExitCode`]; errors are printed
//! to stderr as `error: …`. `serve` is the default, so `aimarket-hub --listen ADDR` works.
//! Later subcommands (`crawl`, `peers`, `search`, `invoke`, `demo`) should take
//! [`SettingsArgs`] (flattened) when they need the hub's configuration.

mod crawl;
mod demo;
mod escrow;
mod invoke;
mod keygen;
pub mod peers;
mod remote;
pub mod run;
mod search;
mod serve;
mod settle;
mod verify;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use crawl::CrawlArgs;
pub use demo::DemoArgs;
pub use escrow::EscrowArgs;
pub use invoke::InvokeArgs;
pub use keygen::KeygenArgs;
pub use peers::PeersArgs;
pub use run::RunArgs;
pub use search::SearchArgs;
pub use serve::SettingsArgs;
pub use verify::VerifyArgs;

use crate::telemetry::{self, LogFormat};

/// AIMarket Protocol v2 federation hub.
#[derive(Debug, Parser)]
#[command(
    name = "aimarket-hub",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// Log line format (logs go to stderr; the filter comes from RUST_LOG, default info).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "AIMARKET_LOG_FORMAT")]
    pub log_format: LogFormat,

    /// What to do; `serve` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// `serve` flags, also accepted without the `serve` subcommand.
    #[command(flatten)]
    pub serve: SettingsArgs,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the hub (the default).
    Serve(SettingsArgs),
    /// Write a new Ed25519 signing key (32-byte seed, mode 0600) and print its public key.
    Keygen(KeygenArgs),
    /// Check protocol documents (manifest, receipt, announce, well-known, bill): schema, signature.
    Verify(VerifyArgs),
    /// Crawl the seeds and active peers into the store (no server) and print a report.
    Crawl(CrawlArgs),
    /// Run a hub and three demo factories in one process, offline, and print a walkthrough.
    Demo(DemoArgs),
    /// Search a hub's catalog (a client of any hub).
    Search(SearchArgs),
    /// Invoke a capability through a hub (a client of any hub).
    Invoke(InvokeArgs),
    /// Plan a task with a hub's planner, pay from a demo channel and run it as a pipeline.
    Run(RunArgs),
    /// Manage a running hub's peers: list, approve, remove, repin, add-seed (admin token).
    Peers(PeersArgs),
    /// Escrow channel helpers: sign a DebitAuthorization (`escrow sign-debit --key FILE …`).
    Escrow(EscrowArgs),
}

/// Loads the settings and builds the multi-threaded runtime of a subcommand that needs
/// both; on failure the error is printed and the exit code returned.
fn settings_and_runtime(
    args: &SettingsArgs,
) -> Result<(crate::settings::Settings, tokio::runtime::Runtime), ExitCode> {
    let settings = args.load().map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::FAILURE
    })?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("error: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        })?;
    Ok((settings, runtime))
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> ExitCode {
    crate::startup::install_crypto_provider();
    // The client-style commands print for people; their logs stay quiet unless asked for.
    let quiet = matches!(
        cli.command,
        Some(
            Command::Demo(_)
                | Command::Search(_)
                | Command::Invoke(_)
                | Command::Run(_)
                | Command::Peers(_)
                | Command::Escrow(_)
        )
    ) && std::env::var_os("RUST_LOG").is_none();
    // `serve` loads its settings first: they say whether traces are exported.
    let serve_args = match &cli.command {
        None => Some(&cli.serve),
        Some(Command::Serve(args)) => Some(args),
        Some(_) => None,
    };
    if let Some(args) = serve_args {
        let settings = match args.load() {
            Ok(settings) => settings,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
        return match telemetry::init_with_traces(
            cli.log_format,
            None,
            std::io::stderr,
            Some(&settings.telemetry),
        ) {
            Ok(traces) => serve::run_loaded(settings, traces),
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if let Err(e) = telemetry::init(cli.log_format, quiet.then_some("warn")) {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    match cli.command {
        // Handled above.
        None | Some(Command::Serve(_)) => ExitCode::FAILURE,
        Some(Command::Keygen(args)) => keygen::run(&args),
        Some(Command::Verify(args)) => verify::run(&args),
        Some(Command::Crawl(args)) => crawl::run(&args),
        Some(Command::Demo(args)) => demo::run(&args),
        Some(Command::Search(args)) => search::run(&args),
        Some(Command::Invoke(args)) => invoke::run(&args),
        Some(Command::Run(args)) => run::run(&args),
        Some(Command::Peers(args)) => peers::run(&args),
        Some(Command::Escrow(args)) => escrow::run(&args),
    }
}
