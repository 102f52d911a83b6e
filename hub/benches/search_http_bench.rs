//! Search over HTTP, end to end: the real hub in process on 127.0.0.1:0, a synthetic catalog
//! seeded into its SQLite store through the store's bulk path (`replace_peer_catalog`), the
//! index built by the hub itself, then searches over keep-alive HTTP/1.1 connections.
//!
//! ```text
//! cargo bench -p aimarket-hub --bench search_http_bench
//! AIMARKET_BENCH_SIZES=100000,1000000 cargo bench -p aimarket-hub --bench search_http_bench
//! ```
//!
//! Reports per size: seeding and index build time, sequential latency (p50/p90/p99/max) for
//! typical intents with the filters clients send, throughput with concurrent keep-alive
//! clients, manifest build time and size, and the cold start of the real binary on the
//! already-indexed data dir (process spawn → first 200 on search), with its resident memory.
//!
//! The client is a minimal HTTP/1.1 keep-alive client on one thread, so the two cores go to
//! the hub rather than to client-side HTTP machinery. Seeded peers get loopback origins on
//! closed ports (`http://127.0.0.1:2xxxx`): the hub's startup crawl fails fast on them
//! without any traffic leaving the machine. Peer trust comes from the reputation formula
//! with operator bonds spread over the peers; measurements start once the hub has applied
//! that and built its manifest.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/traces.rs"]
mod traces;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use aimarket_hub::settings::Settings;
use aimarket_hub::startup::Application;
use aimarket_hub::state::AppState;
use aimarket_hub::store::{NewPeer, PeerState, Store};
use aimarket_indexer::IndexedCapability;
use aimarket_indexer::synthetic::catalog;
use aimarket_protocol::capability::Capability;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sequential requests timed per size.
const LATENCY_REQUESTS: usize = 4_000;
/// Concurrent keep-alive connections in the throughput run.
const CONNECTIONS: usize = 8;
/// Length of the throughput run.
const THROUGHPUT_FOR: Duration = Duration::from_secs(10);

/// Typical agent queries (CLIENTS.md: intent, budget, limit, min_trust, max_latency_ms,
/// category, hub), in the query-string form clients send.
fn workload() -> Vec<(&'static str, String)> {
    vec![
        ("ocr", "intent=ocr&limit=8".into()),
        (
            "weather +budget",
            "intent=weather+forecast&budget=0.05&limit=6".into(),
        ),
        (
            "translate to french",
            "intent=translate+text+to+french&limit=20".into(),
        ),
        (
            "legal contract review",
            "intent=legal+contract+review&limit=20".into(),
        ),
        (
            "speech to text +budget",
            "intent=speech+to+text&budget=0.05&limit=10".into(),
        ),
        (
            "usd to eur +trust +latency",
            "intent=convert+usd+to+eur&min_trust=0.3&max_latency_ms=10000&limit=10".into(),
        ),
        (
            "image generation +latency",
            "intent=image+generation&max_latency_ms=1000&limit=20".into(),
        ),
        (
            "summarize +category",
            "intent=summarize&category=nlp&limit=20".into(),
        ),
        (
            "stock price +all filters",
            "intent=stock+price&budget=0.1&min_trust=0.4&max_latency_ms=2000&limit=20".into(),
        ),
        (
            "code review +hub",
            "intent=code+review&hub=http%3A%2F%2F127.0.0.1%3A20001&limit=20".into(),
        ),
        ("wether (typo)", "intent=wether&limit=10".into()),
        (
            "погода (ru)",
            "intent=%D0%BF%D0%BE%D0%B3%D0%BE%D0%B4%D0%B0&limit=10".into(),
        ),
        ("翻译 (zh)", "intent=%E7%BF%BB%E8%AF%91&limit=10".into()),
        (
            "browse +budget page 3",
            "intent=&budget=0.02&offset=40&limit=20".into(),
        ),
        (
            "geocode compact",
            "intent=geocode+address&fields=compact&limit=20".into(),
        ),
    ]
}

// ---- a minimal keep-alive HTTP/1.1 client ----

struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    async fn open(addr: SocketAddr) -> std::io::Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: Vec::with_capacity(64 * 1024),
        })
    }

    /// `GET path`; returns the status and the body.
    async fn get(&mut self, path: &str) -> std::io::Result<(u16, Vec<u8>)> {
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: bench\r\nAccept: application/json\r\n\r\n");
        self.stream.write_all(request.as_bytes()).await?;
        self.buf.clear();
        let header_end = loop {
            if let Some(at) = find(&self.buf, b"\r\n\r\n") {
                break at + 4;
            }
            self.fill().await?;
        };
        let head = std::str::from_utf8(&self.buf[..header_end]).expect("ASCII headers");
        let status: u16 = head[9..12].parse().expect("a status code");
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        while self.buf.len() < header_end + length {
            self.fill().await?;
        }
        Ok((status, self.buf[header_end..header_end + length].to_vec()))
    }

    async fn fill(&mut self) -> std::io::Result<()> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

// ---- seeding ----

/// `https://hub-17.example.net` → 17.
fn hub_number(origin: &str) -> u32 {
    origin
        .trim_start_matches("https://hub-")
        .trim_end_matches(".example.net")
        .parse()
        .expect("synthetic origins are numbered")
}

fn loopback_origin(hub: u32) -> String {
    format!("http://127.0.0.1:{}", 20_000 + hub)
}

fn to_row(cap: IndexedCapability) -> Capability {
    let origin = loopback_origin(hub_number(&cap.origin));
    let tool = json!({
        "name": cap.name,
        "description": cap.description,
        "input_schema": cap.input_schema,
        "output_schema": {"type": "object"},
        "price_per_call_usd": cap.price_usd,
        "p50_latency_ms": cap.p50_latency_ms,
        "success_rate_30d": cap.success_rate,
        "product_id": cap.product_id,
        "capability_id": cap.capability_id,
        "categories": cap.categories,
    });
    Capability {
        origin,
        via: None,
        product_id: cap.product_id,
        capability_id: cap.capability_id,
        name: cap.name,
        description: cap.description,
        input_schema: cap.input_schema.to_string(),
        output_schema: Some("{\"type\":\"object\"}".into()),
        price_usd: cap.price_usd,
        p50_latency_ms: Some(cap.p50_latency_ms),
        success_rate: Some(cap.success_rate),
        invoke_url: None,
        tool_json: tool.to_string(),
    }
}

/// Seeds `n` synthetic capabilities as active peers' catalogs; returns the number of peers.
async fn seed(store: &Store, n: usize) -> usize {
    let mut by_hub: BTreeMap<u32, Vec<Capability>> = BTreeMap::new();
    for cap in catalog(n, 42) {
        let hub = hub_number(&cap.origin);
        by_hub.entry(hub).or_default().push(to_row(cap));
    }
    let peers = by_hub.len();
    for (hub, rows) in by_hub {
        let (peer, _) = store
            .insert_peer_if_absent(&NewPeer {
                url: loopback_origin(hub),
                well_known_url: None,
                name: Some(format!("Example Hub {hub}")),
                state: PeerState::Active,
                trusted: true,
                depth: 0,
                pinned_key: None,
            })
            .await
            .unwrap();
        store.replace_peer_catalog(peer.id, rows).await.unwrap();
    }
    peers
}

/// Operator bonds spreading peer trust (spec §5.1: bond is 30 % of the score): peer `h`
/// gets $0, $10, $100, $1,000 or $10,000 by `h % 5`, in the `AIMARKET_PEER_BONDS` form.
fn bonds(peers: usize) -> String {
    (0..peers as u32)
        .filter(|h| h % 5 != 0)
        .map(|h| format!("{}={}", loopback_origin(h), 10u64.pow(h % 5)))
        .collect::<Vec<_>>()
        .join(",")
}

// ---- measurements ----

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

fn status_kib(pid: Option<u32>, field: &str) -> Option<u64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/status"),
        None => "/proc/self/status".to_owned(),
    };
    let status = std::fs::read_to_string(path).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or("?".into(), |k| format!("{:.0} MiB", k as f64 / 1024.0))
}

async fn wait_for_total(addr: SocketAddr, n: usize, timeout: Duration) -> Duration {
    let started = Instant::now();
    let mut conn = Conn::open(addr).await.unwrap();
    loop {
        let (status, body) = conn.get("/ai-market/v2/search?limit=0").await.unwrap();
        let total = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v["total"].as_u64());
        if status == 200 && total == Some(n as u64) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < timeout,
            "index never reached {n}: {total:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the hub is quiet: the reputation recompute after startup (bonds) rewrites
/// trust and publishes the changed keys; the index applies them and the manifest is rebuilt.
/// Measuring before that would time the hub's own background work, not search.
async fn settle(state: &AppState) -> Duration {
    let started = Instant::now();
    let mut quiet = 0;
    let mut last = None;
    while quiet < 6 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let store = state.store.catalog_version().await.unwrap();
        let index = state.catalog.index().unwrap().indexed_version();
        let manifest = state.catalog.manifest().get().map(|m| m.version);
        let now = (store, index, manifest);
        let current = index == u64::try_from(store).ok() && manifest == Some(store);
        quiet = if current && last == Some(now) {
            quiet + 1
        } else {
            0
        };
        last = Some(now);
        assert!(
            started.elapsed() < Duration::from_secs(1800),
            "never settled: {now:?}"
        );
    }
    started.elapsed()
}

async fn latency(addr: SocketAddr) {
    let work = workload();
    let mut conn = Conn::open(addr).await.unwrap();
    // Warm up: every query a few times (page cache, doc-store cache, allocator).
    for _ in 0..5 {
        for (_, q) in &work {
            let (status, _) = conn
                .get(&format!("/ai-market/v2/search?{q}"))
                .await
                .unwrap();
            assert_eq!(status, 200, "{q}");
        }
    }
    let mut all = Vec::with_capacity(LATENCY_REQUESTS);
    let mut per: Vec<Vec<Duration>> = vec![Vec::new(); work.len()];
    let mut totals = vec![0u64; work.len()];
    for i in 0..LATENCY_REQUESTS {
        let k = i % work.len();
        let path = format!("/ai-market/v2/search?{}", work[k].1);
        let started = Instant::now();
        let (status, body) = conn.get(&path).await.unwrap();
        let elapsed = started.elapsed();
        assert_eq!(status, 200);
        if totals[k] == 0 {
            totals[k] = serde_json::from_slice::<Value>(&body).unwrap()["total"]
                .as_u64()
                .unwrap();
        }
        all.push(elapsed);
        per[k].push(elapsed);
    }
    all.sort_unstable();
    println!(
        "latency, 1 keep-alive connection, {LATENCY_REQUESTS} requests: p50 {} p90 {} p99 {} max {}",
        us(percentile(&all, 0.5)),
        us(percentile(&all, 0.9)),
        us(percentile(&all, 0.99)),
        us(*all.last().unwrap())
    );
    for (((name, _), mut times), total) in work.iter().zip(per).zip(totals) {
        times.sort_unstable();
        println!(
            "  {name:<28} p50 {:>8} p99 {:>8}  total {total}",
            us(percentile(&times, 0.5)),
            us(percentile(&times, 0.99)),
        );
    }
}

async fn throughput(addr: SocketAddr) {
    let work = workload();
    let deadline = Instant::now() + THROUGHPUT_FOR;
    let mut tasks = Vec::new();
    for c in 0..CONNECTIONS {
        let paths: Vec<String> = work
            .iter()
            .map(|(_, q)| format!("/ai-market/v2/search?{q}"))
            .collect();
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::open(addr).await.unwrap();
            let mut done = 0usize;
            let mut i = c;
            while Instant::now() < deadline {
                let (status, _) = conn.get(&paths[i % paths.len()]).await.unwrap();
                assert_eq!(status, 200);
                done += 1;
                i += 1;
            }
            done
        }));
    }
    let started = Instant::now();
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "throughput, {CONNECTIONS} keep-alive connections, {:.0} s: {total} searches, {:.0} searches/s",
        secs,
        total as f64 / secs
    );
}

async fn manifest(state: &AppState, addr: SocketAddr) {
    let started = Instant::now();
    let built = state.catalog.refresh_manifest().await.unwrap();
    println!(
        "manifest build: {} tools in {:.2} s; body {:.1} MiB, gzip {:.1} MiB",
        built.capabilities,
        started.elapsed().as_secs_f64(),
        built.body.len() as f64 / 1048576.0,
        built.gzip.len() as f64 / 1048576.0
    );
    let mut conn = Conn::open(addr).await.unwrap();
    let started = Instant::now();
    let (status, body) = conn.get("/ai-market/v2/manifest").await.unwrap();
    assert_eq!(status, 200);
    println!(
        "manifest served from memory: {:.1} MiB in {} ms",
        body.len() as f64 / 1048576.0,
        started.elapsed().as_millis()
    );
}

/// The real binary on the already-indexed data dir: spawn → first 200 on search.
async fn cold_start(data_dir: &Path, n: usize, bonds: &str) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let started = Instant::now();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_aimarket-hub"))
        .args(["serve", "--listen", &addr.to_string(), "--data-dir"])
        .arg(data_dir)
        .env("RUST_LOG", "warn")
        .env("AIMARKET_AUTO_CRAWL", "false")
        .env("AIMARKET_PEER_BONDS", bonds)
        // One client measures: the per-client search limit would measure itself.
        .env("AIMARKET_SEARCH_RATE_PER_MIN", "0")
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn the hub binary");
    // Killed however this function ends (a failed assertion included).
    let child = KillOnDrop(child);
    let first = loop {
        if let Ok(mut conn) = Conn::open(addr).await
            && let Ok((200, body)) = conn
                .get("/ai-market/v2/search?intent=weather&limit=5")
                .await
        {
            break (started.elapsed(), body);
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the binary never answered"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let body: Value = serde_json::from_slice(&first.1).unwrap();
    println!(
        "cold start (binary, {n} indexed): first 200 on search after {} ms ({} matches of {})",
        first.0.as_millis(),
        body["matches"].as_array().map_or(0, Vec::len),
        body["total"]
    );
    // The same latency pass against the binary (its own process: nothing of the bench's
    // seeding or client shares its heap), then its memory while serving: the heap
    // (`RssAnon`) apart from the index and database pages mapped from disk (`RssFile`).
    println!("latency of the binary after its cold start:");
    latency(addr).await;
    let mut conn = Conn::open(addr).await.unwrap();
    let (status, _) = conn.get("/ai-market/v2/manifest").await.unwrap();
    let pid = child.0.id();
    println!(
        "hub process memory after serving (manifest {status}): VmRSS {} (RssAnon {}, RssFile {}) VmHWM {}",
        mib(status_kib(Some(pid), "VmRSS:")),
        mib(status_kib(Some(pid), "RssAnon:")),
        mib(status_kib(Some(pid), "RssFile:")),
        mib(status_kib(Some(pid), "VmHWM:"))
    );
    drop(child);
}

/// A child process killed (and reaped) when dropped.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn run(n: usize) {
    println!("== {n} capabilities ==");
    let dir = tempfile::tempdir().unwrap();
    // `AIMARKET_BENCH_KEEP_DATA=1` keeps the seeded and indexed data dir (its path is
    // printed) for experiments with the binary on it; it is deleted otherwise.
    let keep = std::env::var_os("AIMARKET_BENCH_KEEP_DATA").is_some();
    let started = Instant::now();
    let store = Store::connect(None, dir.path()).await.unwrap();
    let peers = seed(&store, n).await;
    store.close().await;
    println!(
        "seed: {n} capabilities of {peers} peers into SQLite in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let bonds = bonds(peers);
    let mut settings = Settings::for_test(dir.path());
    settings.auto_crawl = false;
    settings.reputation.peer_bonds = bonds.parse().unwrap();
    // Every bench request comes from one address: the per-client search limit would
    // measure itself.
    settings.limits.search_rate_per_min = 0;
    let started = Instant::now();
    let app = Application::build(settings).await.unwrap();
    let addr = app.local_addr();
    let handle = app.handle();
    let state = app.state();
    let server = tokio::spawn(app.into_server());
    let built = wait_for_total(addr, n, Duration::from_secs(1800)).await;
    println!(
        "index build by the hub (startup, empty index → rebuild from the store): {:.1} s (hub started in {} ms)",
        built.as_secs_f64(),
        (started.elapsed() - built).as_millis()
    );
    let settled = settle(&state).await;
    println!(
        "settled after {:.1} s more (reputation update applied, manifest built)",
        settled.as_secs_f64()
    );

    latency(addr).await;
    throughput(addr).await;
    manifest(&state, addr).await;
    println!(
        "bench process (seeding + in-process hub + client): VmHWM {}",
        mib(status_kib(None, "VmHWM:"))
    );

    handle.stop(true).await;
    let _ = server.await;
    state.catalog.close();
    state.store.close().await;
    drop(state);
    // Give the sync task a moment to drop its handle on the index.
    tokio::time::sleep(Duration::from_millis(200)).await;
    cold_start(dir.path(), n, &bonds).await;
    if keep {
        std::fs::write(dir.path().join("bench-peer-bonds.txt"), &bonds).unwrap();
        println!(
            "data dir kept: {} (AIMARKET_PEER_BONDS in bench-peer-bonds.txt there)",
            dir.keep().display()
        );
    }
}

fn main() {
    let sizes: Vec<usize> = std::env::var("AIMARKET_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|p| p.trim().parse().ok()).collect())
        .filter(|v: &Vec<usize>| !v.is_empty())
        .unwrap_or_else(|| vec![100_000]);
    aimarket_hub::startup::install_crypto_provider();
    // `AIMARKET_BENCH_TRACES=<ratio>`: trace export on (see `support/traces.rs`).
    let (tracing_mode, _traces) = traces::from_env();
    println!("search_http_bench: {tracing_mode}");
    // One client thread: the hub's own worker threads get the cores.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for n in sizes {
        runtime.block_on(run(n));
    }
}
