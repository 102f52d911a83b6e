//! [`DemoFactory`]: the HTTP side of a demo factory.
//!
//! | route | answer |
//! |---|---|
//! | `GET /.well-known/ai-market.json` | signed whole document (name, `protocol_versions` `["v1","v2"]`, `manifest_url`, `signer_public_key`, …) |
//! | `GET /ai-market/manifest`, `/ai-market/v2/manifest` | the signed v2 manifest (five-field signature), `ETag` / 304 |
//! | `POST /ai-market/v2/invoke` | `{product_id, capability_id, input}` (what a hub sends to a v2 peer) |
//! | `POST /capabilities/{pid}/{cid}/invoke` (also under `/ai-market`) | v1 factory path, `{input}` |
//! | `POST /invoke` | the provider contract `{input, product_id, capability_id}` |
//! | `POST /ai-market/v2/channel/open`, `/close` (+ v1 `/ai-market/channel/…`), `GET /ai-market/v2/channel/{id}` | demo channels |
//! | `GET /ai-market/receipt/{nonce}` | a receipt this factory signed |
//!
//! A 200 invoke answer is `{success, result, price_usd, latency_ms, receipt, protocol_version}`
//! with a v1 receipt signed by the factory key and `X-Provider-Signature` over the request
//! (spec §7.1). Priced calls without payment get 402 with the challenge of [`super::payment`].

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use actix_web::http::StatusCode;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use aimarket_protocol::signing::{
    KeyPair, PublicKey, ReceiptVersion, sign_document, sign_manifest, sign_provider_response,
    sign_receipt,
};
use chrono::{SecondsFormat, Utc};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::payment::{self, Ledger, Paid, PaymentHeaders, Refusal};
use super::spec::{CapabilitySpec, FactorySpec};

/// How long a signed manifest is served before it is re-signed with a fresh `generated_at`
/// (hubs refuse manifests older than a week).
const MANIFEST_TTL: Duration = Duration::from_secs(3600);
/// Largest request body.
const MAX_BODY: usize = 2 * 1024 * 1024;

/// Why a factory could not start.
#[derive(Debug, thiserror::Error)]
pub enum FactoryError {
    /// The address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The operating-system error.
        source: std::io::Error,
    },
    /// A capability's input schema does not compile (a bug in the catalog).
    #[error("capability {capability_id}: invalid input schema: {message}")]
    Schema {
        /// The capability.
        capability_id: String,
        /// The compiler's message.
        message: String,
    },
    /// A document could not be signed.
    #[error("cannot sign: {0}")]
    Sign(#[from] aimarket_protocol::ProtocolError),
}

struct Capability {
    spec: CapabilitySpec,
    validator: jsonschema::Validator,
}

/// The signed manifest with its entity tag.
struct Rendered {
    at: Instant,
    body: web::Bytes,
    etag: String,
}

struct Shared {
    name: String,
    description: String,
    base_url: String,
    key: KeyPair,
    recipient: String,
    capabilities: HashMap<(String, String), Capability>,
    order: Vec<(String, String)>,
    well_known: web::Bytes,
    manifest: RwLock<Option<Rendered>>,
    ledger: Ledger,
    invocations: AtomicU64,
}

/// A running demo factory; stopped when dropped (or with [`DemoFactory::stop`]).
pub struct DemoFactory {
    url: String,
    name: String,
    public_key: PublicKey,
    spec: FactorySpec,
    shared: Arc<Shared>,
    handle: ServerHandle,
}

impl std::fmt::Debug for DemoFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DemoFactory")
            .field("name", &self.name)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Drop for DemoFactory {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
    }
}

impl DemoFactory {
    /// Binds `spec.listen`, signs the documents and starts serving (on the current tokio
    /// runtime). Returns once the socket is bound, so the URL can be used at once.
    pub async fn start(spec: FactorySpec) -> Result<Self, FactoryError> {
        let listener = TcpListener::bind(spec.listen).map_err(|source| FactoryError::Bind {
            addr: spec.listen,
            source,
        })?;
        let addr = listener.local_addr().map_err(|source| FactoryError::Bind {
            addr: spec.listen,
            source,
        })?;
        let url = format!("http://{addr}");
        let key = spec.key.clone().unwrap_or_else(KeyPair::generate);
        let shared = Arc::new(build_shared(&spec, &url, key.clone())?);
        let data = web::Data::from(shared.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(web::PayloadConfig::new(MAX_BODY))
                .configure(routes)
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(2)
        .listen(listener)
        .map_err(|source| FactoryError::Bind { addr, source })?
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        tracing::info!(factory = %spec.name, %url, capabilities = spec.capabilities.len(), "demo factory started");
        Ok(Self {
            url,
            name: spec.name.clone(),
            public_key: key.public_key(),
            spec,
            shared,
            handle,
        })
    }

    /// `http://127.0.0.1:PORT`: the factory's origin.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The factory's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key that signs its documents, receipts and responses.
    pub fn public_key(&self) -> &PublicKey {
        &self.public_key
    }

    /// What it serves.
    pub fn spec(&self) -> &FactorySpec {
        &self.spec
    }

    /// Successful invokes answered so far.
    pub fn invocations(&self) -> u64 {
        self.shared.invocations.load(Ordering::Relaxed)
    }

    /// Payment channels opened here so far.
    pub fn channels_opened(&self) -> usize {
        self.shared.ledger.channels_opened()
    }

    /// Stops serving, letting in-flight requests finish.
    pub async fn stop(&self) {
        self.handle.stop(true).await;
    }
}

fn build_shared(spec: &FactorySpec, url: &str, key: KeyPair) -> Result<Shared, FactoryError> {
    let key_b64 = key.public_key().to_b64();
    let mut capabilities = HashMap::new();
    let mut order = Vec::new();
    for cap in &spec.capabilities {
        let validator =
            jsonschema::validator_for(&cap.input_schema).map_err(|e| FactoryError::Schema {
                capability_id: cap.capability_id.to_owned(),
                message: e.to_string(),
            })?;
        let id = (cap.product_id.to_owned(), cap.capability_id.to_owned());
        order.push(id.clone());
        capabilities.insert(
            id,
            Capability {
                spec: cap.clone(),
                validator,
            },
        );
    }
    let products: std::collections::BTreeSet<&str> =
        spec.capabilities.iter().map(|c| c.product_id).collect();
    let mut well_known = json!({
        "name": spec.name,
        "description": spec.description,
        "protocol_versions": ["v1", "v2"],
        "manifest_url": format!("{url}/ai-market/v2/manifest"),
        "products_count": products.len(),
        "capabilities_count": spec.capabilities.len(),
        "supported_chains": ["base"],
        "supported_tokens": ["USDC"],
        "payment_rails": {"channel": {"open": format!("{url}/ai-market/v2/channel/open")}, "demo_payments": true},
        "signer_public_key": key_b64,
        "generated_at": now(),
    });
    sign_document(&mut well_known, &key)?;
    let digest = Sha256::digest(key.public_key().to_bytes());
    Ok(Shared {
        name: spec.name.clone(),
        description: spec.description.clone(),
        base_url: url.to_owned(),
        recipient: format!("0x{}", &hex::encode(digest)[..40]),
        key,
        capabilities,
        order,
        well_known: web::Bytes::from(well_known.to_string()),
        manifest: RwLock::new(None),
        ledger: Ledger::default(),
        invocations: AtomicU64::new(0),
    })
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/.well-known/ai-market.json", web::get().to(well_known))
        .route("/ai-market/manifest", web::get().to(manifest))
        .route("/ai-market/v2/manifest", web::get().to(manifest))
        .route("/ai-market/v2/invoke", web::post().to(invoke_v2))
        .route("/invoke", web::post().to(invoke_v2))
        .route(
            "/capabilities/{pid}/{cid}/invoke",
            web::post().to(invoke_v1),
        )
        .route(
            "/ai-market/capabilities/{pid}/{cid}/invoke",
            web::post().to(invoke_v1),
        )
        .route("/ai-market/v2/channel/open", web::post().to(channel_open))
        .route("/ai-market/channel/open", web::post().to(channel_open))
        .route("/ai-market/v2/channel/close", web::post().to(channel_close))
        .route("/ai-market/channel/close", web::post().to(channel_close))
        .route("/ai-market/v2/channel/{id}", web::get().to(channel_get))
        .route("/ai-market/receipt/{nonce}", web::get().to(receipt))
        .route("/health", web::get().to(health))
        .default_service(web::to(not_found));
}

fn error(status: u16, code: &str, detail: impl Into<String>) -> HttpResponse {
    HttpResponse::build(StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST))
        .json(json!({
        "success": false, "error": code, "detail": detail.into(), "protocol_version": "v2"}))
}

async fn not_found(req: HttpRequest) -> HttpResponse {
    error(
        404,
        "not_found",
        format!("no route for {} {}", req.method(), req.path()),
    )
}

async fn health(shared: web::Data<Shared>) -> HttpResponse {
    HttpResponse::Ok().json(
        json!({"ok": true, "agent": shared.name, "kind": "demo-factory",
        "provider_pubkey": shared.key.public_key().to_b64()}),
    )
}

async fn well_known(shared: web::Data<Shared>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .insert_header(("Cache-Control", "public, max-age=60"))
        .body(shared.well_known.clone())
}

fn render_manifest(shared: &Shared) -> Result<Rendered, FactoryError> {
    let key_b64 = shared.key.public_key().to_b64();
    let tools: Vec<Value> = shared
        .order
        .iter()
        .filter_map(|id| shared.capabilities.get(id))
        .map(|c| c.spec.tool_json(&key_b64))
        .collect();
    let products: std::collections::BTreeSet<&String> =
        shared.order.iter().map(|(p, _)| p).collect();
    let mut manifest = json!({
        "protocol_version": "v2",
        "generated_at": now(),
        "base_url": shared.base_url,
        "name": shared.name,
        "description": shared.description,
        "products_count": products.len(),
        "capabilities_count": tools.len(),
        "total_capabilities": tools.len(),
        "local_capabilities": tools.len(),
        "federated_capabilities": 0,
        "hubs_indexed": 0,
        "tools": tools,
        "by_hub": {},
    });
    sign_manifest(&mut manifest, &shared.key)?;
    let body = manifest.to_string();
    let etag = format!(
        "\"{}\"",
        &hex::encode(Sha256::digest(body.as_bytes()))[..32]
    );
    Ok(Rendered {
        at: Instant::now(),
        body: web::Bytes::from(body),
        etag,
    })
}

async fn manifest(req: HttpRequest, shared: web::Data<Shared>) -> HttpResponse {
    let fresh = {
        let current = shared
            .manifest
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        current
            .as_ref()
            .filter(|r| r.at.elapsed() < MANIFEST_TTL)
            .map(|r| (r.body.clone(), r.etag.clone()))
    };
    let (body, etag) = match fresh {
        Some(found) => found,
        None => match render_manifest(&shared) {
            Ok(rendered) => {
                let found = (rendered.body.clone(), rendered.etag.clone());
                *shared
                    .manifest
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(rendered);
                found
            }
            Err(e) => return error(500, "internal_error", e.to_string()),
        },
    };
    let matches = req
        .headers()
        .get("if-none-match")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    if matches {
        return HttpResponse::NotModified()
            .insert_header(("ETag", etag))
            .finish();
    }
    HttpResponse::Ok()
        .content_type("application/json")
        .insert_header(("ETag", etag))
        .body(body)
}

/// The body as a JSON object; the error is the `invalid_json` detail.
fn parse_body(body: &[u8]) -> Result<Map<String, Value>, String> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err("the body must be a JSON object".to_owned()),
        Err(e) => Err(e.to_string()),
    }
}

async fn invoke_v2(req: HttpRequest, body: web::Bytes, shared: web::Data<Shared>) -> HttpResponse {
    let started = Instant::now();
    let mut map = match parse_body(&body) {
        Ok(map) => map,
        Err(detail) => return error(400, "invalid_json", detail),
    };
    let id = |key: &str| map.get(key).and_then(Value::as_str).map(str::to_owned);
    let (Some(pid), Some(cid)) = (id("product_id"), id("capability_id")) else {
        return error(
            400,
            "bad_request",
            "`product_id` and `capability_id` are required strings",
        );
    };
    let input = map.remove("input").unwrap_or_else(|| json!({}));
    answer(&req, &shared, &pid, &cid, input, started)
}

async fn invoke_v1(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    body: web::Bytes,
    shared: web::Data<Shared>,
) -> HttpResponse {
    let started = Instant::now();
    let (pid, cid) = path.into_inner();
    let mut map = match parse_body(&body) {
        Ok(map) => map,
        Err(detail) => return error(400, "invalid_json", detail),
    };
    let input = map.remove("input").unwrap_or_else(|| json!({}));
    answer(&req, &shared, &pid, &cid, input, started)
}

fn header(req: &HttpRequest, name: &str) -> Option<String> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// Validates, computes, charges and signs one invoke.
fn answer(
    req: &HttpRequest,
    shared: &Shared,
    pid: &str,
    cid: &str,
    input: Value,
    started: Instant,
) -> HttpResponse {
    let Some(cap) = shared.capabilities.get(&(pid.to_owned(), cid.to_owned())) else {
        return error(
            404,
            "capability_not_found",
            format!("this factory has no capability {pid}/{cid}"),
        );
    };
    let Value::Object(args) = &input else {
        return error(400, "input_invalid", "`input` must be a JSON object");
    };
    let violations: Vec<Value> = cap
        .validator
        .iter_errors(&input)
        .take(20)
        .map(|e| json!({"path": e.instance_path().to_string(), "message": e.to_string()}))
        .collect();
    if !violations.is_empty() {
        return HttpResponse::BadRequest().json(json!({"success": false, "error": "input_invalid",
            "detail": "the input does not match the capability's input schema", "errors": violations,
            "protocol_version": "v2"}));
    }
    // Computed first: a call whose input makes no sense is never charged.
    let result = match (cap.spec.op)(args) {
        Ok(result) => result,
        Err(message) => return error(400, "input_invalid", message),
    };
    let price = cap.spec.price_usd;
    let paid = if cap.spec.is_priced() {
        let headers = PaymentHeaders {
            channel: header(req, "x-payment-channel"),
            secret: header(req, "x-payment-channel-secret"),
            payment: header(req, "x-payment").or_else(|| header(req, "payment-signature")),
        };
        match shared.ledger.charge(&headers, price) {
            Ok(paid) => Some(paid),
            Err(refusal) => return payment_required(shared, &cap.spec, &refusal),
        }
    } else {
        None
    };
    let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let mut receipt = json!({
        "nonce": format!("rcpt_{}", uuid::Uuid::new_v4().simple()),
        "product_id": pid,
        "capability_id": cid,
        "price_usd": price,
        "timestamp": now(),
        "success": true,
        "latency_ms": latency_ms,
    });
    if let Err(e) = sign_receipt(&mut receipt, &shared.key, ReceiptVersion::V1) {
        if let Some(paid) = &paid {
            shared.ledger.refund(paid, price);
        }
        return error(500, "internal_error", e.to_string());
    }
    shared
        .ledger
        .store_receipt(&receipt, header(req, "x-payment-nonce").as_deref());
    shared.invocations.fetch_add(1, Ordering::Relaxed);
    let signature = sign_provider_response(cid, pid, &input, &result, &shared.key);
    let mut body = json!({"success": true, "result": result, "price_usd": price, "latency_ms": latency_ms,
        "receipt": receipt, "protocol_version": "v2"});
    if let Some(Paid::Channel { remaining_usd, .. }) = &paid {
        body["remaining_balance"] = Value::from(*remaining_usd);
    }
    HttpResponse::Ok()
        .insert_header(("X-Provider-Signature", signature))
        .json(body)
}

fn payment_required(shared: &Shared, spec: &CapabilitySpec, refusal: &Refusal) -> HttpResponse {
    let resource = format!("{}/ai-market/v2/invoke", shared.base_url);
    let challenge = payment::challenge(
        spec.price_usd,
        &shared.base_url,
        &resource,
        spec.name,
        &shared.recipient,
    );
    let mut body = challenge.body;
    body["success"] = Value::Bool(false);
    body["error"] = Value::from(if refusal.code == "payment_required" {
        "payment_required"
    } else {
        refusal.code
    });
    body["payment_required"] = Value::Bool(true);
    body["detail"] = Value::from(refusal.detail.as_str());
    body["protocol_version"] = Value::from("v2");
    HttpResponse::PaymentRequired()
        .insert_header(("X-Payment-Required", challenge.x_payment_required))
        .insert_header(("PAYMENT-REQUIRED", challenge.payment_required))
        .insert_header(("X-Payment-Nonce", challenge.nonce))
        .insert_header((
            "Access-Control-Expose-Headers",
            "PAYMENT-REQUIRED, X-Payment-Required, X-Payment-Nonce",
        ))
        .json(body)
}

fn refusal_response(refusal: Refusal) -> HttpResponse {
    error(refusal.status, refusal.code, refusal.detail)
}

async fn channel_open(body: web::Bytes, shared: web::Data<Shared>) -> HttpResponse {
    match parse_body(&body) {
        Ok(map) => match shared.ledger.open(&Value::Object(map)) {
            Ok(opened) => HttpResponse::Ok().json(opened),
            Err(refusal) => refusal_response(refusal),
        },
        Err(detail) => error(400, "invalid_json", detail),
    }
}

async fn channel_close(body: web::Bytes, shared: web::Data<Shared>) -> HttpResponse {
    match parse_body(&body) {
        Ok(map) => match shared.ledger.close(&Value::Object(map)) {
            Ok(closed) => HttpResponse::Ok().json(closed),
            Err(refusal) => refusal_response(refusal),
        },
        Err(detail) => error(400, "invalid_json", detail),
    }
}

async fn channel_get(path: web::Path<String>, shared: web::Data<Shared>) -> HttpResponse {
    let id = path.into_inner();
    match shared.ledger.channel(&id) {
        Some(view) => HttpResponse::Ok().json(view),
        None => error(404, "channel_not_found", format!("no channel {id}")),
    }
}

async fn receipt(path: web::Path<String>, shared: web::Data<Shared>) -> HttpResponse {
    let nonce = path.into_inner();
    match shared.ledger.receipt(&nonce) {
        Some(receipt) => HttpResponse::Ok().json(receipt),
        None => error(404, "receipt_not_found", format!("no receipt {nonce}")),
    }
}
