//! Step 8 of an invoke: what the classified provider answer becomes for the buyer, with the
//! payment settled — a channel hold captured with the signed routing receipt, or an x402
//! authorization settled on-chain, on success; a hold released on anything else (an x402
//! authorization is then simply never settled).

use std::time::Instant;

use serde_json::{Map, Value};

use super::InvokeDeps;
use super::error::InvokeError;
use super::rails::Rail;
use super::receipt::{RoutingReceipt, new_nonce};
use super::record::Write;
use super::relay::{self, Answer};
use super::resolve::Offer;
use super::timing::{elapsed_ms, timed_ledger};
use super::{InvokeResult, Invoker};
use crate::metrics::{LedgerOp, Metrics};
use crate::payments::x402::{ExactPayment, payment_response};
use crate::payments::{HoldGuard, ReleaseReason};
use crate::settings::SellerDirectFee;

/// How the provider is paid for this call. Owned by the run: settling consumes it, and a
/// channel hold inside can only be captured or released ([`HoldGuard`]).
pub(super) enum Funding {
    /// The buyer's x402 exact authorization to this hub's wallet, verified for `micros`
    /// (the routed price; token base units are micro-USD) and settled only once the
    /// provider succeeded; the hub pays the provider.
    X402 {
        /// The verified authorization.
        payment: ExactPayment,
        /// The routed price it was verified for.
        micros: i64,
    },
    /// Nothing is charged by this hub; the buyer's own payment headers (if any) go upstream.
    Buyer,
    /// The buyer's channel holds the amount under the hold's id (the receipt nonce); the hub
    /// pays the provider.
    Channel {
        /// The hold on the buyer's channel.
        hold: HoldGuard,
        /// An escrow channel: the hold carries the depositor's authorization, which the
        /// collector puts on-chain once captured.
        escrow: bool,
    },
}

impl Funding {
    /// What the buyer pays this hub for the call, when the hub is paid (a hold or an x402
    /// authorization): the amount sent upstream as `X-AIMarket-Hub-Charged`.
    pub(super) fn hub_charged_micros(&self) -> Option<i64> {
        match self {
            Self::Channel { hold, .. } => Some(hold.hold().amount_micros),
            Self::X402 { micros, .. } => Some(*micros),
            Self::Buyer => None,
        }
    }

    /// The buyer's channel, when the call is channel-funded.
    pub(super) fn channel_id(&self) -> Option<&str> {
        match self {
            Self::Channel { hold, .. } => Some(&hold.hold().channel_id),
            Self::X402 { .. } | Self::Buyer => None,
        }
    }

    /// Gives a channel hold back (nothing else was taken yet); whether it was, for a
    /// channel-funded call. A failure is logged by the guard, and the sweeper releases the
    /// hold when its lease ends.
    pub(super) async fn release(self, metrics: &Metrics, reason: ReleaseReason) -> bool {
        match self {
            Self::Channel { hold, .. } => {
                timed_ledger(metrics, LedgerOp::Release, hold.release(reason))
                    .await
                    .is_ok()
            }
            Self::X402 { .. } | Self::Buyer => false,
        }
    }
}

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
    /// An answer that charged the buyer nothing.
    pub(super) fn unbilled(result: InvokeResult) -> Self {
        Self {
            result,
            success: false,
            charged_micros: 0,
        }
    }
}

/// Step 8: what the classified answer becomes for the buyer, with the funding settled: a
/// hold captured on success and released on anything else (also when this fails), an x402
/// authorization settled on-chain only on success.
#[allow(clippy::too_many_arguments)]
pub(super) async fn settle(
    deps: &InvokeDeps<'_>,
    offer: &Offer,
    funding: Funding,
    answer: Answer,
    sent: Sent,
    plugin_extensions: Option<Value>,
    started: Instant,
) -> Result<Settled, InvokeError> {
    let success = match answer {
        Answer::Success {
            body,
            result,
            signature,
            relayed,
            body_signature,
        } => Success {
            body,
            result,
            signature,
            relayed,
            body_signature,
        },
        unpaid => {
            // The buyer is charged nothing: the hold goes back before the answer does.
            funding.release(deps.metrics, ReleaseReason::Unbilled).await;
            return unbilled(deps.invoker, offer, unpaid, sent, elapsed_ms(started));
        }
    };
    billed(
        deps,
        offer,
        funding,
        success,
        sent,
        plugin_extensions,
        started,
    )
    .await
}

/// A provider answer that is not a billable success.
fn unbilled(
    invoker: &Invoker,
    offer: &Offer,
    answer: Answer,
    sent: Sent,
    latency_ms: u64,
) -> Result<Settled, InvokeError> {
    match answer {
        Answer::PaymentRequired(upstream) => {
            if sent.rail.hub_paid() {
                return Err(InvokeError::ProviderPaymentFailed {
                    peer: offer.peer_url.clone(),
                    detail: sent.unpaid_detail(),
                });
            }
            // The buyer has not paid the provider (yet): its challenge goes back verbatim.
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
        Answer::ClientError(upstream) => Ok(Settled::unbilled(relay::client_error(upstream))),
        Answer::Failed { body, relayed } => {
            let mut result = relay::json_ok(&failed_body(body, offer, latency_ms));
            result.headers.extend(relayed);
            Ok(Settled::unbilled(result))
        }
        // `settle` bills successes; one here is a bug, answered as one.
        Answer::Success { .. } => Err(InvokeError::Internal(
            "a successful answer reached the unbilled path".into(),
        )),
    }
}

/// The parts of a provider's success ([`Answer::Success`]).
struct Success {
    body: Map<String, Value>,
    result: Value,
    signature: relay::SignatureStatus,
    relayed: Vec<(String, String)>,
    body_signature: Option<Value>,
}

/// A provider's success: the buyer's payment is taken (the hold captured with the signed
/// routing receipt, or the x402 authorization settled) and the answer built. A failure
/// before the capture releases the hold.
async fn billed(
    deps: &InvokeDeps<'_>,
    offer: &Offer,
    funding: Funding,
    success: Success,
    sent: Sent,
    plugin_extensions: Option<Value>,
    started: Instant,
) -> Result<Settled, InvokeError> {
    let invoker = deps.invoker;
    let latency_ms = elapsed_ms(started);
    let Success {
        body,
        result,
        signature,
        relayed,
        body_signature,
    } = success;
    let (charged_micros, nonce) = match &funding {
        Funding::Channel { hold, .. } => (hold.hold().amount_micros, hold.id().to_owned()),
        Funding::X402 { micros, .. } => (*micros, new_nonce()),
        Funding::Buyer => (0, new_nonce()),
    };
    // The provider succeeded: now the buyer's authorization is settled (a refusal here,
    // e.g. a concurrent replay of it, leaves the buyer without the result).
    let settlement = match &funding {
        Funding::X402 { payment, .. } => {
            let tx = deps.ledger.settle_verified_x402(payment).await?;
            Some(payment_response(
                &tx,
                &payment.network,
                payment.authorization.from,
            ))
        }
        Funding::Channel { .. } | Funding::Buyer => None,
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
    let signed = receipt_span.in_scope(|| {
        RoutingReceipt {
            nonce: &nonce,
            product_id: &offer.product_id,
            capability_id: &offer.capability_id,
            price_usd: charged_usd,
            list_price_usd: offer.price_usd,
            routing_fee_bps,
            latency_ms,
            source_hub: &offer.origin,
            routing_hub: deps.public_url.as_str(),
            payment_rail: sent.rail.as_str(),
            routing_fee_policy: (sent.rail == Rail::SellerDirect)
                .then(|| invoker.rails.seller_direct_fee.as_str()),
        }
        .sign_with_extensions(deps.signing_key, plugin_extensions)
    });
    let routing_receipt = match signed {
        Ok(receipt) => receipt,
        Err(e) => {
            funding
                .release(deps.metrics, ReleaseReason::CaptureFailed)
                .await;
            return Err(InvokeError::Internal(format!(
                "cannot sign the routing receipt: {e}"
            )));
        }
    };
    match funding {
        Funding::Channel { hold, escrow } => {
            // A failed capture releases the hold (the guard does) before the error returns.
            timed_ledger(
                deps.metrics,
                LedgerOp::Capture,
                hold.capture(&routing_receipt),
            )
            .await?;
            if escrow {
                // The authorization goes on-chain off the request path.
                let ledger = deps.ledger.clone();
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
            .send(deps.ledger, Write::Receipt(routing_receipt.clone())),
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
    deps.metrics.observe_revenue(
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
    out.insert("routed_via".into(), deps.public_url.as_str().into());
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
