//! Where an invoke is sent, and in which body shape.
//!
//! Rules, in order (issue 5):
//! 1. A capability known only through a peer hub (`via`) is invoked at that hub's
//!    `/ai-market/v2/invoke` with `source_hub` = the capability's origin.
//! 2. A tool's own `invoke_url`, when it is on the peer's own origin (checked when the offer
//!    was built), gets the provider contract body `{input, product_id, capability_id}`.
//! 3. A v2 hub gets `/ai-market/v2/invoke` with `source_hub: "local"` (its own capability).
//! 4. A v1 factory gets `/capabilities/{product_id}/{capability_id}/invoke` with `{input}`.
//!
//! Telling 3 from 4 needs the peer's well-known (`hub_version`, or `"v2"` in
//! `protocol_versions`), which the catalog store does not keep; it is fetched from the
//! peer's own origin and remembered for [`KIND_TTL`]. Every target is on the called peer's
//! origin, so nothing here reaches a URL a stranger chose.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;
use url::Url;

use super::Invoker;
use super::error::InvokeError;
use super::resolve::Offer;

/// Bound on the well-known probe that tells a v2 hub from a v1 factory.
const KIND_PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a peer's kind is remembered.
pub const KIND_TTL: Duration = Duration::from_secs(300);
/// How long a failed probe is remembered (the peer is treated as a v1 factory meanwhile).
pub const FAILED_PROBE_TTL: Duration = Duration::from_secs(30);

/// What kind of peer serves a capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerKind {
    /// Implements `/ai-market/v2/invoke`.
    V2Hub,
    /// A v1 factory: `/capabilities/{pid}/{cid}/invoke`.
    V1Factory,
}

impl PeerKind {
    /// Reads the kind from a well-known document.
    pub fn from_well_known(doc: &Value) -> Self {
        let has_hub_version = doc.get("hub_version").is_some_and(Value::is_string);
        let speaks_v2 = doc
            .get("protocol_versions")
            .and_then(Value::as_array)
            .is_some_and(|versions| versions.iter().any(|v| v.as_str() == Some("v2")));
        if has_hub_version || speaks_v2 {
            Self::V2Hub
        } else {
            Self::V1Factory
        }
    }
}

/// Remembered peer kinds.
#[derive(Debug, Default)]
pub struct KindCache {
    kinds: RwLock<HashMap<String, (PeerKind, Instant)>>,
}

impl KindCache {
    /// The remembered kind of `peer`, if still fresh.
    pub fn get(&self, peer: &str) -> Option<PeerKind> {
        let kinds = self
            .kinds
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        kinds
            .get(peer)
            .filter(|(_, until)| Instant::now() < *until)
            .map(|(kind, _)| *kind)
    }

    /// Remembers `kind` for `ttl`.
    pub fn put(&self, peer: &str, kind: PeerKind, ttl: Duration) {
        let mut kinds = self
            .kinds
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Peers are bounded by the catalog; this only drops expired entries now and then.
        if kinds.len() > 10_000 {
            let now = Instant::now();
            kinds.retain(|_, (_, until)| *until > now);
        }
        kinds.insert(peer.to_owned(), (kind, Instant::now() + ttl));
    }
}

/// The body shape a target expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyShape {
    /// `{input, product_id, capability_id}` (the provider contract, CLIENTS.md §5).
    Provider,
    /// `{product_id, capability_id, source_hub, input}` for a hub's v2 invoke.
    Hub {
        /// `"local"` for the hub's own capability, else the capability's origin.
        source_hub: String,
    },
    /// `{input}` for a v1 factory.
    Factory,
}

/// The resolved destination of one invoke.
#[derive(Debug, Clone)]
pub struct Target {
    /// The URL posted to.
    pub url: Url,
    /// The body shape.
    pub shape: BodyShape,
}

/// Whether `offer` needs the peer's kind to pick a target (rules 3 and 4).
pub fn needs_kind(offer: &Offer) -> bool {
    offer.via.is_none() && offer.invoke_url.is_none()
}

/// The target for `offer`; `kind` is only consulted when [`needs_kind`] is true.
pub fn target_for(offer: &Offer, kind: PeerKind) -> Result<Target, String> {
    let peer = Url::parse(&offer.peer_url)
        .map_err(|e| format!("stored peer URL {} is invalid: {e}", offer.peer_url))?;
    if offer.via.is_some() {
        return Ok(Target {
            url: join_path(&peer, &["ai-market", "v2", "invoke"])?,
            shape: BodyShape::Hub {
                source_hub: offer.origin.clone(),
            },
        });
    }
    if let Some(url) = &offer.invoke_url {
        return Ok(Target {
            url: url.as_url().clone(),
            shape: BodyShape::Provider,
        });
    }
    match kind {
        PeerKind::V2Hub => Ok(Target {
            url: join_path(&peer, &["ai-market", "v2", "invoke"])?,
            shape: BodyShape::Hub {
                source_hub: "local".to_owned(),
            },
        }),
        PeerKind::V1Factory => Ok(Target {
            url: join_path(
                &peer,
                &[
                    "capabilities",
                    offer.product_id.as_str(),
                    offer.capability_id.as_str(),
                    "invoke",
                ],
            )?,
            shape: BodyShape::Factory,
        }),
    }
}

/// `origin` + the given path segments, each percent-encoded as a single segment (ids may
/// contain `/`, `?` or `#`, which must not change the path's structure).
fn join_path(origin: &Url, segments: &[&str]) -> Result<Url, String> {
    let mut url = origin.clone();
    url.set_query(None);
    url.set_fragment(None);
    {
        let mut path = url
            .path_segments_mut()
            .map_err(|()| format!("peer URL {origin} cannot carry a path"))?;
        path.clear();
        path.extend(segments);
    }
    Ok(url)
}

#[derive(Serialize)]
struct ProviderBody<'a> {
    input: &'a Value,
    product_id: &'a str,
    capability_id: &'a str,
}

#[derive(Serialize)]
struct HubBody<'a> {
    product_id: &'a str,
    capability_id: &'a str,
    source_hub: &'a str,
    input: &'a Value,
}

#[derive(Serialize)]
struct FactoryBody<'a> {
    input: &'a Value,
}

/// Serialises the forwarded body for `shape` (plain JSON, never signed).
pub fn body_for(shape: &BodyShape, offer: &Offer, input: &Value) -> Vec<u8> {
    let rendered = match shape {
        BodyShape::Provider => serde_json::to_vec(&ProviderBody {
            input,
            product_id: &offer.product_id,
            capability_id: &offer.capability_id,
        }),
        BodyShape::Hub { source_hub } => serde_json::to_vec(&HubBody {
            product_id: &offer.product_id,
            capability_id: &offer.capability_id,
            source_hub,
            input,
        }),
        BodyShape::Factory => serde_json::to_vec(&FactoryBody { input }),
    };
    rendered.expect("a JSON value with string keys always serialises")
}

/// The target of `offer` (probing the peer's kind when needed).
pub(super) async fn resolve_target(
    invoker: &Invoker,
    offer: &Offer,
) -> Result<Target, InvokeError> {
    let kind = peer_kind(invoker, offer).await?;
    target_for(offer, kind).map_err(InvokeError::Internal)
}

/// The URL the hub would post to as far as it knows without probing (for `route` views).
pub(super) fn known_target_url(invoker: &Invoker, offer: &Offer) -> String {
    let kind = if needs_kind(offer) {
        invoker
            .kinds
            .get(&offer.peer_url)
            .unwrap_or(PeerKind::V2Hub)
    } else {
        PeerKind::V2Hub
    };
    target_for(offer, kind)
        .map(|t| t.url.to_string())
        .unwrap_or_else(|_| offer.peer_url.clone())
}

/// The kind of the called peer, from the cache or a well-known probe (only needed when the
/// offer has neither a relay hub nor its own endpoint).
async fn peer_kind(invoker: &Invoker, offer: &Offer) -> Result<PeerKind, InvokeError> {
    if !needs_kind(offer) {
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use aimarket_crawler::SafeUrl;
    use serde_json::json;

    fn offer(via: Option<&str>, invoke_url: Option<&str>) -> Offer {
        Offer {
            product_id: "prod/x".into(),
            capability_id: "translate.multi@v2".into(),
            invoke_url: invoke_url.map(|u| SafeUrl::parse(u).unwrap()),
            ..crate::invoke::resolve::test_offer("https://origin.example", via)
        }
    }

    #[test]
    fn rules_in_order() {
        let via = target_for(
            &offer(Some("https://hub.example"), None),
            PeerKind::V1Factory,
        )
        .unwrap();
        assert_eq!(via.url.as_str(), "https://hub.example/ai-market/v2/invoke");
        assert_eq!(
            via.shape,
            BodyShape::Hub {
                source_hub: "https://origin.example".into()
            }
        );

        let own = offer(None, Some("https://origin.example/agent/invoke"));
        assert!(!needs_kind(&own));
        let t = target_for(&own, PeerKind::V2Hub).unwrap();
        assert_eq!(t.url.as_str(), "https://origin.example/agent/invoke");
        assert_eq!(t.shape, BodyShape::Provider);

        let plain = offer(None, None);
        assert!(needs_kind(&plain));
        let hub = target_for(&plain, PeerKind::V2Hub).unwrap();
        assert_eq!(
            hub.url.as_str(),
            "https://origin.example/ai-market/v2/invoke"
        );
        assert_eq!(
            hub.shape,
            BodyShape::Hub {
                source_hub: "local".into()
            }
        );
        let v1 = target_for(&plain, PeerKind::V1Factory).unwrap();
        assert_eq!(
            v1.url.as_str(),
            "https://origin.example/capabilities/prod%2Fx/translate.multi@v2/invoke"
        );
    }

    #[test]
    fn kinds_from_well_known() {
        assert_eq!(
            PeerKind::from_well_known(&json!({"hub_version": "2.0.0"})),
            PeerKind::V2Hub
        );
        assert_eq!(
            PeerKind::from_well_known(&json!({"protocol_versions": ["v1", "v2"]})),
            PeerKind::V2Hub
        );
        assert_eq!(
            PeerKind::from_well_known(&json!({"protocol_versions": ["v1", "mcp"]})),
            PeerKind::V1Factory
        );
    }

    #[test]
    fn bodies() {
        let o = offer(None, None);
        let input = json!({"t": "é"});
        let b: Value = serde_json::from_slice(&body_for(&BodyShape::Provider, &o, &input)).unwrap();
        assert_eq!(
            b,
            json!({"input": {"t": "é"}, "product_id": "prod/x", "capability_id": "translate.multi@v2"})
        );
        let b: Value = serde_json::from_slice(&body_for(&BodyShape::Factory, &o, &input)).unwrap();
        assert_eq!(b, json!({"input": {"t": "é"}}));
    }

    #[test]
    fn kind_cache_expires() {
        let cache = KindCache::default();
        cache.put("https://p", PeerKind::V2Hub, Duration::from_secs(60));
        assert_eq!(cache.get("https://p"), Some(PeerKind::V2Hub));
        cache.put("https://q", PeerKind::V2Hub, Duration::ZERO);
        assert_eq!(cache.get("https://q"), None);
    }
}
