//! [`CatalogServer`]: a fake factory or hub on 127.0.0.1 that publishes a real signed
//! catalog (well-known + five-field-signed manifest, spec §2.1, §3.1, §7.3.2) for the hub to
//! crawl, and can misbehave on any path: wrong signatures, HTML pages, huge or trickling
//! bodies, redirects. It records every request (path and headers) so tests can count what
//! the crawler sent, including conditional headers.
//!
//! (The invoke fixture in `provider.rs` serves invokes, not catalogs; the two are separate
//! servers because a catalog test needs per-path control of raw responses.)

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::http::StatusCode;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use aimarket_protocol::signing::{KeyPair, legacy_manifest_canonical, sign_manifest};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::{StreamExt as _, stream};
use serde_json::{Value, json};

/// Path of the well-known document.
pub const WELL_KNOWN: &str = "/.well-known/ai-market.json";
/// Path of the manifest the well-known names.
pub const MANIFEST: &str = "/ai-market/manifest";

/// What one path answers.
#[derive(Clone, Debug)]
pub enum Route {
    /// 200 `application/json` with an `ETag`; `If-None-Match` with that tag answers 304.
    Json {
        /// The body.
        body: Bytes,
        /// The entity tag (quoted).
        etag: String,
    },
    /// This status, content type and body, verbatim.
    Raw {
        /// Status code.
        status: u16,
        /// `Content-Type`, if any.
        content_type: Option<&'static str>,
        /// Body.
        body: Bytes,
    },
    /// A redirect to `location`.
    Redirect {
        /// 301, 302, 307 or 308.
        status: u16,
        /// The `Location` header.
        location: String,
    },
    /// `total` bytes of spaces, streamed in 64 KiB chunks without a declared length.
    Huge {
        /// Bytes offered.
        total: u64,
    },
    /// One byte per second, `bytes` of them.
    Trickle {
        /// Bytes offered.
        bytes: usize,
    },
    /// Waits until `gate` has a permit (see [`Gate`]), then answers like `then`.
    Held {
        /// Released by the test.
        gate: Gate,
        /// The answer after release.
        then: Box<Route>,
    },
}

/// Holds requests until the test releases them: makes "while a crawl is running"
/// deterministic without sleeping.
#[derive(Clone, Debug)]
pub struct Gate(Arc<tokio::sync::Semaphore>);

impl Default for Gate {
    fn default() -> Self {
        Self::new()
    }
}

impl Gate {
    /// A closed gate.
    pub fn new() -> Self {
        Self(Arc::new(tokio::sync::Semaphore::new(0)))
    }

    /// Lets every held and future request through.
    pub fn open(&self) {
        self.0.add_permits(tokio::sync::Semaphore::MAX_PERMITS / 2);
    }

    /// Waits for the gate to open. Held requests are recorded (in [`CatalogServer::seen`])
    /// only once they pass.
    async fn pass(&self) {
        // The semaphore is never closed, so acquiring only fails if it were.
        if let Ok(permit) = self.0.acquire().await {
            permit.forget();
        }
    }
}

/// A request as the server saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    /// Request path.
    pub path: String,
    /// Headers, lower-case names.
    pub headers: HashMap<String, String>,
}

impl Seen {
    /// True when the request carried `If-None-Match` or `If-Modified-Since`.
    pub fn conditional(&self) -> bool {
        self.headers.contains_key("if-none-match") || self.headers.contains_key("if-modified-since")
    }
}

#[derive(Default)]
struct State {
    routes: Mutex<HashMap<String, Route>>,
    seen: Mutex<Vec<Seen>>,
}

/// A running fake catalog server; stopped when dropped.
pub struct CatalogServer {
    /// `http://127.0.0.1:PORT`: the peer's origin.
    pub url: String,
    /// The key its manifests are signed with.
    pub key: KeyPair,
    state: Arc<State>,
    handle: ServerHandle,
}

impl Drop for CatalogServer {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
    }
}

async fn answer(req: HttpRequest, state: web::Data<State>) -> HttpResponse {
    let mut route = state
        .routes
        .lock()
        .expect("routes lock")
        .get(req.path())
        .cloned();
    while let Some(Route::Held { gate, then }) = route {
        gate.pass().await;
        route = Some(*then);
    }
    respond(&req, &state, route)
}

fn respond(req: &HttpRequest, state: &State, route: Option<Route>) -> HttpResponse {
    let headers: HashMap<String, String> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let path = req.path().to_owned();
    let if_none_match = headers.get("if-none-match").cloned();
    state
        .seen
        .lock()
        .expect("seen lock")
        .push(Seen { path, headers });
    let status = |s: u16| StatusCode::from_u16(s).expect("a valid status");
    match route {
        None => HttpResponse::NotFound()
            .content_type("text/html")
            .body("<html><body><h1>404 Not Found</h1></body></html>"),
        Some(Route::Json { body, etag }) => {
            if if_none_match.as_deref() == Some(etag.as_str()) {
                HttpResponse::NotModified()
                    .insert_header(("ETag", etag))
                    .finish()
            } else {
                HttpResponse::Ok()
                    .insert_header(("ETag", etag))
                    .content_type("application/json")
                    .body(body)
            }
        }
        Some(Route::Raw {
            status: s,
            content_type,
            body,
        }) => {
            let mut response = HttpResponse::build(status(s));
            if let Some(ct) = content_type {
                response.content_type(ct);
            }
            response.body(body)
        }
        Some(Route::Redirect {
            status: s,
            location,
        }) => HttpResponse::build(status(s))
            .insert_header(("Location", location))
            .finish(),
        Some(Route::Huge { total }) => {
            const CHUNK: u64 = 64 * 1024;
            let chunks = total.div_ceil(CHUNK);
            let body = stream::iter(0..chunks)
                .map(|_| Ok::<_, actix_web::Error>(Bytes::from(vec![b' '; CHUNK as usize])));
            HttpResponse::Ok()
                .content_type("application/json")
                .streaming(body)
        }
        // Unwrapped by `answer`.
        Some(Route::Held { then, .. }) => respond(req, state, Some(*then)),
        Some(Route::Trickle { bytes }) => {
            let body = stream::unfold(0usize, move |i| async move {
                if i >= bytes {
                    return None;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                Some((Ok::<_, actix_web::Error>(Bytes::from_static(b" ")), i + 1))
            });
            HttpResponse::Ok()
                .content_type("application/json")
                .streaming(body)
        }
    }
}

impl CatalogServer {
    /// Starts an empty server (every path 404) on a free loopback port, signing with a
    /// fresh key.
    pub async fn start() -> CatalogServer {
        Self::start_with_key(KeyPair::generate()).await
    }

    /// Starts an empty server signing with `key`.
    pub async fn start_with_key(key: KeyPair) -> CatalogServer {
        let state = Arc::new(State::default());
        let data = web::Data::from(Arc::clone(&state));
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .default_service(web::to(answer))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(0)
        .bind(("127.0.0.1", 0))
        .expect("bind a loopback port");
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        CatalogServer {
            url: format!("http://{addr}"),
            key,
            state,
            handle,
        }
    }

    /// A server already publishing `tools` (see [`CatalogServer::publish`]).
    pub async fn with_tools(tools: Vec<Value>) -> CatalogServer {
        let server = Self::start().await;
        server.publish(tools, &[]);
        server
    }

    /// `self.url` followed by `path`.
    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// The seed form `URL=KEY` pinning this server's key.
    pub fn pinned_seed(&self) -> String {
        format!("{}={}", self.url, self.key.public_key().to_b64())
    }

    /// Sets what `path` answers.
    pub fn set(&self, path: &str, route: Route) {
        self.state
            .routes
            .lock()
            .expect("routes lock")
            .insert(path.to_owned(), route);
    }

    /// Serves `value` as JSON at `path` with an ETag derived from its content.
    pub fn json(&self, path: &str, value: &Value) {
        let body = Bytes::from(serde_json::to_vec(value).expect("serialise"));
        let etag = format!("\"{:016x}\"", fnv1a(&body));
        self.set(path, Route::Json { body, etag });
    }

    /// Serves raw bytes at `path`.
    pub fn raw(&self, path: &str, status: u16, content_type: Option<&'static str>, body: &[u8]) {
        self.set(
            path,
            Route::Raw {
                status,
                content_type,
                body: Bytes::copy_from_slice(body),
            },
        );
    }

    /// The well-known document: name, `manifest_url`, `signer_public_key`, `peers`.
    pub fn well_known(&self, peers: &[&str]) -> Value {
        json!({
            "name": format!("Catalog at {}", self.url),
            "protocol_versions": ["v1", "v2"],
            "hub_version": "2.0.0",
            "manifest_url": self.at(MANIFEST),
            "signer_public_key": self.key.public_key().to_b64(),
            "federation": {"crawl_interval_s": 3600, "routing_fee_bps": 100, "seed_list": []},
            "peers": peers.iter().map(|u| json!({"url": u, "name": "peer"})).collect::<Vec<_>>(),
        })
    }

    /// A manifest of `tools` signed (five-field canonical) by this server's key, generated
    /// now.
    pub fn signed_manifest(&self, tools: Vec<Value>) -> Value {
        signed_manifest(&self.key, tools, Utc::now())
    }

    /// Publishes a consistent, signed catalog: the well-known (listing `peers`) and the
    /// manifest of `tools`.
    pub fn publish(&self, tools: Vec<Value>, peers: &[&str]) {
        self.json(WELL_KNOWN, &self.well_known(peers));
        self.json(MANIFEST, &self.signed_manifest(tools));
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().expect("seen lock").clone()
    }

    /// Requests to `path` so far.
    pub fn hits(&self, path: &str) -> usize {
        self.seen().iter().filter(|s| s.path == path).count()
    }
}

/// A manifest envelope around `tools`, unsigned, generated at `at`.
pub fn unsigned_manifest(tools: Vec<Value>, at: DateTime<Utc>) -> Value {
    json!({
        "protocol_version": "v2",
        "generated_at": at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "capabilities_count": tools.len(),
        "tools": tools,
        "by_hub": {},
    })
}

/// A manifest of `tools` signed by `key` over the five-field canonical.
pub fn signed_manifest(key: &KeyPair, tools: Vec<Value>, at: DateTime<Utc>) -> Value {
    let mut manifest = unsigned_manifest(tools, at);
    sign_manifest(&mut manifest, key).expect("sign the manifest");
    manifest
}

/// A manifest signed with the legacy three-field canonical (refused since v2).
pub fn legacy_signed_manifest(key: &KeyPair, tools: Vec<Value>) -> Value {
    let mut manifest = unsigned_manifest(tools, Utc::now());
    let value = key.sign_b64(legacy_manifest_canonical(&manifest).as_bytes());
    manifest["signature"] =
        json!({"algorithm": "ed25519", "public_key": key.public_key().to_b64(), "value": value});
    manifest
}

/// A valid tool `product_id.capability_id` at `price`.
pub fn tool(product_id: &str, capability_id: &str, price: f64) -> Value {
    json!({
        "name": format!("{product_id}.{capability_id}"),
        "description": format!("{capability_id} of {product_id}"),
        "input_schema": {"type": "object", "properties": {"text": {"type": "string"}}},
        "output_schema": {"type": "object"},
        "price_per_call_usd": price,
        "p50_latency_ms": 800,
        "success_rate_30d": 0.97,
        "product_id": product_id,
        "capability_id": capability_id,
    })
}

/// `tool` re-exported from `origin` (its `source_hub`).
pub fn re_exported(mut tool: Value, origin: &str) -> Value {
    tool["source_hub"] = json!(origin);
    tool
}

/// `n` valid tools of product `product_id`.
pub fn tools(product_id: &str, n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| tool(product_id, &format!("cap-{i}@v1"), 0.01))
        .collect()
}

/// A bare TCP server on loopback answering every connection with `response` verbatim and
/// closing: for replies a well-behaved HTTP server refuses to produce (a body shorter than
/// its `Content-Length`). Runs on the caller's runtime.
pub async fn raw_tcp_server(response: &'static [u8]) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let addr = listener.local_addr().expect("local address");
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            // One read holds the whole GET; its content does not matter here.
            let _ = socket.read(&mut buf).await;
            let _ = socket.write_all(response).await;
            let _ = socket.shutdown().await;
        }
    });
    format!("http://{addr}")
}

/// FNV-1a, for stable ETags without another dependency.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}
