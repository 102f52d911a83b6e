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
//! 8. settle (`settle`): capture with the signed routing receipt (plugin receipt
//!    extensions under `plugin_extensions`) on success, release on anything else; an x402
//!    authorization to the hub, verified at step 5 instead of a hold, settles on-chain only
//!    on success;
//! 9. record the outcome off the hot path.
//!
//! Steps 1–5 live here; the run of steps 6–8 (`failover::Run`) owns the call's funding, so
//! the hold taken at step 5 is settled exactly once, by the run. The dependency goes one way:
//! this module uses the run, the run uses `settle`, `target` and `record`, and none of them
//! reaches back here.

use std::time::Instant;

use aimarket_plugins::UpstreamPayment;
use tracing::Instrument as _;

use super::InvokeDeps;
use super::error::InvokeError;
use super::failover::{Attempt, Run};
use super::forward::{self, Trace};
use super::hooks::{self, PluginRun};
use super::hub_payment::HubPaymentOption;
use super::rails::{self, Rail};
use super::receipt::new_nonce;
use super::record;
use super::resolve::{LookupContext, Offer, choose_providers, not_found};
use super::settle::Funding;
use super::target::{known_target_url, resolve_target};
use super::timing::{Timing, timed_ledger};
use super::{InvokeCall, InvokeResult, Invoker};
use crate::metrics::{InvokeOutcome, LedgerOp};
use crate::payments::{Ledger, PaymentError, usd_to_micros};
use crate::settings::SellerDirectFee;
use crate::telemetry::span;

/// Runs steps 1–9 and renders the outcome. Every 402 (the provider's, relayed, or this
/// hub's own) leaves with this hub's payment option in its headers.
pub(super) async fn run(deps: &InvokeDeps<'_>, call: &InvokeCall) -> InvokeResult {
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
    let mut result = match run_inner(deps, call, &mut routed, &timing)
        .instrument(span.clone())
        .await
    {
        Ok(result) => result,
        Err(e) => InvokeResult::from_error(e),
    };
    if result.status == 402
        && let Some(offer) = &routed
    {
        hub_option(deps, offer).attach(&mut result);
    }
    let outcome = InvokeOutcome::classify(result.status, timing.success(), timing.reached());
    let rail = timing.rail();
    deps.metrics
        .observe_invoke(outcome, rail, started.elapsed(), timing.provider());
    span.record("outcome", outcome.as_str());
    span.record("rail", rail);
    result
}

/// This hub's payment option for a call routed to `offer`.
fn hub_option(deps: &InvokeDeps<'_>, offer: &Offer) -> HubPaymentOption {
    HubPaymentOption::for_offer(
        deps.invoker,
        deps.public_url,
        deps.ledger.payments_available(),
        offer,
    )
    .with_ledger(deps.ledger)
}

async fn run_inner(
    deps: &InvokeDeps<'_>,
    call: &InvokeCall,
    routed: &mut Option<std::sync::Arc<Offer>>,
    timing: &Timing,
) -> Result<InvokeResult, InvokeError> {
    let started = Instant::now();
    let invoker = deps.invoker;
    let store = deps.store;

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
        generation: deps.feed.generation(),
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
        deps.plugins,
        call,
        &trace.request_id,
        deps.public_url.as_str(),
    );
    let providers = plugins
        .route(call, providers, |o| known_target_url(invoker, o))
        .await?;
    let offer = &providers[0];
    *routed = Some(offer.clone());

    // 2. Validate the input.
    span!("invoke.validate").in_scope(|| offer.check_input(&request.input))?;

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
    let hub_wallet = deps.ledger.payout().map(|p| p.wallet().address());
    let rail = Rail::choose(&call.headers, routed_micros, hub_wallet);
    timing.set_rail(rail.as_str());
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
    let permit = deps
        .limits
        .admit_provider(deps.shared, &offer.peer_url)
        .await?;

    // 5. Hold: the routed price (hub pays), or the routing fee on a seller-direct call when
    // the operator charges it; or verify the buyer's x402 authorization to this hub.
    let funding = match (&call.headers.channel_id, held_micros) {
        _ if rail == Rail::HubX402 => {
            super::x402_rail::verify(deps.ledger, call, routed_micros).await?
        }
        (Some(channel_id), micros) if micros > 0 => timed_ledger(
            deps.metrics,
            LedgerOp::Hold,
            hold(deps.ledger, call, channel_id, micros),
        )
        .await
        .map_err(|e| InvokeError::channel_refused(e, &hub_option(deps, offer)))?,
        _ => Funding::Buyer,
    };
    let channel_id = funding.channel_id().map(str::to_owned);

    // 6–8. Forward (with failover) and settle: the run owns the funding, and every way out
    // of it captures or releases the hold.
    let run = Run {
        deps,
        call,
        rail,
        funding,
        payment,
        trace: &trace,
        buyer_id: rails::buyer_id(deps.signing_key, &call.client),
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
    let (used, settled) = run.settle_after_failover(&providers, first).await;
    timing.set_success(settled.success);
    // 9. Record.
    record::invocation(
        deps,
        &used,
        channel_id,
        settled.result.status,
        settled.success,
        settled.charged_micros,
        started,
    );
    Ok(settled.result)
}

/// Step 5 on a channel: the hold (on an escrow channel, with the depositor's authorization).
/// On an escrow channel the buyer's `payment_authorization` is checked first (every refusal
/// is 402 `payment_authorization_required`) and the hold id is its receipt id; a custodial
/// channel ignores one.
async fn hold(
    ledger: &Ledger,
    call: &InvokeCall,
    channel_id: &str,
    micros: i64,
) -> Result<Funding, PaymentError> {
    let secret = call.headers.channel_secret.as_deref();
    if let Some(authorization) = &call.request.payment_authorization
        && ledger.escrow().is_some()
    {
        let channel = ledger.get_channel(channel_id).await?;
        if channel.escrow_id.is_some() {
            // The channel's secret (optional on escrow channels) is still checked when sent.
            ledger.authenticate_channel(channel_id, secret).await?;
            let hold = ledger
                .hold_escrow(&channel, Some(authorization), micros)
                .await?;
            return Ok(Funding::Channel { hold, escrow: true });
        }
    }
    // An escrow channel without an authorization is refused here (402).
    let hold = ledger
        .hold(channel_id, secret, micros, &new_nonce())
        .await?;
    Ok(Funding::Channel {
        hold,
        escrow: false,
    })
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
