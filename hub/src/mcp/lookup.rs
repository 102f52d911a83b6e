//! One capability by `(product_id, capability_id)`, as the manifest publishes it: what MCP
//! `market_describe` shows and what the v1 pricing quote prices.

use serde_json::Value;

use crate::catalog::rows::{Effective, manifest_tool};
use crate::http::error::{ApiError, code};
use crate::state::AppState;
use crate::store::{CapabilityRow, normalize_origin};

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
    state: &AppState,
    product_id: &str,
    capability_id: &str,
    source_hub: Option<&str>,
) -> Result<Vec<Described>, ApiError> {
    let origin = match source_hub
        .map(str::trim)
        .filter(|s| !s.is_empty() && *s != "local")
    {
        Some(hub) => {
            let origin = normalize_origin(hub).map_err(|e| {
                ApiError::bad_request(format!("`source_hub` is not a hub URL: {e}"))
            })?;
            (origin != state.invoker.own_origin()).then_some(origin)
        }
        None => None,
    };
    let rows = state
        .store
        .get_capability(origin.as_deref(), product_id, capability_id)
        .await?;
    if rows.is_empty() {
        return Err(ApiError::not_found(
            code::CAPABILITY_NOT_FOUND,
            format!("no active peer offers {product_id}/{capability_id}"),
        ));
    }
    let bps = state.settings.routing_fee_bps;
    let invoke_url = state.public_url.join("/ai-market/v2/invoke");
    let mut offers: Vec<(CapabilityRow, Effective)> = rows
        .into_iter()
        .map(|row| {
            let effective = Effective::of(&row, bps);
            (row, effective)
        })
        .collect();
    offers.sort_by(|(a, ea), (b, eb)| {
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
