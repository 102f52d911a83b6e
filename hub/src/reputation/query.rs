//! `GET /ai-market/v2/reputation/{hub_url}`: a hub's score, its components and inputs, and
//! the latest events about it.
//!
//! For a peer the last recompute covered, the stored values are shown (exactly what search
//! and the published documents use). For a hub this hub has not scored (unknown, or not yet
//! recomputed) the components are computed on the spot from the same inputs; `known` tells
//! which.

use std::collections::HashSet;

use serde_json::{Value, json};

use super::ReputationDeps;
use super::recompute::{Inputs, PeerReputationRow, components, event_lines, fold_events};
use super::{FORMULA, ReputationError, TrustPolicy, WEIGHTS, WINDOW};
use crate::payments::micros_to_usd;
use crate::store::{PeerState, normalize_origin, now_ms, rfc3339_from_ms};

/// Events listed in `recent_events`.
const RECENT_EVENTS: i64 = 20;

/// The report for `hub_url` (any URL on the hub's origin).
pub async fn report(deps: &ReputationDeps<'_>, hub_url: &str) -> Result<Value, ReputationError> {
    let origin =
        normalize_origin(hub_url).map_err(|e| ReputationError::BadRequest(e.to_string()))?;
    let store = deps.store;
    let peer = store.get_peer_by_url(&origin).await?;
    let stored = store.peer_reputation_row(&origin).await?;
    let bond_usd = deps.settings.peer_bonds.get(&origin);
    let policy = TrustPolicy::of(deps.settings);
    let inputs = live_inputs(deps, &origin).await?;
    let (row, trust_score) = match (&peer, stored) {
        (Some(peer), Some(row)) => (row, peer.trust_score),
        (peer, _) => {
            let first_success = peer.as_ref().and_then(|p| p.first_success);
            let now = now_ms();
            let c = components(&policy, first_success, bond_usd, &inputs, now);
            let row = PeerReputationRow::new(&origin, &c, &inputs, now);
            (row, c.trust())
        }
    };
    let events = store
        .recent_reputation_events(&origin, RECENT_EVENTS)
        .await?;
    let recent: Vec<Value> = events
        .into_iter()
        .map(|e| {
            json!({
                "type": e.kind,
                "consumer_hub": e.consumer_hub,
                "capability_id": e.capability_id,
                "timestamp": rfc3339_from_ms(e.event_ts),
                "price_usd": e.price_usd,
                "latency_ms": e.latency_ms,
            })
        })
        .collect();
    Ok(json!({
        "hub_url": origin,
        "known": peer.is_some(),
        "state": peer.as_ref().map(|p| p.state.as_str()),
        "trust_score": trust_score,
        "passes_floor": policy.passes(trust_score),
        "components": {
            "age": row.age,
            "bond": row.bond,
            "success_rate": row.success_rate,
            "volume": row.volume,
        },
        "weights": WEIGHTS,
        "formula": FORMULA,
        "inputs": inputs_json(&policy, &row, &inputs),
        "bond_usd": bond_usd,
        "first_success": peer.as_ref().and_then(|p| p.first_success).and_then(rfc3339_from_ms),
        "observations_30d": {
            "calls": row.calls_30d,
            "successes": row.successes_30d,
            "volume_usd": row.volume_usd_30d,
            "events": row.events_30d,
            "event_successes": row.event_successes_30d,
        },
        "computed_at": rfc3339_from_ms(row.computed_at),
        "recent_events": recent,
        "protocol_version": "v2",
    }))
}

/// Every input of the formula with its value, so a reader can recompute the score:
/// `(k·m + S) / (k + N)`. `S` and `N` are read now (own calls count 1, events
/// [`super::EVENT_WEIGHT`] each, capped per reporter); the score is as of `computed_at`.
fn inputs_json(policy: &TrustPolicy, row: &PeerReputationRow, inputs: &Inputs) -> Value {
    let standing = row.components().standing();
    json!({
        "prior": policy.prior,
        "k": policy.prior_weight,
        "standing": round6(standing),
        "m": round6(policy.prior_mean(standing)),
        "S": round6(inputs.successes()),
        "N": round6(inputs.observations()),
        "event_weight": super::EVENT_WEIGHT,
        "min_trust_score": policy.min_trust_score,
    })
}

fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

/// The inputs of `origin`'s score over the window, read now.
async fn live_inputs(deps: &ReputationDeps<'_>, origin: &str) -> Result<Inputs, ReputationError> {
    let now = now_ms();
    let since = now.saturating_sub(i64::try_from(WINDOW.as_millis()).unwrap_or(i64::MAX));
    let own = deps.store.peer_invocation_totals(origin, since).await?;
    let lines = event_lines(deps.store, since, Some(origin)).await?;
    let reporters: Vec<String> = deps
        .store
        .list_peers(Some(PeerState::Active))
        .await?
        .into_iter()
        .filter(|p| p.pinned_key.is_some())
        .map(|p| p.url)
        .collect();
    let own_origin = super::recompute::own_origin(deps);
    let mut reporters: HashSet<&str> = reporters.iter().map(String::as_str).collect();
    reporters.insert(own_origin.as_str());
    let events = fold_events(lines, &reporters)
        .remove(origin)
        .unwrap_or_default();
    Ok(Inputs {
        calls: own.calls,
        successes: own.successes,
        volume_usd: micros_to_usd(own.volume_micros),
        events,
    })
}
