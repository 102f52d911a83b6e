//! The steps of one invoke, in order:
//!
//! 1. resolve the offers and [`choose_providers`];
//! 2. validate `input` against the chosen capability's schema (before any charge);
//! 3. compare `max_price_usd` with the routed price;
//! 4. (plugin `before_invoke` hooks run here, issue 7: after validation, before any charge);
//! 5. hold the routed price on the buyer's channel, if the call is channel-funded;
//! 6. forward with the hub's own credential (channel-funded) or the buyer's payment headers;
//! 7. (plugin `after_invoke` hooks run here, on the classified answer, before settlement);
//! 8. settle: capture with the signed routing receipt on success, release on anything else;
//! 9. record the outcome off the hot path.

use std::time::Instant;

use serde_json::{Map, Value};

use super::error::InvokeError;
use super::forward::{self, ForwardError, OutgoingHeaders, names};
use super::provider_pay::ChosenCredential;
use super::receipt::{RoutingReceipt, new_nonce};
use super::record::Write;
use super::relay::{self, Answer};
use super::resolve::{LookupContext, Offer, choose_providers, not_found};
use super::target::{self, FAILED_PROBE_TTL, KIND_TTL, PeerKind};
use super::{InvokeCall, InvokeResult, Invoker};
use crate::payments::{InvocationRecord, usd_to_micros};
use crate::state::AppState;

/// Bound on the well-known probe that tells a v2 hub from a v1 factory.
const KIND_PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// How the provider is paid for this call.
enum Funding {
    /// Nothing is charged by this hub; the buyer's own payment headers (if any) go upstream.
    Buyer,
    /// The buyer's channel holds `micros` under `hold_id`; the hub pays the provider.
    Channel {
        channel_id: String,
        hold_id: String,
        micros: i64,
    },
}

/// Runs steps 1–9 and renders the outcome.
pub(super) async fn run(state: &AppState, call: &InvokeCall) -> InvokeResult {
    match run_inner(state, call).await {
        Ok(result) => result,
        Err(e) => InvokeResult::from_error(e),
    }
}

async fn run_inner(state: &AppState, call: &InvokeCall) -> Result<InvokeResult, InvokeError> {
    let started = Instant::now();
    let invoker = &state.invoker;
    let request = &call.request;
    let store = &state.store;

    // 1. Resolve.
    let ctx = LookupContext {
        store,
        schemas: &invoker.schemas,
        routing_fee_bps: invoker.routing_fee_bps,
        generation: state.catalog_generation(),
    };
    let offers = invoker
        .catalog
        .offers(&ctx, &request.product_id, &request.capability_id)
        .await?;
    let providers = choose_providers(&offers, request.source_hub.as_deref());
    let Some(offer) = providers.first() else {
        return Err(not_found(
            store,
            &request.product_id,
            &request.capability_id,
            request.source_hub.as_deref(),
        )
        .await);
    };

    // 2. Validate the input.
    if let Some(schema) = &offer.schema {
        schema
            .check(&request.input)
            .map_err(|violations| InvokeError::InputInvalid { violations })?;
    }

    // 3. Price limit, compared in whole micro-dollars.
    let routed_micros = usd_to_micros(offer.routed_price_usd)?;
    if let Some(max) = request.max_price_usd
        && usd_to_micros(max)? < routed_micros
    {
        return Err(InvokeError::PriceLimitExceeded {
            routed_price_usd: offer.routed_price_usd,
            price_usd: offer.price_usd,
            max_price_usd: max,
        });
    }

    // 5. Hold.
    let funding = match &call.headers.channel_id {
        Some(channel_id) if routed_micros > 0 => {
            let hold_id = new_nonce();
            state
                .ledger
                .hold(
                    channel_id,
                    call.headers.channel_secret.as_deref(),
                    routed_micros,
                    &hold_id,
                )
                .await?;
            Funding::Channel {
                channel_id: channel_id.clone(),
                hold_id,
                micros: routed_micros,
            }
        }
        _ => Funding::Buyer,
    };

    // 6–8. Forward and settle; every path out of here settles the hold.
    let (result, success, charged_micros) =
        match forward_and_settle(state, call, offer, &funding, started).await {
            Ok(settled) => (settled.result, settled.success, settled.charged_micros),
            Err(e) => {
                if let Funding::Channel { hold_id, .. } = &funding {
                    release(state, hold_id).await;
                }
                (InvokeResult::from_error(e), false, 0)
            }
        };

    // 9. Record.
    let record = InvocationRecord {
        peer_url: offer.peer_url.clone(),
        origin: offer.origin.clone(),
        product_id: offer.product_id.clone(),
        capability_id: offer.capability_id.clone(),
        status: result.status,
        success,
        latency_ms: elapsed_ms(started),
        price_micros: charged_micros,
        channel_id: match &funding {
            Funding::Channel { channel_id, .. } => Some(channel_id.clone()),
            Funding::Buyer => None,
        },
        ts: crate::store::now_ms(),
    };
    invoker
        .recorder
        .send(&state.ledger, Write::Invocation(record));
    Ok(result)
}

/// What a forwarded call ended as.
struct Settled {
    result: InvokeResult,
    /// The capability ran and succeeded.
    success: bool,
    /// What was captured from the buyer's channel.
    charged_micros: i64,
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

fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

async fn release(state: &AppState, hold_id: &str) {
    if let Err(e) = state.ledger.release(hold_id).await {
        // The hold sweeper releases it when its lease ends; the buyer is never charged.
        tracing::error!(hold_id, error = %e, "cannot release a hold; the sweeper will");
    }
}

/// Forwards and turns the answer into the buyer's result. On `Err` the caller releases the
/// hold; on `Ok` it is settled already (captured on success, released otherwise).
async fn forward_and_settle(
    state: &AppState,
    call: &InvokeCall,
    offer: &Offer,
    funding: &Funding,
    started: Instant,
) -> Result<Settled, InvokeError> {
    let invoker = &state.invoker;
    let forwarder = invoker.forwarder()?;
    let kind = peer_kind(invoker, offer).await?;
    let target = target::target_for(offer, kind).map_err(InvokeError::Internal)?;
    let traceparent = forward::traceparent(call.headers.traceparent.as_deref());
    let request_id = forward::request_id(call.headers.request_id.as_deref());

    // A channel-funded call may retry once when a cached demo channel turned out spent.
    let mut attempts = 0;
    let answer = loop {
        attempts += 1;
        let mut headers = OutgoingHeaders::new(
            invoker.routing_fee_bps,
            state.public_url.as_str(),
            &traceparent,
            &request_id,
        );
        let credential: Option<ChosenCredential> = match funding {
            Funding::Channel { .. } => {
                let chosen = invoker
                    .pay
                    .credential_for(
                        forwarder,
                        &offer.peer_url,
                        offer.peer_operator,
                        offer.price_usd,
                    )
                    .await;
                if let Some(chosen) = &chosen {
                    chosen.credential.apply(&mut headers);
                }
                chosen
            }
            Funding::Buyer => {
                for (name, value) in [
                    (names::X_PAYMENT, &call.headers.x_payment),
                    (names::PAYMENT_SIGNATURE, &call.headers.payment_signature),
                    (names::X_PAYMENT_NONCE, &call.headers.x_payment_nonce),
                ] {
                    if let Some(value) = value {
                        headers.set(name, value);
                    }
                }
                None
            }
        };
        let body = target::body_for(&target.shape, offer, &call.request.input);
        let upstream = forwarder
            .post(&target.url, offer.peer_operator, headers, body)
            .await
            .map_err(|e| upstream_error(e, offer, invoker))?;
        let answer = relay::classify(upstream, offer, &call.request.input)?;
        match (&answer, funding, &credential) {
            (Answer::PaymentRequired(_), Funding::Channel { .. }, Some(chosen))
                if attempts < 2 && invoker.pay.refused(&offer.peer_url, chosen).await =>
            {
                continue;
            }
            (Answer::Success { .. }, _, Some(chosen)) => invoker.pay.spent(chosen, offer.price_usd),
            _ => {}
        }
        break (answer, credential);
    };
    let (answer, paid_with) = answer;

    // (plugin `after_invoke` hooks run here, issue 7.)
    let latency_ms = elapsed_ms(started);
    match answer {
        Answer::PaymentRequired(upstream) => match funding {
            Funding::Channel { .. } => Err(InvokeError::ProviderPaymentFailed {
                peer: offer.peer_url.clone(),
                detail: match paid_with {
                    Some(_) => "the provider answered 402 to this hub's credential".into(),
                    None => "the provider answered 402 and this hub has no credential for it \
                             (configure AIMARKET_PEER_CREDENTIALS)"
                        .into(),
                },
            }),
            Funding::Buyer => Ok(Settled::unbilled(relay::payment_required(
                upstream,
                invoker.routing_fee_bps,
            ))),
        },
        Answer::ClientError(upstream) => {
            if let Funding::Channel { hold_id, .. } = funding {
                release(state, hold_id).await;
            }
            Ok(Settled::unbilled(relay::client_error(upstream)))
        }
        Answer::Failed { body } => {
            if let Funding::Channel { hold_id, .. } = funding {
                release(state, hold_id).await;
            }
            Ok(Settled::unbilled(relay::json_ok(&failed_body(
                body, offer, latency_ms,
            ))))
        }
        Answer::Success {
            mut body,
            result,
            signature,
        } => {
            let (charged_micros, nonce) = match funding {
                Funding::Channel {
                    hold_id, micros, ..
                } => (*micros, hold_id.clone()),
                Funding::Buyer => (0, new_nonce()),
            };
            let charged_usd = crate::payments::micros_to_usd(charged_micros);
            let routing_receipt = RoutingReceipt {
                nonce: &nonce,
                product_id: &offer.product_id,
                capability_id: &offer.capability_id,
                price_usd: charged_usd,
                list_price_usd: offer.price_usd,
                routing_fee_bps: invoker.routing_fee_bps,
                latency_ms,
                source_hub: &offer.origin,
                routing_hub: state.public_url.as_str(),
            }
            .sign(&state.signing_key)
            .map_err(|e| InvokeError::Internal(format!("cannot sign the routing receipt: {e}")))?;
            match funding {
                Funding::Channel { hold_id, .. } => {
                    state.ledger.capture(hold_id, &routing_receipt).await?;
                }
                Funding::Buyer => invoker
                    .recorder
                    .send(&state.ledger, Write::Receipt(routing_receipt.clone())),
            }
            let price_usd = match funding {
                Funding::Channel { .. } => charged_usd,
                Funding::Buyer if call.headers.pays_provider() => body
                    .get("receipt")
                    .and_then(|r| r.get("price_usd"))
                    .and_then(Value::as_f64)
                    .unwrap_or(offer.price_usd),
                Funding::Buyer => 0.0,
            };
            let mut out = Map::new();
            out.insert("success".into(), Value::Bool(true));
            out.insert("result".into(), result);
            if let Some(receipt) = body.remove("receipt").filter(Value::is_object) {
                out.insert("receipt".into(), receipt);
            }
            if let Some(next) = body.remove("continuation").filter(Value::is_object) {
                out.insert("continuation".into(), next);
            }
            out.insert("routing_receipt".into(), routing_receipt);
            out.insert("price_usd".into(), price_usd.into());
            out.insert("list_price_usd".into(), offer.price_usd.into());
            out.insert("routed_price_usd".into(), offer.routed_price_usd.into());
            out.insert("routing_fee_bps".into(), invoker.routing_fee_bps.into());
            out.insert("latency_ms".into(), latency_ms.into());
            out.insert("source_hub".into(), offer.origin.clone().into());
            out.insert("routed_via".into(), state.public_url.as_str().into());
            out.insert("provider_signature".into(), signature.as_str().into());
            out.insert("protocol_version".into(), "v2".into());
            Ok(Settled {
                result: relay::json_ok(&Value::Object(out)),
                success: true,
                charged_micros,
            })
        }
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

fn upstream_error(e: ForwardError, offer: &Offer, invoker: &Invoker) -> InvokeError {
    match e {
        ForwardError::Timeout => InvokeError::ProviderTimeout {
            peer: offer.peer_url.clone(),
            timeout_s: invoker.timeout.as_secs(),
        },
        other => InvokeError::ProviderError {
            peer: offer.peer_url.clone(),
            detail: other.to_string(),
        },
    }
}

/// The kind of the called peer, from the cache or a well-known probe (only needed when the
/// offer has neither a relay hub nor its own endpoint).
async fn peer_kind(invoker: &Invoker, offer: &Offer) -> Result<PeerKind, InvokeError> {
    if !target::needs_kind(offer) {
        return Ok(PeerKind::V2Hub);
    }
    if let Some(kind) = invoker.kinds.get(&offer.peer_url) {
        return Ok(kind);
    }
    let forwarder = invoker.forwarder()?;
    let probe = match url::Url::parse(&offer.peer_well_known_url) {
        Ok(url) => forwarder
            .get_json(&url, offer.peer_operator, KIND_PROBE_TIMEOUT)
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let (kind, ttl) = match probe {
        Ok(doc) => (PeerKind::from_well_known(&doc), KIND_TTL),
        Err(e) => {
            tracing::warn!(peer = %offer.peer_url, error = %e,
                "cannot read the peer's well-known; invoking it as a v1 factory");
            (PeerKind::V1Factory, FAILED_PROBE_TTL)
        }
    };
    invoker.kinds.put(&offer.peer_url, kind, ttl);
    Ok(kind)
}
