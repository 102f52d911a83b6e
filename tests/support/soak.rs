//! The soak (issue #13): mixed load against a real hub for a while (searches, free and paid
//! invokes, a crawl every minute, announcements) while sampling the process's RSS, open file
//! descriptors and live tokio tasks. Used by the 2-minute CI test (`e2e::soak`) and the long
//! bench (`cargo bench --profile dev --workspace --bench soak`, 30 minutes by default).
//!
//! The provider is [`FaultyProvider`] answering correctly: it keeps no record of calls, so
//! the samples measure the hub (and the test client), not a fake's memory.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aimarket_hub::payments::OpenChannel;
use reqwest::Method;
use serde_json::json;

use crate::TestHub;
use crate::faulty::{Fault, FaultyProvider};

/// One sample of the process.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Time since the load started.
    pub at: Duration,
    /// Resident set size, KiB (`VmRSS`).
    pub rss_kib: u64,
    /// Anonymous part of the RSS (heap, stacks), KiB (`RssAnon`): where a leak would show.
    pub rss_anon_kib: u64,
    /// File-backed part of the RSS (binary, mapped index segments), KiB (`RssFile`).
    pub rss_file_kib: u64,
    /// SQLite database size on disk (main file + WAL), KiB: what the ledger grows by.
    pub db_kib: u64,
    /// Open file descriptors.
    pub fds: usize,
    /// Live tasks on the runtime that runs the hub's background jobs and the load.
    pub tasks: usize,
    /// Requests answered so far.
    pub requests: u64,
    /// Answers that were 5xx or no answer at all.
    pub errors: u64,
}

/// One `/proc/self/status` field in KiB (0 when absent).
fn status_kib(status: &str, field: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Size of the hub's SQLite files (every `hub.db*` in the data dir), KiB.
fn db_kib(data_dir: &Path) -> u64 {
    std::fs::read_dir(data_dir).map_or(0, |entries| {
        entries
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().contains(".db"))
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len() / 1024)
            .sum()
    })
}

fn sample(at: Duration, data_dir: &Path, requests: &AtomicU64, errors: &AtomicU64) -> Sample {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    Sample {
        at,
        rss_kib: status_kib(&status, "VmRSS:"),
        rss_anon_kib: status_kib(&status, "RssAnon:"),
        rss_file_kib: status_kib(&status, "RssFile:"),
        db_kib: db_kib(data_dir),
        fds: std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count),
        tasks: tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks(),
        requests: requests.load(Ordering::Relaxed),
        errors: errors.load(Ordering::Relaxed),
    }
}

/// Runs the mixed load for `duration`, sampling every `every`. Must run on a multi-thread
/// tokio runtime. Returns the samples (the first one taken when the load starts).
pub async fn run(duration: Duration, every: Duration) -> Vec<Sample> {
    let fake = FaultyProvider::start().await;
    let credentials = format!("{}=apikey:hub-key", fake.url);
    let hub = TestHub::builder()
        .settings(|s| {
            s.demo_payments = true;
            s.invoke.peer_credentials = credentials.parse().expect("credentials");
            // Off: the soak checks resources, not the limiter (which would answer 429).
            s.invoke.rate_per_min = 0;
            // A knob for the bench: a shorter trust recompute interval shows within minutes
            // whether memory tied to the recompute plateaus (see BENCHMARKS.md, "Soak").
            if let Some(secs) = std::env::var("AIMARKET_SOAK_REPUTATION_S")
                .ok()
                .and_then(|v| v.parse().ok())
            {
                s.reputation.recompute_interval_s = secs;
            }
        })
        .start()
        .await;
    let store = &hub.state.store;
    let peer = store
        .upsert_seed_peer(&fake.url, None)
        .await
        .expect("seed peer");
    let mut free = fake.capability(Fault::Ok, 0.0);
    free.capability_id = "free@v1".into();
    let paid = fake.capability(Fault::Ok, 0.001);
    store
        .replace_peer_catalog(peer.id, vec![free, paid])
        .await
        .expect("catalog");
    hub.state.catalog_changed();
    let channel = hub
        .state
        .ledger
        .open_channel(OpenChannel {
            deposit_usd: 1_000_000.0,
            tx_hash: Some("demo-soak".into()),
            ..OpenChannel::default()
        })
        .await
        .expect("channel");
    let secret = channel.secret.as_ref().expect("secret").expose().to_owned();
    let channel_id = channel.id.clone();

    let data_dir: PathBuf = hub.data_dir().to_path_buf();
    let hub = Arc::new(hub);
    let requests = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let mut workers = Vec::new();
    for worker in 0..4u64 {
        let (hub, requests, errors) = (hub.clone(), requests.clone(), errors.clone());
        let (channel_id, secret) = (channel_id.clone(), secret.clone());
        workers.push(tokio::spawn(async move {
            let mut n = worker;
            while Instant::now() < deadline {
                n += 1;
                let request = match n % 20 {
                    0..=11 => hub.request(Method::GET, "/ai-market/v2/search?intent=ok+provider"),
                    12..=14 => hub.request(Method::POST, "/ai-market/v2/invoke").json(&json!({
                        "product_id": "faulty", "capability_id": "free@v1", "input": {"n": n}})),
                    15..=18 => hub
                        .request(Method::POST, "/ai-market/v2/invoke")
                        .header("X-Payment-Channel", &channel_id)
                        .header("X-Payment-Channel-Secret", &secret)
                        .json(&json!({
                            "product_id": "faulty", "capability_id": "ok@v1", "input": {"n": n}})),
                    _ => hub
                        .request(Method::POST, "/ai-market/v2/federation/announce")
                        .json(&json!({"hub_url": format!("https://hub{n}.example.com"),
                            "well_known_url": format!("https://hub{n}.example.com/.well-known/ai-market.json"),
                            "capabilities_count": 1})),
                };
                let ok = match request.send().await {
                    Ok(r) => {
                        let status = r.status();
                        let _ = r.bytes().await;
                        !status.is_server_error()
                    }
                    Err(_) => false,
                };
                requests.fetch_add(1, Ordering::Relaxed);
                if !ok {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    // A crawl every minute (admin), as the schedule would.
    let crawler = {
        let hub = hub.clone();
        tokio::spawn(async move {
            while Instant::now() < deadline {
                let _ = hub
                    .admin_post("/ai-market/v2/federation/crawl?wait=true", &json!({}))
                    .await;
                let left = deadline.saturating_duration_since(Instant::now());
                tokio::time::sleep(left.min(Duration::from_secs(60))).await;
            }
        })
    };
    let mut samples = vec![sample(Duration::ZERO, &data_dir, &requests, &errors)];
    while Instant::now() < deadline {
        let left = deadline.saturating_duration_since(Instant::now());
        tokio::time::sleep(left.min(every)).await;
        samples.push(sample(started.elapsed(), &data_dir, &requests, &errors));
    }
    for w in workers {
        let _ = w.await;
    }
    let _ = crawler.await;
    samples
}

/// Prints samples as a Markdown table (for BENCHMARKS.md).
pub fn print_table(samples: &[Sample]) {
    println!(
        "| min | RSS MiB | anon MiB | file MiB | SQLite MiB | open fds | tasks | requests | 5xx/no answer |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for s in samples {
        println!(
            "| {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {} | {} | {} |",
            s.at.as_secs_f64() / 60.0,
            s.rss_kib as f64 / 1024.0,
            s.rss_anon_kib as f64 / 1024.0,
            s.rss_file_kib as f64 / 1024.0,
            s.db_kib as f64 / 1024.0,
            s.fds,
            s.tasks,
            s.requests,
            s.errors
        );
    }
}
