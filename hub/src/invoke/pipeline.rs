//! The steps of one invoke, in order:
//!
//! 1. resolve the offers, [`choose_providers`], then the plugins' `route` hooks;
//! 2. validate `input` against the chosen capability's schema (before any charge);
//! 3. compare `max_price_usd` with the routed price;
//! 4. plugin `before_invoke` hooks (after validation, before any charge: a block is 403),
//!    then the provider limits (an in-flight slot, the back-off, the provider rate; a
//!    refusal is 429 and charges nothing);
//! 5. hold the routed price on the buyer's channel, if the call is channel-funded;
//! 6. forward with the hub's own credential (channel-funded) or the buyer's payment headers;
//!    on a connect failure, timeout or 5xx the failover rule may retry the next routed
//!    provider once (`before_invoke` runs again for it);
//! 7. plugin `after_invoke` hooks on the classified answer, before settlement (a block
//!    releases the hold and answers 403 with a signed v2 rejection receipt);
//! 8. settle ([`settle`]): capture with the signed routing receipt (plugin receipt
//!    extensions under `plugin_extensions`) on success, release on anything else; an x402
//!    authorization to the hub, verified at step 5 instead of a hold, settles on-chain only
//!    on success;
//! 9. record the outcome off the hot path.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aimarket_plugins::UpstreamPayment;
use serde_json::Value;
use tracing::Instrument as _;

use super::error::InvokeError;
use super::failover::{Attempt, Run};
use super::forward::{self, ForwardError};
use super::hooks::{self, PluginRun};
use super::hub_payment::HubPaymentOption;
use super::rails::{self, Rail};
use super::receipt::new_nonce;
use super::record::Write;
use super::resolve::{LookupContext, Offer, choose_providers, not_found};
use super::target::{self, FAILED_PROBE_TTL, KIND_TTL, PeerKind, Target};
use super::{InvokeCall, InvokeResult, Invoker};
use crate::metrics::{InvokeOutcome, LedgerOp};
use crate::payments::x402::ExactPayment;
use crate::payments::{InvocationRecord, PaymentError, usd_to_micros};
use crate::settings::SellerDirectFee;
use crate::state::AppState;
use crate::telemetry::span;

pub(super) use super::settle::{Sent, Settled, elapsed_ms, release, settle};

/// Bound on the well-known probe that tells a v2 hub from a v1 factory.
const KIND_PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The trace headers of one invoke (the same for every attempt).
pub(super) struct Trace {
    /// The upstream `traceparent`.
    pub traceparent: String,
    /// The upstream `X-Request-Id`.
    pub request_id: String,
}

/// How the provider is paid for this call.
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
    /// The buyer's channel holds `micros` under `hold_id`; the hub pays the provider.
    Channel {
        /// The buyer's channel.
        channel_id: String,
        /// The hold (and the receipt nonce).
        hold_id: String,
        /// The held amount.
        micros: i64,
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
            Self::Channel { micros, .. } | Self::X402 { micros, .. } => Some(*micros),
            Self::Buyer => None,
        }
    }
}

/// What one invoke measured for the metrics: time spent waiting on providers, whether one
/// answered, whether the answer was a success, and the rail. Atomics, so the borrowed
/// reference keeps the invoke future `Send`.
#[derive(Debug, Default)]
pub(super) struct Timing {
    provider_micros: AtomicU64,
    reached: AtomicBool,
    success: AtomicBool,
    rail: OnceLock<&'static str>,
}

impl Timing {
    /// Adds one provider call's duration.
    pub(super) fn provider_call(&self, elapsed: Duration) {
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.provider_micros.fetch_add(micros, Ordering::Relaxed);
        self.reached.store(true, Ordering::Relaxed);
    }

    fn provider(&self) -> Duration {
        Duration::from_micros(self.provider_micros.load(Ordering::Relaxed))
    }
}

/// Times a ledger write into `aimarket_ledger_operation_duration_seconds` (and counts store
/// failures), inside a span named after it.
pub(super) async fn timed_ledger<T>(
    state: &AppState,
    op: LedgerOp,
    write: impl std::future::Future<Output = Result<T, PaymentError>>,
) -> Result<T, PaymentError> {
    let started = Instant::now();
    let span = span!("ledger.write", operation = op.as_str());
    let result = write.instrument(span).await;
    let store_error = matches!(&result, Err(PaymentError::Store(_)));
    state
        .metrics
        .observe_ledger(op, started.elapsed(), store_error);
    result
}

/// Runs steps 1–9 and renders the outcome. Every 402 (the provider's, relayed, or this
/// hub's own) leaves with this hub's payment option in its headers.
pub(super) async fn run(state: &AppState, call: &InvokeCall) -> InvokeResult {
    let started = Instant::now();
    let span = span!(
        "invoke.route",
        capability = call.request.capability_id.as_str(),
        outcome = tracing::field::Empty,
        rail = tracing::field::Empty,
    );
    // The routed offer; the option itself is only built for the 402s that carry it, so a
    // call that succeeds allocates none of it.
    let mut routed = None;
    let timing = Timing::default();
    let mut result = match run_inner(state, call, &mut routed, &timing)
        .instrument(span.clone())
        .await
    {
        Ok(result) => result,
        Err(e) => InvokeResult::from_error(e),
    };
    if result.status == 402
        && let Some(offer) = &routed
    {
        hub_option(state, offer).attach(&mut result);
    }
    let outcome = InvokeOutcome::classify(
        result.status,
        timing.success.load(Ordering::Relaxed),
        timing.reached.load(Ordering::Relaxed),
    );
    let rail = timing.rail.get().copied().unwrap_or("none");
    state
        .metrics
        .observe_invoke(outcome, rail, started.elapsed(), timing.provider());
    span.record("outcome", outcome.as_str());
    span.record("rail", rail);
    result
}

/// This hub's payment option for a call routed to `offer`.
fn hub_option(state: &AppState, offer: &Offer) -> HubPaymentOption {
    HubPaymentOption::for_offer(
        &state.invoker,
        &state.public_url,
        state.ledger.payments_available(),
        offer,
    )
    .with_ledger(&state.ledger)
}

async fn run_inner(
    state: &AppState,
    call: &InvokeCall,
    routed: &mut Option<std::sync::Arc<Offer>>,
    timing: &Timing,
) -> Result<InvokeResult, InvokeError> {
    let started = Instant::now();
    let invoker = &state.invoker;
    let store = &state.store;

    // 1. Resolve (naming the product when the buyer left it out), then route.
    let named;
    let call = match &call.request.product_id {
        Some(_) => call,
        None => {
            let mut with_product = call.clone();
            with_product.request.product_id = Some(
                resolve_product(
                    store,
                    &call.request.capability_id,
                    call.request.source_hub.as_deref(),
                )
                .await?,
            );
            named = with_product;
            &named
        }
    };
    let request = &call.request;
    let product_id = request.product_id.as_deref().unwrap_or_default();
    let ctx = LookupContext {
        store,
        schemas: &invoker.schemas,
        routing_fee_bps: invoker.routing_fee_bps,
        generation: state.catalog_generation(),
    };
    let offers = invoker
        .catalog
        .offers(&ctx, product_id, &request.capability_id)
        .instrument(span!("invoke.resolve"))
        .await?;
    let providers = choose_providers(&offers, request.source_hub.as_deref());
    if providers.is_empty() {
        return Err(not_found(
            store,
            product_id,
            &request.capability_id,
            request.source_hub.as_deref(),
        )
        .await);
    }
    // With traces exported, the upstream trace context is this invoke's span (its trace id
    // is the buyer's when the buyer sent one); otherwise a fresh parent id under the
    // buyer's trace id.
    let exported = crate::telemetry::otel::current_context_headers();
    let traceparent = match exported.iter().find(|(name, _)| *name == "traceparent") {
        Some((_, value)) => value.clone(),
        None => forward::traceparent(call.headers.traceparent.as_deref()),
    };
    let trace = Trace {
        traceparent,
        request_id: forward::request_id(call.headers.request_id.as_deref()),
    };
    let mut plugins = PluginRun::new(
        &state.plugins,
        call,
        &trace.request_id,
        state.public_url.as_str(),
    );
    let providers = plugins
        .route(call, providers, |o| known_target_url(invoker, o))
        .await?;
    let offer = &providers[0];
    *routed = Some(offer.clone());

    // 2. Validate the input.
    span!("invoke.validate").in_scope(|| check_input(offer, &request.input))?;

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

    // 4. Plugins before the call: a block charges nothing.
    let hub_wallet = state.ledger.payout().map(|p| p.wallet().address());
    let rail = Rail::choose(&call.headers, routed_micros, hub_wallet);
    let _ = timing.rail.set(rail.as_str());
    let held_micros = held_micros(invoker, rail, offer, routed_micros)?;
    if held_micros > 0 && call.headers.channel_id.is_none() {
        return Err(InvokeError::RoutingFeeRequired {
            fee_usd: crate::payments::micros_to_usd(held_micros),
        });
    }
    let payment = upstream_payment(rail);
    let target = resolve_target(invoker, offer).await?;
    let view = plugins
        .wants_view()
        .then(|| hooks::invoke_view(call, offer, target.url.as_str(), 0, payment));
    plugins.before_invoke(view.as_ref()).await?;
    // The slot is held until the provider's answer is read (it lives in the attempt).
    let permit = state
        .limits
        .admit_provider(&state.shared, &offer.peer_url)
        .await?;

    // 5. Hold: the routed price (hub pays), or the routing fee on a seller-direct call when
    // the operator charges it; or verify the buyer's x402 authorization to this hub.
    let funding = match (&call.headers.channel_id, held_micros) {
        _ if rail == Rail::HubX402 => super::x402_rail::verify(state, call, routed_micros).await?,
        (Some(channel_id), micros) if micros > 0 => {
            let (hold_id, escrow) =
                timed_ledger(state, LedgerOp::Hold, hold(state, call, channel_id, micros))
                    .await
                    .map_err(|e| InvokeError::channel_refused(e, &hub_option(state, offer)))?;
            Funding::Channel {
                channel_id: channel_id.clone(),
                hold_id,
                micros,
                escrow,
            }
        }
        _ => Funding::Buyer,
    };

    // 6–8. Forward (with failover) and settle; every path out of here settles the hold.
    let mut run = Run {
        state,
        call,
        rail,
        funding: &funding,
        payment,
        trace: &trace,
        buyer_id: rails::buyer_id(&state.signing_key, &call.client),
        started,
        plugins,
        timing,
    };
    let first = Attempt {
        offer: offer.clone(),
        target,
        view,
        index: 0,
        _permit: permit,
    };
    let (used, outcome) = run.forward_with_failover(&providers, first).await;
    let (result, success, charged_micros) = match outcome {
        Ok(settled) => (settled.result, settled.success, settled.charged_micros),
        Err(e) => {
            if let Funding::Channel { hold_id, .. } = &funding {
                release(state, hold_id).await;
            }
            (InvokeResult::from_error(e), false, 0)
        }
    };

    timing.success.store(success, Ordering::Relaxed);
    // 9. Record.
    record(
        state,
        &used,
        &funding,
        result.status,
        success,
        charged_micros,
        started,
    );
    Ok(result)
}

/// Step 5 on a channel: the hold, and whether the channel is an escrow channel. On an escrow
/// channel the buyer's `payment_authorization` is checked first (every refusal is 402
/// `payment_authorization_required`) and the hold id is its receipt id; a custodial channel
/// ignores one.
async fn hold(
    state: &AppState,
    call: &InvokeCall,
    channel_id: &str,
    micros: i64,
) -> Result<(String, bool), crate::payments::PaymentError> {
    let secret = call.headers.channel_secret.as_deref();
    if let Some(authorization) = &call.request.payment_authorization
        && state.ledger.escrow().is_some()
    {
        let channel = state.ledger.get_channel(channel_id).await?;
        if channel.escrow_id.is_some() {
            // The channel's secret (optional on escrow channels) is still checked when sent.
            state
                .ledger
                .authenticate_channel(channel_id, secret)
                .await?;
            let hold_id = state
                .ledger
                .hold_escrow(&channel, Some(authorization), micros)
                .await?;
            return Ok((hold_id, true));
        }
    }
    let hold_id = new_nonce();
    // An escrow channel without an authorization is refused here (402).
    state
        .ledger
        .hold(channel_id, secret, micros, &hold_id)
        .await?;
    Ok((hold_id, false))
}

/// Checks `input` against the offer's schema (an offer whose schema does not compile
/// refuses every input: [`super::validate::check_offer`]).
pub(super) fn check_input(offer: &Offer, input: &Value) -> Result<(), InvokeError> {
    super::validate::check_offer(offer, input)
}

/// What payment credential goes upstream (it decides whether a failed attempt may be
/// retried elsewhere).
fn upstream_payment(rail: Rail) -> UpstreamPayment {
    match rail {
        Rail::HubPays | Rail::HubX402 => UpstreamPayment::HubCredential,
        Rail::SellerDirect => UpstreamPayment::BuyerCredential,
        Rail::Unpaid => UpstreamPayment::None,
    }
}

/// What the buyer's hub channel holds for this call: the routed price when the hub pays,
/// the routing fee on a seller-direct call when the operator charges it (refused with 402
/// when the buyer sent no channel), nothing otherwise.
fn held_micros(
    invoker: &Invoker,
    rail: Rail,
    offer: &Offer,
    routed_micros: i64,
) -> Result<i64, InvokeError> {
    match rail {
        Rail::HubPays => Ok(routed_micros),
        // Paid by the authorization, checked for the routed price before the call.
        Rail::HubX402 | Rail::Unpaid => Ok(0),
        Rail::SellerDirect => {
            if invoker.rails.seller_direct_fee == SellerDirectFee::Waived {
                return Ok(0);
            }
            let fee = routed_micros - usd_to_micros(offer.price_usd)?;
            Ok(fee.max(0))
        }
    }
}

/// The product of a capability id named without one: the only product listing it (from
/// `source_hub` when given); several are 409 `ambiguous_capability` listing them.
async fn resolve_product(
    store: &crate::store::Store,
    capability_id: &str,
    source_hub: Option<&str>,
) -> Result<String, InvokeError> {
    /// Candidates listed in a 409 (one more is read to know there are more).
    const MAX_CANDIDATES: u32 = 20;
    let mut listed = store
        .products_of_capability(capability_id, MAX_CANDIDATES + 1)
        .await?;
    listed.retain(|(_, origin)| source_hub.is_none_or(|hub| hub == origin));
    let mut products: Vec<&str> = listed.iter().map(|(p, _)| p.as_str()).collect();
    products.dedup();
    match products.as_slice() {
        [] => Err(not_found(store, "", capability_id, source_hub).await),
        [only] => Ok((*only).to_owned()),
        _ => Err(InvokeError::AmbiguousCapability {
            capability_id: capability_id.to_owned(),
            candidates: listed.into_iter().take(MAX_CANDIDATES as usize).collect(),
        }),
    }
}

/// The target of `offer` (probing the peer's kind when needed).
pub(super) async fn resolve_target(
    invoker: &Invoker,
    offer: &Offer,
) -> Result<Target, InvokeError> {
    let kind = peer_kind(invoker, offer).await?;
    target::target_for(offer, kind).map_err(InvokeError::Internal)
}

/// The URL the hub would post to as far as it knows without probing (for `route` views).
fn known_target_url(invoker: &Invoker, offer: &Offer) -> String {
    let kind = if target::needs_kind(offer) {
        invoker
            .kinds
            .get(&offer.peer_url)
            .unwrap_or(PeerKind::V2Hub)
    } else {
        PeerKind::V2Hub
    };
    target::target_for(offer, kind)
        .map(|t| t.url.to_string())
        .unwrap_or_else(|_| offer.peer_url.clone())
}

/// Queues the invocation record of a call to `offer`.
pub(super) fn record(
    state: &AppState,
    offer: &Offer,
    funding: &Funding,
    status: u16,
    success: bool,
    charged_micros: i64,
    started: Instant,
) {
    let record = InvocationRecord {
        peer_url: offer.peer_url.clone(),
        origin: offer.origin.clone(),
        product_id: offer.product_id.clone(),
        capability_id: offer.capability_id.clone(),
        status,
        success,
        latency_ms: elapsed_ms(started),
        price_micros: charged_micros,
        channel_id: match funding {
            Funding::Channel { channel_id, .. } => Some(channel_id.clone()),
            Funding::X402 { .. } | Funding::Buyer => None,
        },
        ts: crate::store::now_ms(),
    };
    state
        .invoker
        .recorder
        .send(&state.ledger, Write::Invocation(record));
}

pub(super) fn upstream_error(e: ForwardError, offer: &Offer, invoker: &Invoker) -> InvokeError {
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
pub(super) async fn peer_kind(invoker: &Invoker, offer: &Offer) -> Result<PeerKind, InvokeError> {
    if !target::needs_kind(offer) {
        return Ok(PeerKind::V2Hub);
    }
    if let Some(kind) = invoker.kinds.get(&offer.peer_url) {
        return Ok(kind);
    }
    let forwarder = invoker.forwarder()?;
    let probe = match url::Url::parse(&offer.peer_well_known_url) {
        Ok(url) => forwarder
            .get_json(&url, offer.operator_origin(), KIND_PROBE_TIMEOUT)
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
