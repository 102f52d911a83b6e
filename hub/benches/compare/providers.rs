//! The generated providers both hubs crawl and invoke: one actix server on its own thread,
//! listening on one loopback port per provider. Each port is a separate origin with its own
//! Ed25519 key, a well-known document and a five-field-signed v2 manifest of `tools` free
//! capabilities, and answers invokes with a request-bound signed echo.
//!
//! Both invoke shapes hubs use are answered: the provider contract (`POST /invoke` with
//! `{product_id, capability_id, input}`, what ours sends to a tool's `invoke_url`) and the
//! legacy factory path (`POST /capabilities/{product}/{capability}/invoke` with the bare
//! input, what the reference sends to a peer whose well-known names no invoke endpoint).
//!
//! The catalog documents sit behind a switch: while it is closed they answer 404 (a content
//! answer, not a host failure, so no crawler backs off), which lets a hub that crawls at
//! startup come up without the catalog and have its timed crawl be a first one.

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use aimarket_protocol::signing::{KeyPair, sign_provider_response};
use serde_json::{Value, json};

/// Path of the manifest the well-known names.
const MANIFEST_PATH: &str = "/ai-market/v2/manifest";

/// What the capabilities do: a description each, so searches rank something real.
const TOPICS: [&str; 10] = [
    "Translate text between languages, for example English to French, German or Spanish",
    "Weather forecast and current conditions for any city, hourly and daily",
    "OCR: extract printed and handwritten text from images and scanned PDF pages",
    "Sentiment analysis of product reviews and social media posts",
    "Summarize long documents, articles and reports into short abstracts",
    "Speech to text transcription of audio recordings and meetings",
    "Stock price quotes and market data for equities and indices",
    "Geocode street addresses into latitude and longitude coordinates",
    "Legal contract review that flags risky clauses and missing terms",
    "Image generation from a text prompt, several styles and sizes",
];

/// One provider, as the benchmark needs to know it.
#[derive(Debug, Clone)]
pub struct Provider {
    /// `http://127.0.0.1:PORT`.
    pub origin: String,
    /// Its port (how a hub's peer list is matched back to it).
    pub port: u16,
    /// Its base64 Ed25519 public key (pinned by both hubs).
    pub public_key: String,
    /// The product id all its capabilities share.
    pub product_id: String,
}

impl Provider {
    /// The well-known URL.
    pub fn well_known_url(&self) -> String {
        format!("{}/.well-known/ai-market.json", self.origin)
    }
}

/// The capability id of tool `i` (the same list at every provider; products differ).
pub fn capability_id(i: usize) -> String {
    format!("cap-{i:04}")
}

struct Origin {
    key: KeyPair,
    product_id: String,
    well_known: Vec<u8>,
    manifest: Vec<u8>,
}

struct Shared {
    origins: HashMap<u16, Origin>,
    catalogs_open: AtomicBool,
    invokes: AtomicU64,
}

/// The running providers. The server thread ends with the process.
pub struct Providers {
    /// One entry per provider, in port order of creation.
    pub list: Vec<Provider>,
    /// Capabilities per provider.
    pub tools: usize,
    shared: Arc<Shared>,
}

impl Providers {
    /// Starts `count` providers of `tools` capabilities each, catalogs closed.
    pub fn start(count: usize, tools: usize) -> Result<Self, String> {
        let listeners = (0..count)
            .map(|_| TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        let mut origins = HashMap::new();
        let mut list = Vec::new();
        for (n, listener) in listeners.iter().enumerate() {
            let port = listener.local_addr().map_err(|e| e.to_string())?.port();
            let (provider, origin) = generate(n, port, tools)?;
            origins.insert(port, origin);
            list.push(provider);
        }
        let shared = Arc::new(Shared {
            origins,
            catalogs_open: AtomicBool::new(false),
            invokes: AtomicU64::new(0),
        });
        let data = web::Data::from(Arc::clone(&shared));
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let mut server = HttpServer::new(move || {
                    App::new()
                        .app_data(data.clone())
                        .app_data(web::PayloadConfig::new(1024 * 1024))
                        .default_service(web::to(answer))
                })
                .workers(2)
                .disable_signals();
                for listener in listeners {
                    server = match server.listen(listener) {
                        Ok(server) => server,
                        Err(e) => {
                            let _ = tx.send(Err(format!("listen: {e}")));
                            return;
                        }
                    };
                }
                let server = server.run();
                let _ = tx.send(Ok(()));
                let _ = server.await;
            });
        });
        rx.recv_timeout(Duration::from_secs(30))
            .map_err(|_| "the providers did not start within 30 s".to_owned())??;
        Ok(Self {
            list,
            tools,
            shared,
        })
    }

    /// Serves the well-knowns and manifests from now on.
    pub fn open_catalogs(&self) {
        self.shared.catalogs_open.store(true, Ordering::SeqCst);
    }

    /// Invokes answered so far (any shape).
    pub fn invokes(&self) -> u64 {
        self.shared.invokes.load(Ordering::SeqCst)
    }

    /// Every capability in the catalogs.
    pub fn total(&self) -> usize {
        self.list.len() * self.tools
    }
}

fn generate(n: usize, port: u16, tools: usize) -> Result<(Provider, Origin), String> {
    // Distinct keys per provider: a hub holds a second peer with the same key back.
    let mut seed = [0x5a; 32];
    seed[..8].copy_from_slice(&(n as u64 + 1).to_le_bytes());
    let key = KeyPair::from_seed(&seed);
    let origin = format!("http://127.0.0.1:{port}");
    let product_id = format!("bench-{n:03}");
    let well_known = json!({
        "name": format!("Compare bench provider {n}"),
        "protocol_versions": ["v1", "v2"],
        "manifest_url": format!("{origin}{MANIFEST_PATH}"),
        "signer_public_key": key.public_key().to_b64(),
    });
    let tools_json: Vec<Value> = (0..tools)
        .map(|i| {
            let topic = TOPICS[(i + n) % TOPICS.len()];
            json!({
                "name": format!("{product_id}.{}", capability_id(i)),
                "product_id": product_id,
                "capability_id": capability_id(i),
                "description": format!("{topic}. Variant {i} of provider {n}."),
                "input_schema": {"type": "object", "required": ["text"],
                    "properties": {"text": {"type": "string", "maxLength": 1000}}},
                "price_per_call_usd": 0.0,
                "p50_latency_ms": 5,
                "success_rate_30d": 0.99,
                "invoke_url": format!("{origin}/invoke"),
            })
        })
        .collect();
    let mut manifest = json!({
        "protocol_version": "v2",
        "generated_at": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "capabilities_count": tools,
        "tools": tools_json,
        "by_hub": {},
    });
    aimarket_protocol::signing::sign_manifest(&mut manifest, &key)
        .map_err(|e| format!("sign a manifest: {e}"))?;
    let provider = Provider {
        origin,
        port,
        public_key: key.public_key().to_b64(),
        product_id: product_id.clone(),
    };
    let origin = Origin {
        key,
        product_id,
        well_known: serde_json::to_vec(&well_known).map_err(|e| e.to_string())?,
        manifest: serde_json::to_vec(&manifest).map_err(|e| e.to_string())?,
    };
    Ok((provider, origin))
}

async fn answer(req: HttpRequest, body: web::Bytes, shared: web::Data<Shared>) -> HttpResponse {
    let port = req.app_config().local_addr().port();
    let Some(origin) = shared.origins.get(&port) else {
        return HttpResponse::NotFound().finish();
    };
    if req.method() == actix_web::http::Method::GET {
        let document = match req.path() {
            "/.well-known/ai-market.json" => &origin.well_known,
            MANIFEST_PATH => &origin.manifest,
            _ => return HttpResponse::NotFound().finish(),
        };
        if !shared.catalogs_open.load(Ordering::SeqCst) {
            return HttpResponse::NotFound().finish();
        }
        return HttpResponse::Ok()
            .content_type("application/json")
            .body(document.clone());
    }
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    // The provider contract names the capability in the body; the legacy path in the URL.
    let (capability, input) = match parsed.get("capability_id").and_then(Value::as_str) {
        Some(cid) => (
            cid.to_owned(),
            parsed.get("input").cloned().unwrap_or(json!({})),
        ),
        None => {
            let mut parts = req.path().trim_matches('/').split('/');
            match (parts.next(), parts.next(), parts.next()) {
                (Some("capabilities"), Some(pid), Some(cid)) if pid == origin.product_id => {
                    (cid.to_owned(), parsed)
                }
                _ => return HttpResponse::NotFound().json(json!({"error": "not_found"})),
            }
        }
    };
    shared.invokes.fetch_add(1, Ordering::Relaxed);
    let result = json!({"echo": input, "capability_id": capability});
    let signature = sign_provider_response(
        &capability,
        &origin.product_id,
        &input,
        &result,
        &origin.key,
    );
    HttpResponse::Ok()
        .insert_header(("X-Provider-Signature", signature))
        .json(json!({"success": true, "result": result}))
}
