//! Steps 6–8 of an invoke: one upstream attempt, the `after_invoke` hooks on its answer,
//! and — when the attempt failed with a connect error, a timeout or a 5xx and the chain's
//! [`aimarket_plugins::RetryPolicy`] allows it — one retry on the next routed provider
//! (after `before_invoke` ran again for it); then the settlement of the final outcome.
//!
//! The [`Run`] owns the call's funding: [`Run::settle_after_failover`] consumes it, so the
//! hold is captured or released exactly once, whatever the outcome.

use std::sync::Arc;
use std::time::Instant;

use aimarket_plugins::{AttemptFailure, InvokeView, Refusal, RefusalKind, UpstreamPayment};
use serde_json::Value;
use tracing::Instrument as _;

use super::InvokeDeps;
use super::error::InvokeError;
use super::forward::{ForwardError, OutgoingHeaders, Trace, names};
use super::hooks::{self, PluginRun};
use super::provider_pay::ChosenCredential;
use super::rails::{self, Rail};
use super::receipt::new_nonce;
use super::record;
use super::relay::{self, Answer};
use super::resolve::Offer;
use super::settle::{Funding, Sent, Settled, settle};
use super::target::{self, Target, resolve_target};
use super::timing::{Timing, elapsed_ms};
use super::{InvokeCall, InvokeResult, Invoker};
use crate::limits::ProviderPermit;
use crate::payments::{ReleaseReason, usd_to_micros};
use crate::telemetry::span;

/// One upstream attempt: the provider, where it is called, and the plugins' view of it.
pub(super) struct Attempt {
    pub(super) offer: Arc<Offer>,
    pub(super) target: Target,
    pub(super) view: Option<InvokeView>,
    pub(super) index: u32,
    /// The provider's in-flight slot, freed when the attempt ends.
    pub(super) _permit: ProviderPermit,
}

/// What a final attempt leaves to settle.
pub(super) enum Outcome {
    /// A classified provider answer, with what went upstream and the plugins' receipt
    /// extensions for a success.
    Answer {
        answer: Answer,
        sent: Sent,
        extensions: Option<Value>,
    },
    /// An `after_invoke` plugin blocked the answer.
    Blocked(Refusal),
}

/// How an attempt ended.
pub(super) enum Tried {
    /// Final (an answer to settle, or an error that is not retried).
    Done(Result<Outcome, InvokeError>),
    /// No usable answer; the failover rule decides whether the next provider is tried.
    Failed {
        failure: AttemptFailure,
        error: InvokeError,
    },
}

/// The state of one invoke between the hold and the answer.
pub(super) struct Run<'a> {
    pub(super) deps: &'a InvokeDeps<'a>,
    pub(super) call: &'a InvokeCall,
    pub(super) rail: Rail,
    /// The call's funding (the hold, if any), settled when the run ends.
    pub(super) funding: Funding,
    pub(super) payment: UpstreamPayment,
    pub(super) trace: &'a Trace,
    /// The buyer's opaque id toward providers (`X-AIMarket-Buyer`).
    pub(super) buyer_id: String,
    pub(super) started: Instant,
    pub(super) plugins: PluginRun<'a>,
    /// Provider time and outcome, for the metrics.
    pub(super) timing: &'a Timing,
}

impl Run<'_> {
    /// Steps 6–8: forwards with failover, then settles the funding with the final outcome
    /// (a hold is captured on a billed success and released on anything else). Returns the
    /// provider the outcome belongs to.
    pub(super) async fn settle_after_failover(
        mut self,
        providers: &[Arc<Offer>],
        first: Attempt,
    ) -> (Arc<Offer>, Settled) {
        let (offer, outcome) = self.forward_with_failover(providers, first).await;
        let deps = self.deps;
        let settled = match outcome {
            Ok(Outcome::Answer {
                answer,
                sent,
                extensions,
            }) => {
                settle(
                    deps,
                    &offer,
                    self.funding,
                    answer,
                    sent,
                    extensions,
                    self.started,
                )
                .instrument(span!("invoke.settle"))
                .await
            }
            Ok(Outcome::Blocked(refusal)) => {
                let funding = std::mem::replace(&mut self.funding, Funding::Buyer);
                Err(self.reject(&offer, refusal, funding).await)
            }
            Err(e) => {
                self.funding
                    .release(deps.metrics, ReleaseReason::CallFailed)
                    .await;
                Err(e)
            }
        };
        let settled = settled.unwrap_or_else(|e| Settled::unbilled(InvokeResult::from_error(e)));
        (offer, settled)
    }

    /// Tries `first`, then, when the failover rule allows it, the next routed provider once.
    /// Returns the provider the outcome belongs to.
    async fn forward_with_failover(
        &mut self,
        providers: &[Arc<Offer>],
        first: Attempt,
    ) -> (Arc<Offer>, Result<Outcome, InvokeError>) {
        let policy = self.deps.plugins.retry_policy();
        let mut attempt = first;
        loop {
            let (failure, error) = match self.try_once(&attempt).await {
                Tried::Done(outcome) => return (attempt.offer, outcome),
                Tried::Failed { failure, error } => (failure, error),
            };
            let next_index = attempt.index as usize + 1;
            let next = providers
                .get(next_index)
                .filter(|next| self.can_fail_over(next));
            let retry = policy.should_retry(attempt.index, failure, self.payment, next.is_some());
            let Some(next) = next.filter(|_| retry) else {
                return (attempt.offer, Err(error));
            };
            tracing::info!(
                failed = %attempt.offer.peer_url, next = %next.peer_url, ?failure,
                "invoke failed over to the next provider"
            );
            // The failed provider's call counts against it.
            record::invocation(
                self.deps,
                &attempt.offer,
                None,
                InvokeResult::from_error(error).status,
                false,
                0,
                self.started,
            );
            let target = match resolve_target(self.deps.invoker, next).await {
                Ok(target) => target,
                Err(e) => return (next.clone(), Err(e)),
            };
            let index = attempt.index + 1;
            let view = self.plugins.wants_view().then(|| {
                hooks::invoke_view(self.call, next, target.url.as_str(), index, self.payment)
            });
            if let Err(e) = self.plugins.before_invoke(view.as_ref()).await {
                return (next.clone(), Err(e));
            }
            let permit = match self
                .deps
                .limits
                .admit_provider(self.deps.shared, &next.peer_url)
                .await
            {
                Ok(permit) => permit,
                Err(refusal) => return (next.clone(), Err(refusal.into())),
            };
            attempt = Attempt {
                offer: next.clone(),
                target,
                view,
                index,
                _permit: permit,
            };
        }
    }

    /// Whether `next` may take over the call: its schema accepts the input, and it costs the
    /// buyer what was agreed (the same held amount for a channel-funded call, within
    /// `max_price_usd` otherwise).
    fn can_fail_over(&self, next: &Offer) -> bool {
        if next.check_input(&self.call.request.input).is_err() {
            return false;
        }
        let Ok(micros) = usd_to_micros(next.routed_price_usd) else {
            return false;
        };
        match self.funding.hub_charged_micros() {
            Some(held) => micros == held,
            None => self
                .call
                .request
                .max_price_usd
                .is_none_or(|max| usd_to_micros(max).is_ok_and(|m| m >= micros)),
        }
    }

    /// One upstream call and what it becomes for the buyer.
    async fn try_once(&mut self, attempt: &Attempt) -> Tried {
        let (deps, call, funding) = (self.deps, self.call, &self.funding);
        let invoker = deps.invoker;
        let offer = &*attempt.offer;
        let forwarder = match invoker.forwarder() {
            Ok(f) => f,
            Err(e) => return Tried::Done(Err(e)),
        };
        let rail = self.rail;
        let target_url = attempt.target.url.as_str();
        let signs = invoker
            .rails
            .signs(rail, offer.price_usd == 0.0, &offer.peer_url, target_url);
        // A hub-paid call may retry once when a cached demo channel turned out spent.
        let mut tries = 0;
        // The hub wallet's x402 authorization for a provider that asked for one.
        let mut x402_payment: Option<String> = None;
        let (upstream, paid_with, signed) = loop {
            tries += 1;
            let mut headers = OutgoingHeaders::new(
                invoker.routing_fee_bps,
                deps.public_url.as_str(),
                &self.trace.traceparent,
                &self.trace.request_id,
            );
            headers.set(names::X_AIMARKET_BUYER, &self.buyer_id);
            let credential: Option<ChosenCredential> = match rail {
                Rail::HubPays | Rail::HubX402 => {
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
                    if let Some(payment) = &x402_payment {
                        headers.set(names::X_PAYMENT, payment);
                    }
                    if let Some(micros) = funding.hub_charged_micros() {
                        headers.set(
                            names::X_AIMARKET_HUB_CHARGED,
                            &format!("{:.6}", crate::payments::micros_to_usd(micros)),
                        );
                    }
                    chosen
                }
                Rail::SellerDirect => {
                    rails::apply_buyer_payment(&mut headers, &call.headers);
                    None
                }
                Rail::Unpaid => None,
            };
            let signed = signs
                && rails::apply_signature(
                    &mut headers,
                    deps.signing_key,
                    deps.public_url.as_str(),
                    target_url,
                    &offer.capability_id,
                    &call.request.input,
                );
            let body = target::body_for(&attempt.target.shape, offer, &call.request.input);
            // The provider call is a client span; the provider sees it as its parent.
            let provider_span = span!(
                "invoke.provider",
                otel.kind = "client",
                upstream = %offer.peer_url,
                url.full = %attempt.target.url,
                attempt = attempt.index,
                http.response.status_code = tracing::field::Empty,
            );
            for (name, value) in crate::telemetry::otel::context_headers(&provider_span) {
                headers.set(name, &value);
            }
            let called = Instant::now();
            let sent = forwarder
                .post(&attempt.target.url, offer.operator_origin(), headers, body)
                .instrument(provider_span.clone())
                .await;
            self.timing.provider_call(called.elapsed());
            if let Ok(upstream) = &sent {
                provider_span.record("http.response.status_code", upstream.status);
            }
            let upstream = match sent {
                Ok(upstream) => upstream,
                Err(e) => {
                    let failure = match &e {
                        ForwardError::Timeout => Some(AttemptFailure::Timeout),
                        ForwardError::Connect(_) => Some(AttemptFailure::Connect),
                        _ => None,
                    };
                    let error = upstream_error(e, offer, invoker);
                    return match failure {
                        Some(failure) => Tried::Failed { failure, error },
                        None => Tried::Done(Err(error)),
                    };
                }
            };
            if upstream.status == 402
                && tries < 2
                && rail.hub_paid()
                && let Some(chosen) = &credential
                && invoker.pay.refused(&offer.peer_url, chosen).await
            {
                continue;
            }
            // A provider that wants x402 is paid from the hub wallet, once, up to what the
            // buyer pays this hub.
            if upstream.status == 402
                && tries < 2
                && rail.hub_paid()
                && let Some(max) = funding.hub_charged_micros()
                && let Some(payment) =
                    super::x402_rail::provider_payment(deps.ledger, &upstream, max)
            {
                x402_payment = Some(payment);
                continue;
            }
            break (upstream, credential, signed);
        };
        let status = upstream.status;
        if status == 429 {
            // The provider is over its own capacity: every replica leaves it alone for as long
            // as it asks (other providers are unaffected), and this buyer is told which limit.
            let wait = crate::limits::provider::retry_after(
                upstream.header("retry-after"),
                chrono::Utc::now(),
            );
            let refusal = deps
                .limits
                .provider_refused(deps.shared, &offer.peer_url, wait)
                .await;
            return Tried::Done(Err(refusal.into()));
        }
        let outcome = self
            .plugins
            .wants_outcome()
            .then(|| hooks::outcome_view(&upstream, elapsed_ms(self.started)));
        let classified = span!("invoke.relay", status)
            .in_scope(|| relay::classify(upstream, offer, &call.request.input));
        let answer = match classified {
            Ok(answer) => answer,
            Err(error) if (500..600).contains(&status) => {
                return Tried::Failed {
                    failure: AttemptFailure::Status(status),
                    error,
                };
            }
            Err(error) => return Tried::Done(Err(error)),
        };
        if let (Answer::Success { .. }, Some(chosen)) = (&answer, &paid_with) {
            invoker.pay.spent(chosen, offer.price_usd);
        }

        // 7. Plugins on the answer, before settlement.
        if let Err(refusal) = self
            .plugins
            .after_invoke(attempt.view.as_ref(), outcome.as_ref())
            .await
        {
            // A failing fail-closed plugin is 503; the hold is released with the error.
            if refusal.kind == RefusalKind::PluginFailed {
                return Tried::Done(Err(InvokeError::PluginUnavailable(refusal)));
            }
            return Tried::Done(Ok(Outcome::Blocked(refusal)));
        }
        let extensions = match &answer {
            Answer::Success { .. } => self
                .plugins
                .receipt_extensions(attempt.view.as_ref(), outcome.as_ref()),
            _ => None,
        };
        let sent = Sent {
            rail,
            credential: paid_with.is_some(),
            signed,
        };
        Tried::Done(Ok(Outcome::Answer {
            answer,
            sent,
            extensions,
        }))
    }

    /// An `after_invoke` block: the hold is released, and the answer gets a signed, stored
    /// v2 rejection receipt.
    async fn reject(&self, offer: &Offer, refusal: Refusal, funding: Funding) -> InvokeError {
        let deps = self.deps;
        let nonce = match &funding {
            Funding::Channel { hold, .. } => hold.id().to_owned(),
            Funding::X402 { .. } | Funding::Buyer => new_nonce(),
        };
        let channel_id = funding.channel_id().map(str::to_owned);
        let refunded = funding.release(deps.metrics, ReleaseReason::Blocked).await;
        let rejection = hooks::Rejection {
            nonce: &nonce,
            offer,
            channel_id: channel_id.as_deref(),
            refunded,
            trace_id: hooks::trace_id(&self.trace.traceparent),
            latency_ms: elapsed_ms(self.started),
            routing_hub: deps.public_url.as_str(),
        };
        let receipt = match rejection.sign(&refusal, deps.signing_key) {
            Ok(receipt) => receipt,
            Err(e) => return e,
        };
        // Stored before answering, so the buyer can fetch it at once.
        if let Err(e) = deps.ledger.store_receipt(&receipt).await {
            tracing::error!(nonce, error = %e, "cannot store a rejection receipt");
        }
        tracing::info!(
            plugin = %refusal.plugin, category = %refusal.category, peer = %offer.peer_url,
            "provider answer blocked by a plugin"
        );
        InvokeError::Rejected { refusal, receipt }
    }
}

/// What a failed forward becomes for the buyer.
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
