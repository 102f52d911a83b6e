//! Parsing a peer's well-known, and verifying its manifest (spec §2.2 steps b–f, §3.1,
//! §7.3.2): schema, five-field Ed25519 signature against the right key, freshness, tools.

use std::collections::BTreeSet;
use std::time::Duration;

use aimarket_protocol::ProtocolError;
use aimarket_protocol::schema::{SchemaKind, validate};
use aimarket_protocol::signing::{PublicKey, verify_manifest};
use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::{Map, Value};

use crate::catalog::{
    Extracted, KeySource, ToolContext, VerifiedCatalog, VerifiedPeer, extract_tools,
};
use crate::error::{CrawlError, Document};
use crate::url_safety::{SafeUrl, UrlError, UrlPolicy};

/// Path of the well-known document (spec §2.1).
pub const WELL_KNOWN_PATH: &str = "/.well-known/ai-market.json";
/// Default manifest path when a well-known names none (v1).
pub const DEFAULT_MANIFEST_PATH: &str = "/ai-market/manifest";
/// Fallback manifest path tried when the v1 path answers 404 (v2 hubs).
pub const V2_MANIFEST_PATH: &str = "/ai-market/v2/manifest";

/// Most categories kept per peer.
const MAX_CATEGORIES: usize = 64;

/// Verification settings.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Oldest acceptable `generated_at`. Default 7 days.
    pub max_age: Duration,
    /// Furthest in the future `generated_at` may be (clock skew). Default 1 hour.
    pub max_future: Duration,
    /// Most tools examined per manifest; the rest are counted in `truncated_tools`.
    /// Default 10,000.
    pub max_tools: usize,
    /// Most URLs taken from one well-known's `peers` and `seed_list` (each). Default 256.
    pub max_discovered: usize,
    /// This hub's own origin: tools re-exported back to it are dropped.
    pub self_origin: Option<String>,
    /// URL policy for URLs found inside documents (`peers`, `seed_list`, `source_hub`).
    pub policy: UrlPolicy,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        Self {
            max_age: Duration::from_secs(7 * 24 * 3600),
            max_future: Duration::from_secs(3600),
            max_tools: 10_000,
            max_discovered: 256,
            self_origin: None,
            policy: UrlPolicy::STRICT,
        }
    }
}

/// A URL found in a document that was refused.
#[derive(Debug, Clone, PartialEq)]
pub struct RejectedUrl {
    /// The URL as served (cut to 200 characters).
    pub url: String,
    /// Why it was refused.
    pub reason: UrlError,
}

/// A peer's well-known document, parsed and checked. Nothing here is signed: only use it to
/// find the manifest and the presented key, and as discovery hints.
#[derive(Debug, Clone)]
pub struct WellKnown {
    /// The peer's origin (`scheme://host[:port]`).
    pub origin: SafeUrl,
    /// Where this document was fetched.
    pub url: SafeUrl,
    /// `name`.
    pub name: String,
    /// `manifest_url` (default `{origin}/ai-market/manifest`), through the URL policy.
    pub manifest_url: SafeUrl,
    /// `signer_public_key`, as served.
    pub signer_public_key: Option<String>,
    /// `hub_version`.
    pub hub_version: Option<String>,
    /// `protocol_versions`.
    pub protocol_versions: Vec<String>,
    /// `federation.routing_fee_bps`.
    pub routing_fee_bps: Option<u32>,
    /// `categories`, when the peer declares them.
    pub categories: Vec<String>,
    /// `peers[].url` that passed the URL policy, minus the peer itself, deduplicated, capped.
    pub peers: Vec<SafeUrl>,
    /// `federation.seed_list` entries, same treatment.
    pub seed_list: Vec<SafeUrl>,
    /// Discovered URLs that were refused (at most 16 recorded).
    pub rejected_urls: Vec<RejectedUrl>,
    /// Discovered URLs beyond `max_discovered`, not considered.
    pub dropped_urls: usize,
}

fn not_json(document: Document, e: &dyn std::fmt::Display) -> CrawlError {
    CrawlError::NotJson {
        document,
        detail: e.to_string(),
    }
}

fn parse_object(bytes: &[u8], document: Document) -> Result<Map<String, Value>, CrawlError> {
    match serde_json::from_slice::<Value>(bytes).map_err(|e| not_json(document, &e))? {
        Value::Object(m) => Ok(m),
        other => Err(not_json(
            document,
            &format!("top level is {}, not an object", kind_name(&other)),
        )),
    }
}

fn kind_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn schema_error(document: Document, e: ProtocolError) -> CrawlError {
    match e {
        ProtocolError::SchemaInvalid { errors, .. } => CrawlError::Schema { document, errors },
        other => CrawlError::Schema {
            document,
            errors: vec![other.to_string()],
        },
    }
}

/// Parses and checks a well-known document fetched from `url`.
///
/// `operator` is true when the operator configured this peer: its `manifest_url` is then
/// exempt from the address-range rule when it is on the same origin (scheme, host and port)
/// as `url`; anywhere else it passes the full §7.4 check.
pub fn parse_well_known(
    bytes: &[u8],
    url: &SafeUrl,
    operator: bool,
    opts: &VerifyOptions,
) -> Result<WellKnown, CrawlError> {
    let mut doc = parse_object(bytes, Document::WellKnown)?;
    let origin = url.origin_url();
    if !doc.contains_key("manifest_url") {
        let default = format!("{}{DEFAULT_MANIFEST_PATH}", origin.origin());
        doc.insert("manifest_url".to_owned(), Value::String(default));
    }
    let doc = Value::Object(doc);
    validate(SchemaKind::WellKnown, &doc).map_err(|e| schema_error(Document::WellKnown, e))?;

    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
    let raw_manifest = text(doc.get("manifest_url")).unwrap_or_default();
    let manifest_url = SafeUrl::parse(&raw_manifest)
        .and_then(|m| {
            let exempt = operator && m.same_origin(url);
            opts.policy.check(&m, exempt).map(|()| m)
        })
        .map_err(|reason| CrawlError::UnsafeUrl {
            url: cut(&raw_manifest),
            reason,
        })?;

    let mut wk = WellKnown {
        name: text(doc.get("name")).unwrap_or_default(),
        manifest_url,
        signer_public_key: text(doc.get("signer_public_key")),
        hub_version: text(doc.get("hub_version")),
        protocol_versions: strings(doc.get("protocol_versions"), 16),
        routing_fee_bps: doc
            .pointer("/federation/routing_fee_bps")
            .and_then(Value::as_u64)
            .and_then(|b| u32::try_from(b).ok()),
        categories: strings(doc.get("categories"), MAX_CATEGORIES),
        peers: Vec::new(),
        seed_list: Vec::new(),
        rejected_urls: Vec::new(),
        dropped_urls: 0,
        origin,
        url: url.clone(),
    };
    let peer_urls = doc
        .get("peers")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|p| p.get("url")?.as_str()).collect())
        .unwrap_or_default();
    wk.peers = discovered(&mut wk, peer_urls, opts);
    let seed_urls = doc
        .pointer("/federation/seed_list")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    wk.seed_list = discovered(&mut wk, seed_urls, opts);
    Ok(wk)
}

fn strings(v: Option<&Value>, max: usize) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .take(max)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn cut(s: &str) -> String {
    s.chars().take(200).collect()
}

/// Policy-checks discovered URLs: strangers' URLs, never operator-exempt. The peer itself
/// (by origin) is skipped silently: a peer listing itself adds nothing.
fn discovered(wk: &mut WellKnown, raw_urls: Vec<&str>, opts: &VerifyOptions) -> Vec<SafeUrl> {
    let own = wk.origin.origin();
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (i, raw) in raw_urls.iter().enumerate() {
        if out.len() >= opts.max_discovered {
            wk.dropped_urls += raw_urls.len() - i;
            break;
        }
        match opts.policy.parse(raw, false) {
            Ok(url) if url.origin() == own => {}
            Ok(url) => {
                if seen.insert(url.as_str().to_owned()) {
                    out.push(url);
                }
            }
            Err(reason) => {
                if wk.rejected_urls.len() < 16 {
                    wk.rejected_urls.push(RejectedUrl {
                        url: cut(raw),
                        reason,
                    });
                }
            }
        }
    }
    out
}

/// Verifies a manifest for the peer described by `wk`.
///
/// Key resolution: with `pinned_key`, every key the peer presents (well-known
/// `signer_public_key`, manifest `signature.public_key`) must equal it, else
/// [`CrawlError::KeyMismatch`]. Without one, the presented key is used (the two must agree)
/// and reported as [`KeySource::Presented`]. Tool rules are in [`crate::catalog`]; no tool
/// is looked at unless the signature verified.
pub fn verify_catalog(
    wk: &WellKnown,
    manifest_url: &SafeUrl,
    manifest: &[u8],
    pinned_key: Option<&str>,
    opts: &VerifyOptions,
    now: DateTime<Utc>,
) -> Result<VerifiedCatalog, CrawlError> {
    let mut doc = parse_object(manifest, Document::Manifest)?;
    if doc.get("signature").is_none_or(Value::is_null) {
        return Err(CrawlError::Unsigned);
    }
    // The envelope is checked without its tools: a bad tool is dropped on its own later.
    let tools = match doc.remove("tools") {
        Some(Value::Array(tools)) => Some(tools),
        Some(other) => {
            doc.insert("tools".to_owned(), other);
            None
        }
        None => None,
    };
    let had_tools = tools.is_some();
    if had_tools {
        doc.insert("tools".to_owned(), Value::Array(Vec::new()));
    }
    let mut doc = Value::Object(doc);
    validate(SchemaKind::Manifest, &doc).map_err(|e| schema_error(Document::Manifest, e))?;
    if let Some(tools) = tools {
        doc["tools"] = Value::Array(tools);
    }

    let (key, public_key, key_source) = resolve_key(wk, &doc, pinned_key)?;
    verify_manifest(&doc, &key).map_err(|e| match e {
        ProtocolError::KeyMismatch => CrawlError::KeyMismatch {
            pinned: public_key.clone(),
            presented: doc
                .pointer("/signature/public_key")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        },
        other => CrawlError::Signature {
            detail: other.to_string(),
        },
    })?;

    let raw_ts = doc
        .get("generated_at")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let generated_at = check_freshness(&raw_ts, opts, now)?;

    let mut tools = match doc.get_mut("tools").map(Value::take) {
        Some(Value::Array(tools)) => tools,
        _ => Vec::new(),
    };
    let truncated_tools = tools.len().saturating_sub(opts.max_tools);
    tools.truncate(opts.max_tools);
    let ctx = ToolContext {
        peer: &wk.origin,
        self_origin: opts.self_origin.as_deref(),
        policy: opts.policy,
    };
    let Extracted {
        tools,
        categories: tool_categories,
        rejected: rejected_tools,
    } = extract_tools(tools, &ctx);

    let mut categories: BTreeSet<String> = wk.categories.iter().cloned().collect();
    for c in tool_categories.into_iter().flatten() {
        if categories.len() >= MAX_CATEGORIES {
            break;
        }
        categories.insert(c);
    }
    Ok(VerifiedCatalog {
        peer: VerifiedPeer {
            url: wk.origin.origin(),
            name: wk.name.clone(),
            well_known_url: wk.url.clone(),
            manifest_url: manifest_url.clone(),
            public_key,
            key_source,
            categories: categories.into_iter().take(MAX_CATEGORIES).collect(),
            hub_version: wk.hub_version.clone(),
            protocol_versions: wk.protocol_versions.clone(),
            routing_fee_bps: wk.routing_fee_bps,
            peers: wk.peers.clone(),
            seed_list: wk.seed_list.clone(),
        },
        tools,
        rejected_tools,
        truncated_tools,
        generated_at,
    })
}

fn parse_key(key: &str) -> Result<PublicKey, CrawlError> {
    PublicKey::from_b64(key).map_err(|e| CrawlError::InvalidKey {
        key: cut(key),
        detail: e.to_string(),
    })
}

/// Picks the verifying key; see [`verify_catalog`].
fn resolve_key(
    wk: &WellKnown,
    manifest: &Value,
    pinned: Option<&str>,
) -> Result<(PublicKey, String, KeySource), CrawlError> {
    let presented: Vec<&str> = [
        wk.signer_public_key.as_deref(),
        manifest
            .pointer("/signature/public_key")
            .and_then(Value::as_str),
    ]
    .into_iter()
    .flatten()
    .collect();
    let (reference, source) = match pinned {
        Some(p) => (p, KeySource::Pinned),
        None => (
            *presented.first().ok_or(CrawlError::NoKey)?,
            KeySource::Presented,
        ),
    };
    let key = parse_key(reference)?;
    for other in presented {
        if parse_key(other)? != key {
            return Err(CrawlError::KeyMismatch {
                pinned: key.to_b64(),
                presented: cut(other),
            });
        }
    }
    let b64 = key.to_b64();
    Ok((key, b64, source))
}

/// Parses `generated_at` (RFC 3339; a timestamp without offset, as Python's naive
/// `isoformat()` writes it, is taken as UTC) and applies the freshness window.
pub fn check_freshness(
    raw: &str,
    opts: &VerifyOptions,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, CrawlError> {
    let parsed = DateTime::parse_from_rfc3339(raw)
        .map(|t| t.with_timezone(&Utc))
        .or_else(|_| {
            NaiveDateTime::parse_from_str(raw, "%Y-%m-%dT%H:%M:%S%.f").map(|n| n.and_utc())
        })
        .map_err(|_| CrawlError::BadTimestamp {
            generated_at: cut(raw),
        })?;
    let max_age = chrono::Duration::from_std(opts.max_age).unwrap_or(chrono::Duration::MAX);
    let max_future = chrono::Duration::from_std(opts.max_future).unwrap_or(chrono::Duration::MAX);
    if now.signed_duration_since(parsed) > max_age {
        return Err(CrawlError::Stale {
            generated_at: raw.to_owned(),
        });
    }
    if parsed.signed_duration_since(now) > max_future {
        return Err(CrawlError::Future {
            generated_at: raw.to_owned(),
        });
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests;
