//! Fake providers: real actix-web servers on 127.0.0.1, serving documents signed with real
//! keys, plus the misbehaviours the crawler must survive.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::http::StatusCode;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use aimarket_crawler::{CrawlConfig, Crawler, FetchConfig, Fetcher, SafeUrl, UrlPolicy};
use aimarket_protocol::signing::{KeyPair, sign_manifest};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::StreamExt as _;
use futures_util::stream;
use serde_json::{Value, json};

/// What a path answers.
#[derive(Clone)]
pub enum Route {
    /// `200 application/json`, honouring `If-None-Match` / `If-Modified-Since` with 304.
    Json {
        body: Vec<u8>,
        etag: Option<String>,
        last_modified: Option<String>,
    },
    /// Anything, verbatim.
    Raw {
        status: u16,
        content_type: Option<&'static str>,
        body: Vec<u8>,
    },
    /// A redirect.
    Redirect { status: u16, location: String },
    /// `total` bytes of JSON-ish filler, generated lazily in 64 KiB chunks.
    Huge { total: u64, declare_length: bool },
    /// One byte per second, `bytes` of them.
    Trickle { bytes: usize },
}

/// A request as the provider saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub headers: HashMap<String, String>,
}

#[derive(Default)]
struct State {
    routes: Mutex<HashMap<String, Route>>,
    seen: Mutex<Vec<Seen>>,
    streamed: AtomicU64,
}

/// A running fake provider.
pub struct Provider {
    pub base: String,
    state: Arc<State>,
    handle: ServerHandle,
}

impl Drop for Provider {
    fn drop(&mut self) {
        // Sends the stop command at once; completion is not awaited.
        drop(self.handle.stop(false));
    }
}

async fn handle(req: HttpRequest, state: web::Data<State>) -> HttpResponse {
    let path = req.path().to_owned();
    let headers = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect::<HashMap<_, _>>();
    state.seen.lock().expect("lock").push(Seen {
        path: path.clone(),
        headers: headers.clone(),
    });
    let route = state.routes.lock().expect("lock").get(&path).cloned();
    let status = |s: u16| StatusCode::from_u16(s).expect("valid status");
    match route {
        None => HttpResponse::NotFound()
            .content_type("text/html")
            .body("<html><body>404 Not Found</body></html>"),
        Some(Route::Json {
            body,
            etag,
            last_modified,
        }) => {
            let etag_hit = etag.is_some() && headers.get("if-none-match") == etag.as_ref();
            let lm_hit = last_modified.is_some()
                && headers.get("if-modified-since") == last_modified.as_ref();
            let mut resp = if etag_hit || lm_hit {
                HttpResponse::NotModified()
            } else {
                HttpResponse::Ok()
            };
            if let Some(e) = &etag {
                resp.insert_header(("ETag", e.as_str()));
            }
            if let Some(l) = &last_modified {
                resp.insert_header(("Last-Modified", l.as_str()));
            }
            if etag_hit || lm_hit {
                resp.finish()
            } else {
                resp.content_type("application/json").body(body)
            }
        }
        Some(Route::Raw {
            status: s,
            content_type,
            body,
        }) => {
            let mut resp = HttpResponse::build(status(s));
            if let Some(ct) = content_type {
                resp.content_type(ct);
            }
            resp.body(body)
        }
        Some(Route::Redirect {
            status: s,
            location,
        }) => HttpResponse::build(status(s))
            .insert_header(("Location", location))
            .finish(),
        Some(Route::Huge {
            total,
            declare_length,
        }) => {
            const CHUNK: u64 = 64 * 1024;
            let state = state.into_inner();
            let chunks = total.div_ceil(CHUNK);
            let body = stream::iter(0..chunks).map(move |_| {
                state.streamed.fetch_add(CHUNK, Ordering::Relaxed);
                Ok::<_, actix_web::Error>(Bytes::from(vec![b' '; CHUNK as usize]))
            });
            let mut resp = HttpResponse::Ok();
            resp.content_type("application/json");
            if declare_length {
                resp.no_chunking(chunks * CHUNK);
            }
            resp.streaming(body)
        }
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

impl Provider {
    /// Starts a provider on 127.0.0.1 with an ephemeral port, in its own thread and actix
    /// system (so it is independent of the test's runtime).
    pub fn start() -> Provider {
        let state = Arc::new(State::default());
        let (tx, rx) = std::sync::mpsc::channel();
        let st = Arc::clone(&state);
        std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let server = HttpServer::new(move || {
                    App::new()
                        .app_data(web::Data::from(Arc::clone(&st)))
                        .default_service(web::to(handle))
                })
                .workers(1)
                .disable_signals()
                .shutdown_timeout(0)
                .bind(("127.0.0.1", 0))
                .expect("bind 127.0.0.1:0");
                let port = server.addrs()[0].port();
                let server = server.run();
                tx.send((port, server.handle())).expect("report port");
                let _ = server.await;
            });
        });
        let (port, handle) = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("provider started");
        Provider {
            base: format!("http://127.0.0.1:{port}"),
            state,
            handle,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn safe(&self, path: &str) -> SafeUrl {
        SafeUrl::parse(&self.url(path)).expect("provider URL parses")
    }

    pub fn set(&self, path: &str, route: Route) {
        self.state
            .routes
            .lock()
            .expect("lock")
            .insert(path.to_owned(), route);
    }

    pub fn json(&self, path: &str, value: &Value) {
        self.set(
            path,
            Route::Json {
                body: serde_json::to_vec(value).expect("serialise"),
                etag: None,
                last_modified: None,
            },
        );
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().expect("lock").clone()
    }

    pub fn hits(&self, path: &str) -> usize {
        self.seen().iter().filter(|s| s.path == path).count()
    }

    pub fn streamed(&self) -> u64 {
        self.state.streamed.load(Ordering::Relaxed)
    }

    /// Serves a signed hub: well-known (listing `peers`) and manifest with `tools`.
    pub fn serve_hub(&self, key: &KeyPair, tools: Vec<Value>, peers: &[&str]) {
        self.json(WK, &well_known(self, key, peers));
        self.json(MANIFEST, &signed_manifest(key, tools, Utc::now()));
    }
}

pub const WK: &str = "/.well-known/ai-market.json";
pub const MANIFEST: &str = "/ai-market/manifest";

pub fn well_known(p: &Provider, key: &KeyPair, peers: &[&str]) -> Value {
    json!({
        "name": format!("Hub at {}", p.base),
        "protocol_versions": ["v1", "v2"],
        "hub_version": "2.0.0",
        "manifest_url": p.url(MANIFEST),
        "signer_public_key": key.public_key().to_b64(),
        "federation": {"crawl_interval_s": 3600, "routing_fee_bps": 100, "seed_list": []},
        "peers": peers.iter().map(|u| json!({"url": u, "name": "peer"})).collect::<Vec<_>>(),
    })
}

pub fn tool(pid: &str, cid: &str, price: f64) -> Value {
    json!({
        "name": format!("{pid}.{cid}"),
        "description": format!("{cid} of {pid}"),
        "input_schema": {"type": "object", "properties": {"text": {"type": "string"}}},
        "output_schema": {"type": "object"},
        "price_per_call_usd": price,
        "p50_latency_ms": 800,
        "success_rate_30d": 0.97,
        "product_id": pid,
        "capability_id": cid,
    })
}

pub fn timestamp(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

pub fn unsigned_manifest(tools: Vec<Value>, at: DateTime<Utc>) -> Value {
    json!({
        "protocol_version": "v2",
        "generated_at": timestamp(at),
        "capabilities_count": tools.len(),
        "tools": tools,
        "by_hub": {},
    })
}

pub fn signed_manifest(key: &KeyPair, tools: Vec<Value>, at: DateTime<Utc>) -> Value {
    let mut m = unsigned_manifest(tools, at);
    sign_manifest(&mut m, key).expect("sign");
    m
}

/// A fetcher for tests: short timeouts, no backoff unless asked.
pub fn fetch_config(policy: UrlPolicy) -> FetchConfig {
    FetchConfig {
        crawler_url: "https://crawler.example.com".to_owned(),
        policy,
        total_timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(2),
        backoff_base: Duration::ZERO,
        backoff_max: Duration::ZERO,
        ..FetchConfig::default()
    }
}

pub const PRIVATE_OK: UrlPolicy = UrlPolicy {
    allow_private: true,
};

pub fn fetcher(config: FetchConfig) -> Arc<Fetcher> {
    Arc::new(Fetcher::new(config).expect("fetcher builds"))
}

pub fn crawler_with(fetch: FetchConfig, config: CrawlConfig) -> Crawler {
    Crawler::new(fetcher(fetch), config)
}

/// A crawler allowed to reach loopback (like `AIMARKET_ALLOW_PRIVATE_PEERS=1`).
pub fn crawler() -> Crawler {
    crawler_with(fetch_config(PRIVATE_OK), CrawlConfig::default())
}

/// A bare TCP server answering every connection with `response` verbatim, then closing: for
/// replies a well-behaved HTTP server refuses to produce (a body shorter than declared).
/// Runs on the test's runtime and ends with it.
pub async fn raw_server(response: &'static [u8]) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            // The request fits in one read for these tests; its content does not matter.
            let _ = sock.read(&mut buf).await;
            let _ = sock.write_all(response).await;
            let _ = sock.shutdown().await;
        }
    });
    format!("http://{addr}")
}
