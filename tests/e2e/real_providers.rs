//! The hub against the providers people actually run, installed from PyPI and unchanged:
//! lattice, chronos and lumen (`aimarket-oracle-core` 0.6.2, price gate enforced with
//! `ORACLE_TRUSTED_HUBS` naming this hub and its key) and HESTIA 0.1.3 with two tenants
//! (`HESTIA_TENANT_HUB_KEYS` naming this hub, x402 on against the fake loopback chain of
//! `run_providers.py`: HESTIA's own verification code runs, only the chain is scripted).
//! Then `aimarket-oracle-gateway` 0.3.1, a real MCP client, completes a paid call.
//!
//! One test drives them all: they take seconds to start, and the providers must be told this
//! hub's URL and key before the hub starts (the key is written to its data dir first).

use std::net::TcpListener;
use std::time::Duration;

use aimarket_e2e::pyenv::{client_script, run_result};
use aimarket_e2e::real_providers::{self, RealProviders};
use aimarket_e2e::{TestHub, wait_until};
use aimarket_hub::payments::OpenChannel;
use aimarket_protocol::signing::{KeyPair, verify_receipt};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::crawl::{CRAWL, peers};
use crate::search::SYNC_WAIT;

const INVOKE: &str = "/ai-market/v2/invoke";
/// The hub's API key at HESTIA (`HESTIA_TENANT_HUB_KEYS` refuses keys with `=`).
const HESTIA_KEY: &str = "e2e-hub-key-at-hestia-0001";

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

async fn open_channel(hub: &TestHub, deposit_usd: f64, tx: &str) -> (String, String) {
    let c = hub
        .state
        .ledger
        .open_channel(OpenChannel {
            deposit_usd,
            tx_hash: Some(format!("demo-real-{tx}")),
            ..OpenChannel::default()
        })
        .await
        .unwrap();
    let secret = c.secret.as_ref().unwrap().expose().to_owned();
    (c.id, secret)
}

async fn paid(
    hub: &TestHub,
    channel: &(String, String),
    body: &Value,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    hub.send(
        hub.request(Method::POST, INVOKE)
            .header("X-Payment-Channel", &channel.0)
            .header("X-Payment-Channel-Secret", &channel.1)
            .json(body),
    )
    .await
}

async fn balance(hub: &TestHub, id: &str) -> i64 {
    let c = hub.state.ledger.get_channel(id).await.unwrap();
    c.balance_micros()
}

/// The store's catalog version once it has not moved for 1.5 s (bounded: 30 s).
async fn settled_version(hub: &TestHub) -> i64 {
    let mut last = hub.state.store.catalog_version().await.unwrap();
    let mut still = 0;
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = hub.state.store.catalog_version().await.unwrap();
        if now == last {
            still += 1;
            if still == 3 {
                return now;
            }
        } else {
            (last, still) = (now, 0);
        }
    }
    panic!("the catalog version kept moving");
}

fn micros(usd: f64) -> i64 {
    (usd * 1e6).round() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_providers_are_crawled_searched_and_paid_on_every_rail() {
    let Some(python) = blocking(real_providers::python).await else {
        return;
    };
    // The hub's key and address come first: the providers are started trusting them.
    let data = tempfile::tempdir().unwrap();
    let key = KeyPair::generate();
    key.save(data.path().join("hub_signing_key")).unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let hub_url = format!("http://127.0.0.1:{port}");
    let args = vec![
        "--trusted-hub".to_owned(),
        format!("{hub_url}={}", key.public_key().to_b64()),
        "--tenant-hub-key".to_owned(),
        format!("{hub_url}={HESTIA_KEY}"),
        "--hestia-payments".to_owned(),
    ];
    let py = python.clone();
    let providers = blocking(move || RealProviders::start(&py, &args)).await;
    let oracles = ["lattice", "chronos", "lumen"].map(|n| providers.url(n));
    let hestia = providers.url("hestia");
    for oracle in ["lattice", "chronos", "lumen"] {
        let gate = &providers.provider(oracle)["price_gate"];
        assert_eq!(gate["mode"], "enforce", "{gate}");
        assert_eq!(gate["hubs"], json!([hub_url]), "{gate}");
    }

    let seeds: Vec<String> = oracles.iter().chain([&hestia]).cloned().collect();
    let hub = TestHub::builder()
        .data_dir(data.path())
        .settings(|s| {
            s.listen = format!("127.0.0.1:{port}").parse().unwrap();
            s.demo_payments = true;
            s.seeds = seeds.iter().map(|u| u.parse().unwrap()).collect();
            // This hub sells for the three oracles (they gate on its signature) and holds an
            // API key at HESTIA.
            s.invoke.sells_for = oracles.join(",").parse().unwrap();
            s.invoke.peer_credentials = format!("{hestia}=apikey:{HESTIA_KEY}").parse().unwrap();
        })
        .start()
        .await;
    assert_eq!(hub.base_url, hub_url);

    // Crawl: every published capability is indexed, per peer.
    let (status, crawled) = hub.admin_post(CRAWL, &json!({})).await;
    assert_eq!(status, StatusCode::OK, "{crawled}");
    let listed = peers(&hub).await;
    for name in ["lattice", "chronos", "lumen", "hestia"] {
        let url = providers.url(name);
        let want = providers.provider(name)["capabilities"]
            .as_array()
            .unwrap()
            .len();
        let peer = listed["peers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["url"] == url.as_str())
            .unwrap_or_else(|| panic!("{name} not active: {listed}"));
        assert_eq!(peer["capability_count"], want, "{name}: {crawled}");
    }
    // No ETag and a fresh generated_at on every fetch: a second crawl finds the same
    // content and writes nothing to the catalog.
    // (The first crawl's trust recomputation may still bump the version: wait it out.)
    let version = settled_version(&hub).await;
    let (status, again) = hub.admin_post(CRAWL, &json!({})).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(settled_version(&hub).await, version, "{again}");

    // Search finds them.
    let found = wait_until(SYNC_WAIT, || async {
        let (_, body) = hub
            .get("/ai-market/v2/search?q=trust+reputation+graph")
            .await;
        body["matches"]
            .as_array()
            .is_some_and(|m| m.iter().any(|c| c["capability_id"] == "lumen.score@v1"))
    })
    .await;
    assert!(found, "lumen.score@v1 not searchable");

    // A free capability (HESTIA's roster), unpaid.
    let (status, free) = hub
        .post(
            INVOKE,
            &json!({"product_id": "hestia", "capability_id": "hestia.hearth.list@v1", "input": {}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{free}");
    assert_eq!(free["price_usd"], 0.0);
    assert!(free["result"]["tenants"].is_array(), "{free}");
    // Its v1 receipt (`success: 1` on host capabilities, as sent) passes through.
    assert!(free["receipt"].is_object(), "{free}");

    // 402 relay: lumen gates priced calls; unpaid, its challenge comes back verbatim, and
    // the hub names its own channel as a way (it signs for lumen).
    let score = json!({"product_id": "prod-lumen", "capability_id": "lumen.score@v1",
        "input": {"nodes": 3, "edges": [[0, 1, 1.0], [1, 2, 0.5], [2, 0, 0.5]], "target_node": 1}});
    let (status, headers, challenge) = hub
        .send(hub.request(Method::POST, INVOKE).json(&score))
        .await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{challenge}");
    assert_eq!(challenge["error"], "payment_required");
    assert_eq!(challenge["payment_ways"][0]["rail"], "hub");
    assert_eq!(
        headers["x-aimarket-payment-ways"].to_str().unwrap(),
        "hub_channel"
    );

    // Rail 1, the hub's admission signature: the oracle verifies it and serves the call.
    let channel = open_channel(&hub, 1.0, "oracles").await;
    let (status, _, answer) = paid(&hub, &channel, &score).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["payment_rail"], "hub_channel");
    assert_eq!(answer["result"]["target_node"], 1, "{answer}");
    assert!(
        answer["provenance"].is_object(),
        "provenance passes through"
    );
    let routed = answer["routed_price_usd"].as_f64().unwrap();
    assert_eq!(routed, 0.00303);
    verify_receipt(&answer["routing_receipt"], &key.public_key()).unwrap();
    // The provider's receipt (float latency_ms) verifies at this hub, its schema deviation
    // reported apart.
    let (status, check) = hub
        .post(
            "/ai-market/v2/receipts/verify",
            &json!({"receipt": answer["receipt"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{check}");
    assert_eq!(check["valid"], true, "{check}");
    assert_eq!(check["signer"], providers.url("lumen").as_str());
    let mut charged = micros(routed);
    // Lattice the same way, named as real clients name it: no product_id, and the
    // gateway's own name as source_hub.
    let sequence = json!({"capability_id": "lattice.sequence@v1",
        "input": {"count": 4, "dim": 2}, "source_hub": "mcp-oracle-gateway"});
    let (status, _, answer) = paid(&hub, &channel, &sequence).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    charged += micros(answer["routed_price_usd"].as_f64().unwrap());
    // And chronos (a short delay proof, under its free-tier difficulty ceiling).
    let eval = json!({"product_id": "prod-chronos", "capability_id": "chronos.eval@v1",
        "input": {"seed": "0x1234abcd", "difficulty": 1000}});
    let (status, _, answer) = paid(&hub, &channel, &eval).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["routed_price_usd"], 0.0101);
    charged += micros(0.0101);
    assert_eq!(balance(&hub, &channel.0).await, 1_000_000 - charged);

    // Rail 2, the hub's API key at HESTIA: a tenant answers, billed to this hub, with its
    // own signature (reported as the tenant's) and HESTIA's hub_billing block.
    let tenant = json!({"product_id": "hestia-agents", "capability_id": "json.canonical@v1",
        "input": {"document": {"z": 1, "a": [3, 2, 1]}}});
    let (status, _, answer) = paid(&hub, &channel, &tenant).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["hub_billing"]["hub"], hub_url.as_str(), "{answer}");
    assert!(answer["signature"].is_string() && answer["provider_pubkey"].is_string());
    let body_sig = &answer["provider_body_signature"];
    assert_eq!(
        (
            body_sig["verified"].as_bool(),
            body_sig["key_listed"].as_bool()
        ),
        (Some(true), Some(false)),
        "a tenant signs with its own key: {body_sig}"
    );
    charged += micros(answer["routed_price_usd"].as_f64().unwrap());
    assert_eq!(balance(&hub, &channel.0).await, 1_000_000 - charged);

    // Rail 3, seller-direct: without a payment HESTIA's x402 challenge comes back (and the
    // hub names seller_direct); the buyer pays HESTIA and retries with the proof through
    // the hub. The channel sent along is not debited.
    let idcheck = json!({"product_id": "hestia-agents", "capability_id": "id.check@v1",
        "input": {"id": "9780306406157", "type": "isbn"}});
    // (A hub without a key at HESTIA sees the challenge. Demo payments are on, but HESTIA's
    // challenge offers no channel, so the hub does not claim it could pay.)
    let only_hestia = hestia.clone();
    let no_key = TestHub::builder()
        .settings(move |s| {
            s.demo_payments = true;
            s.seeds = vec![only_hestia.parse().unwrap()];
        })
        .start()
        .await;
    let (status, crawled) = no_key.admin_post(CRAWL, &json!({})).await;
    assert_eq!(status, StatusCode::OK, "{crawled}");
    let (status, headers, challenge) = no_key
        .send(no_key.request(Method::POST, INVOKE).json(&idcheck))
        .await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{challenge}");
    assert_eq!(
        headers["x-aimarket-payment-ways"].to_str().unwrap(),
        "seller_direct"
    );
    assert_eq!(headers["x-payment-required"].to_str().unwrap(), "exact");
    let nonce = challenge["nonce"].as_str().unwrap().to_owned();
    let secret = challenge["payment_secret"].as_str().unwrap().to_owned();
    let buyer_channel = open_channel(&no_key, 1.0, "direct").await;
    let (status, _, answer) = no_key
        .send(
            no_key
                .request(Method::POST, INVOKE)
                .header("X-Payment-Channel", &buyer_channel.0)
                .header("X-Payment-Channel-Secret", &buyer_channel.1)
                .header("X-Payment", &nonce)
                .header("X-Payment-Secret", &secret)
                .json(&idcheck),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["payment_rail"], "seller_direct");
    assert_eq!(answer["routing_receipt"]["routing_fee_policy"], "waived");
    assert_eq!(balance(&no_key, &buyer_channel.0).await, 1_000_000);
    // The same payment twice is refused by HESTIA and relayed, still not debited.
    let (status, _, spent) = no_key
        .send(
            no_key
                .request(Method::POST, INVOKE)
                .header("X-Payment", &nonce)
                .header("X-Payment-Secret", &secret)
                .json(&idcheck),
        )
        .await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{spent}");
    no_key.stop().await;

    // aimarket-oracle-gateway, a real MCP client of this hub, pays LUMEN through it.
    let gateway_channel = open_channel(&hub, 1.0, "gateway").await;
    let args = vec![
        hub_url.clone(),
        gateway_channel.0.clone(),
        gateway_channel.1.clone(),
    ];
    let cmd = client_script(&python, "gateway_call.py", &args);
    let out = run_result("gateway_call.py", cmd, Duration::from_secs(180)).await;
    assert!(
        out["tools"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "get_agent_trust")
    );
    assert_eq!(out["is_error"], false, "{out}");
    let envelope = &out["envelope"];
    assert_eq!(envelope["source"], "hub", "{out}");
    assert_eq!(envelope["price_usd"], 0.00303, "{out}");
    assert_eq!(envelope["result"]["target_node"], 1, "{out}");
    assert_eq!(balance(&hub, &gateway_channel.0).await, 1_000_000 - 3_030);

    // Outcomes: the relayed 402 counted as payment_required, nothing failed.
    let summarised = wait_until(SYNC_WAIT, || async {
        let (_, live) = hub.get("/ai-market/v2/stats/live").await;
        live["summary"]["payment_required"] == 1
    })
    .await;
    let (_, live) = hub.get("/ai-market/v2/stats/live").await;
    assert!(summarised, "{live}");
    assert_eq!(live["summary"]["failed"], 0, "{live}");
    hub.stop().await;
    drop(providers);
}
