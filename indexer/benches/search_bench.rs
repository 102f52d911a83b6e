//! Library-level search benchmark over synthetic catalogs.
//!
//! `cargo bench -p aimarket-indexer --bench search_bench` runs 100,000 capabilities.
//! Sizes: `AIMARKET_BENCH_SIZES=100000,1000000` (or numeric arguments). Iterations per size:
//! `AIMARKET_BENCH_QUERIES` (default 4,000). The index is built on disk in a temp dir with
//! `Index::rebuild`, reopened to measure a cold start, queried on one thread (latency
//! percentiles), then from one thread per core (throughput). `AIMARKET_BENCH_ONLY=<substring>`
//! keeps only matching workload entries (for profiling).

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use aimarket_indexer::synthetic::catalog;
use aimarket_indexer::{Index, SearchQuery};

fn sizes() -> Vec<usize> {
    let from_args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    if !from_args.is_empty() {
        return from_args;
    }
    std::env::var("AIMARKET_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|p| p.trim().parse().ok()).collect())
        .filter(|v: &Vec<usize>| !v.is_empty())
        .unwrap_or_else(|| vec![100_000])
}

fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn memory() -> String {
    let mib =
        |kib: Option<u64>| kib.map_or("?".into(), |k| format!("{:.0} MiB", k as f64 / 1024.0));
    format!(
        "VmRSS {} VmHWM {}",
        mib(status_kib("VmRSS:")),
        mib(status_kib("VmHWM:"))
    )
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Typical agent intents with the filters clients send (see CLIENTS.md).
fn workload() -> Vec<(&'static str, SearchQuery)> {
    let q = |intent: &str| SearchQuery {
        intent: intent.to_string(),
        limit: 20,
        ..SearchQuery::default()
    };
    vec![
        ("ocr", q("ocr")),
        ("weather", q("weather")),
        ("wether (typo)", q("wether")),
        ("translate text to french", q("translate text to french")),
        ("legal contract review", q("legal contract review")),
        ("browse (empty)", q("")),
        ("погода (ru)", q("погода")),
        ("翻译 (zh)", q("翻译")),
        (
            "speech to text +budget",
            SearchQuery {
                budget: Some(0.05),
                ..q("speech to text")
            },
        ),
        (
            "convert usd to eur +trust",
            SearchQuery {
                min_trust: Some(0.6),
                ..q("convert usd to eur")
            },
        ),
        (
            "image generation +latency",
            SearchQuery {
                max_latency_ms: Some(1000),
                ..q("image generation")
            },
        ),
        (
            "summarize +category",
            SearchQuery {
                category: Some("nlp".into()),
                ..q("summarize")
            },
        ),
        ("geocod (prefix)", q("geocod")),
        (
            "stock price +all filters",
            SearchQuery {
                budget: Some(0.1),
                min_trust: Some(0.5),
                max_latency_ms: Some(2000),
                ..q("stock price")
            },
        ),
        (
            "code review +hub",
            SearchQuery {
                hub: Some("https://hub-1.example.net".into()),
                ..q("code review")
            },
        ),
        (
            "browse +budget page 3",
            SearchQuery {
                budget: Some(0.02),
                offset: 40,
                ..q("")
            },
        ),
    ]
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

fn run(size: usize, iterations: usize) {
    println!("== {size} capabilities ==");
    let dir = tempfile::tempdir().unwrap();
    let index = Index::open_or_create(dir.path()).unwrap();
    let started = Instant::now();
    let indexed = index.rebuild(catalog(size, 42), 1).unwrap();
    let build = started.elapsed();
    println!(
        "build: {indexed} docs in {:.2} s ({:.0} docs/s); index size {:.1} MiB; {}",
        build.as_secs_f64(),
        indexed as f64 / build.as_secs_f64(),
        dir_size(dir.path()) as f64 / 1048576.0,
        memory()
    );
    drop(index);

    let started = Instant::now();
    let index = Index::open_or_create(dir.path()).unwrap();
    let opened = started.elapsed();
    let first = index.search(&workload()[3].1).unwrap();
    println!(
        "cold start: open {} ms, open + first search {} ms (version {:?}, {} hubs)",
        opened.as_millis(),
        started.elapsed().as_millis(),
        index.indexed_version(),
        first.hubs
    );

    let only = std::env::var("AIMARKET_BENCH_ONLY").unwrap_or_default();
    let work: Vec<_> = workload()
        .into_iter()
        .filter(|(name, _)| name.contains(&only))
        .collect();
    for (_, query) in work.iter().cycle().take(work.len() * 20) {
        index.search(query).unwrap();
    }
    let mut all = Vec::with_capacity(iterations);
    let mut per: Vec<Vec<Duration>> = vec![Vec::new(); work.len()];
    let started = Instant::now();
    for i in 0..iterations {
        let w = i % work.len();
        let t = Instant::now();
        let page = index.search(&work[w].1).unwrap();
        let d = t.elapsed();
        std::hint::black_box(page);
        all.push(d);
        per[w].push(d);
    }
    let wall = started.elapsed();
    all.sort_unstable();
    println!(
        "search ({iterations} calls, 1 thread, limit 20, full hits with input_schema): \
         p50 {} p90 {} p99 {} max {}; {:.0} searches/s",
        us(percentile(&all, 0.5)),
        us(percentile(&all, 0.9)),
        us(percentile(&all, 0.99)),
        us(*all.last().unwrap()),
        iterations as f64 / wall.as_secs_f64()
    );
    for ((name, query), mut times) in work.iter().zip(per) {
        times.sort_unstable();
        let page = index.search(query).unwrap();
        println!(
            "  {name:<28} p50 {:>8} p99 {:>8}  total {:>7} {:?}",
            us(percentile(&times, 0.5)),
            us(percentile(&times, 0.99)),
            page.total,
            page.matches.first().map(|m| m.match_type)
        );
    }

    // All cores: the same workload from one thread per core, sharing the index.
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let started = Instant::now();
    std::thread::scope(|scope| {
        for t in 0..threads {
            let (index, work) = (&index, &work);
            scope.spawn(move || {
                for i in 0..iterations {
                    let page = index.search(&work[(i + t) % work.len()].1).unwrap();
                    std::hint::black_box(page);
                }
            });
        }
    });
    let wall = started.elapsed();
    println!(
        "search on {threads} threads: {:.0} searches/s ({} calls)",
        (threads * iterations) as f64 / wall.as_secs_f64(),
        threads * iterations
    );

    let changes: Vec<_> = catalog(100, 7).collect();
    let started = Instant::now();
    index.apply(changes, Vec::new(), 2).unwrap();
    println!(
        "incremental apply of 100 upserts + commit + reload: {} ms",
        started.elapsed().as_millis()
    );
    println!("{}", memory());
}

fn main() {
    let iterations = std::env::var("AIMARKET_BENCH_QUERIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4000);
    for size in sizes() {
        run(size, iterations);
    }
}
