//! Admission through `POST /ai-market/v2/federation/announce` (spec §2.3, §2.4, §7.3.5,
//! §7.4): operator announcements admit and crawl; strangers need open admission, a valid
//! signature and safe URLs, and only ever create bounded `pending` peers that serve nowhere
//! (well-known `peers`, search, manifest, invoke); an announcement about a known peer
//! changes nothing. The admission core runs on SQLite and PostgreSQL.
//!
//! Helpers here are shared by `federation_ops`.

use aimarket_e2e::catalog_server::{CatalogServer, WELL_KNOWN, tool};
use aimarket_e2e::{TestHub, assert_protocol_error, wait_until};
use aimarket_hub::settings::Settings;
use aimarket_protocol::signing::{KeyPair, sign_announce};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::crawl::{on_both_engines, peer, peers, row};
use crate::search::SYNC_WAIT;

pub(crate) const ANNOUNCE: &str = "/ai-market/v2/federation/announce";
pub(crate) const MANIFEST_PATH: &str = "/ai-market/v2/manifest";
pub(crate) const SEARCH: &str = "/ai-market/v2/search";

/// A hub on `database_url` (or SQLite) with open admission and `change` applied.
pub(crate) async fn open_hub(
    database_url: Option<&str>,
    change: impl FnOnce(&mut Settings),
) -> TestHub {
    let database_url = database_url.map(|u| u.parse().unwrap());
    TestHub::builder()
        .settings(|s| {
            s.open_admission = true;
            s.database_url = database_url;
            change(s);
        })
        .start()
        .await
}

/// An announcement of `server`, signed by `key` (`signer_public_key` = `key`'s).
pub(crate) fn announcement(server: &CatalogServer, key: &KeyPair, count: u64) -> Value {
    let mut a = json!({
        "hub_url": server.url,
        "well_known_url": server.at(WELL_KNOWN),
        "capabilities_count": count,
        "hub_name": format!("Hub at {}", server.url),
    });
    sign_announce(&mut a, key).unwrap();
    a
}

/// `server`'s own signed announcement.
pub(crate) fn signed(server: &CatalogServer) -> Value {
    announcement(server, &server.key, 2)
}

/// A catalog server publishing two tools of `product`.
pub(crate) async fn server_with(product: &str) -> CatalogServer {
    CatalogServer::with_tools(vec![
        tool(product, "alpha@v1", 0.01),
        tool(product, "beta@v1", 0.02),
    ])
    .await
}

/// Browses the catalog (no intent): the response of `GET /search?limit=100`.
pub(crate) async fn browse(hub: &TestHub) -> Value {
    let (status, body) = hub.get(&format!("{SEARCH}?limit=100")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// Waits until browsing counts `n` capabilities.
pub(crate) async fn wait_for_total(hub: &TestHub, n: u64) {
    let reached = wait_until(SYNC_WAIT, || async { browse(hub).await["total"] == n }).await;
    assert!(reached, "never {n} capabilities: {}", browse(hub).await);
}

/// A request with the admin token.
pub(crate) fn admin(hub: &TestHub, method: Method, path: &str) -> reqwest::RequestBuilder {
    hub.request(method, path)
        .bearer_auth(aimarket_e2e::TEST_ADMIN_TOKEN)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_admission_needs_the_operator() {
    let a = server_with("prod-a").await;
    let hub = TestHub::start().await;
    let (status, body) = hub.post(ANNOUNCE, &signed(&a)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_protocol_error(&body, "admission_closed");
    let request = hub
        .request(Method::POST, ANNOUNCE)
        .bearer_auth("not-the-token")
        .json(&signed(&a));
    let (status, _, body) = hub.send(request).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_protocol_error(&body, "forbidden");
    // A wrong token on an open hub is still refused, never treated as anonymous.
    let open = open_hub(None, |_| {}).await;
    let request = open
        .request(Method::POST, ANNOUNCE)
        .bearer_auth("not-the-token")
        .json(&signed(&a));
    let (status, _, body) = open.send(request).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(peers(&hub).await["pending_count"], 0);
    assert_eq!(peers(&open).await["pending_count"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_announce_admits_pins_and_crawls() {
    let a = server_with("prod-a").await;
    let hub = TestHub::start().await;
    let (status, body) = hub.admin_post(ANNOUNCE, &signed(&a)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["acknowledged"], true);
    assert_eq!(body["peer_added"], true);
    assert_eq!(body["status"], "active");
    assert_eq!(body["protocol_version"], "v2");
    // Crawled now, without anyone triggering a crawl.
    wait_for_total(&hub, 2).await;
    let listed = peers(&hub).await;
    let p = peer(&listed, &a.url);
    assert_eq!(p["state"], "active");
    assert_eq!(p["trusted"], true);
    assert_eq!(p["key_source"], "operator");
    assert_eq!(p["public_key"], a.key.public_key().to_b64());
    assert_eq!(
        p["name"],
        format!("Catalog at {}", a.url),
        "the crawl names it"
    );
    let (_, doc) = hub.get(WELL_KNOWN).await;
    assert!(
        doc["peers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["url"] == a.url.as_str()),
        "{doc}"
    );
    // An operator announce with a bad signature is refused like anyone's.
    let mut forged = signed(&a);
    forged["capabilities_count"] = json!(99);
    let (status, body) = hub.admin_post(ANNOUNCE, &forged).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_protocol_error(&body, "invalid_document");
}

on_both_engines!(
    pending_peers_serve_nowhere,
    known_peers_are_never_changed_by_announcements,
    pending_bound_answers_429,
);

/// Rules 1 and 5 of §2.4, and §2.6: an unauthenticated announce creates a pending,
/// untrusted peer whose verified preview is shown to the operator, and nothing of it is
/// published, searchable, in the manifest or invocable.
async fn pending_peers_serve_nowhere(database_url: Option<String>) {
    let a = server_with("secretprod").await;
    let hub = open_hub(database_url.as_deref(), |_| {}).await;
    let (status, body) = hub.post(ANNOUNCE, &signed(&a)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["acknowledged"], true);
    assert_eq!(body["peer_added"], true);
    assert_eq!(body["status"], "pending");
    assert_eq!(body["trusted"], false);

    // The preview: fetched, verified, marked unapproved.
    let previewed = wait_until(SYNC_WAIT, || async {
        let listed = peers(&hub).await;
        peer(&listed, &a.url)["preview"]["verified"] == true
    })
    .await;
    let listed = peers(&hub).await;
    assert!(previewed, "no preview: {listed}");
    assert_eq!(listed["count"], 0);
    assert_eq!(listed["pending_count"], 1);
    let p = peer(&listed, &a.url);
    assert_eq!(p["state"], "pending");
    assert_eq!(p["trusted"], false);
    assert_eq!(p["key_source"], "announce");
    assert_eq!(p["name"], format!("Hub at {}", a.url));
    let preview = &p["preview"];
    assert_eq!(preview["unapproved"], true);
    assert_eq!(preview["capabilities_count"], 2);
    assert_eq!(preview["signed_by"], a.key.public_key().to_b64());
    assert!(preview["verified_at"].is_string());
    let ids: Vec<&str> = preview["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["capability_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["alpha@v1", "beta@v1"]);

    // Rule 5 and §2.6: nowhere that serves.
    let (_, doc) = hub.get(WELL_KNOWN).await;
    assert_eq!(doc["peers"], json!([]), "{doc}");
    let browsed = browse(&hub).await;
    assert_eq!(browsed["total"], 0, "{browsed}");
    let (_, found) = hub.get(&format!("{SEARCH}?intent=secretprod+alpha")).await;
    assert_eq!(found["matches"], json!([]), "{found}");
    let (status, manifest) = hub.get(MANIFEST_PATH).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(manifest["tools"], json!([]), "{manifest}");
    assert!(
        manifest["by_hub"].get(a.url.as_str()).is_none(),
        "{manifest}"
    );
    let call = json!({
        "product_id": "secretprod",
        "capability_id": "alpha@v1",
        "source_hub": a.url,
        "input": {"text": "x"},
    });
    let (status, body) = hub.post("/ai-market/v2/invoke", &call).await;
    assert!(
        status == StatusCode::NOT_FOUND || status == StatusCode::FORBIDDEN,
        "{status}: {body}"
    );
    assert_eq!(body["success"], false);
    // The catalog server never saw an invoke path.
    assert!(a.seen().iter().all(|s| !s.path.contains("invoke")));
}

/// Rule 2: a stranger's claim about a known peer writes nothing, whatever it says.
async fn known_peers_are_never_changed_by_announcements(database_url: Option<String>) {
    let a = server_with("prod-a").await;
    let hub = open_hub(database_url.as_deref(), |_| {}).await;
    let (status, _) = hub.post(ANNOUNCE, &signed(&a)).await;
    assert_eq!(status, StatusCode::OK);
    let before = row(&hub.state.store, &a.url).await;

    // Another key, another name, another (same-origin) well-known path: validly signed.
    let impostor = KeyPair::generate();
    let mut claim = json!({
        "hub_url": format!("{}/", a.url),
        "well_known_url": a.at("/elsewhere.json"),
        "capabilities_count": 7,
        "hub_name": "Impostor",
    });
    sign_announce(&mut claim, &impostor).unwrap();
    let (status, body) = hub.post(ANNOUNCE, &claim).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["peer_added"], false);
    assert_eq!(body["status"], "pending");
    assert_eq!(
        row(&hub.state.store, &a.url).await,
        before,
        "no field changed"
    );

    // The same for an active peer (admitted by the operator with its key).
    let b = server_with("prod-b").await;
    let (status, _) = hub.admin_post(ANNOUNCE, &signed(&b)).await;
    assert_eq!(status, StatusCode::OK);
    let active = row(&hub.state.store, &b.url).await;
    let mut claim = json!({
        "hub_url": b.url,
        "well_known_url": b.at(WELL_KNOWN),
        "hub_name": "Impostor",
    });
    sign_announce(&mut claim, &impostor).unwrap();
    let (status, body) = hub.post(ANNOUNCE, &claim).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["peer_added"], false);
    assert_eq!(body["status"], "active");
    let after = row(&hub.state.store, &b.url).await;
    assert_eq!(after.pinned_key, active.pinned_key);
    assert_eq!(after.key_source, active.key_source);
    assert_eq!(after.state, active.state);
    assert_ne!(after.name.as_deref(), Some("Impostor"));
}

/// Rule 3: at the bound, unauthenticated announcements get 429; the operator is not bound.
async fn pending_bound_answers_429(database_url: Option<String>) {
    let hub = open_hub(database_url.as_deref(), |s| s.max_pending_peers = 2).await;
    let servers = [
        server_with("p1").await,
        server_with("p2").await,
        server_with("p3").await,
    ];
    for s in &servers[..2] {
        let (status, body) = hub.post(ANNOUNCE, &signed(s)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let request = hub
        .request(Method::POST, ANNOUNCE)
        .json(&signed(&servers[2]));
    let (status, headers, body) = hub.send(request).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_protocol_error(&body, "pending_peers_full");
    assert!(headers.contains_key("retry-after"));
    assert_eq!(peers(&hub).await["pending_count"], 2);
    assert!(
        hub.state
            .store
            .get_peer_by_url(&servers[2].url)
            .await
            .unwrap()
            .is_none()
    );
    // The operator still admits.
    let (status, body) = hub.admin_post(ANNOUNCE, &signed(&servers[2])).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "active");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announce_signatures_are_verified() {
    let a = server_with("prod-a").await;
    let hub = open_hub(None, |_| {}).await;
    let refused = |body: Value| {
        let hub = &hub;
        async move {
            let (status, answer) = hub.post(ANNOUNCE, &body).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body} -> {answer}");
            answer
        }
    };

    let mut bad = signed(&a);
    let value = bad["signature"]["value"].as_str().unwrap().to_owned();
    let flipped = if value.starts_with('A') { "B" } else { "A" };
    bad["signature"]["value"] = json!(format!("{flipped}{}", &value[1..]));
    assert_protocol_error(&refused(bad).await, "invalid_document");

    // Signed by the server's key, but claiming another signer.
    let mut wrong_key = signed(&a);
    wrong_key["signer_public_key"] = json!(KeyPair::generate().public_key().to_b64());
    assert_protocol_error(&refused(wrong_key).await, "invalid_document");

    let mut tampered = signed(&a);
    tampered["capabilities_count"] = json!(3);
    let answer = refused(tampered).await;
    assert_protocol_error(&answer, "invalid_document");
    assert_eq!(answer["reason"], "bad_signature");

    let mut unsigned = signed(&a);
    unsigned.as_object_mut().unwrap().remove("signature");
    assert_protocol_error(&refused(unsigned).await, "bad_request");
    let mut keyless = signed(&a);
    keyless.as_object_mut().unwrap().remove("signer_public_key");
    assert_protocol_error(&refused(keyless).await, "bad_request");

    // Well-known on another origin than the hub URL.
    let other = server_with("other").await;
    let mut split = json!({"hub_url": a.url, "well_known_url": other.at(WELL_KNOWN)});
    sign_announce(&mut split, &a.key).unwrap();
    assert_protocol_error(&refused(split).await, "bad_request");

    // Nothing was stored by any of them.
    assert_eq!(peers(&hub).await["pending_count"], 0);

    // The spec's bare-string signature is accepted.
    let mut bare = signed(&a);
    bare["signature"] = bare["signature"]["value"].clone();
    let (status, body) = hub.post(ANNOUNCE, &bare).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["peer_added"], true);
}

/// Rule 4: with private peers off, loopback and local names fail §7.4 before anything is
/// stored, even with a valid signature.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsafe_announced_urls_are_refused_before_storing() {
    let a = server_with("prod-a").await;
    let hub = open_hub(None, |s| s.allow_private_peers = false).await;
    let (status, body) = hub.post(ANNOUNCE, &signed(&a)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_protocol_error(&body, "unsafe_url");
    let port = a.url.rsplit(':').next().unwrap();
    for host in [
        "localhost",
        "10.1.2.3",
        "[::1]",
        "169.254.169.254",
        "intranet",
    ] {
        let base = format!("http://{host}:{port}");
        let mut claim = json!({
            "hub_url": base,
            "well_known_url": format!("{base}{WELL_KNOWN}"),
        });
        sign_announce(&mut claim, &a.key).unwrap();
        let (status, body) = hub.post(ANNOUNCE, &claim).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{host}: {body}");
        assert_protocol_error(&body, "unsafe_url");
    }
    let mut control = json!({
        "hub_url": "http://evil.example/\tx",
        "well_known_url": "http://evil.example/.well-known/ai-market.json",
    });
    sign_announce(&mut control, &a.key).unwrap();
    let (status, body) = hub.post(ANNOUNCE, &control).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let listed = peers(&hub).await;
    assert_eq!(listed["pending_count"], 0, "{listed}");
    assert_eq!(listed["count"], 0, "{listed}");
}
