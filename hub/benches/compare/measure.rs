//! The three measurements, identical for both hubs (only the HTTP shapes both share are used:
//! the admin crawl trigger, `GET /ai-market/v2/search` with `total`, the peers list and
//! `POST /ai-market/v2/invoke`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::hubs::HubProcess;
use crate::providers::{Providers, capability_id};

/// The fixed search workload: typical agent intents against the generated topics, a typo,
/// a multi-word query and an empty intent (browse), 20 results each.
pub const INTENTS: [&str; 12] = [
    "translate text to french",
    "weather forecast",
    "ocr",
    "sentiment analysis",
    "summarize",
    "speech to text",
    "stock price",
    "geocode address",
    "legal contract review",
    "image generation",
    "wether",
    "",
];

/// How often the crawl poll asks whether everything is searchable.
const POLL: Duration = Duration::from_millis(20);

/// Milliseconds of a duration.
fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The `q`-quantile (0..=1) of samples in milliseconds, nearest rank.
pub fn quantile(samples: &[f64], q: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn search_path(intent: &str, limit: usize) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    query
        .append_pair("intent", intent)
        .append_pair("limit", &limit.to_string());
    format!("/ai-market/v2/search?{}", query.finish())
}

async fn browse_total(hub: &mut HubProcess, client: &reqwest::Client) -> Result<u64, String> {
    let body = hub.get_json(client, &search_path("", 1)).await?;
    body["total"]
        .as_u64()
        .ok_or_else(|| format!("{} hub: search has no numeric `total`: {body}", hub.name))
}

/// Crawl: admin trigger at t0, then the time until a browse search counts every generated
/// capability (polled every 20 ms, bounded by `timeout`).
#[derive(Debug, Clone, Copy)]
pub struct Crawl {
    /// Until the trigger answered.
    pub answered: Duration,
    /// Until every capability was searchable.
    pub searchable: Duration,
}

/// Runs the timed crawl.
pub async fn crawl(
    hub: &mut HubProcess,
    client: &reqwest::Client,
    providers: &Providers,
    timeout: Duration,
) -> Result<Crawl, String> {
    let before = browse_total(hub, client).await?;
    let want = providers.total() as u64;
    let started = Instant::now();
    let answer = hub
        .admin_post(client, "/ai-market/v2/federation/crawl", timeout)
        .await?;
    let answered = started.elapsed();
    // The timed crawl must be a first one that fetched and stored every capability (ours
    // names the count `capabilities_indexed`, the reference `indexed`): a crawl that found
    // the catalogs already known would time a conditional re-crawl instead.
    let stats = &answer["stats"];
    let indexed = stats["capabilities_indexed"]
        .as_u64()
        .or_else(|| stats["indexed"].as_u64());
    if indexed != Some(providers.total() as u64) || before != 0 {
        return Err(hub.failure(&format!(
            "the timed crawl was not a first crawl of all {} capabilities ({before} were \
             searchable before it): {answer}",
            providers.total()
        )));
    }
    loop {
        let at = started.elapsed();
        let total = browse_total(hub, client).await?;
        if total >= want {
            return Ok(Crawl {
                answered,
                searchable: at,
            });
        }
        if started.elapsed() > timeout {
            let peers = hub
                .get_json(client, "/ai-market/v2/federation/peers")
                .await
                .unwrap_or_default();
            return Err(hub.failure(&format!(
                "{total} of {want} capabilities searchable {} s after the crawl trigger\n\
                 crawl answer: {answer}\npeers: {peers}",
                timeout.as_secs()
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Sequential search latencies.
#[derive(Debug, Clone)]
pub struct Search {
    /// Client wall time per request, ms.
    pub samples: Vec<f64>,
    /// `total` per intent (from the warm-up), to show both hubs found something.
    pub totals: Vec<u64>,
}

/// `requests` sequential searches over one keep-alive connection, rotating [`INTENTS`],
/// after one unmeasured pass over every intent.
pub async fn search(
    hub: &mut HubProcess,
    client: &reqwest::Client,
    requests: usize,
) -> Result<Search, String> {
    let paths: Vec<String> = INTENTS.iter().map(|i| search_path(i, 20)).collect();
    let mut totals = Vec::new();
    for path in &paths {
        let body = hub.get_json(client, path).await?;
        totals.push(body["total"].as_u64().unwrap_or(0));
    }
    let mut samples = Vec::with_capacity(requests);
    for n in 0..requests {
        let path = &paths[n % paths.len()];
        let started = Instant::now();
        let response = client.get(hub.url(path)).send().await;
        let ok = match response {
            Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
            Err(_) => false,
        };
        samples.push(ms(started.elapsed()));
        if !ok {
            return Err(hub.failure(&format!("search {path} failed")));
        }
    }
    Ok(Search { samples, totals })
}

/// Free invokes through the hub and the same calls straight to the provider, interleaved.
#[derive(Debug, Clone)]
pub struct Invoke {
    /// Through the hub, ms.
    pub routed: Vec<f64>,
    /// Straight to the provider, ms.
    pub direct: Vec<f64>,
}

/// One capability to call: where it lives and how the hub names its origin.
struct Target {
    origin: String,
    product_id: String,
    capability_id: String,
    source_hub: String,
}

/// The first capability of each provider, with the `source_hub` the hub's peer list gives
/// that provider (each hub spells a peer's URL its own way).
async fn targets(
    hub: &mut HubProcess,
    client: &reqwest::Client,
    providers: &Providers,
) -> Result<Vec<Target>, String> {
    let peers = hub
        .get_json(client, "/ai-market/v2/federation/peers")
        .await?;
    let by_port: HashMap<u16, String> = peers["peers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["url"].as_str())
        .filter_map(|u| Some((url::Url::parse(u).ok()?.port()?, u.to_owned())))
        .collect();
    providers
        .list
        .iter()
        .map(|p| {
            let source_hub = by_port
                .get(&p.port)
                .cloned()
                .ok_or_else(|| format!("{} hub: no peer for {} in {peers}", hub.name, p.origin))?;
            Ok(Target {
                origin: p.origin.clone(),
                product_id: p.product_id.clone(),
                capability_id: capability_id(0),
                source_hub,
            })
        })
        .collect()
}

/// Sends one invoke and checks the provider's echo came back; returns the wall time in ms.
async fn call(
    client: &reqwest::Client,
    url: &str,
    body: &Value,
    text: &str,
) -> Result<f64, String> {
    let started = Instant::now();
    let response = client
        .post(url)
        .json(body)
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let status = response.status();
    let bytes = response.bytes().await.map_err(|e| format!("{url}: {e}"))?;
    let elapsed = ms(started.elapsed());
    let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if !status.is_success() || answer["result"]["echo"]["text"] != json!(text) {
        return Err(format!(
            "{url} answered {status}: {}",
            String::from_utf8_lossy(&bytes)
        ));
    }
    Ok(elapsed)
}

/// `requests` free invokes through the hub, each paired with the same call made straight to
/// the provider (alternating which goes first), after one unmeasured pair per target.
/// Checks the provider really answered every routed call.
pub async fn invoke(
    hub: &mut HubProcess,
    client: &reqwest::Client,
    providers: &Providers,
    requests: usize,
) -> Result<Invoke, String> {
    let targets = targets(hub, client, providers).await?;
    let hub_url = hub.url("/ai-market/v2/invoke");
    let before = providers.invokes();
    let mut routed = Vec::with_capacity(requests);
    let mut direct = Vec::with_capacity(requests);
    let warm_up = targets.len();
    for n in 0..warm_up + requests {
        let t = &targets[n % targets.len()];
        let text = format!("compare {} call {n}", hub.name);
        let input = json!({"text": text});
        let through_hub = json!({"product_id": t.product_id, "capability_id": t.capability_id,
            "source_hub": t.source_hub, "input": input});
        let straight = json!({"product_id": t.product_id, "capability_id": t.capability_id,
            "input": input});
        let direct_url = format!("{}/invoke", t.origin);
        let (r, d) = if n % 2 == 0 {
            let d = call(client, &direct_url, &straight, &text).await;
            (call(client, &hub_url, &through_hub, &text).await, d)
        } else {
            let r = call(client, &hub_url, &through_hub, &text).await;
            (r, call(client, &direct_url, &straight, &text).await)
        };
        let r = r.map_err(|e| hub.failure(&format!("routed invoke failed: {e}")))?;
        let d = d.map_err(|e| format!("direct provider call failed: {e}"))?;
        if n >= warm_up {
            routed.push(r);
            direct.push(d);
        }
    }
    let seen = providers.invokes() - before;
    let sent = 2 * (warm_up + requests) as u64;
    if seen != sent {
        return Err(hub.failure(&format!(
            "the providers answered {seen} invokes for {sent} calls (direct + routed)"
        )));
    }
    Ok(Invoke { routed, direct })
}
