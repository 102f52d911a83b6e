//! Store throughput on SQLite: 20 peers × 1,000-tool manifests through
//! `Store::replace_peer_catalog`, the write path of a crawl.
//!
//! Run with `cargo bench -p aimarket-hub --bench store_bench`. Prints capabilities per second
//! for a first crawl (every row inserted), an unchanged re-crawl (hash comparison only, no
//! writes), a re-crawl with 10% of the tools changed, a first crawl with the 20 peers
//! written concurrently, and a full paged read of the catalog (index rebuild).

use std::time::{Duration, Instant};

use aimarket_hub::store::Store;
use aimarket_protocol::capability::Capability;
use serde_json::json;

const PEERS: usize = 20;
const TOOLS: usize = 1_000;
const ROUNDS: usize = 3;

fn tool(peer: usize, i: usize, rev: u32) -> Capability {
    let origin = format!("https://provider-{peer:02}.example");
    let product_id = format!("product-{:02}", i % 50);
    let capability_id = format!("capability-{i:04}");
    let name = format!("Capability {i} of provider {peer}");
    let description = format!(
        "Revision {rev}: translates, summarises and classifies text for agents. Handles \
         documents in English, Russian and Chinese, returns structured JSON with confidence \
         scores. Tool {i} of provider {peer}."
    );
    let input_schema = json!({
        "type": "object",
        "required": ["text"],
        "properties": {
            "text": {"type": "string", "description": "Input text to process"},
            "target_language": {"type": "string", "description": "ISO 639-1 code"},
            "max_tokens": {"type": "integer", "minimum": 1, "maximum": 4096},
            "style": {"type": "string", "enum": ["formal", "casual", "technical"]}
        }
    });
    let output_schema = json!({
        "type": "object",
        "properties": {"result": {"type": "string"}, "confidence": {"type": "number"}}
    });
    let price = 0.0005 * (1 + i % 20) as f64;
    let invoke_url = format!("{origin}/capabilities/{product_id}/{capability_id}/invoke");
    let tool = json!({
        "name": name,
        "description": description,
        "product_id": product_id,
        "capability_id": capability_id,
        "input_schema": input_schema,
        "output_schema": output_schema,
        "price_per_call_usd": price,
        "p50_latency_ms": 150 + i % 300,
        "success_rate_30d": 0.98,
        "source_hub": origin,
        "invoke_url": invoke_url,
    });
    Capability {
        via: None,
        product_id,
        capability_id,
        name,
        description,
        input_schema: input_schema.to_string(),
        output_schema: Some(output_schema.to_string()),
        price_usd: price,
        p50_latency_ms: Some((150 + i % 300) as u64),
        success_rate: Some(0.98),
        invoke_url: Some(invoke_url),
        tool_json: tool.to_string(),
        origin,
    }
}

fn catalog(peer: usize, changed_every: Option<usize>) -> Vec<Capability> {
    (0..TOOLS)
        .map(|i| {
            let rev = match changed_every {
                Some(n) if i % n == 0 => 2,
                _ => 1,
            };
            tool(peer, i, rev)
        })
        .collect()
}

fn rate(count: usize, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

struct Round {
    first: f64,
    unchanged: f64,
    changed: f64,
    parallel: f64,
    read: f64,
}

async fn round() -> anyhow::Result<Round> {
    let dir = tempfile::tempdir()?;
    let store = Store::connect(None, dir.path()).await?;
    let mut peers = Vec::new();
    for p in 0..PEERS {
        let row = store
            .upsert_seed_peer(&format!("https://provider-{p:02}.example"), None)
            .await?;
        peers.push(row.id);
    }
    let total = PEERS * TOOLS;

    // Tool construction (the crawler's parse step) is kept out of the timed sections.
    let first: Vec<_> = (0..PEERS).map(|p| catalog(p, None)).collect();
    let again = first.clone();
    let start = Instant::now();
    for (id, tools) in peers.iter().zip(first) {
        let diff = store.replace_peer_catalog(*id, tools).await?;
        anyhow::ensure!(diff.added.len() == TOOLS, "first crawl stores every tool");
    }
    let first_rate = rate(total, start.elapsed());

    let start = Instant::now();
    for (id, tools) in peers.iter().zip(again) {
        let diff = store.replace_peer_catalog(*id, tools).await?;
        anyhow::ensure!(diff.is_empty(), "unchanged re-crawl writes nothing");
    }
    let unchanged_rate = rate(total, start.elapsed());

    let changed: Vec<_> = (0..PEERS).map(|p| catalog(p, Some(10))).collect();
    let start = Instant::now();
    for (id, tools) in peers.iter().zip(changed) {
        let diff = store.replace_peer_catalog(*id, tools).await?;
        anyhow::ensure!(diff.changed.len() == TOOLS / 10, "10% changed");
    }
    let changed_rate = rate(total, start.elapsed());

    let start = Instant::now();
    let mut read = 0;
    let mut after = 0;
    loop {
        let page = store.list_capabilities(after, 1_000).await?;
        let Some(last) = page.last() else { break };
        after = last.id;
        read += page.len();
    }
    anyhow::ensure!(read == total, "read back every row");
    let read_rate = rate(read, start.elapsed());
    store.close().await;

    // Concurrent writers, as a crawl with parallel peers would issue them.
    let dir = tempfile::tempdir()?;
    let store = Store::connect(None, dir.path()).await?;
    let mut jobs = Vec::new();
    for p in 0..PEERS {
        let row = store
            .upsert_seed_peer(&format!("https://provider-{p:02}.example"), None)
            .await?;
        jobs.push((row.id, catalog(p, None)));
    }
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (id, tools) in jobs {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store.replace_peer_catalog(id, tools).await
        }));
    }
    for task in tasks {
        task.await??;
    }
    let parallel_rate = rate(total, start.elapsed());
    store.close().await;

    Ok(Round {
        first: first_rate,
        unchanged: unchanged_rate,
        changed: changed_rate,
        parallel: parallel_rate,
        read: read_rate,
    })
}

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let bytes: usize = catalog(0, None).iter().map(|t| t.tool_json.len()).sum();
    println!(
        "store_bench: SQLite (WAL, synchronous=NORMAL), {PEERS} peers x {TOOLS} tools, \
         {ROUNDS} rounds, median; tool JSON averages {} bytes",
        bytes / TOOLS
    );
    let mut rounds = Vec::new();
    for _ in 0..ROUNDS {
        rounds.push(runtime.block_on(round())?);
    }
    let report = |label: &str, pick: fn(&Round) -> f64| {
        let values: Vec<f64> = rounds.iter().map(pick).collect();
        println!("{label:<46} {:>10.0} capabilities/s", median(values));
    };
    report("first crawl (all inserted), sequential", |r| r.first);
    report("first crawl (all inserted), 20 concurrent", |r| r.parallel);
    report("re-crawl, 10% changed", |r| r.changed);
    report("re-crawl, unchanged (no writes)", |r| r.unchanged);
    report("paged read of the whole catalog", |r| r.read);
    Ok(())
}
