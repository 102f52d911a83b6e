//! How this hub pays a provider for a channel-funded call (spec §6.3: "the routing hub
//! opens its own channel on the provider hub; client pays routing hub; routing hub pays
//! provider hub").
//!
//! The credential for a peer is, in order: the one configured for it
//! (`AIMARKET_PEER_CREDENTIALS`: a channel or an API key), or — only with demo payments on —
//! a channel this hub opens itself at the provider with a `demo-…` transaction hash
//! (`/ai-market/v2/channel/open`, falling back to v1 `/ai-market/channel/open`) and reuses
//! until its balance runs low. Without either, the call goes out without a credential and a
//! provider that wants payment answers 402, which becomes 502 `provider_payment_failed`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use serde_json::{Value, json};
use url::Url;

use super::forward::{Forwarder, OutgoingHeaders, names};
use crate::settings::{CredentialKind, PeerCredentials};

/// What a demo channel is funded with: enough for many calls, so it is opened rarely.
pub const DEMO_DEPOSIT_USD: f64 = 10.0;
/// Calls a demo channel should cover at least (for pricier capabilities).
const DEMO_MIN_CALLS: f64 = 100.0;
/// Largest demo deposit.
const DEMO_MAX_DEPOSIT_USD: f64 = 1000.0;

/// A credential the hub presents to a provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HubCredential {
    /// `X-Payment-Channel` (+ `X-Payment-Channel-Secret`).
    Channel {
        /// Channel id at the provider.
        id: String,
        /// Debit secret.
        secret: Option<String>,
    },
    /// `X-API-Key`.
    ApiKey(String),
}

impl HubCredential {
    /// Adds the credential's headers to an outgoing request.
    pub fn apply(&self, headers: &mut OutgoingHeaders) {
        match self {
            Self::Channel { id, secret } => {
                headers.set(names::X_PAYMENT_CHANNEL, id);
                if let Some(secret) = secret {
                    headers.set(names::X_PAYMENT_CHANNEL_SECRET, secret);
                }
            }
            Self::ApiKey(key) => headers.set(names::X_API_KEY, key),
        }
    }
}

/// A channel this hub opened at a provider, with the balance it believes is left.
#[derive(Debug)]
struct DemoChannel {
    credential: HubCredential,
    balance_micros: AtomicI64,
}

/// The demo channel currently used at one peer, if any.
type DemoSlot = Arc<tokio::sync::Mutex<Option<Arc<DemoChannel>>>>;

/// The hub's credentials at peers (see the module docs).
#[derive(Debug)]
pub struct ProviderPay {
    configured: PeerCredentials,
    demo: bool,
    /// One slot per peer; the async lock makes concurrent calls share one channel opening.
    demo_channels: std::sync::Mutex<HashMap<String, DemoSlot>>,
}

/// A credential chosen for one call, with what is needed to account for it afterwards.
#[derive(Debug, Clone)]
pub struct ChosenCredential {
    /// What to send.
    pub credential: HubCredential,
    demo: Option<Arc<DemoChannel>>,
}

fn micros(usd: f64) -> i64 {
    // Prices are validated finite and at most 1,000 USD, so this cannot overflow.
    (usd * 1e6).round() as i64
}

impl ProviderPay {
    /// Credentials from configuration; `demo` allows self-opened demo channels.
    pub fn new(configured: PeerCredentials, demo: bool) -> Self {
        Self {
            configured,
            demo,
            demo_channels: std::sync::Mutex::default(),
        }
    }

    /// Whether a credential for `peer_url` is configured.
    pub fn has_credential(&self, peer_url: &str) -> bool {
        self.configured.get(peer_url).is_some()
    }

    /// Whether this hub may open demo channels at providers.
    pub fn opens_demo_channels(&self) -> bool {
        self.demo
    }

    /// The rails on which this hub can pay `peer_url` on a buyer's behalf (what a buyer who
    /// pays the hub gets): `channel` or `api_key` for a configured credential, `channel` for
    /// a demo channel the hub opens itself; empty when it has no way to pay that peer.
    pub fn rails_for(&self, peer_url: &str) -> Vec<&'static str> {
        match self.configured.get(peer_url).map(|c| &c.kind) {
            Some(CredentialKind::Channel { .. }) => vec!["channel"],
            Some(CredentialKind::ApiKey(_)) => vec!["api_key"],
            None if self.demo => vec!["channel"],
            None => Vec::new(),
        }
    }

    /// The credential to pay `peer_url` for a call of `price_usd`, opening a demo channel
    /// when allowed and needed. `None`: the hub has no way to pay this peer.
    pub async fn credential_for(
        &self,
        forwarder: &Forwarder,
        peer_url: &str,
        operator: bool,
        price_usd: f64,
    ) -> Option<ChosenCredential> {
        if let Some(configured) = self.configured.get(peer_url) {
            let credential = match &configured.kind {
                CredentialKind::Channel { id, secret } => HubCredential::Channel {
                    id: id.clone(),
                    secret: secret.as_ref().map(|s| s.expose().to_owned()),
                },
                CredentialKind::ApiKey(key) => HubCredential::ApiKey(key.expose().to_owned()),
            };
            return Some(ChosenCredential {
                credential,
                demo: None,
            });
        }
        if !self.demo {
            return None;
        }
        let slot = {
            let mut slots = self
                .demo_channels
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            slots.entry(peer_url.to_owned()).or_default().clone()
        };
        let mut current = slot.lock().await;
        let needed = micros(price_usd);
        if let Some(channel) = current.as_ref()
            && channel.balance_micros.load(Ordering::Acquire) >= needed
        {
            return Some(ChosenCredential {
                credential: channel.credential.clone(),
                demo: Some(channel.clone()),
            });
        }
        let deposit = (price_usd * DEMO_MIN_CALLS).clamp(DEMO_DEPOSIT_USD, DEMO_MAX_DEPOSIT_USD);
        let opened = open_demo_channel(forwarder, peer_url, operator, deposit).await?;
        let channel = Arc::new(opened);
        *current = Some(channel.clone());
        Some(ChosenCredential {
            credential: channel.credential.clone(),
            demo: Some(channel),
        })
    }

    /// Accounts for a call the provider accepted with this credential.
    pub fn spent(&self, chosen: &ChosenCredential, price_usd: f64) {
        if let Some(channel) = &chosen.demo {
            channel
                .balance_micros
                .fetch_sub(micros(price_usd), Ordering::AcqRel);
        }
    }

    /// Forgets a demo channel the provider refused (402), so the next call opens a new one.
    /// Returns whether there was one to forget.
    pub async fn refused(&self, peer_url: &str, chosen: &ChosenCredential) -> bool {
        let Some(channel) = &chosen.demo else {
            return false;
        };
        let slot = {
            let slots = self
                .demo_channels
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            slots.get(peer_url).cloned()
        };
        if let Some(slot) = slot {
            let mut current = slot.lock().await;
            if current.as_ref().is_some_and(|c| Arc::ptr_eq(c, channel)) {
                *current = None;
            }
        }
        true
    }
}

/// Opens a channel at `peer_url` funded with a demo transaction hash; v2 path first, then
/// the v1 alias. `None` (logged) when the provider has no channel endpoint or refuses.
async fn open_demo_channel(
    forwarder: &Forwarder,
    peer_url: &str,
    operator: bool,
    deposit_usd: f64,
) -> Option<DemoChannel> {
    let base = Url::parse(peer_url).ok()?;
    let body = json!({
        "deposit_usd": deposit_usd,
        "tx_hash": format!("demo-{}", uuid::Uuid::new_v4().simple()),
        "token": "USDC",
        "chain": "base",
    });
    for path in ["/ai-market/v2/channel/open", "/ai-market/channel/open"] {
        let Ok(url) = base.join(path) else { continue };
        let exempt_origin = operator.then_some(peer_url);
        match forwarder.post_small_json(&url, exempt_origin, &body).await {
            Ok((status, answer)) if (200..300).contains(&status) => {
                if let Some(channel) = parse_channel(&answer, deposit_usd) {
                    tracing::info!(
                        peer = peer_url,
                        deposit_usd,
                        "opened a demo channel at a provider"
                    );
                    return Some(channel);
                }
                tracing::warn!(
                    peer = peer_url,
                    path,
                    "channel open answer has no channel_id"
                );
                return None;
            }
            Ok((404 | 405, _)) => continue,
            Ok((status, _)) => {
                tracing::warn!(
                    peer = peer_url,
                    path,
                    status,
                    "provider refused to open a demo channel"
                );
                return None;
            }
            Err(e) => {
                tracing::warn!(peer = peer_url, path, error = %e, "cannot open a demo channel");
                return None;
            }
        }
    }
    None
}

/// Reads `{channel: {channel_id, channel_secret?, balance_usd?}}` or the same fields bare.
fn parse_channel(answer: &Value, deposit_usd: f64) -> Option<DemoChannel> {
    let channel = answer
        .get("channel")
        .filter(|c| c.is_object())
        .unwrap_or(answer);
    let id = channel.get("channel_id")?.as_str()?.to_owned();
    let secret = channel
        .get("channel_secret")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let balance = channel
        .get("balance_usd")
        .and_then(Value::as_f64)
        .unwrap_or(deposit_usd);
    Some(DemoChannel {
        credential: HubCredential::Channel { id, secret },
        balance_micros: AtomicI64::new(micros(balance)),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_both_channel_shapes() {
        let c = parse_channel(
            &json!({"channel": {"channel_id": "ch_1", "channel_secret": "s", "balance_usd": 2.5}}),
            10.0,
        )
        .unwrap();
        assert_eq!(
            c.credential,
            HubCredential::Channel {
                id: "ch_1".into(),
                secret: Some("s".into())
            }
        );
        assert_eq!(c.balance_micros.load(Ordering::Relaxed), 2_500_000);
        let c = parse_channel(&json!({"channel_id": "ch_2"}), 10.0).unwrap();
        assert_eq!(c.balance_micros.load(Ordering::Relaxed), 10_000_000);
        assert!(parse_channel(&json!({"channel": {}}), 1.0).is_none());
    }

    #[test]
    fn credentials_render_their_headers() {
        let mut h = OutgoingHeaders::new(0, "http://hub", "tp", "rid");
        HubCredential::Channel {
            id: "ch".into(),
            secret: Some("s".into()),
        }
        .apply(&mut h);
        HubCredential::ApiKey("k".into()).apply(&mut h);
        let map = h.into_map();
        assert_eq!(map.get(names::X_PAYMENT_CHANNEL).unwrap(), "ch");
        assert_eq!(map.get(names::X_PAYMENT_CHANNEL_SECRET).unwrap(), "s");
        assert_eq!(map.get(names::X_API_KEY).unwrap(), "k");
    }
}
