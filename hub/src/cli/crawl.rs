//! `aimarket-hub crawl [--seed URL[=KEY]]... [--once]`: crawls from the configured seeds and
//! the active peers into the store of the data dir (or `DATABASE_URL`) without a server,
//! and prints a report. Without `--once` it repeats every `crawl_interval_s` (±10 %) until
//! Ctrl-C. A progress bar is drawn only when stdout is a terminal.
//!
//! It can run next to a serving hub on the same database: SQLite serialises writers across
//! processes (`BEGIN IMMEDIATE` with a busy timeout), and the serving hub sees the new
//! catalog version on its next read. Its own in-memory single flight does not extend to
//! this process, so two crawls may then overlap; each is still correct on its own.

use std::fmt::Write as _;
use std::io::IsTerminal as _;
use std::process::ExitCode;
use std::time::Duration;

use aimarket_crawler::CrawlEvent;
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::SettingsArgs;
use crate::crawl::scheduler::jittered;
use crate::crawl::{CrawlContext, CrawlSummary};
use crate::settings::Settings;
use crate::startup::open_store;
use crate::telemetry::print_line;

/// `crawl` flags: the settings flags (including repeatable `--seed URL[=PUBKEY]`), plus
/// `--once`.
#[derive(Debug, Clone, Args)]
pub struct CrawlArgs {
    /// Settings, as for `serve`; `--seed` replaces the configured seeds.
    #[command(flatten)]
    pub settings: SettingsArgs,
    /// Crawl once and exit (default: repeat at the crawl interval until Ctrl-C).
    #[arg(long)]
    pub once: bool,
    /// After each run, wait (at most 30 s) until this serving hub's search and manifest show
    /// the run's catalog version, and say so.
    #[arg(long, value_name = "URL")]
    pub wait_for_hub: Option<String>,
}

/// Runs `crawl`.
pub fn run(args: &CrawlArgs) -> ExitCode {
    let (settings, runtime) = match super::settings_and_runtime(&args.settings) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let hub = match args.wait_for_hub.as_deref().map(super::remote::hub_base) {
        Some(Err(message)) => {
            eprintln!("error: {message}");
            return ExitCode::FAILURE;
        }
        Some(Ok(hub)) => Some(hub),
        None => None,
    };
    match runtime.block_on(crawl_loop(&settings, args.once, hub.as_deref())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The hub's address as peers see it: the configured public URL, else the listen address
/// (sent as `X-AIMarket-Crawler`, and never crawled itself).
fn own_url(settings: &Settings) -> String {
    match &settings.public_url {
        Some(url) => url.as_str().to_owned(),
        None => format!("http://{}", settings.listen),
    }
}

async fn crawl_loop(settings: &Settings, once: bool, hub: Option<&str>) -> Result<(), String> {
    let client = reqwest::Client::builder()
        .timeout(super::remote::TIMEOUT)
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
    let store = open_store(settings).await.map_err(|e| e.to_string())?;
    let context = CrawlContext::new(store.clone(), settings, &own_url(settings))
        .map_err(|e| e.to_string())?;
    if context.seeds().is_empty() {
        print_line(
            "no seeds configured (--seed or AIMARKET_SEEDS): crawling stored active peers only",
        );
    }
    let interval = Duration::from_secs(settings.crawl_interval_s);
    // One listener for the whole loop, so a Ctrl-C between two waits is not missed.
    let (interrupt_tx, mut interrupted) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            interrupt_tx.send_replace(true);
        }
    });
    let outcome = loop {
        let run = tokio::select! {
            run = crawl_with_progress(&context) => run,
            _ = interrupted.wait_for(|yes| *yes) => {
                print_line("interrupted");
                break Ok(());
            }
        };
        match run {
            Ok(summary) => print_line(&report(&summary)),
            Err(e) => break Err(e.to_string()),
        }
        let version = context
            .store()
            .catalog_version()
            .await
            .map_err(|e| e.to_string())?;
        print_line(&format!("catalog version {version}"));
        if let Some(hub) = hub {
            print_line(&super::settle::wait_for_hub(&client, hub, version).await);
        }
        if once {
            break Ok(());
        }
        let delay = jittered(interval);
        print_line(&format!(
            "next crawl in {}s (Ctrl-C to stop)",
            delay.as_secs()
        ));
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = interrupted.wait_for(|yes| *yes) => break Ok(()),
        }
    };
    store.close().await;
    outcome
}

async fn crawl_with_progress(
    context: &CrawlContext,
) -> Result<CrawlSummary, crate::crawl::CrawlRunError> {
    let bar = if std::io::stdout().is_terminal() {
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stdout());
        if let Ok(style) =
            ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} {wide_msg}")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    } else {
        ProgressBar::hidden()
    };
    let progress = |event: CrawlEvent| match event {
        CrawlEvent::PeerStarted { known, .. } => {
            let known = known as u64;
            if bar.length().is_none_or(|len| len < known) {
                bar.set_length(known);
            }
        }
        CrawlEvent::PeerFinished { url, status } => {
            bar.inc(1);
            bar.set_message(format!("{url}: {status}"));
        }
    };
    let result = context.run_once(&progress).await;
    bar.finish_and_clear();
    result
}

/// The printed report: totals, then every rejection and error with its reason.
pub fn report(summary: &CrawlSummary) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "crawl run {}: {} peers reached, {} capabilities indexed from {} updated peers, \
         {} not modified (304), {} rejected, {} errors, {} tools dropped, {} new pending peers \
         ({:.1}s)",
        summary.run_id,
        summary.peers_reached,
        summary.capabilities_indexed,
        summary.peers_updated,
        summary.not_modified,
        summary.rejected,
        summary.errors.len() as u64 + summary.errors_omitted,
        summary.rejected_tools,
        summary.pending_discovered,
        (summary.finished_at - summary.started_at)
            .to_std()
            .unwrap_or_default()
            .as_secs_f64(),
    );
    for peer in &summary.peers {
        let kind = if peer.admitted { "peer" } else { "pending" };
        let _ = match &peer.error {
            Some(error) => writeln!(out, "  {kind} {} [{}]: {error}", peer.url, peer.status),
            None if peer.rejected_tools > 0 => {
                let _ = writeln!(
                    out,
                    "  {kind} {}: {}, {} capabilities, {} tools dropped",
                    peer.url, peer.status, peer.capabilities, peer.rejected_tools
                );
                // Why, for the first few (names and reasons are the peer's text, one line).
                for tool in &peer.rejected {
                    let name = tool.name.as_deref().unwrap_or("(no name)");
                    let _ = writeln!(
                        out,
                        "    dropped #{} {}: {}",
                        tool.index,
                        name.escape_debug(),
                        tool.reason.escape_debug()
                    );
                }
                Ok(())
            }
            None => writeln!(
                out,
                "  {kind} {}: {}, {} capabilities",
                peer.url, peer.status, peer.capabilities
            ),
        };
    }
    if summary.errors_omitted > 0 {
        let _ = writeln!(out, "  … and {} more errors", summary.errors_omitted);
    }
    out.trim_end().to_owned()
}
