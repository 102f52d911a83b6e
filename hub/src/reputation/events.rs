//! `POST /ai-market/v2/reputation/events` (spec §5.2): signed events from other hubs.
//!
//! A batch holds 1 to [`MAX_EVENTS`] events; anything else is a 400. Each event is then
//! accepted, rejected or recognised as a replay, and the answer counts them
//! (`{received, rejected, replayed}`, `received` = newly stored).
//!
//! An event is accepted when:
//! - `consumer_hub` (the reporting hub) is an **active** peer of this hub with a pinned key:
//!   a pending peer, even one whose announce pinned a key, is not admitted and its reports
//!   have no effect (spec §2.4);
//! - `provider_hub` is an http(s) URL other than the reporter's own origin;
//! - `type` is a string (at most 64 characters), `timestamp` an RFC 3339 time within
//!   [`MAX_SKEW`] (24 h) of this hub's clock, `price_usd` a non-negative number and
//!   `latency_ms` a non-negative integer when present;
//! - `signature` (the spec's base64 string, or an object with `value`) is an Ed25519
//!   signature by the reporter's pinned key over the reference hub's canonical
//!   `type:{type}|provider_hub:{provider_hub}|timestamp:{timestamp}|price_usd:{price_usd}|latency_ms:{latency_ms}`,
//!   each value exactly as sent, numbers printed as Python's `str()` prints them (`0.4`,
//!   `1.0`, `120`), absent `price_usd`/`latency_ms` as `0`.
//!
//! A replay is an event whose signature bytes were stored before (or earlier in the same
//! batch): ignored and counted. Stored signatures are kept 31 days, longer than any accepted
//! timestamp can be old.

use std::collections::HashMap;
use std::time::Duration;

use aimarket_protocol::canonical::py_str;
use aimarket_protocol::signing::PublicKey;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};

use super::ReputationDeps;
use super::ReputationError;
use crate::store::{NewReputationEvent, PeerState, Store, normalize_origin, now_ms};

/// Most events per request.
pub const MAX_EVENTS: usize = 100;
/// Largest difference between an event's timestamp and this hub's clock.
pub const MAX_SKEW: Duration = Duration::from_secs(24 * 3600);
/// Longest accepted `type`.
const MAX_KIND_CHARS: usize = 64;
/// Longest accepted `capability_id`.
const MAX_CAPABILITY_CHARS: usize = 200;

/// The answer to a batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct EventBatchOutcome {
    /// Events newly stored.
    pub received: usize,
    /// Events refused (see the module docs for the rules).
    pub rejected: usize,
    /// Events already stored (same signature).
    pub replayed: usize,
}

/// An event that passed every check, ready to store.
#[derive(Debug, Clone, PartialEq)]
struct Accepted {
    signature_hex: String,
    consumer_hub: String,
    provider_hub: String,
    kind: String,
    capability_id: Option<String>,
    event_ts: i64,
    price_usd: f64,
    latency_ms: i64,
}

/// The reference canonical of an event (module docs).
pub fn event_canonical(event: &Map<String, Value>) -> Option<String> {
    let text = |name: &str| match event.get(name) {
        Some(Value::String(s)) => Some(s.clone()),
        _ => None,
    };
    let number = |name: &str| match event.get(name) {
        None => Some("0".to_owned()),
        Some(v @ Value::Number(_)) => Some(py_str(v)),
        _ => None,
    };
    Some(format!(
        "type:{}|provider_hub:{}|timestamp:{}|price_usd:{}|latency_ms:{}",
        text("type")?,
        text("provider_hub")?,
        text("timestamp")?,
        number("price_usd")?,
        number("latency_ms")?,
    ))
}

/// The signature value: a bare string or `{value}` (with `algorithm`, if given, ed25519).
fn signature_value(event: &Map<String, Value>) -> Option<&str> {
    match event.get("signature")? {
        Value::String(s) => Some(s),
        Value::Object(o) => {
            match o.get("algorithm") {
                None | Some(Value::Null) => {}
                Some(Value::String(a)) if a.eq_ignore_ascii_case("ed25519") => {}
                Some(_) => return None,
            }
            o.get("value")?.as_str()
        }
        _ => None,
    }
}

/// Checks one event against everything but the database (module docs). `key_of` finds the
/// reporter's pinned key by origin.
fn check_event(
    event: &Value,
    now: DateTime<Utc>,
    key_of: &dyn Fn(&str) -> Option<PublicKey>,
) -> Option<Accepted> {
    let e = event.as_object()?;
    let consumer = normalize_origin(e.get("consumer_hub")?.as_str()?).ok()?;
    let provider = normalize_origin(e.get("provider_hub")?.as_str()?).ok()?;
    if consumer == provider {
        return None;
    }
    let kind = e.get("type")?.as_str()?;
    if kind.is_empty() || kind.chars().count() > MAX_KIND_CHARS {
        return None;
    }
    let at = DateTime::parse_from_rfc3339(e.get("timestamp")?.as_str()?)
        .ok()?
        .with_timezone(&Utc);
    let skew = chrono::Duration::from_std(MAX_SKEW).ok()?;
    if at < now - skew || at > now + skew {
        return None;
    }
    let price_usd = match e.get("price_usd") {
        None => 0.0,
        Some(v) => v.as_f64().filter(|p| p.is_finite() && *p >= 0.0)?,
    };
    let latency_ms = match e.get("latency_ms") {
        None => 0,
        Some(v) => i64::try_from(v.as_u64()?).ok()?,
    };
    let capability_id = match e.get("capability_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(c)) if c.chars().count() <= MAX_CAPABILITY_CHARS => Some(c.clone()),
        Some(_) => return None,
    };
    let signature = signature_value(e)?;
    let key = key_of(&consumer)?;
    key.verify_b64(event_canonical(e)?.as_bytes(), signature)
        .ok()?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(signature.trim())
        .ok()?;
    Some(Accepted {
        signature_hex: hex::encode(bytes),
        consumer_hub: consumer,
        provider_hub: provider,
        kind: kind.to_owned(),
        capability_id,
        event_ts: at.timestamp_millis(),
        price_usd,
        latency_ms,
    })
}

/// Checks and stores a batch (the request body as parsed JSON).
pub async fn ingest_events(
    deps: &ReputationDeps<'_>,
    body: &Value,
) -> Result<EventBatchOutcome, ReputationError> {
    let events = body
        .get("events")
        .and_then(Value::as_array)
        .ok_or_else(|| ReputationError::BadRequest("`events` must be an array".into()))?;
    if events.is_empty() || events.len() > MAX_EVENTS {
        return Err(ReputationError::BadRequest(format!(
            "`events` must hold 1 to {MAX_EVENTS} events, got {}",
            events.len()
        )));
    }
    let keys = reporter_keys(deps.store, events).await?;
    let now = Utc::now();
    let key_of = |origin: &str| keys.get(origin).cloned().flatten();
    let mut outcome = EventBatchOutcome::default();
    let mut accepted = Vec::new();
    for event in events {
        match check_event(event, now, &key_of) {
            Some(a) => accepted.push(a),
            None => outcome.rejected += 1,
        }
    }
    let stored = store_events(deps.store, &accepted).await?;
    outcome.received = stored;
    outcome.replayed = accepted.len() - stored;
    if stored > 0 {
        deps.schedule.wake();
    }
    Ok(outcome)
}

/// The pinned keys of the batch's reporters that are active peers (`None` for the others).
async fn reporter_keys(
    store: &Store,
    events: &[Value],
) -> Result<HashMap<String, Option<PublicKey>>, ReputationError> {
    let mut keys = HashMap::new();
    for event in events {
        let Some(origin) = event
            .get("consumer_hub")
            .and_then(Value::as_str)
            .and_then(|u| normalize_origin(u).ok())
        else {
            continue;
        };
        if keys.contains_key(&origin) {
            continue;
        }
        let key = store
            .get_peer_by_url(&origin)
            .await?
            .filter(|p| p.state == PeerState::Active)
            .and_then(|p| p.pinned_key)
            .and_then(|k| PublicKey::from_b64(&k).ok());
        keys.insert(origin, key);
    }
    Ok(keys)
}

/// Inserts the accepted events; returns how many were new (the rest are replays).
async fn store_events(store: &Store, events: &[Accepted]) -> Result<usize, ReputationError> {
    let rows: Vec<NewReputationEvent<'_>> = events
        .iter()
        .map(|e| NewReputationEvent {
            signature_hex: &e.signature_hex,
            consumer_hub: &e.consumer_hub,
            provider_hub: &e.provider_hub,
            kind: &e.kind,
            capability_id: e.capability_id.as_deref(),
            event_ts: e.event_ts,
            price_usd: e.price_usd,
            latency_ms: e.latency_ms,
        })
        .collect();
    let stored = store.insert_reputation_events(&rows, now_ms()).await?;
    Ok(usize::try_from(stored).unwrap_or(usize::MAX))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use aimarket_protocol::signing::KeyPair;
    use serde_json::json;

    const CONSUMER: &str = "https://consumer.example";

    fn signed(key: &KeyPair, mut event: Value) -> Value {
        let canonical = event_canonical(event.as_object().unwrap()).unwrap();
        event["signature"] = json!({"value": key.sign_b64(canonical.as_bytes())});
        event
    }

    fn event(ts: &str) -> Value {
        json!({
            "type": "invocation_success",
            "provider_hub": "https://provider.example",
            "consumer_hub": CONSUMER,
            "capability_id": "cap@v1",
            "timestamp": ts,
            "price_usd": 0.4,
            "latency_ms": 120,
        })
    }

    #[test]
    fn canonical_matches_the_reference_layout() {
        let e = event("2026-05-21T12:00:00Z");
        assert_eq!(
            event_canonical(e.as_object().unwrap()).unwrap(),
            "type:invocation_success|provider_hub:https://provider.example|\
             timestamp:2026-05-21T12:00:00Z|price_usd:0.4|latency_ms:120"
        );
        let mut bare = e.clone();
        bare.as_object_mut().unwrap().remove("price_usd");
        bare["latency_ms"] = json!(1.0);
        assert!(
            event_canonical(bare.as_object().unwrap())
                .unwrap()
                .ends_with("|price_usd:0|latency_ms:1.0")
        );
    }

    #[test]
    fn checks_signature_key_time_and_shape() {
        let key = KeyPair::from_seed(&[3; 32]);
        let now = Utc::now();
        let ts = now.format("%Y-%m-%dT%H:%M:%SZ").to_string();
        let key_of = |o: &str| (o == CONSUMER).then(|| key.public_key());
        let good = signed(&key, event(&ts));
        let accepted = check_event(&good, now, &key_of).unwrap();
        assert_eq!(accepted.provider_hub, "https://provider.example");
        assert_eq!(accepted.signature_hex.len(), 128);

        // The spec's bare-string signature is accepted too.
        let mut bare = good.clone();
        bare["signature"] = good["signature"]["value"].clone();
        assert_eq!(check_event(&bare, now, &key_of), Some(accepted));

        let mut tampered = good.clone();
        tampered["price_usd"] = json!(0.5);
        assert!(check_event(&tampered, now, &key_of).is_none());
        let other = signed(&KeyPair::from_seed(&[4; 32]), event(&ts));
        assert!(check_event(&other, now, &key_of).is_none());
        let old = (now - chrono::Duration::hours(25))
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        assert!(check_event(&signed(&key, event(&old)), now, &key_of).is_none());
        let mut unknown = event(&ts);
        unknown["consumer_hub"] = json!("https://stranger.example");
        assert!(check_event(&signed(&key, unknown), now, &key_of).is_none());
        let mut own = event(&ts);
        own["provider_hub"] = json!(CONSUMER);
        assert!(check_event(&signed(&key, own), now, &key_of).is_none());
        let mut negative = event(&ts);
        negative["price_usd"] = json!(-1);
        assert!(check_event(&signed(&key, negative), now, &key_of).is_none());
        let mut wrong_alg = good.clone();
        wrong_alg["signature"]["algorithm"] = json!("rsa");
        assert!(check_event(&wrong_alg, now, &key_of).is_none());
        assert!(check_event(&json!("not an object"), now, &key_of).is_none());
    }
}
