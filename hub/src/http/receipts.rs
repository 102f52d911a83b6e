//! Receipt endpoints:
//!
//! - `GET /ai-market/receipt/{nonce}` → the stored receipt as this hub signed it, or 404
//!   `receipt_not_found`.
//! - `POST /ai-market/v2/receipts/verify {receipt}` (the bare receipt is accepted too) →
//!   `{valid, signer, signer_public_key, signature_version, unsigned_fields,
//!   classical_valid, signer_matches_live_key, pq_present, pq_valid, algorithm,
//!   policy_requires_pq, signature_valid, schema_deviations, reason?, detail?}`. The schema
//!   is reported apart from the signature: `valid` rests on the signature alone. Receipts signed by this hub or by an active peer
//!   whose key is pinned verify; anything else is `valid: false` with a reason (status 200).

use actix_web::{HttpResponse, web};
use aimarket_protocol::ProtocolError;
use aimarket_protocol::schema::SchemaKind;
use serde_json::{Value, json};

use crate::http::error::{ApiError, Code};
use crate::payments::verify::check_receipt;
use crate::state::AppState;

/// One stored receipt.
pub const RECEIPT_PATH: &str = "/ai-market/receipt/{nonce}";
/// Receipt verification.
pub const VERIFY_PATH: &str = "/ai-market/v2/receipts/verify";

/// Registers the receipt routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource(RECEIPT_PATH).route(web::get().to(get)))
        .service(web::resource(VERIFY_PATH).route(web::post().to(verify)));
}

async fn get(
    state: web::Data<AppState>,
    nonce: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    match state.ledger.get_receipt(&nonce).await? {
        Some(receipt) => Ok(HttpResponse::Ok().json(receipt)),
        None => Err(ApiError::new(
            Code::ReceiptNotFound,
            format!("no receipt with nonce {nonce} is stored at this hub"),
        )),
    }
}

async fn verify(
    state: web::Data<AppState>,
    body: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    // `{receipt: {…}}` as specified; a bare receipt (it has a nonce) is accepted as well.
    let receipt = match body.get("receipt") {
        Some(receipt) => receipt,
        None if body.get("nonce").is_some() => &body,
        None => return Err(ApiError::bad_request("body must be {\"receipt\": {...}}")),
    };
    if !receipt.is_object() {
        return Err(ApiError::bad_request("`receipt` must be a JSON object"));
    }
    let verdict = check_receipt(
        &state.store,
        &state.signing_key.public_key(),
        state.public_url.as_str(),
        receipt,
    )
    .await?;
    // Reported apart from the signature: real receipts (float `latency_ms`, `success: 1`)
    // deviate from the schema and still verify.
    let schema_deviations: Vec<String> =
        match aimarket_protocol::schema::validate(SchemaKind::Receipt, receipt) {
            Ok(()) => Vec::new(),
            Err(ProtocolError::SchemaInvalid { errors, .. }) => errors,
            Err(other) => vec![other.to_string()],
        };
    let mut answer = json!({
        "success": true,
        "valid": verdict.valid,
        "signature_valid": verdict.valid,
        "schema_deviations": schema_deviations,
        "classical_valid": verdict.valid,
        "signer": verdict.signer.as_ref().map(|s| s.url.clone()),
        "signer_public_key": verdict.signer.as_ref().map(|s| s.public_key.clone()),
        "signer_is_this_hub": verdict.signer.as_ref().is_some_and(|s| s.is_this_hub),
        // Verified against the key this hub holds for the signer now (its own live key or
        // the peer's currently pinned key).
        "signer_matches_live_key": verdict.valid,
        "signature_version": verdict.signature_version,
        "unsigned_fields": verdict.unsigned_fields,
        "algorithm": "ed25519",
        "pq_present": verdict.pq_present,
        "pq_valid": Value::Null,
        "policy_requires_pq": false,
        "protocol_version": "v2",
    });
    if let Some(reason) = verdict.reason {
        answer["reason"] = json!(reason);
    }
    if let Some(detail) = verdict.detail {
        answer["detail"] = json!(detail);
    }
    Ok(HttpResponse::Ok().json(answer))
}
