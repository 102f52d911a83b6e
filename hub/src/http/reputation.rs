//! Reputation endpoints (spec §5) and the Pay-on-Verified lookup:
//!
//! - `POST /ai-market/v2/reputation/events {events: [1..100]}` →
//!   `{received, rejected, replayed}` (rules in [`crate::reputation::events`]);
//! - `GET /ai-market/v2/reputation/{hub_url}` (the URL raw or percent-encoded) →
//!   `{hub_url, trust_score, components, weights, observations_30d, recent_events, …}`;
//! - `GET /ai-market/v2/verification/{nonce}` → 404 `verification_not_found`: this hub
//!   offers no verified settlement, so no nonce has a verdict.

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};

use crate::http::error::{ApiError, Code};
use crate::reputation;
use crate::state::AppState;

/// Path of event submission.
pub const EVENTS_PATH: &str = "/ai-market/v2/reputation/events";
/// Prefix of the per-hub reputation.
pub const REPUTATION_PREFIX: &str = "/ai-market/v2/reputation/";
/// Path of the verdict lookup.
pub const VERIFICATION_PATH: &str = "/ai-market/v2/verification/{nonce}";

/// Registers the routes. The events path is registered first, so `events` is never read as
/// a hub URL.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource(EVENTS_PATH).route(web::post().to(submit_events)))
        .service(
            web::resource("/ai-market/v2/reputation/{hub_url:.+}")
                .route(web::get().to(hub_reputation)),
        )
        .service(web::resource(VERIFICATION_PATH).route(web::get().to(verification)));
}

async fn submit_events(
    state: web::Data<AppState>,
    body: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let outcome = reputation::ingest_events(&state.reputation_deps(), &body).await?;
    let mut answer = serde_json::to_value(outcome).map_err(ApiError::internal)?;
    answer["protocol_version"] = json!("v2");
    Ok(HttpResponse::Ok().json(answer))
}

/// Decodes `%XX` escapes (the router leaves some, such as `%2F`, encoded); anything that is
/// not a valid escape is kept as written.
fn percent_decode(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            // Two hex digits: at most 255.
            out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The hub URL of the path, from the raw request path so that `https://h` (whose `//` a
/// router might treat specially) and `https%3A%2F%2Fh` both arrive intact.
fn hub_url_of(req: &HttpRequest) -> String {
    let raw = req
        .path()
        .strip_prefix(REPUTATION_PREFIX)
        .unwrap_or_default();
    let mut url = percent_decode(raw);
    // Some clients and proxies merge `//`: accept `https:/h` as `https://h`.
    for scheme in ["https:/", "http:/"] {
        if let Some(rest) = url.strip_prefix(scheme)
            && !rest.starts_with('/')
        {
            url = format!("{scheme}/{rest}");
            break;
        }
    }
    url
}

async fn hub_reputation(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let report = reputation::report(&state.reputation_deps(), &hub_url_of(&req)).await?;
    Ok(HttpResponse::Ok().json(report))
}

async fn verification(path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    Err(ApiError::new(
        Code::VerificationNotFound,
        "no verification verdict for this receipt nonce: this hub does not offer \
         Pay-on-Verified settlement",
    )
    .with_field("nonce", path.into_inner()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn both_path_forms_give_the_url() {
        for path in [
            "/ai-market/v2/reputation/https://hub.example:8443",
            "/ai-market/v2/reputation/https%3A%2F%2Fhub.example%3A8443",
            "/ai-market/v2/reputation/https:/hub.example:8443",
        ] {
            let req = TestRequest::get().uri(path).to_http_request();
            assert_eq!(hub_url_of(&req), "https://hub.example:8443", "{path}");
        }
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("%zz%41"), "%zzA");
    }
}
