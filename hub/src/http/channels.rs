//! Payment channel endpoints (spec §6, CLIENTS.md §0 items 4, 6, 7):
//!
//! - `POST /ai-market/v2/channel/open` (v1 alias `/ai-market/channel/open`)
//!   `{deposit_usd, tx_hash?, token?, chain?, payer?, payer_signature?}` → the channel, both enveloped (`channel`) and
//!   flat, because SDKs read either; `channel_secret` appears only here. With
//!   `{escrow_channel_id, payer, payer_signature}` instead, a channel opened on the escrow
//!   contract is mirrored (`kind: "escrow"`; its debits need a signed `payment_authorization`).
//! - `GET /ai-market/v2/channel/{id}` → the channel without its secret, with `balance_usd`,
//!   `used_usd`, `invocations`, `status` (`open`, `expired`, `closed`).
//! - `POST /ai-market/v2/channel/close` (v1 alias `/ai-market/channel/close`)
//!   `{channel_id, settle_tx_hash?}` → `settlement{channel_id, used_usd, refund_usd}` plus the
//!   flat `channel_id, total_spent_usd, refund_usd, invocations`. No secret is needed. A
//!   second close answers the first settlement again (200).

use actix_web::{HttpResponse, web};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::http::error::{ApiError, Code};
use crate::payments::escrow::ledger::EscrowOpen;
use crate::payments::{Channel, OpenChannel, PaymentError, Settlement, micros_to_usd};
use crate::state::AppState;
use crate::store::now_ms;

/// Open, v2 and v1.
pub const OPEN_PATHS: [&str; 2] = ["/ai-market/v2/channel/open", "/ai-market/channel/open"];
/// Close, v2 and v1.
pub const CLOSE_PATHS: [&str; 2] = ["/ai-market/v2/channel/close", "/ai-market/channel/close"];
/// One channel.
pub const CHANNEL_PATH: &str = "/ai-market/v2/channel/{channel_id}";

/// Registers the channel routes (open and close before the `{channel_id}` pattern).
pub fn configure(cfg: &mut web::ServiceConfig) {
    for path in OPEN_PATHS {
        cfg.service(web::resource(path).route(web::post().to(open)));
    }
    for path in CLOSE_PATHS {
        cfg.service(web::resource(path).route(web::post().to(close)));
    }
    cfg.service(web::resource(CHANNEL_PATH).route(web::get().to(get)));
}

/// Body of channel open. Unknown members (`depositor`, …) are ignored.
#[derive(Debug, Deserialize)]
struct OpenBody {
    #[serde(default)]
    deposit_usd: Option<f64>,
    /// A channel opened on the escrow contract, to mirror (non-custodial).
    #[serde(default)]
    escrow_channel_id: Option<String>,
    #[serde(default)]
    tx_hash: Option<String>,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    chain: Option<String>,
    /// Payer proof (`AIMarket-Payer-Proof/v1`): the paying wallet and its signature.
    #[serde(default)]
    payer: Option<String>,
    #[serde(default)]
    payer_signature: Option<String>,
}

/// Body of channel close.
#[derive(Debug, Deserialize)]
struct CloseBody {
    channel_id: String,
    #[serde(default)]
    settle_tx_hash: Option<String>,
}

/// Unix milliseconds as ISO-8601 UTC with a `Z` (the Rust SDK parses exactly that).
fn iso(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The channel's public fields (never the secret).
fn channel_fields(c: &Channel) -> Map<String, Value> {
    let deposit = micros_to_usd(c.deposit_micros);
    let mut fields = Map::new();
    for (key, value) in [
        ("channel_id", json!(c.id)),
        ("deposit_usd", json!(deposit)),
        ("original_deposit_usd", json!(deposit)),
        ("balance_usd", json!(micros_to_usd(c.balance_micros()))),
        ("used_usd", json!(micros_to_usd(c.used_micros))),
        ("held_usd", json!(micros_to_usd(c.held_micros))),
        ("invocations", json!(c.invocations)),
        ("token", json!(c.token)),
        ("chain", json!(c.chain)),
        ("status", json!(c.state_at(now_ms()))),
        ("created_at", json!(iso(c.created_at))),
        ("expires_at", json!(iso(c.expires_at))),
        ("tx_hash", json!(c.tx_hash)),
        ("payer", json!(c.payer)),
        ("secret_required", json!(c.secret_required)),
        ("kind", json!(c.kind())),
        ("escrow_channel_id", json!(c.escrow_id)),
    ] {
        fields.insert(key.to_owned(), value);
    }
    if let Some(closed_at) = c.closed_at {
        fields.insert("closed_at".into(), json!(iso(closed_at)));
    }
    fields
}

/// `{success, channel: {…}, …the same fields flat…, protocol_version}`.
fn channel_answer(fields: Map<String, Value>) -> Value {
    let mut body = fields.clone();
    body.insert("success".into(), json!(true));
    body.insert("channel".into(), Value::Object(fields));
    body.insert("protocol_version".into(), json!("v2"));
    Value::Object(body)
}

async fn open(
    state: web::Data<AppState>,
    body: web::Json<OpenBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let channel = if let Some(escrow_channel_id) = body.escrow_channel_id {
        state
            .ledger
            .open_escrow_channel(EscrowOpen {
                escrow_channel_id,
                chain: body.chain,
                token: body.token,
                payer: body.payer,
                payer_signature: body.payer_signature,
            })
            .await?
    } else {
        // The answer the JSON extractor gave when `deposit_usd` was a required member.
        let deposit_usd = body.deposit_usd.ok_or_else(|| {
            ApiError::new(
                Code::InvalidJson,
                "missing field `deposit_usd` (or `escrow_channel_id` for an escrow channel)",
            )
        })?;
        open_custodial(&state, body, deposit_usd).await?
    };
    let mut fields = channel_fields(&channel);
    if let Some(secret) = &channel.secret {
        fields.insert("channel_secret".into(), json!(secret.expose()));
    }
    Ok(HttpResponse::Ok().json(channel_answer(fields)))
}

async fn open_custodial(
    state: &AppState,
    body: OpenBody,
    deposit_usd: f64,
) -> Result<Channel, PaymentError> {
    state
        .ledger
        .open_channel(OpenChannel {
            deposit_usd,
            tx_hash: body.tx_hash,
            token: body.token,
            chain: body.chain,
            payer: body.payer,
            payer_signature: body.payer_signature,
        })
        .await
}

async fn get(
    state: web::Data<AppState>,
    channel_id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let channel = state.ledger.get_channel(&channel_id).await?;
    Ok(HttpResponse::Ok().json(channel_answer(channel_fields(&channel))))
}

fn settlement_answer(s: &Settlement) -> Value {
    let used = micros_to_usd(s.used_micros);
    let refund = micros_to_usd(s.refund_micros);
    json!({
        "success": true,
        "settlement": {
            "channel_id": s.channel_id,
            "used_usd": used,
            "refund_usd": refund,
            "invocations": s.invocations,
            "settle_tx_hash": s.settle_tx_hash,
            "closed_at": iso(s.closed_at),
        },
        "channel_id": s.channel_id,
        "total_spent_usd": used,
        "used_usd": used,
        "refund_usd": refund,
        "invocations": s.invocations,
        // The on-chain refund (hub wallet) or the hash the closer named.
        "settle_tx_hash": s.settle_tx_hash,
        "status": "closed",
        "protocol_version": "v2",
    })
}

async fn close(
    state: web::Data<AppState>,
    body: web::Json<CloseBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let settlement = state
        .ledger
        .close_channel(&body.channel_id, body.settle_tx_hash)
        .await?;
    Ok(HttpResponse::Ok().json(settlement_answer(&settlement)))
}
