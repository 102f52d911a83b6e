//! The federated manifest (spec §3.1): every visible capability, signed with the five-field
//! canonical of §7.3.2 by the hub key.
//!
//! It is built off the request path (by the sync task, after each catalog change and every
//! [`REFRESH_INTERVAL`]) and served from memory: the exact body, a gzip copy and their
//! entity tags. Building streams the store in keyset pages; on a blocking thread each page's
//! tools are built as `Value`s, written to the body and fed to the `tools` digest, then
//! dropped (see [`Builder`]), so a build holds the body and one page, not the catalog.
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

use aimarket_protocol::canonical::{Style, digest_hex, to_canonical_vec};
use aimarket_protocol::signing::KeyPair;
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

fn iso_ms(ms: i64) -> Option<String> {
    DateTime::<Utc>::from_timestamp_millis(ms).map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
}

/// Streams the manifest: each tool is written to the body and fed to the `tools` digest as
/// soon as it is built, so memory holds the body and one page, never a `Value` per tool of
/// the whole catalog (that tree is many times the size of its JSON).
///
/// The signature is the five-field canonical of spec §7.3.2. `tools_hash` is SHA-256 of the
/// Python-default canonical of the `tools` array, which is `[` + the canonicals of the tools
/// (each from its parsed `Value`) joined by `", "` + `]`; a unit test pins the whole result
/// against `aimarket_protocol::signing::manifest_canonical` and `verify_manifest`.
struct Builder {
    /// `{"tools":[` and the tools so far.
    body: Vec<u8>,
    tools_digest: Sha256,
    count: usize,
    by_hub: BTreeMap<String, HubTotals>,
}

impl Builder {
    fn new() -> Self {
        let mut tools_digest = Sha256::new();
        tools_digest.update(b"[");
        Self {
            body: b"{\"tools\":[".to_vec(),
            tools_digest,
            count: 0,
            by_hub: BTreeMap::new(),
        }
    }

    fn push(&mut self, tool: &Value) -> Result<(), CatalogError> {
        if self.count > 0 {
            self.body.push(b',');
            self.tools_digest.update(b", ");
        }
        serde_json::to_writer(&mut self.body, tool)
            .map_err(|e| CatalogError::Task(e.to_string()))?;
        self.tools_digest
            .update(to_canonical_vec(tool, Style::Python));
        self.count += 1;
        Ok(())
    }

    /// Adds one store page.
    fn push_rows(
        &mut self,
        rows: &[CapabilityRow],
        bps: u32,
        invoke_url: &str,
    ) -> Result<(), CatalogError> {
        for row in rows {
            let totals = self.by_hub.entry(row.origin.clone()).or_default();
            totals.count += 1;
            totals.trust_sum += Effective::of(row, bps).trust_score;
            totals.last_seen_ms = totals.last_seen_ms.max(row.last_seen);
            self.push(&manifest_tool(row, bps, invoke_url))?;
        }
        Ok(())
    }

    /// Everything but `tools`, then signed; the body is closed with those fields.
    fn finish(
        mut self,
        key: &KeyPair,
        base_url: &str,
        generated_at: DateTime<Utc>,
        version: i64,
    ) -> Result<RenderedManifest, CatalogError> {
        self.tools_digest.update(b"]");
        let tools_hash = hex::encode(self.tools_digest.finalize());
        let by_hub: Map<String, Value> = std::mem::take(&mut self.by_hub)
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
        let generated_at = generated_at.to_rfc3339_opts(SecondsFormat::Secs, true);
        let by_hub = Value::Object(by_hub);
        let canonical = format!(
            "capabilities_count:{count}|generated_at:{generated_at}|protocol_version:v2\
             |tools_hash:{tools_hash}|by_hub_hash:{}",
            digest_hex(&by_hub, Style::Python),
            count = self.count,
        );
        let mut rest = json!({
            "protocol_version": "v2",
            "generated_at": generated_at,
            "base_url": base_url,
            "capabilities_count": self.count,
            "total_capabilities": self.count,
            "local_capabilities": 0,
            "federated_capabilities": self.count,
            "hubs_indexed": by_hub.as_object().map_or(0, Map::len),
            "by_hub": by_hub,
        });
        rest["signature"] = json!({
            "algorithm": "ed25519",
            "public_key": key.public_key().to_b64(),
            "value": key.sign_b64(canonical.as_bytes()),
        });
        // `{"tools":[…],` + the other fields without their opening brace.
        let rest = serde_json::to_vec(&rest).map_err(|e| CatalogError::Task(e.to_string()))?;
        let mut body = self.body;
        body.extend_from_slice(b"],");
        body.extend_from_slice(&rest[1..]);
        compress(body, self.count, version)
    }
}

/// The gzip copy and the entity tags of a finished body.
fn compress(
    body: Vec<u8>,
    capabilities: usize,
    version: i64,
) -> Result<RenderedManifest, CatalogError> {
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
        let mut builder = Builder::new();
        let mut after = 0;
        loop {
            let rows = self.store.list_capabilities(after, PAGE).await?;
            let last = rows.last().map(|r| r.id);
            let short = rows.len() < PAGE as usize;
            let url = Arc::clone(&invoke_url);
            builder = tokio::task::spawn_blocking(move || {
                builder.push_rows(&rows, bps, &url).map(|()| builder)
            })
            .await
            .map_err(|e| CatalogError::Task(e.to_string()))??;
            match last {
                Some(id) if !short => after = id,
                _ => break,
            }
        }
        let key = self.signing_key.clone();
        let base_url = self.public_url.to_string();
        let rendered = tokio::task::spawn_blocking(move || {
            builder.finish(&key, &base_url, Utc::now(), version)
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

    /// Rows whose tools exercise the canonical: non-ASCII text, floats, nested schemas.
    fn rows() -> Vec<CapabilityRow> {
        let mut a = row(0.5, Some(0.9));
        a.last_seen = 1_700_000_000_000;
        a.description = "Перевод «текста» — 翻译 \"quoted\" \\ tab\t".into();
        a.price_usd = 1e-5;
        a.input_schema =
            r#"{"type":"object","properties":{"q":{"type":"string","description":"é"}},"required":["q"]}"#
                .into();
        let mut b = row(0.7, None);
        b.capability_id = "other@v1".into();
        b.origin = "https://q.example".into();
        b.price_usd = 0.1 + 0.2;
        b.via = Some("https://relay.example".into());
        vec![a, b]
    }

    fn build(rows: &[CapabilityRow], key: &KeyPair) -> RenderedManifest {
        let mut builder = Builder::new();
        builder
            .push_rows(rows, 100, "https://hub.example/ai-market/v2/invoke")
            .unwrap();
        builder
            .finish(key, "https://hub.example", Utc::now(), 9)
            .unwrap()
    }

    #[test]
    fn streamed_signature_is_the_protocol_canonical() {
        let key = KeyPair::generate();
        for rows in [rows(), Vec::new(), rows()[..1].to_vec()] {
            let rendered = build(&rows, &key);
            let parsed: Value = serde_json::from_slice(&rendered.body).unwrap();
            verify_manifest(&parsed, &key.public_key()).unwrap();
            // The same document signed by the protocol crate from its parsed Value.
            let mut resigned = parsed.clone();
            resigned.as_object_mut().unwrap().remove("signature");
            aimarket_protocol::signing::sign_manifest(&mut resigned, &key).unwrap();
            assert_eq!(resigned["signature"], parsed["signature"]);
            assert_eq!(parsed["tools"].as_array().unwrap().len(), rows.len());
        }
    }

    #[test]
    fn rendered_manifest_verifies_validates_and_unzips() {
        let key = KeyPair::generate();
        let rendered = build(&rows(), &key);
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
