//! Step 8 of an invoke: what the classified provider answer becomes for the buyer, with the
//! payment settled — a channel hold captured with the signed routing receipt, or an x402
//! authorization settled on-chain, on success; a hold released on anything else (an x402
//! authorization is then simply never settled).

use std::time::Instant;

use serde_json::{Map, Value};

use super::InvokeResult;
use super::error::InvokeError;
use super::pipeline::Funding;
use super::pipeline::timed_ledger;
use super::rails::Rail;
use super::receipt::{RoutingReceipt, new_nonce};
use super::record::Write;
use super::relay::{self, Answer};
use super::resolve::Offer;
use crate::metrics::LedgerOp;
use crate::payments::x402::payment_response;
use crate::settings::SellerDirectFee;
use crate::state::AppState;

/// What went upstream with one attempt: the rail, and whether the hub's credential and its
/// admission signature were on it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Sent {
    /// The call's rail.
    pub rail: Rail,
    /// The hub's own credential at the provider was sent.
    pub credential: bool,
    /// The hub's `aimarket-hub-request/v1` signature was sent.
    pub signed: bool,
}

impl Sent {
    /// Why a provider's 402 to a hub-paid call means this hub could not pay it.
    fn unpaid_detail(self) -> String {
        match (self.credential, self.signed) {
            (true, _) => "the provider answered 402 to this hub's credential".into(),
            (false, true) => "the provider answered 402 to this hub's signed admission \
                              (aimarket-hub-request/v1): it does not trust this hub's key"
                .into(),
            (false, false) => "the provider answered 402 and this hub has no way to pay it \
                               (configure AIMARKET_PEER_CREDENTIALS, or AIMARKET_SELLS_FOR for \
                               a provider that trusts this hub's signature)"
                .into(),
        }
    }
}

/// What a forwarded call ended as.
pub(super) struct Settled {
    /// The answer.
    pub(super) result: InvokeResult,
    /// The capability ran and succeeded.
    pub(super) success: bool,
    /// What the buyer was charged (captured from its channel, or its x402 authorization).
    pub(super) charged_micros: i64,
}

impl Settled {
    fn unbilled(result: InvokeResult) -> Self {
        Self {
            result,
            success: false,
            charged_micros: 0,
        }
    }
}

pub(super) fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

pub(super) async fn release(state: &AppState, hold_id: &str) {
    let released = timed_ledger(state, LedgerOp::Release, state.ledger.release(hold_id)).await;
    if let Err(e) = released {
        // The hold sweeper releases it when its lease ends; the buyer is never charged.
        tracing::error!(hold_id, error = %e, "cannot release a hold; the sweeper will");
    }
}

/// Step 8: what the classified answer becomes for the buyer, with the hold settled
/// (captured on success, released otherwise; on `Err` the caller releases it).
#[allow(clippy::too_many_arguments)]
pub(super) async fn settle(
    state: &AppState,
    offer: &Offer,
    funding: &Funding,
    answer: Answer,
    sent: Sent,
    plugin_extensions: Option<Value>,
    started: Instant,
) -> Result<Settled, InvokeError> {
    let invoker = &state.invoker;
    let latency_ms = elapsed_ms(started);
    let release_hold = || async {
        if let Funding::Channel { hold_id, .. } = funding {
            release(state, hold_id).await;
        }
    };
    match answer {
        Answer::PaymentRequired(upstream) => {
            if sent.rail.hub_paid() {
                return Err(InvokeError::ProviderPaymentFailed {
                    peer: offer.peer_url.clone(),
                    detail: sent.unpaid_detail(),
                });
            }
            // The buyer has not paid the provider (yet): its challenge goes back verbatim.
            release_hold().await;
            // Could this hub pay the provider, were the buyer to pay the hub: a credential,
            // or a provider it signs for (demo channels only where the challenge offers one).
            let hub_can_pay = invoker.pay.has_credential(&offer.peer_url)
                || invoker
                    .rails
                    .signs(Rail::HubPays, false, &offer.peer_url, &offer.peer_url);
            let ways =
                relay::payment_ways(&upstream, hub_can_pay, invoker.pay.opens_demo_channels());
            Ok(Settled::unbilled(relay::payment_required(
                upstream,
                invoker.routing_fee_bps,
                &ways,
            )))
        }
        Answer::ClientError(upstream) if upstream.status == 401 && sent.signed => {
            Err(InvokeError::ProviderPaymentFailed {
                peer: offer.peer_url.clone(),
                detail: format!(
                    "the provider refused this hub's admission signature \
                     (aimarket-hub-request/v1) with HTTP 401: {}",
                    relay::error_text(&upstream)
                ),
            })
        }
        Answer::ClientError(upstream) => {
            release_hold().await;
            Ok(Settled::unbilled(relay::client_error(upstream)))
        }
        Answer::Failed { body, relayed } => {
            release_hold().await;
            let mut result = relay::json_ok(&failed_body(body, offer, latency_ms));
            result.headers.extend(relayed);
            Ok(Settled::unbilled(result))
        }
        Answer::Success {
            body,
            result,
            signature,
            relayed,
            body_signature,
        } => {
            let (charged_micros, nonce) = match funding {
                Funding::Channel {
                    hold_id, micros, ..
                } => (*micros, hold_id.clone()),
                Funding::X402 { micros, .. } => (*micros, new_nonce()),
                Funding::Buyer => (0, new_nonce()),
            };
            // The provider succeeded: now the buyer's authorization is settled (a refusal
            // here, e.g. a concurrent replay of it, leaves the buyer without the result).
            let settlement = match funding {
                Funding::X402 { payment, .. } => {
                    let tx = state.ledger.settle_verified_x402(payment).await?;
                    Some(payment_response(
                        &tx,
                        &payment.network,
                        payment.authorization.from,
                    ))
                }
                _ => None,
            };
            let charged_usd = crate::payments::micros_to_usd(charged_micros);
            let fee_waived = sent.rail == Rail::SellerDirect
                && invoker.rails.seller_direct_fee == SellerDirectFee::Waived;
            let routing_fee_bps = if fee_waived {
                0
            } else {
                invoker.routing_fee_bps
            };
            let receipt_span = crate::telemetry::span!("invoke.receipt");
            let routing_receipt = receipt_span
                .in_scope(|| {
                    RoutingReceipt {
                        nonce: &nonce,
                        product_id: &offer.product_id,
                        capability_id: &offer.capability_id,
                        price_usd: charged_usd,
                        list_price_usd: offer.price_usd,
                        routing_fee_bps,
                        latency_ms,
                        source_hub: &offer.origin,
                        routing_hub: state.public_url.as_str(),
                        payment_rail: sent.rail.as_str(),
                        routing_fee_policy: (sent.rail == Rail::SellerDirect)
                            .then(|| invoker.rails.seller_direct_fee.as_str()),
                    }
                    .sign_with_extensions(&state.signing_key, plugin_extensions)
                })
                .map_err(|e| {
                    InvokeError::Internal(format!("cannot sign the routing receipt: {e}"))
                })?;
            match funding {
                Funding::Channel {
                    hold_id, escrow, ..
                } => {
                    timed_ledger(
                        state,
                        LedgerOp::Capture,
                        state.ledger.capture(hold_id, &routing_receipt),
                    )
                    .await?;
                    if *escrow {
                        // The authorization goes on-chain off the request path.
                        let ledger = state.ledger.clone();
                        tokio::spawn(async move {
                            if let Err(e) = ledger.collect_debits().await {
                                tracing::warn!(error = %e, "collecting escrow debits failed; \
                                    retried by the sweeper");
                            }
                        });
                    }
                }
                Funding::X402 { .. } | Funding::Buyer => invoker
                    .recorder
                    .send(&state.ledger, Write::Receipt(routing_receipt.clone())),
            }
            let price_usd = match sent.rail {
                Rail::HubPays | Rail::HubX402 => charged_usd,
                // What the buyer paid the provider (its receipt says), plus any fee here.
                Rail::SellerDirect => {
                    body.get("receipt")
                        .and_then(|r| r.get("price_usd"))
                        .and_then(Value::as_f64)
                        .unwrap_or(offer.price_usd)
                        + charged_usd
                }
                Rail::Unpaid => 0.0,
            };
            // The provider's fields pass through untouched (`receipt`, `signature`,
            // `provider_pubkey`, `provenance`, `hub_billing`, anything new); the hub's own
            // answer fields are set on top.
            state.metrics.observe_revenue(
                sent.rail.as_str(),
                price_usd,
                routing_fee_usd(sent, charged_usd, offer),
            );
            let mut out = body;
            out.insert("success".into(), Value::Bool(true));
            out.insert("result".into(), result);
            out.insert("routing_receipt".into(), routing_receipt);
            out.insert("price_usd".into(), price_usd.into());
            out.insert("list_price_usd".into(), offer.price_usd.into());
            out.insert("routed_price_usd".into(), offer.routed_price_usd.into());
            out.insert("routing_fee_bps".into(), routing_fee_bps.into());
            out.insert(
                "routing_fee_usd".into(),
                routing_fee_usd(sent, charged_usd, offer).into(),
            );
            out.insert("payment_rail".into(), sent.rail.as_str().into());
            out.insert("latency_ms".into(), latency_ms.into());
            out.insert("source_hub".into(), offer.origin.clone().into());
            out.insert("routed_via".into(), state.public_url.as_str().into());
            out.insert("provider_signature".into(), signature.as_str().into());
            if let Some(checked) = body_signature {
                out.insert("provider_body_signature".into(), checked);
            }
            out.insert("protocol_version".into(), "v2".into());
            let mut answer = relay::json_ok(&Value::Object(out));
            if let Some(response) = settlement {
                // The buyer's settlement, not the provider's: any settlement header the
                // provider sent answers this hub's own payment to it and stays here. x402 v2
                // names it PAYMENT-RESPONSE; v1 clients read X-PAYMENT-RESPONSE.
                answer
                    .headers
                    .push(("x-payment-response".into(), response.clone()));
                answer.headers.push(("payment-response".into(), response));
            } else {
                answer.headers.extend(relayed);
            }
            Ok(Settled {
                result: answer,
                success: true,
                charged_micros,
            })
        }
    }
}

/// The routing fee this hub kept for the call, USD.
fn routing_fee_usd(sent: Sent, charged_usd: f64, offer: &Offer) -> f64 {
    match sent.rail {
        Rail::HubPays | Rail::HubX402 => {
            ((charged_usd - offer.price_usd) * 1e6).round().max(0.0) / 1e6
        }
        Rail::SellerDirect => charged_usd,
        Rail::Unpaid => 0.0,
    }
}

/// A typed failure (`success: false` in a 2xx): the provider's fields pass through, with
/// the numbers every SDK requires and nothing charged.
fn failed_body(mut body: Map<String, Value>, offer: &Offer, latency_ms: u64) -> Value {
    body.insert("success".into(), Value::Bool(false));
    body.insert("price_usd".into(), 0.0.into());
    body.insert("latency_ms".into(), latency_ms.into());
    body.insert("source_hub".into(), offer.origin.clone().into());
    body.insert("protocol_version".into(), "v2".into());
    Value::Object(body)
}
