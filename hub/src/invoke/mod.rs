//! The routed invoke (`POST /ai-market/v2/invoke`, spec §4.1): resolve the capability,
//! validate the input, hold the buyer's payment, forward to the provider, relay or settle.
//!
//! [`invoke`] is the one service function: the HTTP handler and (in process, without an
//! HTTP loop back) the MCP `market_invoke` tool both call it with an [`InvokeCall`] and get
//! an [`InvokeResult`] (status, headers, body) back. It runs on [`InvokeDeps`], the parts of
//! the hub it reads and writes (borrowed; `AppState::invoke_deps` lends them), never on the
//! whole hub state.
//!
//! Modules: [`request`] (typed input), [`resolve`] (catalog snapshot, `choose_providers`),
//! [`validate`] (input schemas), [`target`] (where and in which shape to forward),
//! [`forward`] (pooled clients, header hygiene), [`relay`] (what the provider's answer
//! becomes), [`provider_pay`] (the hub's own credentials at peers), [`receipt`] (the
//! routing receipt), [`rails`] (which payment rail a call takes and the headers it adds),
//! [`record`] (off-path writes) and `pipeline` (the steps in order). The client and
//! provider limits live in [`crate::limits`].

pub mod error;
mod failover;
pub mod forward;
mod hooks;
pub mod hub_payment;
mod pipeline;
pub mod provider_pay;
pub mod rails;
pub mod receipt;
pub mod record;
pub mod relay;
pub mod request;
pub mod resolve;
mod settle;
pub mod target;
mod timing;
pub mod validate;
mod x402_rail;

use std::sync::OnceLock;
use std::time::Duration;

use aimarket_crawler::UrlPolicy;
use aimarket_plugins::Registry;
use aimarket_protocol::signing::KeyPair;
use bytes::Bytes;

pub use crate::limits::{Caller, ClientId};
pub use error::{InputViolation, InvokeError};
pub use hub_payment::HubPaymentOption;
pub use request::{BuyerHeaders, InvokeRequest};
pub use resolve::{Offer, choose_providers};

use crate::catalog::CatalogFeed;
use crate::error_code::ApiError;
use crate::limits::{LimitKind, Limits};
use crate::metrics::Metrics;
use crate::payments::{IdemState, Ledger, StoredResponse};
use crate::replica::SharedState;
use crate::settings::{PublicUrl, Settings};
use crate::store::{Store, normalize_origin};

/// One invoke, parsed at the edge.
#[derive(Debug, Clone)]
pub struct InvokeCall {
    /// The body.
    pub request: InvokeRequest,
    /// Payment, idempotency and tracing headers.
    pub headers: BuyerHeaders,
    /// What the caller presented (address, API key), not yet verified.
    pub caller: Caller,
    /// Who is calling once verified (rate limit, idempotency scope, plugin context): set by
    /// [`invoke`] from `caller` and the channel headers, never by the transport.
    client: ClientId,
}

impl InvokeCall {
    /// A call as the transport parsed it; its identity is decided by [`invoke`].
    pub fn new(request: InvokeRequest, headers: BuyerHeaders, caller: Caller) -> Self {
        let client = caller.address_id();
        Self {
            request,
            headers,
            caller,
            client,
        }
    }
}

/// The answer to an invoke, ready to be written as HTTP (or read by an MCP tool).
#[derive(Debug, Clone, PartialEq)]
pub struct InvokeResult {
    /// HTTP status.
    pub status: u16,
    /// Response headers (lower-case names), in order; a name may repeat.
    pub headers: Vec<(String, String)>,
    /// The body (JSON for everything the hub writes; relayed bodies are verbatim).
    pub body: Bytes,
}

impl InvokeResult {
    /// Renders an error in the protocol error shape with the status its code has.
    pub fn from_error(error: InvokeError) -> Self {
        let api = ApiError::from(error);
        api.log_if_internal();
        let mut headers = vec![("content-type".to_owned(), "application/json".to_owned())];
        if let Some(seconds) = api.retry_after() {
            headers.push(("retry-after".to_owned(), seconds.to_string()));
        }
        Self {
            status: api.status(),
            headers,
            body: Bytes::from(
                serde_json::to_vec(&api.body()).expect("a JSON value always serialises"),
            ),
        }
    }

    /// The body parsed as JSON (`Null` when it is not JSON), for in-process callers.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The first value of header `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn stored(&self) -> StoredResponse {
        StoredResponse {
            status: self.status,
            headers: self.headers.clone(),
            body: self.body.to_vec(),
        }
    }

    fn from_stored(stored: StoredResponse) -> Self {
        Self {
            status: stored.status,
            headers: stored.headers,
            body: Bytes::from(stored.body),
        }
    }
}

/// What a routed invoke reads and writes, borrowed from the hub's long-lived parts: exactly
/// these, so the invoke (and the services built on it: pipelines, MCP `market_invoke`)
/// depends on what it uses rather than on the whole hub state. `AppState::invoke_deps` lends
/// one; tests can assemble one from their own parts.
#[derive(Debug, Clone, Copy)]
pub struct InvokeDeps<'a> {
    /// Caches, provider clients, the hub's credentials at peers, the off-path recorder.
    pub invoker: &'a Invoker,
    /// The catalog store (offers, products of a capability).
    pub store: &'a Store,
    /// Channels, holds, receipts, idempotency records, the hub wallet.
    pub ledger: &'a Ledger,
    /// The plugin chain (route, invoke guards, receipt extensions, retry policy).
    pub plugins: &'a Registry,
    /// Client identities and the client and provider limits.
    pub limits: &'a Limits,
    /// What replicas share (the limits' Redis side).
    pub shared: &'a SharedState,
    /// The invoke, ledger and revenue series.
    pub metrics: &'a Metrics,
    /// Signs routing and rejection receipts and the hub's admission signature.
    pub signing_key: &'a KeyPair,
    /// This hub's public base URL (`routing_hub`, `routed_via`, the payment option).
    pub public_url: &'a PublicUrl,
    /// The catalog generation, which invalidates cached offers.
    pub feed: &'a CatalogFeed,
}

/// The invoke machinery that lives as long as the hub: caches, clients, limits.
#[derive(Debug)]
pub struct Invoker {
    catalog: resolve::CatalogCache,
    schemas: validate::SchemaCache,
    kinds: target::KindCache,
    forwarder: OnceLock<Result<forward::Forwarder, String>>,
    pay: provider_pay::ProviderPay,
    rails: rails::RailPolicy,
    recorder: record::Recorder,
    policy: UrlPolicy,
    timeout: Duration,
    max_body: usize,
    routing_fee_bps: u32,
    own_origin: String,
}

impl Invoker {
    /// Builds the invoker from the settings. Cheap: HTTP clients are built on first use
    /// (inside the server's runtime).
    pub fn new(settings: &Settings, public_url: &str) -> Self {
        let invoke = &settings.invoke;
        Self {
            catalog: resolve::CatalogCache::default(),
            schemas: validate::SchemaCache::default(),
            kinds: target::KindCache::default(),
            forwarder: OnceLock::new(),
            pay: provider_pay::ProviderPay::new(
                invoke.peer_credentials.clone(),
                settings.demo_payments,
            ),
            rails: rails::RailPolicy {
                sells_for: invoke.sells_for.clone(),
                sign_all_peers: invoke.sign_all_peers,
                seller_direct_fee: invoke.seller_direct_fee,
            },
            recorder: record::Recorder::default(),
            policy: UrlPolicy {
                allow_private: settings.allow_private_peers,
            },
            timeout: Duration::from_secs(invoke.provider_timeout_s),
            max_body: usize::try_from(invoke.max_provider_body_bytes).unwrap_or(usize::MAX),
            routing_fee_bps: settings.routing_fee_bps,
            own_origin: normalize_origin(public_url).unwrap_or_else(|_| public_url.to_owned()),
        }
    }

    /// This hub's own origin (a `source_hub` equal to it means "local").
    pub fn own_origin(&self) -> &str {
        &self.own_origin
    }

    /// Forgets every cached catalog lookup (the next invokes read the store).
    pub fn invalidate_catalog(&self) {
        self.catalog.clear();
    }

    /// The routing fee in basis points added to every provider price.
    pub fn routing_fee_bps(&self) -> u32 {
        self.routing_fee_bps
    }

    /// Background writes queued and not yet written.
    pub fn pending_records(&self) -> usize {
        self.recorder.pending()
    }

    /// Background writes lost so far (queue full, failed batch).
    pub fn dropped_records(&self) -> record::Dropped {
        self.recorder.dropped()
    }

    /// Queues a background write as an invoke would (tests of what reports the drops).
    #[cfg(test)]
    pub(crate) fn queue_record(&self, ledger: &Ledger, write: record::Write) {
        self.recorder.send(ledger, write);
    }

    fn forwarder(&self) -> Result<&forward::Forwarder, InvokeError> {
        self.forwarder
            .get_or_init(|| forward::Forwarder::new(self.policy, self.timeout, self.max_body))
            .as_ref()
            .map_err(|e| InvokeError::Internal(e.clone()))
    }
}

/// Runs one invoke end to end (see the module docs). Never panics on bad input; every
/// outcome, including errors, comes back as an [`InvokeResult`].
///
/// The caller is first identified (a configured API key, else a verified channel, else its
/// address; `crate::limits::identity`) and charged to that identity's invoke budget; a real
/// channel presented with a wrong secret is charged to the address and refused, and so is an
/// `X-API-Key` the hub does not accept (`AIMARKET_API_KEYS`; none configured means none):
/// 401 `invalid_api_key`.
///
/// With an `Idempotency-Key`, the first 2xx answer for `(key, client)` is stored for 24 h
/// and a retry with the same request gets it back without running (or charging) again; the
/// same key with a different request is 409 `idempotency_conflict`, and while the first is
/// still running, 409 `idempotency_in_flight`.
pub async fn invoke(deps: &InvokeDeps<'_>, mut call: InvokeCall) -> InvokeResult {
    let identified = deps
        .limits
        .identities()
        .identify(
            deps.ledger,
            &call.caller,
            call.headers.channel_id.as_deref(),
            call.headers.channel_secret.as_deref(),
        )
        .await;
    call.client = identified.client;
    // With Redis the limit is shared by every replica; without it (or when Redis fails) it
    // is this process's own.
    if let Err(refusal) = deps
        .limits
        .check_client(deps.shared, LimitKind::InvokeClient, &call.client)
        .await
    {
        return InvokeResult::from_error(InvokeError::Limited(refusal));
    }
    // A key this hub never issued is refused (after its caller's address paid for the
    // attempt, so guessing keys buys nothing): treated as anonymous, an SDK on its credits
    // rail would fail later with a 402 that does not say why.
    if identified.unknown_key {
        return InvokeResult::from_error(InvokeError::InvalidApiKey);
    }
    if let Some(refusal) = identified.refusal {
        return InvokeResult::from_error(InvokeError::Payment(refusal));
    }
    if let Err(e) = call.headers.check() {
        return InvokeResult::from_error(e);
    }
    let Some(key) = call.headers.idempotency_key.clone() else {
        return pipeline::run(deps, &call).await;
    };
    let fingerprint = call.request.fingerprint();
    let begun = deps
        .ledger
        .idempotency_begin(&key, call.client.as_str(), &fingerprint)
        .await;
    match begun {
        Ok(IdemState::New) => {}
        Ok(IdemState::Replay(stored)) => return InvokeResult::from_stored(stored),
        Ok(IdemState::Conflict) => {
            return InvokeResult::from_error(InvokeError::IdempotencyConflict);
        }
        Ok(IdemState::InFlight) => {
            return InvokeResult::from_error(InvokeError::IdempotencyInFlight);
        }
        Err(e) => return InvokeResult::from_error(InvokeError::Payment(e)),
    }
    let result = pipeline::run(deps, &call).await;
    // A 2xx is final and is what a retry must get back (it may have been charged). Anything
    // else charged nothing, so the claim is dropped and a retry runs afresh (after paying
    // following a 402, say).
    let stored = if (200..300).contains(&result.status) {
        deps.ledger
            .idempotency_finish(&key, call.client.as_str(), &result.stored())
            .await
    } else {
        deps.ledger
            .idempotency_abandon(&key, call.client.as_str())
            .await
    };
    if let Err(e) = stored {
        tracing::error!(error = %e, "cannot record the idempotency outcome");
    }
    result
}
