//! `GET /ai-market/v2/search` end to end: the hub crawls signed fake providers (and one whose
//! manifest signature is wrong), indexes them, and answers searches over HTTP. Covers the
//! match shape, every filter, routed prices, pagination, browse, `fields=compact`, the 400s,
//! incremental index updates and a rebuild after the index directory is deleted.
//!
//! Helpers here are shared by `search_plugins` and `manifest`.

use std::time::Duration;

use aimarket_e2e::catalog_server::{CatalogServer, MANIFEST, signed_manifest, tool, tools};
use aimarket_e2e::{TestHub, TestHubBuilder, wait_until};
use aimarket_hub::settings::Seed;
use aimarket_protocol::signing::KeyPair;
use chrono::Utc;
use reqwest::StatusCode;
use serde_json::{Value, json};

pub(crate) const SEARCH: &str = "/ai-market/v2/search";
pub(crate) const CRAWL: &str = "/ai-market/v2/federation/crawl";
/// Bound on waiting for the background index sync; generous for a loaded CI machine.
pub(crate) const SYNC_WAIT: Duration = Duration::from_secs(60);

/// A tool with a description, latency and optional category.
pub(crate) fn described(
    product: &str,
    capability: &str,
    price: f64,
    description: &str,
    p50: u64,
    category: Option<&str>,
) -> Value {
    let mut t = tool(product, capability, price);
    t["description"] = json!(description);
    t["p50_latency_ms"] = json!(p50);
    if let Some(category) = category {
        t["category"] = json!(category);
    }
    t
}

/// Tools of one product: `(capability_id, price, description, p50)` each, no category.
pub(crate) fn product_tools(product: &str, tools: &[(&str, f64, &str, u64)]) -> Vec<Value> {
    tools
        .iter()
        .map(|(id, price, description, p50)| {
            described(product, id, *price, description, *p50, None)
        })
        .collect()
}

/// A hub seeded with `provider` (key pinned), crawled, `expected` capabilities indexed.
pub(crate) async fn hub_crawling(provider: &CatalogServer, expected: u64) -> TestHub {
    let seeds = vec![provider.pinned_seed().parse().unwrap()];
    crawled_hub(TestHub::builder(), seeds, expected).await
}

/// The providers most tests search: two good ones, one with a forged manifest, and a bulk
/// one with 130 tools for paging.
pub(crate) struct Providers {
    pub a: CatalogServer,
    pub b: CatalogServer,
    pub forged: CatalogServer,
    pub bulk: CatalogServer,
}

impl Providers {
    pub(crate) async fn start() -> Self {
        let a = CatalogServer::with_tools(vec![
            described(
                "lingua",
                "translate.text@v1",
                0.01,
                "Translate text between languages",
                800,
                None,
            ),
            described(
                "lingua",
                "summarize.text@v1",
                0.004,
                "Summarize long text into key points",
                300,
                None,
            ),
        ])
        .await;
        let b = CatalogServer::with_tools(vec![described(
            "lexis",
            "translate.legal@v1",
            0.2,
            "Translate legal contracts with terminology checks",
            5000,
            Some("legal"),
        )])
        .await;
        // Advertises its own key but signs the manifest with another one: rejected.
        let forged = CatalogServer::start().await;
        let evil = vec![described(
            "evil",
            "translate.evil@v1",
            0.001,
            "Translate text cheaply",
            10,
            None,
        )];
        forged.publish(evil.clone(), &[]);
        forged.json(
            MANIFEST,
            &signed_manifest(&KeyPair::generate(), evil, Utc::now()),
        );
        let bulk = CatalogServer::with_tools(tools("bulk", 130)).await;
        Self { a, b, forged, bulk }
    }

    /// Operator seeds for all four (keys pinned, the forged one with its advertised key).
    pub(crate) fn seeds(&self) -> Vec<Seed> {
        [&self.a, &self.b, &self.forged, &self.bulk]
            .iter()
            .map(|p| p.pinned_seed().parse().unwrap())
            .collect()
    }
}

/// Starts `builder` seeded with `providers`, crawls, and waits until the index holds
/// `expected` capabilities.
pub(crate) async fn crawled_hub(
    builder: TestHubBuilder,
    seeds: Vec<Seed>,
    expected: u64,
) -> TestHub {
    let hub = builder.settings(|s| s.seeds = seeds).start().await;
    crawl(&hub).await;
    wait_for_total(&hub, expected).await;
    wait_trust_settled(&hub).await;
    hub
}

/// Waits until search reports every active peer's current trust score: the reputation
/// recompute after a crawl publishes the new scores, and the index applies them.
pub(crate) async fn wait_trust_settled(hub: &TestHub) {
    let settled = wait_until(SYNC_WAIT, || async {
        let (_, peers) = hub.get("/ai-market/v2/federation/peers").await;
        for peer in peers["peers"].as_array().into_iter().flatten() {
            let url = peer["url"].as_str().unwrap_or_default();
            let page = search(hub, &format!("hub={}&limit=1", urlencode(url))).await;
            let first = &page["matches"][0];
            if !first.is_null() && first["trust_score"] != peer["trust_score"] {
                return false;
            }
        }
        true
    })
    .await;
    assert!(settled, "search never showed the peers' trust scores");
}

/// Runs a crawl through the admin endpoint (joining the startup crawl if it still runs).
pub(crate) async fn crawl(hub: &TestHub) -> Value {
    let (status, body) = hub.admin_post(CRAWL, &json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// Waits until browsing the catalog counts `expected` capabilities.
pub(crate) async fn wait_for_total(hub: &TestHub, expected: u64) {
    let reached = wait_until(SYNC_WAIT, || async {
        let (status, body) = hub.get(&format!("{SEARCH}?limit=0")).await;
        status == StatusCode::OK && body["total"] == expected
    })
    .await;
    let (_, body) = hub.get(&format!("{SEARCH}?limit=0")).await;
    assert!(
        reached,
        "the index never reached {expected} capabilities: {body}"
    );
}

/// `GET /ai-market/v2/search?<query>`, asserting 200.
pub(crate) async fn search(hub: &TestHub, query: &str) -> Value {
    let (status, body) = hub.get(&format!("{SEARCH}?{query}")).await;
    assert_eq!(status, StatusCode::OK, "{query}: {body}");
    body
}

/// `capability_id`s of a response, in order.
pub(crate) fn ids(body: &Value) -> Vec<String> {
    body["matches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["capability_id"].as_str().unwrap().to_owned())
        .collect()
}

/// A counter from `GET /metrics`.
pub(crate) async fn metric(hub: &TestHub, name: &str) -> u64 {
    let response = hub
        .request(reqwest::Method::GET, "/metrics")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matches_carry_every_field_and_come_only_from_good_providers() {
    let p = Providers::start().await;
    let hub = crawled_hub(TestHub::builder(), p.seeds(), 133).await;

    let body = search(&hub, "intent=translate").await;
    assert_eq!(body["query"], "translate");
    assert_eq!(body["protocol_version"], "v2");
    assert_eq!(body["total"], 2, "{body}");
    assert_eq!(body["offset"], 0);
    assert_eq!(body["limit"], 20);
    assert_eq!(body["has_more"], false);
    assert_eq!(body["total_hubs_searched"], 3);
    assert_eq!(
        sorted(ids(&body)),
        ["translate.legal@v1", "translate.text@v1"],
        "the forged provider's tool must not be searchable: {body}"
    );
    for m in body["matches"].as_array().unwrap() {
        for key in [
            "product_id",
            "capability_id",
            "name",
            "description",
            "source_hub",
            "source_hub_name",
            "match_type",
        ] {
            assert!(m[key].is_string(), "{key} in {m}");
        }
        for key in [
            "score",
            "price_per_call_usd",
            "routed_price_usd",
            "trust_score",
            "success_rate_30d",
        ] {
            assert!(m[key].is_f64(), "{key} in {m}");
        }
        assert!(
            m["routing_fee_bps"].is_u64() && m["p50_latency_ms"].is_u64(),
            "{m}"
        );
        assert!(m["input_schema"].is_object(), "{m}");
        let source = m["source_hub"].as_str().unwrap();
        assert_eq!(
            m["trust_score"],
            peer_trust(&hub, source).await,
            "the peer's trust: {m}"
        );
        assert_eq!(m["success_rate_30d"], 0.97, "the declared rate: {m}");
        assert_eq!(m["routing_fee_bps"], 100);
    }
    let text = &body["matches"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["capability_id"] == "translate.text@v1")
        .unwrap();
    assert_eq!(text["source_hub"], p.a.url.as_str());
    assert_eq!(text["product_id"], "lingua");
    assert_eq!(text["price_per_call_usd"], 0.01);
    assert_eq!(
        text["routed_price_usd"], 0.0101,
        "0.01 × 1.01, micro-dollar rounded"
    );
    assert_eq!(text["p50_latency_ms"], 800);
    assert_eq!(text["source_hub_name"], format!("Catalog at {}", p.a.url));
    let legal = &body["matches"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["capability_id"] == "translate.legal@v1")
        .unwrap();
    assert_eq!(legal["routed_price_usd"], 0.202);

    // compact drops the schema and nothing else.
    let compact = search(&hub, "intent=translate&fields=compact").await;
    assert_eq!(ids(&compact), ids(&body));
    for m in compact["matches"].as_array().unwrap() {
        assert!(m.get("input_schema").is_none(), "{m}");
        assert!(m["routed_price_usd"].is_f64());
    }

    // Browse: an empty intent lists the whole catalog, best quality first.
    let browse = search(&hub, "intent=&limit=5").await;
    assert_eq!(browse["total"], 133);
    assert_eq!(browse["matches"].as_array().unwrap().len(), 5);
    assert!(
        browse["matches"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["match_type"] == "browse")
    );
    let scores: Vec<f64> = browse["matches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["score"].as_f64().unwrap())
        .collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    assert!(
        !ids(&search(&hub, "intent=evil").await)
            .iter()
            .any(|id| id.contains("evil"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_filter_runs_in_the_index() {
    let p = Providers::start().await;
    let bond = format!("{}=10000", p.b.url);
    let builder = TestHub::builder().settings(|s| s.reputation.peer_bonds = bond.parse().unwrap());
    let hub = crawled_hub(builder, p.seeds(), 133).await;
    // (crawled_hub waited for the bond to reach the index through the reputation update.)
    let q = |extra: &str| format!("intent=translate&{extra}");

    // budget is on the routed price: 0.01 lists at 0.0101 through this hub.
    assert_eq!(
        ids(&search(&hub, &q("budget=0.0101")).await),
        ["translate.text@v1"]
    );
    assert!(ids(&search(&hub, &q("budget=0.01")).await).is_empty());
    assert_eq!(search(&hub, &q("budget=1")).await["total"], 2);

    assert_eq!(
        ids(&search(&hub, &q("max_latency_ms=1000")).await),
        ["translate.text@v1"]
    );
    assert_eq!(search(&hub, &q("max_latency_ms=5000")).await["total"], 2);

    assert_eq!(
        ids(&search(&hub, &q("category=legal")).await),
        ["translate.legal@v1"]
    );
    assert_eq!(
        ids(&search(&hub, &q("category=LEGAL")).await),
        ["translate.legal@v1"]
    );
    assert!(ids(&search(&hub, &q("category=astronomy")).await).is_empty());

    // hub: a URL is reduced to its origin; `any` is everything; `local` is this hub (none).
    let b_with_path = format!(
        "{}/some/path",
        p.b.url.to_uppercase().replace("HTTP://", "http://")
    );
    let only_b = search(&hub, &q(&format!("hub={}", urlencode(&b_with_path)))).await;
    assert_eq!(ids(&only_b), ["translate.legal@v1"], "{only_b}");
    assert_eq!(search(&hub, &q("hub=any")).await["total"], 2);
    assert_eq!(search(&hub, &q("hub=local")).await["total"], 0);

    // min_trust: B carries an operator-configured bond, so its trust is higher than A's.
    let (trust_a, trust_b) = (
        peer_trust(&hub, &p.a.url).await,
        peer_trust(&hub, &p.b.url).await,
    );
    assert!(trust_b > trust_a, "{trust_a} vs {trust_b}");
    let between = (trust_a + trust_b) / 2.0;
    assert_eq!(
        ids(&search(&hub, &q(&format!("min_trust={between}"))).await),
        ["translate.legal@v1"]
    );
    assert_eq!(
        search(&hub, &q(&format!("min_trust={trust_a}"))).await["total"],
        2,
        "inclusive"
    );
    let above = (trust_b + 0.001).min(1.0);
    if above > trust_b {
        assert_eq!(
            search(&hub, &q(&format!("min_trust={above}"))).await["total"],
            0
        );
    }

    // All filters at once still answer from the index.
    let all = search(
        &hub,
        &q(&format!(
            "budget=0.5&max_latency_ms=6000&min_trust={between}&category=legal"
        )),
    )
    .await;
    assert_eq!(ids(&all), ["translate.legal@v1"]);
}

/// Percent-encodes a query value.
pub(crate) fn urlencode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A peer's trust score as `GET /ai-market/v2/federation/peers` reports it.
pub(crate) async fn peer_trust(hub: &TestHub, url: &str) -> f64 {
    let (status, body) = hub.get("/ai-market/v2/federation/peers").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["url"] == url)
        .and_then(|p| p["trust_score"].as_f64())
        .unwrap_or_else(|| panic!("no active peer {url}: {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_never_overlap_or_skip() {
    let p = Providers::start().await;
    let hub = crawled_hub(TestHub::builder(), p.seeds(), 133).await;

    let first = search(&hub, "intent=bulk&limit=100").await;
    assert_eq!(first["total"], 130);
    assert_eq!(first["has_more"], true);
    assert_eq!(first["matches"].as_array().unwrap().len(), 100);
    let mut paged = Vec::new();
    for offset in (0..130).step_by(25) {
        let page = search(&hub, &format!("intent=bulk&limit=25&offset={offset}")).await;
        assert_eq!(page["offset"], offset);
        assert_eq!(page["limit"], 25);
        assert_eq!(page["has_more"], offset + 25 < 130, "{offset}");
        paged.extend(ids(&page));
    }
    assert_eq!(paged.len(), 130);
    assert_eq!(
        paged[..100],
        ids(&first)[..],
        "pages agree with one big page"
    );
    let mut unique = paged.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 130, "no duplicates across pages");
    // Odd page sizes across rank blocks agree too.
    let mut stitched = Vec::new();
    for (offset, limit) in [(0, 7), (7, 45), (52, 48)] {
        stitched.extend(ids(&search(
            &hub,
            &format!("intent=bulk&limit={limit}&offset={offset}"),
        )
        .await));
    }
    assert_eq!(stitched, ids(&first));

    let beyond = search(&hub, "intent=bulk&offset=500").await;
    assert_eq!(beyond["matches"], json!([]));
    assert_eq!(beyond["total"], 130);
    assert_eq!(beyond["has_more"], false);
    let count_only = search(&hub, "intent=bulk&limit=0").await;
    assert_eq!(
        (count_only["total"].clone(), count_only["matches"].clone()),
        (json!(130), json!([]))
    );
    assert_eq!(
        search(&hub, "intent=bulk&limit=500").await["limit"],
        100,
        "clamped"
    );
}
