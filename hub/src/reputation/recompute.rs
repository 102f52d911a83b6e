//! One recomputation of every peer's trust score and every measured capability's trust
//! (formula and inputs in the module docs of [`super`]).
//!
//! Reads: the peers, the ledger's per-peer totals over the window, the signed events per
//! (provider, reporting hub), per-capability call totals, and the stored results of the last
//! run. Writes, in one transaction and only what changed: `peers.trust_score` and
//! `peers.bond_usd`, `peer_reputation`, `capability_reputation`; when a score visible to
//! search changed it bumps the catalog version and publishes the affected keys.

use std::collections::{BTreeSet, HashMap, HashSet};

use super::ReputationDeps;
use super::{
    Components, EVENT_CAP_PER_CONSUMER, EVENT_WEIGHT, MIN_CAPABILITY_CALLS, ReputationError,
    TrustPolicy, WINDOW, age_factor, bond_factor, round_score, volume_factor,
};
use crate::crawl::CatalogUpdate;
use crate::payments::{PeerStats, micros_to_usd};
use crate::store::{
    CapabilityKey, CapabilityReputationRow, EventKinds, PeerRow, PeerState, ReputationWrite, Store,
    now_ms,
};
pub(super) use crate::store::{EventLine, PeerReputationRow};

/// Event types that count as a success.
pub(super) const SUCCESS_KINDS: &[&str] = &["invocation_success", "verify_passed"];
/// Event types that count as a failure.
pub(super) const FAILURE_KINDS: &[&str] = &[
    "invocation_failure",
    "invocation_failed",
    "invocation_error",
    "verify_failed",
    super::mismatch::PRICE_MISMATCH,
];
/// Events are kept a day longer than the window (replay protection needs only 48 h).
const EVENT_RETENTION_MS: i64 = 31 * 86_400_000;

/// What one recompute changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecomputeOutcome {
    /// Peers whose stored trust score or bond changed.
    pub peers_changed: usize,
    /// Capabilities whose visible trust or success rate changed.
    pub capabilities_changed: usize,
    /// The catalog version published, when something visible changed.
    pub version: Option<i64>,
}

/// Events about one provider, after weighting and capping.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(super) struct EventTotals {
    /// Weighted observations (successes plus failures).
    pub observations: f64,
    /// Weighted successes.
    pub successes: f64,
    /// Weighted USD volume.
    pub volume_usd: f64,
    /// Events received (all types, uncapped).
    pub events: i64,
    /// Success events received (uncapped).
    pub event_successes: i64,
}

/// Folds event lines into per-provider totals, counting only reporting hubs in `reporters`.
pub(super) fn fold_events(
    lines: Vec<EventLine>,
    reporters: &HashSet<&str>,
) -> HashMap<String, EventTotals> {
    let mut out: HashMap<String, EventTotals> = HashMap::new();
    for line in lines {
        if !reporters.contains(line.consumer_hub.as_str()) {
            continue;
        }
        let counted = line.successes + line.failures;
        let total = out.entry(line.provider_hub).or_default();
        total.events += line.events;
        total.event_successes += line.successes;
        if counted <= 0 {
            continue;
        }
        // A reporter beyond the cap keeps its success ratio but not its weight.
        let scale = counted.min(EVENT_CAP_PER_CONSUMER) as f64 / counted as f64;
        total.observations += EVENT_WEIGHT * counted as f64 * scale;
        total.successes += EVENT_WEIGHT * line.successes as f64 * scale;
        total.volume_usd += EVENT_WEIGHT * line.volume_usd.max(0.0) * scale;
    }
    out
}

/// The events aggregate over `[since, ∞)`, optionally for one provider.
pub(super) async fn event_lines(
    store: &Store,
    since_ms: i64,
    provider: Option<&str>,
) -> Result<Vec<EventLine>, ReputationError> {
    let kinds = EventKinds {
        success: SUCCESS_KINDS,
        failure: FAILURE_KINDS,
        // A mismatch's amount is what the provider asked, not money that moved.
        unpriced: super::mismatch::PRICE_MISMATCH,
    };
    Ok(store
        .reputation_event_lines(kinds, since_ms, provider)
        .await?)
}

/// This hub's origin, as it appears as `consumer_hub` of its own events.
pub(super) fn own_origin(deps: &ReputationDeps<'_>) -> String {
    crate::store::normalize_origin(deps.public_url.as_str())
        .unwrap_or_else(|_| deps.public_url.as_str().to_owned())
}

/// The inputs of one peer's score.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(super) struct Inputs {
    pub calls: i64,
    pub successes: i64,
    pub volume_usd: f64,
    pub events: EventTotals,
}

impl Inputs {
    /// Weighted observations `N`: own calls plus weighted events.
    pub(super) fn observations(&self) -> f64 {
        self.calls as f64 + self.events.observations
    }

    /// Weighted successes `S`.
    pub(super) fn successes(&self) -> f64 {
        self.successes as f64 + self.events.successes
    }
}

/// The components of a peer from its stored row and its inputs, under `policy`.
pub(super) fn components(
    policy: &TrustPolicy,
    first_success: Option<i64>,
    bond_usd: f64,
    inputs: &Inputs,
    now: i64,
) -> Components {
    let factors = Components {
        age: component(age_factor(first_success, now)),
        bond: component(bond_factor(bond_usd)),
        volume: component(volume_factor(inputs.volume_usd + inputs.events.volume_usd)),
        success_rate: 0.0,
    };
    let m = policy.prior_mean(factors.standing());
    Components {
        success_rate: component(policy.posterior(m, inputs.successes(), inputs.observations())),
        ..factors
    }
}

/// Components are stored at the score's precision, so slow drift (age) is written rarely.
fn component(x: f64) -> f64 {
    round_score(x)
}

fn own_inputs(stats: Option<&PeerStats>, events: Option<&EventTotals>) -> Inputs {
    Inputs {
        calls: stats.map_or(0, |s| s.calls),
        successes: stats.map_or(0, |s| s.successes),
        volume_usd: stats.map_or(0.0, |s| micros_to_usd(s.volume_micros)),
        events: events.copied().unwrap_or_default(),
    }
}

impl PeerReputationRow {
    pub(super) fn new(url: &str, c: &Components, inputs: &Inputs, now: i64) -> Self {
        Self {
            peer_url: url.to_owned(),
            age: c.age,
            bond: c.bond,
            success_rate: c.success_rate,
            volume: c.volume,
            calls_30d: inputs.calls,
            successes_30d: inputs.successes,
            volume_usd_30d: inputs.volume_usd,
            events_30d: inputs.events.events,
            event_successes_30d: inputs.events.event_successes,
            computed_at: now,
        }
    }

    pub(super) fn components(&self) -> Components {
        Components {
            age: self.age,
            bond: self.bond,
            success_rate: self.success_rate,
            volume: self.volume,
        }
    }

    /// Equal apart from when it was computed.
    fn same_values(&self, other: &Self) -> bool {
        Self {
            computed_at: 0,
            ..self.clone()
        } == Self {
            computed_at: 0,
            ..other.clone()
        }
    }
}

impl CapabilityReputationRow {
    fn key(&self) -> CapabilityKey {
        CapabilityKey {
            origin: self.origin.clone(),
            product_id: self.product_id.clone(),
            capability_id: self.capability_id.clone(),
        }
    }

    /// What the catalog's trust function shows for this row: `None` below the call
    /// threshold, else the capability's trust and success ratio.
    fn visible(&self) -> Option<(Option<f64>, f64)> {
        (self.calls_30d >= MIN_CAPABILITY_CALLS).then(|| {
            (
                self.trust_score,
                self.successes_30d as f64 / self.calls_30d as f64,
            )
        })
    }
}

/// Everything to write, decided before the write transaction starts.
#[derive(Debug, Default)]
struct Plan {
    peers: Vec<(i64, f64, f64)>,
    changed_peer_ids: Vec<i64>,
    peer_rows: Vec<PeerReputationRow>,
    capability_rows: Vec<CapabilityReputationRow>,
    stale_capabilities: Vec<CapabilityKey>,
    visible_keys: BTreeSet<CapabilityKey>,
}

/// Recomputes every score (see the module docs) and publishes what changed.
pub async fn recompute(deps: &ReputationDeps<'_>) -> Result<RecomputeOutcome, ReputationError> {
    let store = deps.store;
    let now = now_ms();
    let window_ms = i64::try_from(WINDOW.as_millis()).unwrap_or(i64::MAX);
    let since = now.saturating_sub(window_ms);
    let peers = store.list_peers(None).await?;
    let own: HashMap<String, PeerStats> = deps
        .ledger
        .peer_stats(since)
        .await?
        .into_iter()
        .map(|s| (s.peer_url.clone(), s))
        .collect();
    let own_origin = own_origin(deps);
    let mut reporters: HashSet<&str> = peers
        .iter()
        .filter(|p| p.state == PeerState::Active && p.pinned_key.is_some())
        .map(|p| p.url.as_str())
        .collect();
    // This hub's own events (price-guard mismatches) count like an admitted peer's.
    reporters.insert(own_origin.as_str());
    let events = fold_events(event_lines(store, since, None).await?, &reporters);
    let stored_rows: HashMap<String, PeerReputationRow> = store
        .peer_reputation_rows()
        .await?
        .into_iter()
        .map(|r| (r.peer_url.clone(), r))
        .collect();

    let policy = TrustPolicy::of(deps.settings);
    let mut plan = Plan::default();
    let mut by_url: HashMap<&str, (Components, &PeerRow)> = HashMap::new();
    // Only admitted peers are scored: a pending peer is subject to no trust rule (§2.4).
    for peer in peers.iter().filter(|p| p.state == PeerState::Active) {
        let bond_usd = deps.settings.peer_bonds.get(&peer.url);
        let inputs = own_inputs(own.get(&peer.url), events.get(&peer.url));
        let c = components(&policy, peer.first_success, bond_usd, &inputs, now);
        let trust = c.trust();
        if (trust - peer.trust_score).abs() > 1e-9 || (bond_usd - peer.bond_usd).abs() > 1e-9 {
            plan.peers.push((peer.id, trust, bond_usd));
            if (trust - peer.trust_score).abs() > 1e-9 {
                plan.changed_peer_ids.push(peer.id);
            }
        }
        let row = PeerReputationRow::new(&peer.url, &c, &inputs, now);
        if stored_rows
            .get(&peer.url)
            .is_none_or(|old| !old.same_values(&row))
        {
            plan.peer_rows.push(row);
        }
        by_url.insert(peer.url.as_str(), (c, peer));
    }

    plan_capabilities(store, since, &policy, &by_url, &mut plan).await?;
    let (mut outcome, peer_keys) = write(store, &plan, now).await?;
    plan.visible_keys.extend(peer_keys);
    outcome.capabilities_changed = plan.visible_keys.len();
    if let Some(version) = outcome.version {
        deps.schedule.remember_published(version);
        deps.feed.publish(CatalogUpdate {
            version,
            since: Some(version - 1),
            changed: plan.visible_keys.into_iter().collect(),
            ..CatalogUpdate::default()
        });
    }
    Ok(outcome)
}

/// Adds the capability rows to write (and the keys whose visible trust changed) to `plan`.
async fn plan_capabilities(
    store: &Store,
    since: i64,
    policy: &TrustPolicy,
    peers: &HashMap<&str, (Components, &PeerRow)>,
    plan: &mut Plan,
) -> Result<(), ReputationError> {
    let lines = store.capability_calls(since).await?;
    let stored = store.capability_reputation_rows().await?;
    // Per key: totals, and the listing peer with the most calls (a capability re-listed
    // by another peer within the window keeps one score).
    let mut totals: HashMap<CapabilityKey, (i64, i64, String, i64)> = HashMap::new();
    for line in lines {
        let key = CapabilityKey {
            origin: line.origin,
            product_id: line.product_id,
            capability_id: line.capability_id,
        };
        let entry = totals.entry(key).or_insert((0, 0, String::new(), 0));
        entry.0 += line.calls;
        entry.1 += line.successes;
        if line.calls > entry.3 {
            entry.2 = line.peer_url;
            entry.3 = line.calls;
        }
    }
    let mut stored: HashMap<CapabilityKey, CapabilityReputationRow> =
        stored.into_iter().map(|r| (r.key(), r)).collect();
    for (key, (calls, successes, peer_url, _)) in totals {
        let trust = peers
            .get(peer_url.as_str())
            .filter(|_| calls >= MIN_CAPABILITY_CALLS)
            .map(|(c, _)| {
                // The peer's prior mean, moved by this capability's own calls only.
                let m = policy.prior_mean(c.standing());
                Components {
                    success_rate: component(policy.posterior(m, successes as f64, calls as f64)),
                    ..*c
                }
                .trust()
            });
        let row = CapabilityReputationRow {
            origin: key.origin.clone(),
            product_id: key.product_id.clone(),
            capability_id: key.capability_id.clone(),
            calls_30d: calls,
            successes_30d: successes,
            trust_score: trust,
        };
        let old = stored.remove(&key);
        if old.as_ref() == Some(&row) {
            continue;
        }
        if old.as_ref().and_then(CapabilityReputationRow::visible) != row.visible() {
            plan.visible_keys.insert(key);
        }
        plan.capability_rows.push(row);
    }
    // Keys without calls in the window any more.
    for (key, old) in stored {
        if old.visible().is_some() {
            plan.visible_keys.insert(key.clone());
        }
        plan.stale_capabilities.push(key);
    }
    Ok(())
}

/// Writes `plan` in one transaction, bumping the catalog version when a visible score
/// changed; returns the outcome and the keys of the capabilities whose trust follows a
/// changed peer.
async fn write(
    store: &Store,
    plan: &Plan,
    now: i64,
) -> Result<(RecomputeOutcome, Vec<CapabilityKey>), ReputationError> {
    let (version, peer_keys) = store
        .write_reputation(&ReputationWrite {
            peers: &plan.peers,
            changed_peer_ids: &plan.changed_peer_ids,
            peer_rows: &plan.peer_rows,
            capability_rows: &plan.capability_rows,
            stale_capabilities: &plan.stale_capabilities,
            bump_version: !plan.changed_peer_ids.is_empty() || !plan.visible_keys.is_empty(),
            purge_events_before: now.saturating_sub(EVENT_RETENTION_MS),
            now,
        })
        .await?;
    let outcome = RecomputeOutcome {
        peers_changed: plan.peers.len(),
        capabilities_changed: plan.visible_keys.len(),
        version,
    };
    Ok((outcome, peer_keys))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(consumer: &str, successes: i64, failures: i64, volume_usd: f64) -> EventLine {
        EventLine {
            provider_hub: "https://p.example".into(),
            consumer_hub: consumer.into(),
            events: successes + failures + 1,
            successes,
            failures,
            volume_usd,
        }
    }

    #[test]
    fn events_are_weighted_capped_and_only_from_reporters() {
        let reporters = HashSet::from(["https://a.example", "https://b.example"]);
        let totals = fold_events(
            vec![
                line("https://a.example", 3, 1, 8.0),
                // Beyond the cap: its ratio counts, not its weight.
                line("https://b.example", 150, 50, 400.0),
                line("https://stranger.example", 1000, 0, 1e6),
            ],
            &reporters,
        );
        let t = totals["https://p.example"];
        let b_scale = EVENT_CAP_PER_CONSUMER as f64 / 200.0;
        assert!((t.observations - EVENT_WEIGHT * (4.0 + 200.0 * b_scale)).abs() < 1e-9);
        assert!((t.successes - EVENT_WEIGHT * (3.0 + 150.0 * b_scale)).abs() < 1e-9);
        assert!((t.volume_usd - EVENT_WEIGHT * (8.0 + 400.0 * b_scale)).abs() < 1e-9);
        assert_eq!((t.events, t.event_successes), (5 + 201, 153));
    }

    #[test]
    fn components_combine_own_calls_and_events() {
        let day = 86_400_000;
        let inputs = Inputs {
            calls: 20,
            successes: 15,
            volume_usd: 900.0,
            events: EventTotals {
                observations: 4.0,
                successes: 4.0,
                volume_usd: 100.0,
                events: 16,
                event_successes: 16,
            },
        };
        let policy = TrustPolicy::of(&crate::settings::ReputationSettings::default());
        let c = components(&policy, Some(0), 100.0, &inputs, 73 * day);
        assert_eq!(c.age, 0.2);
        assert_eq!(c.bond, 0.5);
        assert_eq!(c.volume, 0.6);
        // standing 0.2·0.2 + 0.3·0.5 + 0.15·0.6 = 0.28; m = 0.6 + 0.4·0.28 = 0.712;
        // S = 15 + 4, N = 20 + 4: (10·0.712 + 19) / 34.
        assert_eq!(c.success_rate, round_score((7.12 + 19.0) / 34.0));
        assert_eq!(c.trust(), 0.768);
        // A fresh admitted peer: the prior.
        let none = components(&policy, None, 0.0, &Inputs::default(), day);
        assert_eq!(none.trust(), 0.6);
    }
}
