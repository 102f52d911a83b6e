//! The federated manifest (spec §3.1): every visible capability, signed with the five-field
//! canonical of §7.3.2 by the hub key.
//!
//! It is built off the request path by the sync task and served from memory: the body, a
//! gzip copy and their entity tags. A full build (startup, a missed update, every
//! [`REFRESH_INTERVAL`]) streams the store in keyset pages; each catalog update after it
//! re-reads only its keys and rebuilds only the parts holding them (see [`super::parts`]), so
//! publishing a change costs little more than re-hashing the `tools` digest.
//!
//! Fields: `protocol_version: "v2"`, `generated_at`, `base_url`, `capabilities_count` (=
//! `total_capabilities`, the signed count), `total_capabilities`, `local_capabilities` (0:
//! this hub serves no capability of its own), `federated_capabilities`, `hubs_indexed`,
//! `tools` (see `rows::manifest_tool`), `by_hub` (per owning origin: `capabilities_count`,
//! `trust_score` = the mean trust of its tools, `last_crawl` = when its listing was last
//! confirmed) and `signature`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aimarket_indexer::IndexedCapability;
use aimarket_protocol::canonical::{Style, digest_hex, to_canonical_vec};
use aimarket_protocol::signing::KeyPair;
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use super::body::ManifestBody;
use super::parts::{BuiltTool, Parts};
use super::rows::{Effective, manifest_tool};
use super::sync::blocking;
use super::{Catalog, CatalogError};
use crate::crawl::CatalogUpdate;
use crate::store::{CapabilityKey, CapabilityRow};

/// Rebuild an unchanged manifest this often, so `generated_at` never looks stale to a
/// crawler (ours refuses manifests older than 7 days by default).
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(6 * 3600);
/// Rows read per store page while building.
const PAGE: u32 = 2_000;
/// Path of the invoke endpoint every tool's `invoke_url` points at.
pub const INVOKE_PATH: &str = "/ai-market/v2/invoke";

/// A built manifest, ready to serve.
#[derive(Debug)]
pub struct RenderedManifest {
    /// The catalog version it was built at.
    pub version: i64,
    /// Number of tools.
    pub capabilities: usize,
    /// The JSON body.
    pub body: ManifestBody,
    /// The same body, gzip-compressed.
    pub gzip: ManifestBody,
    /// Entity tag of `body` (quoted).
    pub etag: String,
    /// Entity tag of `gzip` (quoted; a different representation needs a different tag).
    pub gzip_etag: String,
}

/// The last built manifest.
#[derive(Debug)]
pub struct ManifestCache {
    current: watch::Sender<Option<Arc<RenderedManifest>>>,
    /// Large uncompressed bodies being streamed (each inflates the whole catalog).
    identity_streams: Arc<tokio::sync::Semaphore>,
}

/// Uncompressed bodies over [`LARGE_IDENTITY_BYTES`] streamed at once; more wait for a 503's
/// `Retry-After` (gzip, which every crawler we know sends, is never limited).
pub const MAX_LARGE_IDENTITY_STREAMS: usize = 2;
/// From this size on, an uncompressed body counts against [`MAX_LARGE_IDENTITY_STREAMS`]
/// (inflating it costs about a second of CPU per 500 MiB here).
pub const LARGE_IDENTITY_BYTES: u64 = 16 * 1024 * 1024;

impl Default for ManifestCache {
    fn default() -> Self {
        Self {
            current: watch::Sender::new(None),
            identity_streams: Arc::new(tokio::sync::Semaphore::new(MAX_LARGE_IDENTITY_STREAMS)),
        }
    }
}

impl ManifestCache {
    /// A slot for streaming the uncompressed body of `manifest`: `Some(None)` when it is
    /// small enough to need none, `Some(permit)` to hold until the stream ends, `None` when
    /// [`MAX_LARGE_IDENTITY_STREAMS`] large ones are already streaming.
    pub fn identity_slot(
        &self,
        manifest: &RenderedManifest,
    ) -> Option<Option<tokio::sync::OwnedSemaphorePermit>> {
        if manifest.body.len() < LARGE_IDENTITY_BYTES {
            return Some(None);
        }
        Arc::clone(&self.identity_streams)
            .try_acquire_owned()
            .ok()
            .map(Some)
    }

    /// The current manifest, if one was built yet.
    pub fn get(&self) -> Option<Arc<RenderedManifest>> {
        self.current.borrow().clone()
    }

    /// The current manifest, waiting up to `timeout` for the first build.
    pub async fn wait(&self, timeout: Duration) -> Option<Arc<RenderedManifest>> {
        let mut rx = self.current.subscribe();
        let built = tokio::time::timeout(timeout, rx.wait_for(Option::is_some)).await;
        match built {
            Ok(Ok(manifest)) => manifest.clone(),
            _ => None,
        }
    }

    fn put(&self, manifest: Arc<RenderedManifest>) {
        self.current.send_replace(Some(manifest));
    }
}

/// Per-origin totals for `by_hub`.
#[derive(Default)]
struct HubTotals {
    count: u64,
    trust_sum: f64,
    last_seen_ms: i64,
}

fn iso_ms(ms: i64) -> Option<String> {
    DateTime::<Utc>::from_timestamp_millis(ms).map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
}

fn json_error(e: serde_json::Error) -> CatalogError {
    CatalogError::Task(e.to_string())
}

/// The manifest tool of `row` as the parts keep it: compact JSON for the body and the
/// Python-default canonical for the `tools` digest, both from the one `Value`.
pub(super) fn built_tool(
    row: &CapabilityRow,
    bps: u32,
    invoke_url: &str,
) -> Result<BuiltTool, CatalogError> {
    let tool = manifest_tool(row, bps, invoke_url);
    let cap = &row.capability;
    Ok(BuiltTool {
        id: row.id,
        key: IndexedCapability::make_key(&cap.origin, &cap.product_id, &cap.capability_id),
        origin: cap.origin.clone(),
        peer_id: row.peer_id,
        trust: Effective::of(row, bps).trust_score,
        last_seen: row.last_seen,
        json: serde_json::to_vec(&tool).map_err(json_error)?,
        canonical: to_canonical_vec(&tool, Style::Python),
    })
}

/// Publishes `parts`: rebuilds the changed segments, sums `by_hub`, signs, and lays out the
/// body and its gzip copy as chunks.
///
/// The signature is the five-field canonical of spec §7.3.2. `tools_hash` is SHA-256 of the
/// Python-default canonical of the `tools` array, which is `[` + the canonicals of the tools
/// (each from its parsed `Value`) joined by `", "` + `]`; a unit test pins the whole result
/// against `aimarket_protocol::signing::manifest_canonical` and `verify_manifest`.
/// `confirmed` maps active peers to their last successful crawl: a crawl that confirms a
/// catalog without rewriting it moves `last_crawl`, as the store's `last_seen` does.
///
/// The entity tag is the SHA-256 of `tools_hash` and the other fields' bytes: the body is a
/// function of exactly those, and hashing the whole body again would cost as much as the
/// `tools` digest.
pub(super) fn render(
    parts: &mut Parts,
    key: &KeyPair,
    base_url: &str,
    generated_at: DateTime<Utc>,
    confirmed: &HashMap<i64, i64>,
) -> Result<RenderedManifest, CatalogError> {
    parts.flush(None)?;
    let tools_hash = parts.tools_hash()?;
    let count = parts.len();
    let mut totals: HashMap<&str, HubTotals> = HashMap::new();
    // In id order, as a full build reads the store: the float sums are the same bits.
    for tool in parts.tools() {
        let t = totals.entry(&tool.origin).or_default();
        t.count += 1;
        t.trust_sum += tool.trust;
        let confirmed_at = confirmed.get(&tool.peer_id).copied().unwrap_or(0);
        t.last_seen_ms = t.last_seen_ms.max(tool.last_seen).max(confirmed_at);
    }
    let by_hub: Map<String, Value> = totals
        .into_iter()
        .map(|(origin, t)| {
            let mut entry = json!({
                "capabilities_count": t.count,
                // Micro-rounded: a mean of equal scores must read as that score.
                "trust_score": if t.count == 0 {
                    0.0
                } else {
                    (t.trust_sum / t.count as f64 * 1e6).round() / 1e6
                },
            });
            if let Some(at) = iso_ms(t.last_seen_ms).filter(|_| t.last_seen_ms > 0) {
                entry["last_crawl"] = Value::from(at);
            }
            (origin.to_owned(), entry)
        })
        .collect();
    let generated_at = generated_at.to_rfc3339_opts(SecondsFormat::Secs, true);
    let by_hub = Value::Object(by_hub);
    let canonical = format!(
        "capabilities_count:{count}|generated_at:{generated_at}|protocol_version:v2\
         |tools_hash:{tools_hash}|by_hub_hash:{}",
        digest_hex(&by_hub, Style::Python),
    );
    let mut rest = json!({
        "protocol_version": "v2",
        "generated_at": generated_at,
        "base_url": base_url,
        "capabilities_count": count,
        "total_capabilities": count,
        "local_capabilities": 0,
        "federated_capabilities": count,
        "hubs_indexed": by_hub.as_object().map_or(0, Map::len),
        "by_hub": by_hub,
    });
    rest["signature"] = json!({
        "algorithm": "ed25519",
        "public_key": key.public_key().to_b64(),
        "value": key.sign_b64(canonical.as_bytes()),
    });
    // `{"tools":[…],` + the other fields without their opening brace.
    let rest = serde_json::to_vec(&rest).map_err(json_error)?;
    let prefix: &'static [u8] = b"{\"tools\":[";
    let mut suffix = b"],".to_vec();
    suffix.extend_from_slice(&rest[1..]);
    let mut tag = Sha256::new();
    tag.update(tools_hash.as_bytes());
    tag.update(&rest);
    let tag = hex::encode(tag.finalize());
    let gzip = parts.gzip(prefix, &suffix)?;
    let body = parts.body(Bytes::from_static(prefix), suffix.into());
    Ok(RenderedManifest {
        version: parts.version,
        capabilities: count,
        body: ManifestBody::new(body),
        gzip: ManifestBody::raw(gzip),
        etag: format!("\"{}\"", &tag[..32]),
        gzip_etag: format!("\"{}-gzip\"", &tag[..32]),
    })
}

impl Catalog {
    /// Builds the manifest from the whole store and makes it the served one (at startup,
    /// when an update cannot be applied incrementally, and every [`REFRESH_INTERVAL`]).
    pub async fn refresh_manifest(&self) -> Result<Arc<RenderedManifest>, CatalogError> {
        let mut kept = self.manifest_parts.lock().await;
        // A build that fails leaves nothing half-built to be updated later.
        *kept = None;
        let started = Instant::now();
        // Read before the rows: the version never claims more than the rows hold.
        let version = self.store.catalog_version().await?;
        let invoke_url: Arc<str> = format!("{}{INVOKE_PATH}", self.public_url).into();
        let bps = self.routing_fee_bps;
        let mut parts = Parts::at(version);
        let mut after = 0;
        loop {
            let rows = self.store.list_capabilities(after, PAGE).await?;
            let last = rows.last().map(|r| r.id);
            let short = rows.len() < PAGE as usize;
            let url = Arc::clone(&invoke_url);
            parts = blocking(move || {
                for row in &rows {
                    parts.put(built_tool(row, bps, &url)?);
                }
                // Pages come in id order: the segments before the last one are complete.
                if let Some(id) = last {
                    parts.flush(Some(Parts::segment_of(id)))?;
                }
                Ok(parts)
            })
            .await?;
            match last {
                Some(id) if !short => after = id,
                _ => break,
            }
        }
        self.publish(parts, &mut kept, started, "full").await
    }

    /// Brings the manifest to `update`: incrementally (only the update's keys are re-read
    /// and only their segments rebuilt) when the kept parts are at or after its `since` and
    /// not past it, the rule the index follows; otherwise by a full build.
    pub async fn update_manifest(
        &self,
        update: &CatalogUpdate,
    ) -> Result<Arc<RenderedManifest>, CatalogError> {
        let mut kept = self.manifest_parts.lock().await;
        let covered = kept.as_ref().is_some_and(|parts| {
            matches!(update.since, Some(since) if since <= parts.version && parts.version <= update.version)
        });
        let Some(mut parts) = kept.take().filter(|_| covered) else {
            drop(kept);
            return self.refresh_manifest().await;
        };
        let started = Instant::now();
        let keys: Vec<CapabilityKey> = update
            .added
            .iter()
            .chain(&update.changed)
            .cloned()
            .collect();
        // On error the parts stay taken: the next update builds in full.
        let rows = self.store.get_capabilities_by_keys(&keys).await?;
        let removed = update.removed.clone();
        let (bps, version) = (self.routing_fee_bps, update.version);
        let url = format!("{}{INVOKE_PATH}", self.public_url);
        parts = blocking(move || {
            let make = |k: &CapabilityKey| {
                IndexedCapability::make_key(&k.origin, &k.product_id, &k.capability_id)
            };
            let found: HashSet<String> = rows
                .iter()
                .map(|r| &r.capability)
                .map(|c| IndexedCapability::make_key(&c.origin, &c.product_id, &c.capability_id))
                .collect();
            // A changed key no longer visible (its peer left) is removed like `removed`.
            for key in removed.iter().chain(&keys).map(make) {
                if !found.contains(&key) {
                    parts.remove_key(&key);
                }
            }
            for row in &rows {
                parts.put(built_tool(row, bps, &url)?);
            }
            parts.version = parts.version.max(version);
            Ok(parts)
        })
        .await?;
        self.publish(parts, &mut kept, started, "incremental").await
    }

    /// Signs and serves `parts`, keeping them for the next update.
    async fn publish(
        &self,
        mut parts: Parts,
        kept: &mut Option<Parts>,
        started: Instant,
        how: &'static str,
    ) -> Result<Arc<RenderedManifest>, CatalogError> {
        let confirmed = self.store.active_peer_successes().await?;
        let key = self.signing_key.clone();
        let base_url = self.public_url.to_string();
        let (parts, rendered) = blocking(move || {
            let rendered = render(&mut parts, &key, &base_url, Utc::now(), &confirmed)?;
            Ok((parts, rendered))
        })
        .await?;
        if how != "incremental" {
            let held = parts.held_bytes();
            tracing::info!(
                capabilities = rendered.capabilities,
                json_deflated_bytes = held.json_deflated,
                canonical_deflated_bytes = held.canonical_deflated,
                tool_record_bytes = held.tools,
                key_index_bytes = held.keys,
                "manifest built; kept in memory"
            );
        }
        *kept = Some(parts);
        let rendered = Arc::new(rendered);
        self.manifest.put(Arc::clone(&rendered));
        self.stats.manifest_builds.incr();
        tracing::debug!(
            how,
            capabilities = rendered.capabilities,
            bytes = rendered.body.len(),
            gzip_bytes = rendered.gzip.len(),
            version = rendered.version,
            micros = started.elapsed().as_micros() as u64,
            "manifest published"
        );
        Ok(rendered)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::catalog::trust::tests::row;
    use aimarket_protocol::schema::{SchemaKind, validate};
    use aimarket_protocol::signing::verify_manifest;
    use std::collections::BTreeMap;
    use std::io::Read as _;

    const URL: &str = "https://hub.example/ai-market/v2/invoke";

    /// Rows whose tools exercise the canonical: non-ASCII text, floats, nested schemas.
    fn rows() -> Vec<CapabilityRow> {
        let mut a = row(0.5, Some(0.9));
        a.last_seen = 1_700_000_000_000;
        a.capability.description = "Перевод «текста» — 翻译 \"quoted\" \\ tab\t".into();
        a.capability.price_usd = 1e-5;
        a.capability.input_schema =
            r#"{"type":"object","properties":{"q":{"type":"string","description":"é"}},"required":["q"]}"#
                .into();
        let mut b = row(0.7, None);
        b.id = 2;
        b.capability.capability_id = "other@v1".into();
        b.capability.origin = "https://q.example".into();
        b.capability.price_usd = 0.1 + 0.2;
        b.capability.via = Some("https://relay.example".into());
        vec![a, b]
    }

    fn parts_of(rows: &[CapabilityRow], version: i64) -> Parts {
        let mut parts = Parts::at(version);
        for row in rows {
            parts.put(built_tool(row, 100, URL).unwrap());
        }
        parts
    }

    fn build(rows: &[CapabilityRow], key: &KeyPair) -> RenderedManifest {
        let mut parts = parts_of(rows, 9);
        render(
            &mut parts,
            key,
            "https://hub.example",
            Utc::now(),
            &HashMap::new(),
        )
        .unwrap()
    }

    #[test]
    fn large_uncompressed_streams_are_limited() {
        let rendered = |len: usize| RenderedManifest {
            version: 1,
            capabilities: 0,
            body: ManifestBody::raw(vec![Bytes::from(vec![b' '; len])]),
            gzip: ManifestBody::default(),
            etag: "\"e\"".into(),
            gzip_etag: "\"e-gzip\"".into(),
        };
        let cache = ManifestCache::default();
        let large = rendered(LARGE_IDENTITY_BYTES as usize);
        let held: Vec<_> = (0..MAX_LARGE_IDENTITY_STREAMS)
            .map(|_| cache.identity_slot(&large).unwrap().unwrap())
            .collect();
        assert!(cache.identity_slot(&large).is_none());
        // Small bodies never wait.
        assert!(matches!(cache.identity_slot(&rendered(10)), Some(None)));
        drop(held);
        assert!(cache.identity_slot(&large).is_some());
    }

    fn gunzip(body: &ManifestBody) -> Vec<u8> {
        let mut unzipped = Vec::new();
        flate2::read::GzDecoder::new(&body.to_bytes().unwrap()[..])
            .read_to_end(&mut unzipped)
            .unwrap();
        unzipped
    }

    #[test]
    fn streamed_signature_is_the_protocol_canonical() {
        let key = KeyPair::generate();
        for rows in [rows(), Vec::new(), rows()[..1].to_vec()] {
            let rendered = build(&rows, &key);
            let parsed: Value = serde_json::from_slice(&rendered.body.to_bytes().unwrap()).unwrap();
            verify_manifest(&parsed, &key.public_key()).unwrap();
            // The same document signed by the protocol crate from its parsed Value.
            let mut resigned = parsed.clone();
            resigned.as_object_mut().unwrap().remove("signature");
            aimarket_protocol::signing::sign_manifest(&mut resigned, &key).unwrap();
            assert_eq!(resigned["signature"], parsed["signature"]);
            assert_eq!(parsed["tools"].as_array().unwrap().len(), rows.len());
            assert_eq!(gunzip(&rendered.gzip), rendered.body.to_bytes().unwrap());
        }
    }

    #[test]
    fn rendered_manifest_verifies_validates_and_unzips() {
        let key = KeyPair::generate();
        let rendered = build(&rows(), &key);
        let parsed: Value = serde_json::from_slice(&rendered.body.to_bytes().unwrap()).unwrap();
        verify_manifest(&parsed, &key.public_key()).unwrap();
        validate(SchemaKind::Manifest, &parsed).unwrap();
        assert_eq!(parsed["capabilities_count"], 2);
        assert_eq!(parsed["hubs_indexed"], 2);
        assert_eq!(
            parsed["by_hub"]["https://p.example"]["capabilities_count"],
            1
        );
        assert_eq!(parsed["by_hub"]["https://p.example"]["trust_score"], 0.5);
        assert_eq!(
            parsed["by_hub"]["https://p.example"]["last_crawl"],
            "2023-11-14T22:13:20Z"
        );
        assert!(
            parsed["by_hub"]["https://q.example"]
                .get("last_crawl")
                .is_none()
        );
        assert_eq!(gunzip(&rendered.gzip), rendered.body.to_bytes().unwrap());
        assert_ne!(rendered.etag, rendered.gzip_etag);
        assert_eq!(rendered.version, 9);
    }

    /// A catalog of `n` rows over a few origins, ids spread over several segments.
    fn catalog(n: i64) -> BTreeMap<i64, CapabilityRow> {
        (0..n)
            .map(|i| {
                let mut r = row(0.25 + (i % 7) as f64 / 10.0, Some(0.9));
                r.id = 1 + i * 3;
                r.peer_id = i % 4;
                r.capability.origin = format!("https://o{}.example", i % 5);
                r.capability.capability_id = format!("cap{i}@v1");
                r.capability.description = format!("tool {i} «ü»");
                r.last_seen = 1_700_000_000_000 + i;
                (r.id, r)
            })
            .collect()
    }

    #[test]
    fn incremental_updates_equal_a_full_rebuild() {
        let key = KeyPair::generate();
        let at = Utc::now();
        let mut confirmed = HashMap::from([(1, 1_800_000_000_000)]);
        let mut store = catalog(1500);
        let mut parts = parts_of(&store.values().cloned().collect::<Vec<_>>(), 1);
        render(&mut parts, &key, "https://hub.example", at, &confirmed).unwrap();
        let mut next_id = 10_000;
        for step in 0..12i64 {
            let ids: Vec<i64> = store.keys().copied().collect();
            let pick = |k: i64| ids[((k * 7919 + step * 104_729) as usize) % ids.len()];
            // A change at the front, the middle and the end of the document.
            for id in [ids[0], pick(1), *ids.last().unwrap()] {
                let r = store.get_mut(&id).unwrap();
                r.capability.description = format!("changed at step {step}");
                r.peer_trust_score = 0.1 * (step % 9) as f64;
                parts.put(built_tool(r, 100, URL).unwrap());
            }
            // Removals, one emptying its whole segment on the second step.
            let gone: Vec<i64> = if step == 1 {
                store.range(256 * 3..256 * 4).map(|(id, _)| *id).collect()
            } else {
                vec![pick(2), pick(3)]
            };
            for id in gone {
                if let Some(r) = store.remove(&id) {
                    parts.remove_key(&IndexedCapability::make_key(
                        &r.capability.origin,
                        &r.capability.product_id,
                        &r.capability.capability_id,
                    ));
                }
            }
            // A new key, and an existing key moving to a new row id (deleted and re-added).
            let mut added = row(0.6, None);
            added.id = next_id;
            added.capability.capability_id = format!("new{step}@v1");
            added.capability.origin = format!("https://o{}.example", step % 6);
            next_id += 1;
            parts.put(built_tool(&added, 100, URL).unwrap());
            store.insert(added.id, added);
            let moving = pick(4);
            if let Some(mut r) = store.remove(&moving) {
                r.id = next_id;
                next_id += 1;
                parts.put(built_tool(&r, 100, URL).unwrap());
                store.insert(r.id, r);
            }
            confirmed.insert(2, 1_800_000_000_000 + step);
            parts.version = 2 + step;
            let incremental =
                render(&mut parts, &key, "https://hub.example", at, &confirmed).unwrap();
            let mut fresh = parts_of(&store.values().cloned().collect::<Vec<_>>(), 2 + step);
            let full = render(&mut fresh, &key, "https://hub.example", at, &confirmed).unwrap();
            assert_eq!(
                incremental.body.to_bytes().unwrap(),
                full.body.to_bytes().unwrap(),
                "step {step}"
            );
            assert_eq!(incremental.etag, full.etag);
            assert_eq!(incremental.capabilities, store.len());
            assert_eq!(gunzip(&incremental.gzip), full.body.to_bytes().unwrap());
            let parsed: Value =
                serde_json::from_slice(&incremental.body.to_bytes().unwrap()).unwrap();
            verify_manifest(&parsed, &key.public_key()).unwrap();
        }
    }
}
