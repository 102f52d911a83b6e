//! v1 compatibility for factory-era clients:
//!
//! - `POST /ai-market/discover {query, budget_usd?, constraints?: {max_latency_ms?}, limit?}`
//!   → `{query, matches: [{product_id, capability_id, score, price_per_call_usd,
//!   routed_price_usd, draft_input, why}], plan: [{step, product_id, capability_id,
//!   draft_input}], estimated_total_usd, protocol_version: "v1"}`. Matches come from the
//!   same search as `GET /ai-market/v2/search` (the v1 factory ranked with an LLM; this hub
//!   ranks with its index); each draft input is built from the capability's input schema
//!   ([`crate::mcp::draft`]). The plan is the best match as a one-step pipeline.
//! - `GET|POST /ai-market/pricing/{product_id}/{capability_id}` → the quote: what a call
//!   costs through this hub (the routed price; prices do not depend on the input, so the
//!   v1 `input_size` / `{input}` are accepted and ignored). 404 for an unknown capability.
//!
//! (`GET /ai-market/manifest`, `/ai-market/channel/open|close` and
//! `/ai-market/receipt/{nonce}` are served by the manifest, channel and receipt modules.)

use actix_web::{HttpRequest, HttpResponse, web};
use aimarket_plugins::PluginContext;
use serde_json::{Map, Value, json};

use crate::catalog::SearchParams;
use crate::http::error::ApiError;
use crate::mcp::draft::draft_input;
use crate::mcp::lookup::describe;
use crate::state::AppState;

/// The v1 discovery endpoint.
pub const DISCOVER_PATH: &str = "/ai-market/discover";
/// The v1 price quote.
pub const PRICING_PATH: &str = "/ai-market/pricing/{product_id}/{capability_id}";
/// Matches when `limit` is absent.
pub const DEFAULT_DISCOVER_LIMIT: u64 = 5;
/// Most matches.
pub const MAX_DISCOVER_LIMIT: u64 = 50;

/// Registers the routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource(DISCOVER_PATH).route(web::post().to(discover)))
        .service(
            web::resource(PRICING_PATH)
                .route(web::get().to(pricing))
                .route(web::post().to(pricing)),
        );
}

/// The discover body, parsed at the edge.
struct Discover {
    query: String,
    budget: Option<f64>,
    max_latency_ms: Option<u64>,
    limit: u64,
}

fn number(body: &Map<String, Value>, key: &str) -> Result<Option<f64>, ApiError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_f64()
            .filter(|n| n.is_finite() && *n >= 0.0)
            .map(Some)
            .ok_or_else(|| ApiError::bad_request(format!("`{key}` must be a number ≥ 0"))),
    }
}

impl Discover {
    fn parse(body: &Value) -> Result<Self, ApiError> {
        let body = body
            .as_object()
            .ok_or_else(|| ApiError::bad_request("the body must be a JSON object"))?;
        let query = match body.get("query") {
            Some(Value::String(q)) => q.trim().to_owned(),
            Some(_) => return Err(ApiError::bad_request("`query` must be a string")),
            None => return Err(ApiError::bad_request("`query` is required")),
        };
        let constraints = match body.get("constraints") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(c)) => c.clone(),
            Some(_) => return Err(ApiError::bad_request("`constraints` must be an object")),
        };
        let max_latency_ms = number(&constraints, "max_latency_ms")?.map(|ms| ms as u64);
        let limit = match number(body, "limit")? {
            None => DEFAULT_DISCOVER_LIMIT,
            Some(l) if l >= 1.0 && l.fract() == 0.0 => (l as u64).min(MAX_DISCOVER_LIMIT),
            Some(_) => return Err(ApiError::bad_request("`limit` must be a positive integer")),
        };
        Ok(Self {
            query,
            budget: number(body, "budget_usd")?,
            max_latency_ms,
            limit,
        })
    }

    /// The same parameters as the v2 search endpoint would get, validated by its parser.
    fn search_params(&self, public_url: &str) -> Result<SearchParams, ApiError> {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        q.append_pair("intent", &self.query)
            .append_pair("limit", &self.limit.to_string());
        if let Some(budget) = self.budget {
            q.append_pair("budget", &budget.to_string());
        }
        if let Some(ms) = self.max_latency_ms {
            q.append_pair("max_latency_ms", &ms.to_string());
        }
        Ok(SearchParams::parse(&q.finish(), public_url)?)
    }
}

/// Why a match was chosen, in words.
fn why(m: &Value, query: &str, budget: Option<f64>) -> Vec<String> {
    let f = |k: &str| m.get(k).and_then(Value::as_f64).unwrap_or(0.0);
    let mut reasons = vec![match m.get("match_type").and_then(Value::as_str) {
        Some("fuzzy") => format!("close (typo-tolerant) match for \"{query}\""),
        Some("browse") => "best-rated capability (no query given)".to_owned(),
        _ => format!("matches \"{query}\" in its name, description or inputs"),
    }];
    let price = f("routed_price_usd");
    reasons.push(match budget {
        Some(b) => format!("{price} USD per call through this hub, within the budget of {b} USD"),
        None if price == 0.0 => "free".to_owned(),
        None => format!("{price} USD per call through this hub"),
    });
    reasons.push(format!(
        "p50 latency {} ms, trust {}, success rate {}",
        f("p50_latency_ms"),
        f("trust_score"),
        f("success_rate_30d")
    ));
    if let Some(hub) = m
        .get("source_hub_name")
        .and_then(Value::as_str)
        .filter(|h| !h.is_empty())
    {
        reasons.push(format!("offered by {hub}"));
    }
    reasons
}

async fn discover(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    // A v1 discovery is a search: same budget.
    crate::http::search::check_search_limit(&req, &state).await?;
    let request = Discover::parse(&body)?;
    let params = request.search_params(state.public_url.as_str())?;
    let mut ctx = PluginContext::new(
        crate::http::search::request_id(&req),
        state.public_url.as_str(),
    );
    let searching = std::time::Instant::now();
    let outcome = state
        .catalog
        .search(&params, &state.plugins, &mut ctx)
        .await?;
    state.metrics.observe_search(&outcome, searching.elapsed());
    let found = serde_json::to_value(&outcome).map_err(ApiError::internal)?;
    let matches: Vec<Value> = found["matches"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|m| {
            let draft = draft_input(
                m.get("input_schema").unwrap_or(&Value::Null),
                &request.query,
            );
            json!({
                "product_id": m["product_id"],
                "capability_id": m["capability_id"],
                "name": m["name"],
                "description": m["description"],
                "source_hub": m["source_hub"],
                "score": m["score"],
                "price_per_call_usd": m["price_per_call_usd"],
                "routed_price_usd": m["routed_price_usd"],
                "p50_latency_ms": m["p50_latency_ms"],
                "trust_score": m["trust_score"],
                "draft_input": draft,
                "why": why(m, &request.query, request.budget),
            })
        })
        .collect();
    let plan: Vec<Value> = matches
        .first()
        .map(|m| {
            json!({"step": 1, "product_id": m["product_id"], "capability_id": m["capability_id"],
                "source_hub": m["source_hub"], "draft_input": m["draft_input"]})
        })
        .into_iter()
        .collect();
    let estimated: f64 = matches
        .first()
        .and_then(|m| m["routed_price_usd"].as_f64())
        .unwrap_or(0.0);
    Ok(HttpResponse::Ok().json(json!({
        "query": request.query,
        "matches": matches,
        "plan": plan,
        "estimated_total_usd": estimated,
        "protocol_version": "v1",
    })))
}

/// `?source_hub=` narrows the quote to one owning hub.
#[derive(serde::Deserialize)]
struct PricingQuery {
    source_hub: Option<String>,
}

async fn pricing(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    query: web::Query<PricingQuery>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    // The v1 POST form sends `{input}`; the price does not depend on it, but the body must
    // still be JSON when there is one.
    if !body.iter().all(u8::is_ascii_whitespace) {
        let parsed: Value = serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("the body is not JSON: {e}")))?;
        if !parsed.is_object() {
            return Err(ApiError::bad_request("the body must be a JSON object"));
        }
    }
    let (product_id, capability_id) = path.into_inner();
    let offers = describe(
        &state.invoke_deps(),
        &product_id,
        &capability_id,
        query.source_hub.as_deref(),
    )
    .await?;
    let best = &offers[0];
    let e = best.effective;
    Ok(HttpResponse::Ok().json(json!({
        "product_id": product_id,
        "capability_id": capability_id,
        "price_usd": e.routed_price_usd,
        "routed_price_usd": e.routed_price_usd,
        "list_price_usd": e.price_usd,
        "routing_fee_bps": state.settings.routing_fee_bps,
        "currency": "USD",
        "source_hub": best.tool["source_hub"],
        "p50_latency_ms": e.p50_latency_ms,
        "protocol_version": "v1",
    })))
}
