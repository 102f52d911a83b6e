//! Ours against the reference hub (issue 18), side by side on the same generated providers:
//! crawl, search and free invoke, with the ratio ours/reference. Run it through
//! `bench/compare`, which installs the reference (aimarket-hub 3.16.0 from PyPI) into a
//! cached virtualenv and then runs
//!
//! ```text
//! AIMARKET_COMPARE_PYTHON=<venv>/bin/python cargo bench -p aimarket-hub --bench compare
//! ```
//!
//! Sizes (environment): `AIMARKET_COMPARE_PROVIDERS` (default 10),
//! `AIMARKET_COMPARE_CAPABILITIES` per provider (default 100, at most 1000: the reference
//! indexes no more per manifest), `AIMARKET_COMPARE_SEARCHES` and `AIMARKET_COMPARE_INVOKES`
//! (sequential requests timed per hub, default 300 each), `AIMARKET_COMPARE_TIMEOUT_S`
//! (bound on each hub's startup and crawl, default 600).
//!
//! What is measured, for each hub in turn (the other one not running):
//! - crawl: an admin-triggered crawl of all providers, from the trigger until a browse search
//!   counts every capability. Both hubs know the providers as seeds with pinned keys; ours
//!   crawls at startup, so the providers' catalogs stay closed (404) until that crawl is over
//!   and the timed crawl is a first one for both.
//! - search: p50/p99 of sequential searches over one keep-alive connection, the same twelve
//!   intents in turn, after one unmeasured pass.
//! - free invoke: p50/p99 of routed calls minus p50/p99 of the same calls made straight to
//!   the provider in the same loop (interleaved), i.e. what the hub adds.
//!
//! Nothing here is part of `cargo test`. Any failure (the reference cannot start, a crawl does
//! not complete, an invoke does not reach the provider) ends the run with an error.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "compare/hubs.rs"]
mod hubs;
#[path = "compare/measure.rs"]
mod measure;
#[path = "compare/providers.rs"]
mod providers;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use hubs::HubProcess;
use measure::{Crawl, Invoke, Search, quantile};
use providers::Providers;

/// Most capabilities per manifest the reference indexes.
const REFERENCE_MAX_TOOLS: usize = 1000;

struct Config {
    providers: usize,
    capabilities: usize,
    searches: usize,
    invokes: usize,
    timeout: Duration,
    python: PathBuf,
    launcher: PathBuf,
    binary: PathBuf,
}

fn number(name: &str, default: usize) -> Result<usize, String> {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("{name}={v}: a positive integer is required")),
        Err(_) => Ok(default),
    }
}

fn config() -> Result<Config, String> {
    let capabilities = number("AIMARKET_COMPARE_CAPABILITIES", 100)?;
    if capabilities > REFERENCE_MAX_TOOLS {
        return Err(format!(
            "AIMARKET_COMPARE_CAPABILITIES={capabilities}: the reference indexes at most \
             {REFERENCE_MAX_TOOLS} tools per manifest; add providers instead"
        ));
    }
    let python = std::env::var_os("AIMARKET_COMPARE_PYTHON")
        .map(PathBuf::from)
        .ok_or(
            "AIMARKET_COMPARE_PYTHON is not set: run bench/compare, which installs the \
                reference hub and sets it",
        )?;
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    Ok(Config {
        providers: number("AIMARKET_COMPARE_PROVIDERS", 10)?,
        capabilities,
        searches: number("AIMARKET_COMPARE_SEARCHES", 300)?,
        invokes: number("AIMARKET_COMPARE_INVOKES", 300)?,
        timeout: Duration::from_secs(number("AIMARKET_COMPARE_TIMEOUT_S", 600)? as u64),
        python,
        launcher: workspace.join("bench").join("reference_hub.py"),
        binary: PathBuf::from(env!("CARGO_BIN_EXE_aimarket-hub")),
    })
}

/// One hub's figures.
struct Figures {
    startup: Duration,
    crawl: Crawl,
    search: Search,
    invoke: Invoke,
}

async fn measure(
    hub: &mut HubProcess,
    client: &reqwest::Client,
    providers: &Providers,
    config: &Config,
    startup: Duration,
) -> Result<Figures, String> {
    println!("{}: crawl of {} capabilities…", hub.name, providers.total());
    let crawl = measure::crawl(hub, client, providers, config.timeout).await?;
    println!("{}: {} searches…", hub.name, config.searches);
    let search = measure::search(hub, client, config.searches).await?;
    println!("{}: {} free invokes…", hub.name, config.invokes);
    let invoke = measure::invoke(hub, client, providers, config.invokes).await?;
    Ok(Figures {
        startup,
        crawl,
        search,
        invoke,
    })
}

fn row(what: &str, ours: f64, reference: f64, unit: &str) {
    println!(
        "| {what} | {ours:.2} {unit} | {reference:.2} {unit} | {:.3} |",
        ours / reference
    );
}

fn report(config: &Config, ours: &Figures, reference: &Figures) {
    let total = config.providers * config.capabilities;
    println!();
    println!(
        "{} providers × {} capabilities = {total}; {} searches and {} invokes per hub",
        config.providers, config.capabilities, config.searches, config.invokes
    );
    println!();
    println!("| | ours | reference | ours/reference |");
    println!("|---|---|---|---|");
    let s = |d: Duration| d.as_secs_f64();
    row(
        &format!("crawl: trigger → all {total} searchable"),
        s(ours.crawl.searchable),
        s(reference.crawl.searchable),
        "s",
    );
    for (name, q) in [("p50", 0.5), ("p99", 0.99)] {
        row(
            &format!("search {name}"),
            quantile(&ours.search.samples, q),
            quantile(&reference.search.samples, q),
            "ms",
        );
    }
    for (name, q) in [("p50", 0.5), ("p99", 0.99)] {
        let added = |f: &Figures| quantile(&f.invoke.routed, q) - quantile(&f.invoke.direct, q);
        row(
            &format!("free invoke {name} added over a direct call"),
            added(ours),
            added(reference),
            "ms",
        );
    }
    println!();
    println!("Context:");
    for (name, f) in [("ours", ours), ("reference", reference)] {
        println!(
            "- {name}: started (first 200 on health) in {:.2} s; crawl trigger answered after \
             {:.2} s; routed invoke p50/p99 {:.2}/{:.2} ms, direct p50/p99 {:.2}/{:.2} ms; \
             search totals per intent {:?}",
            s(f.startup),
            s(f.crawl.answered),
            quantile(&f.invoke.routed, 0.5),
            quantile(&f.invoke.routed, 0.99),
            quantile(&f.invoke.direct, 0.5),
            quantile(&f.invoke.direct, 0.99),
            f.search.totals,
        );
    }
    println!("- intents: {:?}", measure::INTENTS);
}

async fn run(config: &Config) -> Result<(), String> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(1)
        .timeout(Duration::from_secs(120))
        .build()
        .map_err(|e| e.to_string())?;
    let providers = Providers::start(config.providers, config.capabilities)?;
    println!(
        "{} providers × {} capabilities on 127.0.0.1 (ports {}…{})",
        config.providers,
        config.capabilities,
        providers.list[0].port,
        providers.list[providers.list.len() - 1].port
    );

    // One hub at a time, so neither one's background work lands in the other's figures.
    let mut ours = hubs::start_ours(&config.binary, &providers.list)?;
    let startup = ours.wait_ready(&client, config.timeout).await?;
    // Ours crawls at startup, with the catalogs still closed: joining that crawl (the
    // trigger waits for a running one) makes sure it is over before they open.
    ours.admin_post(&client, "/ai-market/v2/federation/crawl", config.timeout)
        .await?;
    providers.open_catalogs();
    let ours_figures = measure(&mut ours, &client, &providers, config, startup).await?;
    drop(ours);

    let mut reference = hubs::start_reference(&config.python, &config.launcher, &providers.list)?;
    let startup = reference.wait_ready(&client, config.timeout).await?;
    let reference_figures = measure(&mut reference, &client, &providers, config, startup).await?;
    drop(reference);
    report(config, &ours_figures, &reference_figures);
    Ok(())
}

fn main() -> ExitCode {
    aimarket_hub::startup::install_crypto_provider();
    let config = match config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("compare: {e}");
            return ExitCode::FAILURE;
        }
    };
    // One client thread: the cores go to the hubs and the providers.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    match runtime.block_on(run(&config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("compare: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}
