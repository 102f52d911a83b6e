//! Peer value types: admission state, key source, stored row, inputs of peer writes.

use std::fmt;
use std::str::FromStr;

use super::{StoreError, parse_string_list};

/// Admission state of a peer (spec §2.4): only active peers are crawled into the searchable
/// catalog, listed in the well-known `peers` array, searched and invoked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PeerState {
    /// Known (announced or discovered) but not admitted.
    Pending,
    /// Admitted: its catalog is part of this hub's catalog.
    Active,
}

impl PeerState {
    /// The stored and wire spelling: `"pending"` or `"active"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Active => "active",
        }
    }
}

impl fmt::Display for PeerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PeerState {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pending" => Ok(Self::Pending),
            "active" => Ok(Self::Active),
            other => Err(StoreError::Corrupt(format!("unknown peer state `{other}`"))),
        }
    }
}

/// Where a peer's pinned signing key came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeySource {
    /// Given by the operator (`--seed URL=KEY`, repin).
    Operator,
    /// Trust on first use: the key first seen when crawling an operator seed.
    Tofu,
    /// The `signer_public_key` of a verified announcement.
    Announce,
}

impl KeySource {
    /// The stored spelling: `"operator"`, `"tofu"` or `"announce"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Operator => "operator",
            Self::Tofu => "tofu",
            Self::Announce => "announce",
        }
    }
}

impl FromStr for KeySource {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "operator" => Ok(Self::Operator),
            "tofu" => Ok(Self::Tofu),
            "announce" => Ok(Self::Announce),
            other => Err(StoreError::Corrupt(format!("unknown key source `{other}`"))),
        }
    }
}

/// A stored peer. Timestamps are unix milliseconds.
#[derive(Clone, Debug, PartialEq)]
pub struct PeerRow {
    /// Stable id (never reused after deletion on either engine).
    pub id: i64,
    /// Origin form `scheme://host[:port]`; unique.
    pub url: String,
    /// Name from the peer's well-known document, once crawled.
    pub name: Option<String>,
    /// Where its well-known document is fetched.
    pub well_known_url: String,
    /// Manifest URL from the last successful crawl.
    pub manifest_url: Option<String>,
    /// Pinned Ed25519 public key (as written in the well-known document).
    pub pinned_key: Option<String>,
    /// Where `pinned_key` came from; `None` when no key is pinned.
    pub key_source: Option<KeySource>,
    /// Admission state.
    pub state: PeerState,
    /// Operator-trusted (seeds and operator-added peers).
    pub trusted: bool,
    /// BFS depth at which it was found (0 for operator seeds).
    pub depth: i64,
    /// When this hub first heard of it.
    pub first_seen: i64,
    /// Last crawl attempt (success, 304 or failure).
    pub last_crawl: Option<i64>,
    /// Last crawl that returned a verified catalog or a 304.
    pub last_success: Option<i64>,
    /// First successful crawl (the age input of reputation, spec §5).
    pub first_success: Option<i64>,
    /// Validators of the well-known document from the last good answer.
    pub well_known: Validators,
    /// Validators of the manifest from the last good answer.
    pub manifest: Validators,
    /// Why the last crawl failed; cleared by a success or a 304.
    pub last_error: Option<String>,
    /// Capabilities currently stored for this peer.
    pub capability_count: i64,
    /// Categories declared in its well-known document.
    pub categories: Vec<String>,
    /// Operator-configured bond (spec §5), 0 when none.
    pub bond_usd: f64,
    /// Trust score in [0, 1]; new peers start at 0.5.
    pub trust_score: f64,
    /// Last write to this row.
    pub updated_at: i64,
}

/// HTTP validators remembered for one document, sent back as `If-None-Match` /
/// `If-Modified-Since`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Validators {
    /// The `ETag` header, verbatim.
    pub etag: Option<String>,
    /// The `Last-Modified` header, verbatim.
    pub last_modified: Option<String>,
}

/// A peer to insert if its URL is not known yet (discovery, announcements, runtime seeds).
#[derive(Clone, Debug)]
pub struct NewPeer {
    /// Any URL on the peer's origin; stored in origin form.
    pub url: String,
    /// Defaults to `{origin}/.well-known/ai-market.json`.
    pub well_known_url: Option<String>,
    /// Name, when the caller already knows one (announcements).
    pub name: Option<String>,
    /// Initial admission state.
    pub state: PeerState,
    /// Operator trust flag.
    pub trusted: bool,
    /// BFS depth.
    pub depth: i64,
    /// A key to pin right away, with its source.
    pub pinned_key: Option<(String, KeySource)>,
}

/// What a successful (HTTP 200, verified) crawl learned about a peer besides its tools.
#[derive(Clone, Debug, Default)]
pub struct CrawlSuccess {
    /// Hub name from the well-known document.
    pub name: Option<String>,
    /// The manifest URL that was fetched.
    pub manifest_url: Option<String>,
    /// Validators of the well-known answer.
    pub well_known: Validators,
    /// Validators of the manifest answer.
    pub manifest: Validators,
    /// Declared categories.
    pub categories: Vec<String>,
}

/// A `peers` row as selected by `peer_columns!`, before enum and JSON decoding.
#[derive(sqlx::FromRow)]
pub(super) struct RawPeer {
    id: i64,
    url: String,
    name: Option<String>,
    well_known_url: String,
    manifest_url: Option<String>,
    pinned_key: Option<String>,
    key_source: Option<String>,
    state: String,
    trusted: bool,
    depth: i64,
    first_seen: i64,
    last_crawl: Option<i64>,
    last_success: Option<i64>,
    first_success: Option<i64>,
    well_known_etag: Option<String>,
    well_known_last_modified: Option<String>,
    manifest_etag: Option<String>,
    manifest_last_modified: Option<String>,
    last_error: Option<String>,
    capability_count: i64,
    categories: String,
    bond_usd: f64,
    trust_score: f64,
    updated_at: i64,
}

impl TryFrom<RawPeer> for PeerRow {
    type Error = StoreError;
    fn try_from(r: RawPeer) -> Result<Self, StoreError> {
        Ok(PeerRow {
            categories: parse_string_list(&r.categories, "peer categories")?,
            state: r.state.parse()?,
            key_source: r.key_source.as_deref().map(str::parse).transpose()?,
            id: r.id,
            url: r.url,
            name: r.name,
            well_known_url: r.well_known_url,
            manifest_url: r.manifest_url,
            pinned_key: r.pinned_key,
            trusted: r.trusted,
            depth: r.depth,
            first_seen: r.first_seen,
            last_crawl: r.last_crawl,
            last_success: r.last_success,
            first_success: r.first_success,
            well_known: Validators {
                etag: r.well_known_etag,
                last_modified: r.well_known_last_modified,
            },
            manifest: Validators {
                etag: r.manifest_etag,
                last_modified: r.manifest_last_modified,
            },
            last_error: r.last_error,
            capability_count: r.capability_count,
            bond_usd: r.bond_usd,
            trust_score: r.trust_score,
            updated_at: r.updated_at,
        })
    }
}
