//! The federated manifest (spec §3.1): every visible capability, signed with the five-field
//! canonical of §7.3.2 by the hub key.
//!
//! It is built off the request path (by the sync task, after each catalog change and every
//! [`REFRESH_INTERVAL`]) and served from memory: the exact body, a gzip copy and their
//! entity tags. Building streams the store in keyset pages and turns each page into tools on
//! a blocking thread; the document is signed from its `serde_json::Value`
//! (`sign_manifest`), then serialised once.
//!
//! Fields: `protocol_version: "v2"`, `generated_at`, `base_url`, `capabilities_count` (=
//! `total_capabilities`, the signed count), `total_capabilities`, `local_capabilities` (0:
//! this hub serves no capability of its own), `federated_capabilities`, `hubs_indexed`,
//! `tools` (see `rows::manifest_tool`), `by_hub` (per owning origin: `capabilities_count`,
//! `trust_score` = the mean trust of its tools, `last_crawl` = when its listing was last
//! confirmed) and `signature`.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use aimarket_protocol::signing::{KeyPair, sign_manifest};
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use flate2::Compression;
use flate2::write::GzEncoder;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use super::rows::{Effective, manifest_tool};
use super::{Catalog, CatalogError};
use crate::store::CapabilityRow;

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
    pub body: Bytes,
    /// The same body, gzip-compressed.
    pub gzip: Bytes,
    /// Entity tag of `body` (quoted).
    pub etag: String,
    /// Entity tag of `gzip` (quoted; a different representation needs a different tag).
    pub gzip_etag: String,
}

/// The last built manifest.
#[derive(Debug)]
pub struct ManifestCache {
    current: watch::Sender<Option<Arc<RenderedManifest>>>,
}

impl Default for ManifestCache {
    fn default() -> Self {
        Self {
            current: watch::Sender::new(None),
        }
    }
}

impl ManifestCache {
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

/// The tools of one page and what they add to `by_hub`.
fn page_tools(
    rows: &[CapabilityRow],
    bps: u32,
    invoke_url: &str,
    by_hub: &mut BTreeMap<String, HubTotals>,
) -> Vec<Value> {
    rows.iter()
        .map(|row| {
            let totals = by_hub.entry(row.origin.clone()).or_default();
            totals.count += 1;
            totals.trust_sum += Effective::of(row, bps).trust_score;
            totals.last_seen_ms = totals.last_seen_ms.max(row.last_seen);
            manifest_tool(row, bps, invoke_url)
        })
        .collect()
}

fn iso_ms(ms: i64) -> Option<String> {
    DateTime::<Utc>::from_timestamp_millis(ms).map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
}

/// The unsigned document around `tools`.
fn document(
    tools: Vec<Value>,
    by_hub: BTreeMap<String, HubTotals>,
    base_url: &str,
    generated_at: DateTime<Utc>,
) -> Value {
    let by_hub: Map<String, Value> = by_hub
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
            (origin, entry)
        })
        .collect();
    let total = tools.len();
    json!({
        "protocol_version": "v2",
        "generated_at": generated_at.to_rfc3339_opts(SecondsFormat::Secs, true),
        "base_url": base_url,
        "capabilities_count": total,
        "total_capabilities": total,
        "local_capabilities": 0,
        "federated_capabilities": total,
        "hubs_indexed": by_hub.len(),
        "tools": tools,
        "by_hub": by_hub,
    })
}

/// Signs, serialises and compresses `doc`.
fn render(mut doc: Value, key: &KeyPair, version: i64) -> Result<RenderedManifest, CatalogError> {
    let capabilities = doc["tools"].as_array().map_or(0, Vec::len);
    sign_manifest(&mut doc, key)?;
    let body = serde_json::to_vec(&doc).map_err(|e| CatalogError::Task(e.to_string()))?;
    drop(doc);
    let mut gz = GzEncoder::new(Vec::with_capacity(body.len() / 6), Compression::default());
    let gzip = gz
        .write_all(&body)
        .and_then(|()| gz.finish())
        .map_err(|source| CatalogError::Io {
            path: "manifest.gz (in memory)".into(),
            source,
        })?;
    let tag = hex::encode(Sha256::digest(&body));
    Ok(RenderedManifest {
        version,
        capabilities,
        etag: format!("\"{}\"", &tag[..32]),
        gzip_etag: format!("\"{}-gzip\"", &tag[..32]),
        body: Bytes::from(body),
        gzip: Bytes::from(gzip),
    })
}

impl Catalog {
    /// Builds the manifest from the store and makes it the served one.
    pub async fn refresh_manifest(&self) -> Result<Arc<RenderedManifest>, CatalogError> {
        let started = std::time::Instant::now();
        // Read before the rows: the version never claims more than the rows hold.
        let version = self.store.catalog_version().await?;
        let invoke_url: Arc<str> = format!("{}{INVOKE_PATH}", self.public_url).into();
        let bps = self.routing_fee_bps;
        let mut tools: Vec<Value> = Vec::new();
        let mut by_hub: BTreeMap<String, HubTotals> = BTreeMap::new();
        let mut after = 0;
        loop {
            let rows = self.store.list_capabilities(after, PAGE).await?;
            let last = rows.last().map(|r| r.id);
            let short = rows.len() < PAGE as usize;
            let url = Arc::clone(&invoke_url);
            let (page, totals) = tokio::task::spawn_blocking(move || {
                let mut totals = by_hub;
                let page = page_tools(&rows, bps, &url, &mut totals);
                (page, totals)
            })
            .await
            .map_err(|e| CatalogError::Task(e.to_string()))?;
            tools.extend(page);
            by_hub = totals;
            match last {
                Some(id) if !short => after = id,
                _ => break,
            }
        }
        let key = self.signing_key.clone();
        let base_url = self.public_url.to_string();
        let rendered = tokio::task::spawn_blocking(move || {
            render(
                document(tools, by_hub, &base_url, Utc::now()),
                &key,
                version,
            )
        })
        .await
        .map_err(|e| CatalogError::Task(e.to_string()))??;
        let rendered = Arc::new(rendered);
        self.manifest.put(Arc::clone(&rendered));
        self.stats.manifest_builds.incr();
        tracing::info!(
            capabilities = rendered.capabilities,
            bytes = rendered.body.len(),
            gzip_bytes = rendered.gzip.len(),
            version,
            millis = started.elapsed().as_millis() as u64,
            "manifest built"
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
    use std::io::Read as _;

    #[test]
    fn rendered_manifest_verifies_validates_and_unzips() {
        let key = KeyPair::generate();
        let mut by_hub = BTreeMap::new();
        let mut a = row(0.5, Some(0.9));
        a.last_seen = 1_700_000_000_000;
        let mut b = row(0.7, None);
        b.capability_id = "other@v1".into();
        b.origin = "https://q.example".into();
        let tools = page_tools(
            &[a, b],
            100,
            "https://hub.example/ai-market/v2/invoke",
            &mut by_hub,
        );
        let doc = document(tools, by_hub, "https://hub.example", Utc::now());
        let rendered = render(doc, &key, 9).unwrap();
        let parsed: Value = serde_json::from_slice(&rendered.body).unwrap();
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
        let mut unzipped = Vec::new();
        flate2::read::GzDecoder::new(&rendered.gzip[..])
            .read_to_end(&mut unzipped)
            .unwrap();
        assert_eq!(unzipped, rendered.body);
        assert_ne!(rendered.etag, rendered.gzip_etag);
        assert_eq!(rendered.version, 9);
    }
}
