//! The x402 exact rail (EIP-3009 on the hub's token) inside a routed invoke:
//!
//! - **buyer → hub** ([`verify`]): an `X-Payment` / `PAYMENT-SIGNATURE` authorization to this
//!   hub's wallet is checked for the routed price before the provider is called; the
//!   pipeline settles it on-chain only after the provider succeeded (verify, run, settle, as
//!   x402 facilitators do), so a failed call never charges the buyer.
//! - **hub → provider** ([`provider_payment`]): a hub-paid call (channel or x402) whose
//!   provider answers 402 with an x402 exact offer in this hub's token is retried once with
//!   the hub wallet's own authorization in `X-PAYMENT`.

use std::time::Duration;

use alloy_primitives::Address;
use serde_json::Value;

use super::InvokeCall;
use super::error::InvokeError;
use super::forward::Upstream;
use super::rails;
use super::settle::Funding;
use crate::payments::x402::{ExactPayment, sign_exact_authorization};
use crate::payments::{Ledger, PaymentError};

/// Verifies the buyer's x402 authorization to this hub for `routed_micros` (token base
/// units are micro-USD: 6 decimals, 1:1) without settling it.
pub(super) async fn verify(
    ledger: &Ledger,
    call: &InvokeCall,
    routed_micros: i64,
) -> Result<Funding, InvokeError> {
    let payout = ledger.payout().ok_or(PaymentError::PaymentsUnavailable)?;
    // The rail was chosen because this header pays the hub's wallet.
    let header = rails::hub_x402_payment(&call.headers, Some(payout.wallet().address()))
        .ok_or_else(|| InvokeError::Internal("the x402 rail without its payment".into()))?;
    let payment = ExactPayment::parse(header)?;
    let price = u64::try_from(routed_micros)
        .map_err(|_| InvokeError::Internal("negative routed price".into()))?;
    ledger.verify_x402(&payment, payout.domain(), price).await?;
    Ok(Funding::X402 {
        payment,
        micros: routed_micros,
    })
}

/// How long the hub's own authorization to a provider stays valid when the provider's 402
/// does not say (`maxTimeoutSeconds`).
const PROVIDER_AUTHORIZATION_TTL: Duration = Duration::from_secs(120);
/// Longest validity the hub signs, whatever the provider asks.
const MAX_PROVIDER_AUTHORIZATION_TTL: Duration = Duration::from_secs(600);

/// **hub → provider**: the `X-PAYMENT` value that pays a provider's 402 on a hub-paid call,
/// when its body offers x402 `accepts` with scheme `exact` in this hub's token and the hub
/// has a wallet: an authorization from the hub wallet to the offer's `payTo` for its
/// `maxAmountRequired`. `None` when nothing fits, or the provider asks more than
/// `max_micros` (what the buyer pays this hub; base units are micro-USD), which the hub
/// never pays out of its own pocket.
pub(super) fn provider_payment(
    ledger: &Ledger,
    upstream: &Upstream,
    max_micros: i64,
) -> Option<String> {
    let payout = ledger.payout()?;
    let body: Value = serde_json::from_slice(&upstream.body).ok()?;
    let offer = body.get("accepts")?.as_array()?.iter().find(|a| {
        a.get("scheme").and_then(Value::as_str) == Some("exact")
            && a.get("asset")
                .and_then(Value::as_str)
                .and_then(|s| s.parse::<Address>().ok())
                == Some(payout.token())
    })?;
    let pay_to: Address = offer.get("payTo")?.as_str()?.parse().ok()?;
    let amount = match offer.get("maxAmountRequired")? {
        Value::String(s) => s.parse::<u64>().ok()?,
        Value::Number(n) => n.as_u64()?,
        _ => return None,
    };
    if i64::try_from(amount).map_or(true, |a| a > max_micros) {
        tracing::warn!(amount, max_micros, %pay_to,
            "a provider's x402 price exceeds what the buyer pays this hub; not paying it");
        return None;
    }
    let network = offer
        .get("network")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let valid_for = offer
        .get("maxTimeoutSeconds")
        .and_then(Value::as_u64)
        .map_or(PROVIDER_AUTHORIZATION_TTL, Duration::from_secs)
        .min(MAX_PROVIDER_AUTHORIZATION_TTL);
    match sign_exact_authorization(
        payout.wallet().key(),
        payout.domain(),
        network,
        pay_to,
        amount,
        valid_for,
    ) {
        Ok(payment) => Some(payment.to_header()),
        Err(e) => {
            tracing::error!(error = %e, "cannot sign an x402 authorization for a provider");
            None
        }
    }
}
