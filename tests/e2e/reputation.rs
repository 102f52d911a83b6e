//! Reputation end to end (spec §5): signed events accepted, rejected and replayed; trust
//! scores moving with real traffic routed through the hub (peer score, per-capability
//! scores in search with `min_trust`, the manifest's `by_hub`, the well-known `peers`); the
//! per-hub report in both path forms; the Pay-on-Verified lookup's 404.

use aimarket_e2e::catalog_server::CatalogServer;
use aimarket_e2e::provider::{Behaviour, FakeProvider, FakeTool, seed_provider};
use aimarket_e2e::{TestHub, assert_protocol_error, wait_until};
use aimarket_protocol::signing::KeyPair;
use chrono::{Duration, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::crawl::on_both_engines;
use crate::federation::{ANNOUNCE, MANIFEST_PATH, SEARCH, open_hub, signed};
use crate::search::SYNC_WAIT;

const EVENTS: &str = "/ai-market/v2/reputation/events";
const PROVIDER: &str = "https://provider.example";

fn reputation_path(url: &str) -> String {
    format!("/ai-market/v2/reputation/{url}")
}

/// An event about `provider` reported by `consumer`, at `at`, signed by `key` over the
/// reference canonical (written out here independently of the hub's code).
fn event(key: &KeyPair, consumer: &str, provider: &str, kind: &str, at: &str, price: f64) -> Value {
    let canonical = format!(
        "type:{kind}|provider_hub:{provider}|timestamp:{at}|price_usd:{price:?}|latency_ms:120"
    );
    json!({
        "type": kind,
        "provider_hub": provider,
        "consumer_hub": consumer,
        "capability_id": "cap@v1",
        "timestamp": at,
        "price_usd": price,
        "latency_ms": 120,
        "signature": {"algorithm": "ed25519", "value": key.sign_b64(canonical.as_bytes())},
    })
}

fn ts(offset: Duration) -> String {
    (Utc::now() + offset)
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

on_both_engines!(
    signed_events_are_accepted_rejected_and_replayed,
    trust_follows_routed_traffic
);

async fn signed_events_are_accepted_rejected_and_replayed(database_url: Option<String>) {
    let hub = open_hub(database_url.as_deref(), |_| {}).await;
    // The reporting hub: an admitted peer with its key pinned by the operator.
    let reporter = CatalogServer::start().await;
    let (status, body) = hub
        .admin_post(
            "/ai-market/v2/federation/seeds",
            &json!({"url": reporter.url, "public_key": reporter.key.public_key().to_b64()}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let key = &reporter.key;
    let now = ts(Duration::zero());

    let first = event(
        key,
        &reporter.url,
        PROVIDER,
        "invocation_success",
        &now,
        0.4,
    );
    let mut second = event(
        key,
        &reporter.url,
        PROVIDER,
        "invocation_failure",
        &now,
        1.0,
    );
    // The spec's bare-string signature form.
    second["signature"] = second["signature"]["value"].clone();
    let (status, body) = hub.post(EVENTS, &json!({"events": [first, second]})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (&body["received"], &body["rejected"], &body["replayed"]),
        (&json!(2), &json!(0), &json!(0)),
        "{body}"
    );

    // Replays are ignored and counted, within a batch too.
    let third = event(
        key,
        &reporter.url,
        PROVIDER,
        "invocation_success",
        &now,
        0.5,
    );
    let (status, body) = hub
        .post(EVENTS, &json!({"events": [first, third.clone(), third]}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (&body["received"], &body["rejected"], &body["replayed"]),
        (&json!(1), &json!(0), &json!(2)),
        "{body}"
    );

    // Rejections: a stranger, a pending peer (its announce pinned a key), a tampered event,
    // stale and future timestamps, a self-report, a missing provider, a garbage signature.
    let stranger = KeyPair::generate();
    let pending = CatalogServer::start().await;
    let (status, _) = hub.post(ANNOUNCE, &signed(&pending)).await;
    assert_eq!(status, StatusCode::OK);
    let mut tampered = event(
        key,
        &reporter.url,
        PROVIDER,
        "invocation_success",
        &now,
        0.4,
    );
    tampered["price_usd"] = json!(4.0);
    let mut no_provider = event(
        key,
        &reporter.url,
        PROVIDER,
        "invocation_success",
        &now,
        0.2,
    );
    no_provider.as_object_mut().unwrap().remove("provider_hub");
    let mut garbage = event(
        key,
        &reporter.url,
        PROVIDER,
        "invocation_success",
        &now,
        0.3,
    );
    garbage["signature"] = json!("bm90IGEgc2lnbmF0dXJl");
    let rejected = vec![
        event(
            &stranger,
            "https://stranger.example",
            PROVIDER,
            "invocation_success",
            &now,
            0.4,
        ),
        event(
            &pending.key,
            &pending.url,
            PROVIDER,
            "invocation_success",
            &now,
            0.4,
        ),
        tampered,
        event(
            key,
            &reporter.url,
            PROVIDER,
            "invocation_success",
            &ts(Duration::hours(-25)),
            0.4,
        ),
        event(
            key,
            &reporter.url,
            PROVIDER,
            "invocation_success",
            &ts(Duration::hours(25)),
            0.4,
        ),
        event(
            key,
            &reporter.url,
            &reporter.url,
            "invocation_success",
            &now,
            0.4,
        ),
        no_provider,
        garbage,
        json!("not an event"),
    ];
    let n = rejected.len();
    let (status, body) = hub.post(EVENTS, &json!({"events": rejected})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (&body["received"], &body["rejected"], &body["replayed"]),
        (&json!(0), &json!(n), &json!(0)),
        "{body}"
    );

    // Batch shape: 1 to 100 events.
    let too_many: Vec<Value> = (0..101).map(|_| first.clone()).collect();
    for bad in [
        json!({"events": []}),
        json!({"events": too_many}),
        json!({"events": "x"}),
        json!({}),
    ] {
        let (status, body) = hub.post(EVENTS, &bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_protocol_error(&body, "bad_request");
    }
    let (status, body) = hub.post_raw(EVENTS, "application/json", "{nope").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // The report lists the accepted events; both path forms work.
    let (status, raw) = hub.get(&reputation_path(PROVIDER)).await;
    assert_eq!(status, StatusCode::OK, "{raw}");
    let (status, encoded) = hub
        .get(&reputation_path("https%3A%2F%2Fprovider.example"))
        .await;
    assert_eq!(status, StatusCode::OK, "{encoded}");
    assert_eq!(raw["hub_url"], PROVIDER);
    assert_eq!(encoded["hub_url"], PROVIDER);
    assert_eq!(raw["known"], false);
    assert_eq!(raw["recent_events"].as_array().unwrap().len(), 3, "{raw}");
    assert_eq!(
        raw["recent_events"][0]["consumer_hub"],
        reporter.url.as_str()
    );
    assert_eq!(raw["observations_30d"]["events"], 3);
    assert_eq!(raw["observations_30d"]["event_successes"], 2);
    assert_eq!(
        raw["weights"],
        json!({"age": 0.2, "bond": 0.3, "volume": 0.15})
    );
    // 2 successes of 3 events at a quarter weight each, from the admission prior 0.6
    // worth 10 calls (no standing: never crawled, no bond, no volume).
    let expected = (10.0 * 0.6 + 2.0 * 0.25) / (10.0 + 3.0 * 0.25);
    assert!(close(&raw["inputs"]["N"], 0.75), "{raw}");
    assert!(close(&raw["inputs"]["S"], 0.5), "{raw}");
    let got = raw["components"]["success_rate"].as_f64().unwrap();
    assert!((got - expected).abs() < 0.001, "{got} vs {expected}");
    let (status, body) = hub.get(&reputation_path("not-a-url")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

/// The documented policy with its defaults, written out independently of the hub's code:
/// `trust = (k·m + S) / (k + N)`, `m = prior + (1 − prior)·standing`, here
/// `standing = 0.3·bond` (no age, no volume), `prior = 0.6`, `k = 10`.
fn expected_trust(bond_factor: f64, successes: f64, calls: f64) -> f64 {
    let m = 0.6 + (1.0 - 0.6) * (0.3 * bond_factor);
    (10.0 * m + successes) / (10.0 + calls)
}

fn close(a: &Value, b: f64) -> bool {
    a.as_f64().is_some_and(|a| (a - b).abs() < 0.0015)
}

async fn trust_follows_routed_traffic(database_url: Option<String>) {
    let provider = FakeProvider::builder()
        .tool(FakeTool::echo("good@v1"))
        .tool(FakeTool::echo("bad@v1").behaving(Behaviour::Status(500, json!({"error": "boom"}))))
        .start()
        .await;
    let bond = format!("{}=100", provider.url);
    let database_url = database_url.map(|u| u.parse().unwrap());
    let hub = TestHub::builder()
        .settings(|s| {
            s.database_url = database_url;
            s.reputation.recompute_interval_s = 1;
            s.reputation.peer_bonds = bond.parse().unwrap();
        })
        .start()
        .await;
    seed_provider(&hub, &provider).await;
    let path = reputation_path(&provider.url);

    // Before any call: the operator's prior, raised by the bond (standing 0.15): 0.66.
    let baseline = expected_trust(0.5, 0.0, 0.0);
    let scored = wait_until(SYNC_WAIT, || async {
        let (_, r) = hub.get(&path).await;
        r["known"] == true && close(&r["trust_score"], baseline)
    })
    .await;
    let (_, report) = hub.get(&path).await;
    assert!(scored, "{report}");
    assert_eq!(report["components"]["bond"], 0.5);
    assert_eq!(report["bond_usd"], 100.0);

    let call = |capability: &str| json!({"product_id": "prod-fake", "capability_id": capability, "input": {"text": "x"}});
    for _ in 0..15 {
        let (status, body) = hub.post("/ai-market/v2/invoke", &call("good@v1")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    for _ in 0..10 {
        let (status, _) = hub.post("/ai-market/v2/invoke", &call("bad@v1")).await;
        assert!(!status.is_success());
    }

    let peer = expected_trust(0.5, 15.0, 25.0);
    let moved = wait_until(SYNC_WAIT, || async {
        let (_, r) = hub.get(&path).await;
        r["observations_30d"]["calls"] == 25 && close(&r["trust_score"], peer)
    })
    .await;
    let (_, report) = hub.get(&path).await;
    assert!(moved, "expected {peer}: {report}");
    assert_eq!(report["observations_30d"]["successes"], 15);
    // The report shows the formula and every input: recomputing from them gives the score.
    assert!(
        report["formula"]
            .as_str()
            .unwrap()
            .starts_with("trust = (k*m + S) / (k + N)"),
        "{report}"
    );
    let inputs = &report["inputs"];
    assert_eq!(
        (&inputs["prior"], &inputs["k"], &inputs["S"], &inputs["N"]),
        (&json!(0.6), &json!(10.0), &json!(15.0), &json!(25.0)),
        "{report}"
    );
    assert!(close(&inputs["standing"], 0.15), "{report}");
    assert!(close(&inputs["m"], 0.66), "{report}");
    let k = inputs["k"].as_f64().unwrap();
    let recomputed = (k * inputs["m"].as_f64().unwrap() + inputs["S"].as_f64().unwrap())
        / (k + inputs["N"].as_f64().unwrap());
    assert!(close(&report["trust_score"], recomputed), "{report}");
    assert_eq!(report["passes_floor"], true, "{report}");

    // Capabilities with enough calls carry their own success rate.
    let good = expected_trust(0.5, 15.0, 15.0);
    let bad = expected_trust(0.5, 0.0, 10.0);
    let trust_of = |body: &Value, id: &str| {
        body["matches"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["capability_id"] == id)
            .map(|m| m["trust_score"].clone())
            .unwrap_or(Value::Null)
    };
    let indexed = wait_until(SYNC_WAIT, || async {
        let (_, body) = hub.get(&format!("{SEARCH}?limit=10")).await;
        close(&trust_of(&body, "good@v1"), good) && close(&trust_of(&body, "bad@v1"), bad)
    })
    .await;
    let (_, body) = hub.get(&format!("{SEARCH}?limit=10")).await;
    assert!(indexed, "expected {good} / {bad}: {body}");
    let threshold = (good + bad) / 2.0;
    let (_, filtered) = hub
        .get(&format!("{SEARCH}?limit=10&min_trust={threshold}"))
        .await;
    let ids: Vec<&str> = filtered["matches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["capability_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["good@v1"], "{filtered}");

    // The published documents follow.
    let published = wait_until(SYNC_WAIT, || async {
        let (_, manifest) = hub.get(MANIFEST_PATH).await;
        close(
            &manifest["by_hub"][provider.url.as_str()]["trust_score"],
            (good + bad) / 2.0,
        )
    })
    .await;
    let (_, manifest) = hub.get(MANIFEST_PATH).await;
    assert!(published, "{}", manifest["by_hub"]);
    let (_, doc) = hub.get("/.well-known/ai-market.json").await;
    let listed = doc["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["url"] == provider.url.as_str())
        .unwrap();
    assert!(close(&listed["trust_score"], peer), "{listed}");
}

/// The advertised floor is the applied one: a freshly admitted peer passes it (listed in
/// the well-known, found by search at `min_trust` = the floor), a peer whose calls fail
/// drops below it and disappears from both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_peer_drops_below_the_advertised_floor() {
    let provider = FakeProvider::builder()
        .tool(FakeTool::echo("flaky@v1").behaving(Behaviour::Status(500, json!({"error": "boom"}))))
        .start()
        .await;
    let hub = TestHub::builder()
        .settings(|s| s.reputation.recompute_interval_s = 1)
        .start()
        .await;
    seed_provider(&hub, &provider).await;
    let path = reputation_path(&provider.url);
    let listed = |doc: &Value| {
        doc["peers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["url"] == provider.url.as_str())
    };
    let found = |body: &Value| {
        body["matches"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["capability_id"] == "flaky@v1")
    };

    let (_, doc) = hub.get("/.well-known/ai-market.json").await;
    let floor = doc["federation"]["min_trust_score"].as_f64().unwrap();
    assert_eq!(floor, 0.3);
    let fresh = wait_until(SYNC_WAIT, || async {
        let (_, r) = hub.get(&path).await;
        r["known"] == true && close(&r["trust_score"], expected_trust(0.0, 0.0, 0.0))
    })
    .await;
    let (_, report) = hub.get(&path).await;
    assert!(fresh, "{report}");
    assert!(report["trust_score"].as_f64().unwrap() >= floor);
    let visible = wait_until(SYNC_WAIT, || async {
        let (_, doc) = hub.get("/.well-known/ai-market.json").await;
        let (_, body) = hub
            .get(&format!("{SEARCH}?limit=10&min_trust={floor}"))
            .await;
        listed(&doc) && found(&body)
    })
    .await;
    let (_, doc) = hub.get("/.well-known/ai-market.json").await;
    assert!(visible, "{doc}");

    // Twelve failures of twelve: (10·0.6 + 0) / 22 = 0.273, below the floor.
    let call =
        json!({"product_id": "prod-fake", "capability_id": "flaky@v1", "input": {"text": "x"}});
    for _ in 0..12 {
        let (status, _) = hub.post("/ai-market/v2/invoke", &call).await;
        assert!(!status.is_success());
    }
    let dropped = wait_until(SYNC_WAIT, || async {
        let (_, r) = hub.get(&path).await;
        let (_, doc) = hub.get("/.well-known/ai-market.json").await;
        let (_, body) = hub.get(&format!("{SEARCH}?limit=10")).await;
        close(&r["trust_score"], expected_trust(0.0, 0.0, 12.0)) && !listed(&doc) && !found(&body)
    })
    .await;
    let (_, report) = hub.get(&path).await;
    assert!(dropped, "{report}");
    assert_eq!(report["passes_floor"], false, "{report}");
    // Asking for less than the floor does not bring it back.
    let (_, body) = hub.get(&format!("{SEARCH}?limit=10&min_trust=0")).await;
    assert!(!found(&body), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_lookup_is_a_protocol_404() {
    let hub = TestHub::start().await;
    let (status, body) = hub.get("/ai-market/v2/verification/rcpt_0123abcd").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_protocol_error(&body, "verification_not_found");
    assert_eq!(body["nonce"], "rcpt_0123abcd");
}
