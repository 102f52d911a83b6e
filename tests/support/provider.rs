//! [`FakeProvider`]: a real actix-web server on 127.0.0.1 that answers invokes the way real
//! providers do (the `create-aimarket-agent` contract, a v2 hub, a v1 factory), signs its
//! responses with a real Ed25519 key (spec §7.1), and can misbehave on demand. It records
//! every invoke it receives so tests can check exactly what the hub sent.
//!
//! [`seed_provider`] puts a provider's tools into a hub's catalog through the store API, as
//! a crawl would.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use aimarket_protocol::canonical::{Style, to_canonical_string};
use aimarket_protocol::capability::Capability;
use aimarket_protocol::signing::{KeyPair, sign_provider_response};
use serde_json::{Value, json};

use crate::TestHub;

/// How a capability answers.
#[derive(Debug, Clone)]
pub enum Behaviour {
    /// 200 `{success, result: {echo: input, capability_id}}`, request-bound signature.
    Echo,
    /// Like `Echo` without `X-Provider-Signature`.
    Unsigned,
    /// Like `Echo` signed with the legacy result-only canonical.
    LegacySigned,
    /// Like `Echo` with a signature by another key.
    BadSignature,
    /// Priced: 402 with every challenge header unless paid. Paid means `X-API-Key` equal to
    /// `api_key`, a channel this provider opened (`X-Payment-Channel` + its secret), or an
    /// `X-Payment` header.
    Priced {
        /// The price asked in the challenge.
        price_usd: f64,
        /// The API key that pays.
        api_key: Option<String>,
    },
    /// This status and JSON body.
    Status(u16, Value),
    /// 200 with a body that is not JSON.
    NotJson,
    /// 200 with a JSON body of this many bytes.
    Oversized(usize),
    /// Answers like `Echo` after this delay.
    Slow(Duration),
    /// 200 `{success: false, error: "model_refused"}`.
    TypedFailure,
    /// 429 with this `Retry-After` value (the provider is over its own capacity).
    TooBusy(String),
    /// An x402 seller on a chain: 402 with an `accepts` body (scheme `exact`) unless the
    /// call carries `X-PAYMENT`, which it settles on the node (`transferWithAuthorization`
    /// sent from `pay_to`, an unlocked dev account) before answering like `Echo`.
    X402 {
        /// `maxAmountRequired`, token base units.
        amount: u64,
        /// `payTo` (and the account that submits the settlement).
        pay_to: String,
        /// The token contract (`asset`).
        asset: String,
        /// The node's JSON-RPC URL.
        rpc_url: String,
    },
}

/// One capability the provider serves.
#[derive(Debug, Clone)]
pub struct FakeTool {
    /// Product id.
    pub product_id: String,
    /// Capability id.
    pub capability_id: String,
    /// Declared price.
    pub price_usd: f64,
    /// Declared input schema.
    pub input_schema: Value,
    /// Whether the catalog lists `invoke_url` = `{base}/invoke` (the provider contract);
    /// otherwise the hub picks the hub or factory path.
    pub with_invoke_url: bool,
    /// How it answers.
    pub behaviour: Behaviour,
}

impl FakeTool {
    /// A free echo capability with an object schema requiring `text`, at `/invoke`.
    pub fn echo(capability_id: &str) -> Self {
        Self {
            product_id: "prod-fake".to_owned(),
            capability_id: capability_id.to_owned(),
            price_usd: 0.0,
            input_schema: json!({"type": "object", "required": ["text"],
                "properties": {"text": {"type": "string", "maxLength": 1000}}}),
            with_invoke_url: true,
            behaviour: Behaviour::Echo,
        }
    }

    /// Changes the behaviour.
    pub fn behaving(mut self, behaviour: Behaviour) -> Self {
        self.behaviour = behaviour;
        self
    }

    /// Changes the declared price.
    pub fn priced(mut self, price_usd: f64) -> Self {
        self.price_usd = price_usd;
        self
    }

    /// Lists no `invoke_url` (the hub must pick the hub or factory path).
    pub fn without_invoke_url(mut self) -> Self {
        self.with_invoke_url = false;
        self
    }
}

/// An invoke as the provider received it.
#[derive(Debug, Clone)]
pub struct SeenInvoke {
    /// Request path.
    pub path: String,
    /// Every header, lower-case names, in order (a repeated header appears repeatedly).
    pub headers: Vec<(String, String)>,
    /// The raw body.
    pub body: Vec<u8>,
}

impl SeenInvoke {
    /// All values of header `name` (lower-case).
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The single value of header `name`.
    pub fn one(&self, name: &str) -> Option<&str> {
        self.all(name).first().copied()
    }

    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

struct Shared {
    key: KeyPair,
    tools: HashMap<String, FakeTool>,
    v2_hub: bool,
    channels_enabled: bool,
    channels: Mutex<HashMap<String, String>>,
    seen: Mutex<Vec<SeenInvoke>>,
    opened: AtomicU64,
}

/// A running fake provider; stopped when dropped.
pub struct FakeProvider {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The key its responses are signed with.
    pub key: KeyPair,
    /// What it serves.
    pub tools: Vec<FakeTool>,
    shared: Arc<Shared>,
    handle: ServerHandle,
}

impl Drop for FakeProvider {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
    }
}

/// Configures a [`FakeProvider`].
pub struct FakeProviderBuilder {
    tools: Vec<FakeTool>,
    v2_hub: bool,
    channels_enabled: bool,
    seed: u8,
}

impl FakeProvider {
    /// A builder: a v1 factory (well-known without `hub_version`) without channels.
    pub fn builder() -> FakeProviderBuilder {
        FakeProviderBuilder {
            tools: Vec::new(),
            v2_hub: false,
            channels_enabled: false,
            seed: 7,
        }
    }

    /// Every invoke received so far.
    pub fn seen(&self) -> Vec<SeenInvoke> {
        self.shared.seen.lock().expect("seen lock").clone()
    }

    /// How many invokes it received.
    pub fn invoke_count(&self) -> usize {
        self.shared.seen.lock().expect("seen lock").len()
    }

    /// How many channels the hub opened here.
    pub fn channels_opened(&self) -> u64 {
        self.shared.opened.load(Ordering::SeqCst)
    }
}

impl FakeProviderBuilder {
    /// Adds a capability.
    pub fn tool(mut self, tool: FakeTool) -> Self {
        self.tools.push(tool);
        self
    }

    /// Announces itself as a v2 hub in its well-known.
    pub fn v2_hub(mut self) -> Self {
        self.v2_hub = true;
        self
    }

    /// Serves `/ai-market/v2/channel/open` (demo deposits accepted).
    pub fn with_channels(mut self) -> Self {
        self.channels_enabled = true;
        self
    }

    /// Seed of the signing key (providers in one test should differ).
    pub fn key_seed(mut self, seed: u8) -> Self {
        self.seed = seed;
        self
    }

    /// Starts the server on a free loopback port.
    pub async fn start(self) -> FakeProvider {
        let key = KeyPair::from_seed(&[self.seed; 32]);
        let shared = Arc::new(Shared {
            key: key.clone(),
            tools: self
                .tools
                .iter()
                .map(|t| (t.capability_id.clone(), t.clone()))
                .collect(),
            v2_hub: self.v2_hub,
            channels_enabled: self.channels_enabled,
            channels: Mutex::default(),
            seen: Mutex::default(),
            opened: AtomicU64::new(0),
        });
        let data = web::Data::from(shared.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(web::PayloadConfig::new(8 * 1024 * 1024))
                .route("/.well-known/ai-market.json", web::get().to(well_known))
                .route("/ai-market/v2/channel/open", web::post().to(open_channel))
                .default_service(web::to(invoke))
        })
        .workers(2)
        .disable_signals()
        .bind(("127.0.0.1", 0))
        .expect("bind a loopback port");
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        FakeProvider {
            url: format!("http://{addr}"),
            key,
            tools: self.tools,
            shared,
            handle,
        }
    }
}

async fn well_known(shared: web::Data<Shared>) -> HttpResponse {
    let mut doc = json!({
        "name": "Fake provider",
        "signer_public_key": shared.key.public_key().to_b64(),
        "protocol_versions": ["v1", "mcp"],
    });
    if shared.v2_hub {
        doc["protocol_versions"] = json!(["v1", "v2"]);
        doc["hub_version"] = json!("2.0.0");
    }
    HttpResponse::Ok().json(doc)
}

async fn open_channel(shared: web::Data<Shared>, body: web::Json<Value>) -> HttpResponse {
    if !shared.channels_enabled {
        return HttpResponse::NotFound().json(json!({"error": "not_found"}));
    }
    let n = shared.opened.fetch_add(1, Ordering::SeqCst) + 1;
    let id = format!("ch_fake_{n}");
    let secret = format!("secret_{n}");
    shared
        .channels
        .lock()
        .expect("channels lock")
        .insert(id.clone(), secret.clone());
    let deposit = body.get("deposit_usd").cloned().unwrap_or(json!(0));
    HttpResponse::Ok().json(
        json!({"channel": {"channel_id": id, "channel_secret": secret,
        "deposit_usd": deposit, "balance_usd": deposit}}),
    )
}

fn header(req: &HttpRequest, name: &str) -> Option<String> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

async fn invoke(req: HttpRequest, body: web::Bytes, shared: web::Data<Shared>) -> HttpResponse {
    // Only invokes are recorded (the hub's crawler may GET documents here too).
    if req.method() != actix_web::http::Method::POST {
        return HttpResponse::NotFound().json(json!({"error": "not_found"}));
    }
    let headers = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    shared.seen.lock().expect("seen lock").push(SeenInvoke {
        path: req.path().to_owned(),
        headers,
        body: body.to_vec(),
    });
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    // The capability: from the body (provider contract, hub path) or the v1 path.
    let path_cid = req
        .path()
        .strip_prefix("/capabilities/")
        .and_then(|rest| rest.split('/').nth(1))
        .map(str::to_owned);
    let cid = parsed
        .get("capability_id")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or(path_cid);
    let Some(tool) = cid.and_then(|c| shared.tools.get(&c).cloned()) else {
        return HttpResponse::NotFound()
            .json(json!({"success": false, "error": "unknown_capability"}));
    };
    let input = parsed.get("input").cloned().unwrap_or(json!({}));
    let paid = |api_key: &Option<String>| {
        let by_key = api_key.is_some() && header(&req, "x-api-key") == *api_key;
        let by_channel = header(&req, "x-payment-channel").is_some_and(|id| {
            shared
                .channels
                .lock()
                .expect("channels lock")
                .get(&id)
                .cloned()
                == header(&req, "x-payment-channel-secret")
        });
        by_key || by_channel || header(&req, "x-payment").is_some()
    };
    match &tool.behaviour {
        Behaviour::Echo => signed_echo(&shared.key, &tool, &input, Sign::RequestBound),
        Behaviour::Unsigned => signed_echo(&shared.key, &tool, &input, Sign::None),
        Behaviour::LegacySigned => signed_echo(&shared.key, &tool, &input, Sign::Legacy),
        Behaviour::BadSignature => signed_echo(&shared.key, &tool, &input, Sign::WrongKey),
        Behaviour::Priced { price_usd, api_key } => {
            if paid(api_key) {
                let mut answer = signed_echo(&shared.key, &tool, &input, Sign::RequestBound);
                // A seller-direct payment is answered with its settlement, as x402 sellers do.
                if let Some(proof) = header(&req, "x-payment") {
                    answer.headers_mut().insert(
                        actix_web::http::header::HeaderName::from_static("payment-response"),
                        actix_web::http::header::HeaderValue::from_str(&format!("settled:{proof}"))
                            .expect("visible ASCII"),
                    );
                }
                answer
            } else {
                payment_required(*price_usd)
            }
        }
        Behaviour::Status(status, body) => HttpResponse::build(
            actix_web::http::StatusCode::from_u16(*status).expect("valid status"),
        )
        .json(body),
        Behaviour::NotJson => HttpResponse::Ok()
            .content_type("text/html")
            .body("<html>oops</html>"),
        Behaviour::Oversized(n) => {
            let filler = "x".repeat(n.saturating_sub(20));
            HttpResponse::Ok()
                .content_type("application/json")
                .body(format!(r#"{{"result":"{filler}"}}"#))
        }
        Behaviour::Slow(delay) => {
            tokio::time::sleep(*delay).await;
            signed_echo(&shared.key, &tool, &input, Sign::RequestBound)
        }
        Behaviour::TypedFailure => {
            HttpResponse::Ok().json(json!({"success": false, "error": "model_refused"}))
        }
        Behaviour::TooBusy(retry_after) => HttpResponse::TooManyRequests()
            .insert_header(("Retry-After", retry_after.as_str()))
            .json(json!({"success": false, "error": "rate_limited"})),
        Behaviour::X402 {
            amount,
            pay_to,
            asset,
            rpc_url,
        } => {
            let settled = match header(&req, "x-payment") {
                Some(payment) => {
                    crate::chain::settle_x402_header(rpc_url, pay_to, asset, &payment).await
                }
                None => Err("X-PAYMENT header is required".to_owned()),
            };
            match settled {
                Ok(tx) => {
                    let mut answer = signed_echo(&shared.key, &tool, &input, Sign::RequestBound);
                    answer.headers_mut().insert(
                        actix_web::http::header::HeaderName::from_static("payment-response"),
                        actix_web::http::header::HeaderValue::from_str(&format!("settled:{tx}"))
                            .expect("visible ASCII"),
                    );
                    answer
                }
                Err(error) => HttpResponse::PaymentRequired().json(json!({
                    "x402Version": 1,
                    "error": error,
                    "accepts": [{"scheme": "exact", "network": "anvil",
                        "maxAmountRequired": amount.to_string(), "payTo": pay_to,
                        "asset": asset, "maxTimeoutSeconds": 60,
                        "resource": tool.capability_id}],
                })),
            }
        }
    }
}

enum Sign {
    RequestBound,
    Legacy,
    WrongKey,
    None,
}

fn signed_echo(key: &KeyPair, tool: &FakeTool, input: &Value, sign: Sign) -> HttpResponse {
    let result = json!({"echo": input, "capability_id": tool.capability_id});
    let signature = match sign {
        Sign::RequestBound => Some(sign_provider_response(
            &tool.capability_id,
            &tool.product_id,
            input,
            &result,
            key,
        )),
        Sign::Legacy => Some(key.sign_b64(to_canonical_string(&result, Style::Compact).as_bytes())),
        Sign::WrongKey => Some(sign_provider_response(
            &tool.capability_id,
            &tool.product_id,
            input,
            &result,
            &KeyPair::from_seed(&[0xEE; 32]),
        )),
        Sign::None => None,
    };
    let nonce = format!("rcpt_prov_{}", uuid_like());
    let mut receipt = json!({"nonce": nonce, "product_id": tool.product_id,
        "capability_id": tool.capability_id, "price_usd": tool.price_usd,
        "timestamp": "2026-01-01T00:00:00.000Z", "success": true, "latency_ms": 1});
    aimarket_protocol::signing::sign_receipt(
        &mut receipt,
        key,
        aimarket_protocol::signing::ReceiptVersion::V1,
    )
    .expect("sign the provider receipt");
    let mut response = HttpResponse::Ok();
    if let Some(sig) = signature {
        response.insert_header(("X-Provider-Signature", sig));
    }
    response.json(json!({"success": true, "result": result, "receipt": receipt}))
}

fn uuid_like() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!("{:016x}", COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// The three challenge shapes the hub must relay verbatim.
pub const X_PAYMENT_REQUIRED: &str =
    r#"{"amount":"0.40","token":"USDT","chain":"base","recipient":"0xabc","nonce":"pay_1"}"#;
/// The x402 v2 header value (base64 of
/// `{"x402Version":2,"accepts":[{"scheme":"exact","network":"eip155:8453","amount":"400000"}]}`).
pub const PAYMENT_REQUIRED: &str = "eyJ4NDAyVmVyc2lvbiI6MiwiYWNjZXB0cyI6W3sic2NoZW1lIjoiZXhhY3QiLCJuZXR3b3JrIjoiZWlwMTU1Ojg0NTMiLCJhbW91bnQiOiI0MDAwMDAifV19";
/// The nonce header value.
pub const PAYMENT_NONCE: &str = "0xa55bfeed";
/// The `WWW-Authenticate` value.
pub const WWW_AUTHENTICATE: &str = r#"Payment realm="fake", charset="UTF-8""#;

fn payment_required(price_usd: f64) -> HttpResponse {
    HttpResponse::PaymentRequired()
        .insert_header(("X-Payment-Required", X_PAYMENT_REQUIRED))
        .insert_header(("PAYMENT-REQUIRED", PAYMENT_REQUIRED))
        .insert_header(("X-Payment-Nonce", PAYMENT_NONCE))
        .insert_header(("WWW-Authenticate", WWW_AUTHENTICATE))
        .json(
            json!({"success": false, "error": "payment_required", "needed": price_usd,
            "protocol_version": "v2"}),
        )
}

impl FakeProvider {
    /// The provider's tools as a crawl would store them (origin = this provider).
    pub fn catalog(&self) -> Vec<Capability> {
        self.tools
            .iter()
            .map(|t| self.new_capability(t, None))
            .collect()
    }

    /// `tool` as stored when listed by this provider, optionally as a re-export of `origin`.
    pub fn new_capability(&self, t: &FakeTool, reexport_of: Option<&str>) -> Capability {
        let mut tool_json = json!({
            "name": format!("{}.{}", t.product_id, t.capability_id),
            "product_id": t.product_id,
            "capability_id": t.capability_id,
            "description": format!("fake capability {}", t.capability_id),
            "input_schema": t.input_schema,
            "price_per_call_usd": t.price_usd,
            "provider_pubkey": self.key.public_key().to_b64(),
        });
        let invoke_url =
            (t.with_invoke_url && reexport_of.is_none()).then(|| format!("{}/invoke", self.url));
        if let Some(url) = &invoke_url {
            tool_json["invoke_url"] = json!(url);
        }
        Capability {
            origin: reexport_of.unwrap_or(&self.url).to_owned(),
            via: reexport_of.map(|_| self.url.clone()),
            product_id: t.product_id.clone(),
            capability_id: t.capability_id.clone(),
            name: format!("{}.{}", t.product_id, t.capability_id),
            description: format!("fake capability {}", t.capability_id),
            input_schema: t.input_schema.to_string(),
            output_schema: None,
            price_usd: t.price_usd,
            p50_latency_ms: Some(10),
            success_rate: Some(0.99),
            invoke_url,
            tool_json: tool_json.to_string(),
        }
    }
}

/// Makes `provider` an active operator peer of `hub` with its key pinned and `tools` as its
/// catalog, then tells the hub its catalog changed. Returns the peer id.
pub async fn seed_catalog(hub: &TestHub, provider: &FakeProvider, tools: Vec<Capability>) -> i64 {
    let store = &hub.state.store;
    let peer = store
        .upsert_seed_peer(&provider.url, Some(&provider.key.public_key().to_b64()))
        .await
        .expect("seed the provider as a peer");
    store
        .replace_peer_catalog(peer.id, tools)
        .await
        .expect("store the provider's catalog");
    hub.state.catalog_changed();
    peer.id
}

/// [`seed_catalog`] with the provider's own tools.
pub async fn seed_provider(hub: &TestHub, provider: &FakeProvider) -> i64 {
    seed_catalog(hub, provider, provider.catalog()).await
}
