//! `GET /.well-known/ai-market.json`: the hub's signed discovery document (spec §2.1).
//!
//! Peers fetch this on a timer, so it is rendered and signed once per catalog generation and
//! served from memory with an `ETag`; `If-None-Match` answers 304 without a body.

use std::sync::Arc;

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use aimarket_protocol::signing::sign_document;

use crate::catalog::well_known::Rendered;
use crate::http::error::ApiError;
use crate::state::{AppState, CatalogSummary};

/// Path of the document.
pub const PATH: &str = "/.well-known/ai-market.json";
/// Chains and tokens this hub accepts payments on.
pub const SUPPORTED_CHAINS: &[&str] = &["base"];
/// Tokens accepted on those chains.
pub const SUPPORTED_TOKENS: &[&str] = &["USDC", "USDT"];
/// Browsers, proxies and crawlers may reuse the document for a minute.
const CACHE_CONTROL: &str = "public, max-age=60";

/// Registers the well-known route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource(PATH).route(web::get().to(get_well_known)));
}

/// The unsigned document, built from settings, the key and the catalog summary. Plugins'
/// well-known extensions go under `plugin_extensions.<name>`.
///
/// Recording the `X-AIMarket-Crawler` header of requests for this document (spec §2.5) is
/// deliberately not done here: this is the most-requested endpoint of the federation, so it
/// does no work beyond serving the cached bytes.
pub fn document(state: &AppState, summary: &CatalogSummary) -> Value {
    let settings = &state.settings;
    let seed_list: Vec<String> = settings.seeds.iter().map(|s| s.url.to_string()).collect();
    let mut doc = json!({
        "name": settings.name,
        "protocol_versions": ["v1", "v2", "mcp"],
        "hub_version": env!("CARGO_PKG_VERSION"),
        "mcp_endpoint": state.public_url.join("/ai-market/mcp"),
        "manifest_url": state.public_url.join("/ai-market/v2/manifest"),
        "products_count": summary.products_count,
        "capabilities_count": summary.capabilities_count,
        "federated_capabilities_count": summary.federated_capabilities_count,
        "supported_chains": SUPPORTED_CHAINS,
        "supported_tokens": SUPPORTED_TOKENS,
        "signer_public_key": state.signing_key.public_key().to_b64(),
        "federation": {
            "crawl_interval_s": settings.crawl_interval_s,
            "routing_fee_bps": settings.routing_fee_bps,
            "min_trust_score": settings.reputation.min_trust_score,
            "seed_list": seed_list,
        },
        "peers": summary.peers,
    });
    // Which channels this hub opens; with the escrow, what a depositor signs.
    let mut channels = json!({ "kinds": state.ledger.channel_kinds() });
    if let Some(terms) = state.ledger.escrow_terms() {
        channels["escrow"] = terms;
    }
    doc["payment_channels"] = channels;
    if let Some(extensions) = state.plugins.well_known_extensions() {
        doc["plugin_extensions"] = extensions;
    }
    doc
}

/// The signed document for the current catalog generation, rendering it if needed.
pub async fn rendered(state: &AppState) -> Result<Arc<Rendered>, ApiError> {
    let generation = state.catalog_generation();
    if let Some(hit) = state.well_known.get(generation) {
        return Ok(hit);
    }
    let summary = state.catalog_summary().await?;
    let mut doc = document(state, &summary);
    sign_document(&mut doc, &state.signing_key).map_err(ApiError::internal)?;
    let body = Bytes::from(serde_json::to_vec(&doc).map_err(ApiError::internal)?);
    let etag = format!("\"{}\"", &hex::encode(Sha256::digest(&body))[..32]);
    let rendered = Arc::new(Rendered {
        generation,
        body,
        etag,
    });
    state.well_known.put(rendered.clone());
    Ok(rendered)
}

/// Whether an `If-None-Match` header matches `etag` (weak comparison, as RFC 9110 requires
/// for this header).
pub fn if_none_match_hits(req: &HttpRequest, etag: &str) -> bool {
    req.headers()
        .get_all(header::IF_NONE_MATCH)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|tag| tag.trim())
        .any(|tag| tag == "*" || tag.trim_start_matches("W/") == etag)
}

async fn get_well_known(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let doc = rendered(&state).await?;
    let etag = HeaderValue::from_str(&doc.etag).map_err(ApiError::internal)?;
    if if_none_match_hits(&req, &doc.etag) {
        return Ok(HttpResponse::NotModified()
            .insert_header((header::ETAG, etag))
            .insert_header((header::CACHE_CONTROL, CACHE_CONTROL))
            .finish());
    }
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .insert_header((header::ETAG, etag))
        .insert_header((header::CACHE_CONTROL, CACHE_CONTROL))
        .body(doc.body.clone()))
}
