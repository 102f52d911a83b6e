//! One capability by `(product_id, capability_id)`, as the manifest publishes it: what MCP
//! `market_describe` shows and what the v1 pricing quote prices.

use serde_json::Value;

use crate::catalog::rows::{Effective, manifest_tool};
use crate::error_code::{Code, ErrorCode};
use crate::invoke::InvokeDeps;
use crate::store::{CapabilityRow, StoreError, normalize_origin};

/// Why a capability lookup found nothing to describe.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// `source_hub` is not a hub URL.
    #[error("`source_hub` is not a hub URL: {0}")]
    BadSourceHub(String),
    /// No active peer offers the capability (from that origin, when one was named).
    #[error("no active peer offers {product_id}/{capability_id}")]
    NotFound {
        /// Product id asked for.
        product_id: String,
        /// Capability id asked for.
        capability_id: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ErrorCode for LookupError {
    /// A bad `source_hub` 400, no offer 404 `capability_not_found`; store errors as the
    /// store reads them.
    fn wire_code(&self) -> Code {
        match self {
            Self::BadSourceHub(_) => Code::BadRequest,
            Self::NotFound { .. } => Code::CapabilityNotFound,
            Self::Store(e) => e.wire_code(),
        }
    }

    fn passes_on(&self) -> Option<&dyn ErrorCode> {
        match self {
            Self::Store(e) => Some(e),
            _ => None,
        }
    }
}

/// A capability offer: the manifest tool and its effective numbers.
#[derive(Debug, Clone)]
pub struct Described {
    /// The tool as the manifest publishes it (schemas, prices, `source_hub`, trust, …).
    pub tool: Value,
    /// Price, routed price, latency, trust, success rate.
    pub effective: Effective,
}

/// Every offer of the capability, the one an invoke would pick first: a peer serving its
/// own capability before a relay, then higher trust, then the lower routed price, then the
/// origin (the order of [`crate::invoke::choose_providers`]). `source_hub` (absent, `local`
/// or this hub meaning "anywhere") narrows it to one origin. 404 `capability_not_found`
/// when nothing matches.
pub async fn describe(
    deps: &InvokeDeps<'_>,
    product_id: &str,
    capability_id: &str,
    source_hub: Option<&str>,
) -> Result<Vec<Described>, LookupError> {
    let origin = match source_hub
        .map(str::trim)
        .filter(|s| !s.is_empty() && *s != "local")
    {
        Some(hub) => {
            let origin =
                normalize_origin(hub).map_err(|e| LookupError::BadSourceHub(e.to_string()))?;
            (origin != deps.invoker.own_origin()).then_some(origin)
        }
        None => None,
    };
    let rows = deps
        .store
        .get_capability(origin.as_deref(), product_id, capability_id)
        .await?;
    if rows.is_empty() {
        return Err(LookupError::NotFound {
            product_id: product_id.to_owned(),
            capability_id: capability_id.to_owned(),
        });
    }
    let bps = deps.invoker.routing_fee_bps();
    let invoke_url = deps.public_url.join("/ai-market/v2/invoke");
    let mut offers: Vec<(CapabilityRow, Effective)> = rows
        .into_iter()
        .map(|row| {
            let effective = Effective::of(&row, bps);
            (row, effective)
        })
        .collect();
    offers.sort_by(|(a, ea), (b, eb)| {
        let (a, b) = (&a.capability, &b.capability);
        a.via
            .is_some()
            .cmp(&b.via.is_some())
            .then(eb.trust_score.total_cmp(&ea.trust_score))
            .then(ea.routed_price_usd.total_cmp(&eb.routed_price_usd))
            .then(a.origin.cmp(&b.origin))
    });
    Ok(offers
        .into_iter()
        .map(|(row, effective)| Described {
            tool: manifest_tool(&row, bps, &invoke_url),
            effective,
        })
        .collect())
}
