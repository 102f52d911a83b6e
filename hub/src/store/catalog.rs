//! Writing a peer's catalog: [`Store::replace_peer_catalog`] and the diff it returns.
//!
//! Cost model: one read of the peer's existing `(key, content_hash)` pairs, then, only if
//! something differs, one write transaction with multi-row upserts (128 rows per statement,
//! identical statement text per full chunk, so the prepared statement is cached) and
//! chunked deletes. An unchanged catalog is detected before any transaction starts and
//! writes nothing.

use std::borrow::Borrow;
use std::collections::{BTreeSet, HashMap, HashSet};

use aimarket_protocol::capability::Capability;
use sha2::{Digest, Sha256};

use super::{
    BeginWrite as _, CapabilityKey, PeerState, Store, StoreError, now_ms, on_pool, on_pool_write,
};

/// Statement that bumps the catalog version and returns the new value.
const BUMP_VERSION: &str =
    "UPDATE catalog_state SET version = version + 1 WHERE id = 1 RETURNING version";
/// Statement that reads the catalog version.
pub(super) const CURRENT_VERSION: &str = "SELECT version FROM catalog_state WHERE id = 1";

/// The catalog version inside a write transaction, on either engine. Every change visible
/// to search bumps it in the transaction that makes the change, so a reader that sees the
/// new version also sees the change (and the bump serialises concurrent writers on the
/// `catalog_state` row).
pub(super) trait CatalogVersionTx {
    /// Bumps the catalog version; returns the new value.
    fn bump_catalog_version(&mut self) -> impl Future<Output = Result<i64, sqlx::Error>> + Send;
    /// Reads the catalog version.
    fn catalog_version(&mut self) -> impl Future<Output = Result<i64, sqlx::Error>> + Send;
}

macro_rules! catalog_version_tx {
    ($db:ty) => {
        impl CatalogVersionTx for sqlx::Transaction<'static, $db> {
            async fn bump_catalog_version(&mut self) -> Result<i64, sqlx::Error> {
                sqlx::query_scalar(BUMP_VERSION)
                    .fetch_one(&mut **self)
                    .await
            }

            async fn catalog_version(&mut self) -> Result<i64, sqlx::Error> {
                sqlx::query_scalar(CURRENT_VERSION)
                    .fetch_one(&mut **self)
                    .await
            }
        }
    };
}
catalog_version_tx!(sqlx::Sqlite);
catalog_version_tx!(sqlx::Postgres);

/// Rows per multi-row `INSERT`: 17 parameters each, far below SQLite's 32,766 and
/// PostgreSQL's 65,535 parameter limits.
const UPSERT_CHUNK: usize = 128;
/// Ids or origins per `IN (…)` list.
const IN_CHUNK: usize = 500;

/// The catalog key of `cap`.
fn capability_key(cap: &Capability) -> CapabilityKey {
    CapabilityKey {
        origin: cap.origin.clone(),
        product_id: cap.product_id.clone(),
        capability_id: cap.capability_id.clone(),
    }
}

/// Hex SHA-256 over `origin`, `via` and `tool_json` (NUL-separated): everything a stored row
/// is derived from, so an equal hash means the row would not change.
pub(crate) fn content_hash(cap: &Capability) -> String {
    let mut hasher = Sha256::new();
    hasher.update(cap.origin.as_bytes());
    hasher.update([0]);
    hasher.update(cap.via.as_deref().unwrap_or("").as_bytes());
    hasher.update([0]);
    hasher.update(cap.tool_json.as_bytes());
    hex::encode(hasher.finalize())
}

/// What a catalog write changed in the visible (active peers') catalog.
///
/// `added` and `changed` both mean "(re)index this key from the store"; `removed` means
/// "drop this key". `version` is the catalog version after the write: when it is exactly one
/// more than the version a consumer last applied, the diff brings it up to date; any other
/// jump means it missed a change and should rebuild.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CatalogDiff {
    /// Catalog version after this operation (unchanged when the diff is empty).
    pub version: i64,
    /// Keys that were not in the catalog before.
    pub added: Vec<CapabilityKey>,
    /// Keys whose row was rewritten (new content, or taken over by the direct peer).
    pub changed: Vec<CapabilityKey>,
    /// Keys no longer in the catalog.
    pub removed: Vec<CapabilityKey>,
}

impl CatalogDiff {
    /// An empty diff at `version`.
    pub fn unchanged(version: i64) -> Self {
        CatalogDiff {
            version,
            ..CatalogDiff::default()
        }
    }

    /// True when nothing was added, changed or removed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.changed.is_empty() && self.removed.is_empty()
    }
}

/// The `p50_latency_ms` column value of a declared latency (the crawler caps it at one day).
fn latency_column(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

/// A deduplicated tool (owned or borrowed) with its precomputed key and hash.
struct Prepared<C> {
    cap: C,
    key: CapabilityKey,
    hash: String,
}

impl<C: Borrow<Capability>> Prepared<C> {
    fn cap(&self) -> &Capability {
        self.cap.borrow()
    }
}

#[derive(sqlx::FromRow)]
struct ExistingRow {
    id: i64,
    #[sqlx(flatten)]
    key: CapabilityKey,
    content_hash: String,
}

#[derive(sqlx::FromRow)]
struct ForeignRow {
    peer_id: i64,
    via: Option<String>,
    #[sqlx(flatten)]
    key: CapabilityKey,
}

/// Duplicate keys within one manifest: the **last** listing wins (like duplicate JSON keys),
/// so a manifest's later correction of an entry is the one stored.
fn dedupe_last_wins<C: Borrow<Capability>>(tools: impl IntoIterator<Item = C>) -> Vec<Prepared<C>> {
    let tools = tools.into_iter();
    let mut index: HashMap<CapabilityKey, usize> = HashMap::with_capacity(tools.size_hint().0);
    let mut out: Vec<Prepared<C>> = Vec::with_capacity(tools.size_hint().0);
    for cap in tools {
        let key = capability_key(cap.borrow());
        let hash = content_hash(cap.borrow());
        match index.get(&key) {
            Some(&at) => out[at] = Prepared { cap, key, hash },
            None => {
                index.insert(key.clone(), out.len());
                out.push(Prepared { cap, key, hash });
            }
        }
    }
    out
}

/// The writes a catalog replacement needs.
struct Plan<'a, C> {
    upserts: Vec<&'a Prepared<C>>,
    existing: HashSet<CapabilityKey>,
    taken_over: HashSet<CapabilityKey>,
    /// Peers that lose rows to a takeover (their counts need refreshing).
    victims: BTreeSet<i64>,
    delete_ids: Vec<i64>,
}

impl<C> Plan<'_, C> {
    fn is_empty(&self) -> bool {
        self.upserts.is_empty() && self.delete_ids.is_empty()
    }
}

fn plan<'a, C: Borrow<Capability>>(
    tools: &'a [Prepared<C>],
    existing: Vec<ExistingRow>,
    foreign: Vec<ForeignRow>,
    active: bool,
) -> Plan<'a, C> {
    let mut by_key: HashMap<CapabilityKey, (i64, String)> = existing
        .into_iter()
        .map(|r| (r.key, (r.id, r.content_hash)))
        .collect();
    let foreign: HashMap<CapabilityKey, (i64, bool)> = foreign
        .into_iter()
        .map(|r| (r.key, (r.peer_id, r.via.is_some())))
        .collect();
    let mut plan = Plan {
        upserts: Vec::new(),
        existing: by_key.keys().cloned().collect(),
        taken_over: HashSet::new(),
        victims: BTreeSet::new(),
        delete_ids: Vec::new(),
    };
    for tool in tools {
        if let Some((_, hash)) = by_key.remove(&tool.key) {
            if hash != tool.hash {
                plan.upserts.push(tool);
            }
            continue;
        }
        match foreign.get(&tool.key) {
            None => plan.upserts.push(tool),
            // Precedence: an active peer's direct listing replaces a re-export learned
            // through another hub; otherwise the first holder keeps the key.
            Some(&(owner, owner_is_via)) if active && owner_is_via && tool.cap().via.is_none() => {
                plan.taken_over.insert(tool.key.clone());
                plan.victims.insert(owner);
                plan.upserts.push(tool);
            }
            Some(_) => {}
        }
    }
    plan.delete_ids = by_key.into_values().map(|(id, _)| id).collect();
    plan
}

impl Store {
    /// Makes `tools` the catalog listed by `peer_id`, in one transaction, and returns what
    /// changed. The records are stored as they are (owned or borrowed: nothing is copied
    /// into another shape first).
    ///
    /// - Rows whose content hash is unchanged are not written; a completely unchanged
    ///   catalog writes nothing, takes no write lock and does not bump the version.
    /// - Rows this peer listed before but not now are deleted.
    /// - Duplicate keys in `tools`: the last one wins.
    /// - A key held by another peer stays with it, except that an active peer's own tool
    ///   (`via = None`) takes over a key held as a re-export (`via` set).
    /// - For a pending peer the rows are stored but the diff is empty and the version is not
    ///   bumped: they become visible (and appear in a diff) when the peer is activated.
    ///
    /// On error nothing is written, so the peer's last good catalog stays.
    pub async fn replace_peer_catalog<C>(
        &self,
        peer_id: i64,
        tools: impl IntoIterator<Item = C> + Send,
    ) -> Result<CatalogDiff, StoreError>
    where
        C: Borrow<Capability> + Send + Sync,
    {
        const RECOUNT: &str = "UPDATE peers SET capability_count = \
             (SELECT COUNT(*) FROM capabilities c WHERE c.peer_id = peers.id), updated_at = $2 \
             WHERE id = $1";
        let tools = dedupe_last_wins(tools);
        let now = now_ms();
        // Read phase, outside any transaction and without the write slot. The write phase
        // re-checks ownership in SQL, so a concurrent writer can make this plan stale but
        // never make it wrong.
        let (active, existing, foreign) = self.catalog_plan_inputs(peer_id, &tools).await?;
        let plan = plan(&tools, existing, foreign, active);
        if plan.is_empty() {
            return Ok(CatalogDiff::unchanged(self.catalog_version().await?));
        }
        on_pool_write!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            let mut diff = CatalogDiff::unchanged(0);
            for chunk in plan.upserts.chunks(UPSERT_CHUNK) {
                let mut query = sqlx::QueryBuilder::new(
                    "INSERT INTO capabilities (peer_id, origin, via, product_id, capability_id, \
                     name, description, input_schema, output_schema, price_usd, p50_latency_ms, \
                     success_rate, invoke_url, tool_json, content_hash, first_seen, last_seen) ",
                );
                query.push_values(chunk, |mut row, tool| {
                    let cap = tool.cap();
                    row.push_bind(peer_id)
                        .push_bind(cap.origin.as_str())
                        .push_bind(cap.via.as_deref())
                        .push_bind(cap.product_id.as_str())
                        .push_bind(cap.capability_id.as_str())
                        .push_bind(cap.name.as_str())
                        .push_bind(cap.description.as_str())
                        .push_bind(cap.input_schema.as_str())
                        .push_bind(cap.output_schema.as_deref())
                        .push_bind(cap.price_usd)
                        .push_bind(cap.p50_latency_ms.map(latency_column))
                        .push_bind(cap.success_rate)
                        .push_bind(cap.invoke_url.as_deref())
                        .push_bind(cap.tool_json.as_str())
                        .push_bind(tool.hash.as_str())
                        .push_bind(now)
                        .push_bind(now);
                });
                // first_seen is deliberately not updated: it is when the key first appeared.
                query.push(
                    " ON CONFLICT (origin, product_id, capability_id) DO UPDATE SET \
                     peer_id = excluded.peer_id, via = excluded.via, name = excluded.name, \
                     description = excluded.description, input_schema = excluded.input_schema, \
                     output_schema = excluded.output_schema, price_usd = excluded.price_usd, \
                     p50_latency_ms = excluded.p50_latency_ms, \
                     success_rate = excluded.success_rate, invoke_url = excluded.invoke_url, \
                     tool_json = excluded.tool_json, content_hash = excluded.content_hash, \
                     last_seen = excluded.last_seen \
                     WHERE capabilities.peer_id = excluded.peer_id OR (",
                );
                query.push_bind(active).push(
                    " AND capabilities.via IS NOT NULL AND excluded.via IS NULL) \
                     RETURNING origin, product_id, capability_id",
                );
                let written: Vec<CapabilityKey> =
                    query.build_query_as().fetch_all(&mut *tx).await?;
                for key in written {
                    if plan.existing.contains(&key) || plan.taken_over.contains(&key) {
                        diff.changed.push(key);
                    } else {
                        diff.added.push(key);
                    }
                }
            }
            for chunk in plan.delete_ids.chunks(IN_CHUNK) {
                // `peer_id` guard: a row taken over since the read phase is not ours to drop.
                let mut query =
                    sqlx::QueryBuilder::new("DELETE FROM capabilities WHERE peer_id = ");
                query.push_bind(peer_id).push(" AND id IN (");
                let mut ids = query.separated(", ");
                for id in chunk {
                    ids.push_bind(*id);
                }
                query.push(") RETURNING origin, product_id, capability_id");
                let removed: Vec<CapabilityKey> =
                    query.build_query_as().fetch_all(&mut *tx).await?;
                diff.removed.extend(removed);
            }
            if diff.is_empty() {
                let version = tx.catalog_version().await?;
                tx.commit().await?;
                return Ok(CatalogDiff::unchanged(version));
            }
            for id in std::iter::once(peer_id).chain(plan.victims.iter().copied()) {
                sqlx::query(RECOUNT)
                    .bind(id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
            if active {
                diff.version = tx.bump_catalog_version().await?;
            } else {
                diff = CatalogDiff::unchanged(tx.catalog_version().await?);
            }
            tx.commit().await?;
            Ok(diff)
        })
    }

    /// The peer's state, its existing `(key, hash)` rows, and rows of other peers on the
    /// origins of tools it does not hold yet (for the ownership rule).
    async fn catalog_plan_inputs<C: Sync>(
        &self,
        peer_id: i64,
        tools: &[Prepared<C>],
    ) -> Result<(bool, Vec<ExistingRow>, Vec<ForeignRow>), StoreError> {
        const STATE: &str = "SELECT state FROM peers WHERE id = $1";
        const EXISTING: &str = "SELECT id, origin, product_id, capability_id, content_hash \
                                FROM capabilities WHERE peer_id = $1";
        on_pool!(self, |pool| {
            let state: Option<String> = sqlx::query_scalar(STATE)
                .bind(peer_id)
                .fetch_optional(pool)
                .await?;
            let active = match state {
                None => return Err(StoreError::peer_not_found(peer_id)),
                Some(state) => state.parse::<PeerState>()? == PeerState::Active,
            };
            let existing: Vec<ExistingRow> = sqlx::query_as(EXISTING)
                .bind(peer_id)
                .fetch_all(pool)
                .await?;
            let known: HashSet<&CapabilityKey> = existing.iter().map(|r| &r.key).collect();
            let origins: BTreeSet<&str> = tools
                .iter()
                .filter(|t| !known.contains(&t.key))
                .map(|t| t.key.origin.as_str())
                .collect();
            let origins: Vec<&str> = origins.into_iter().collect();
            let mut foreign: Vec<ForeignRow> = Vec::new();
            for chunk in origins.chunks(IN_CHUNK) {
                let mut query = sqlx::QueryBuilder::new(
                    "SELECT peer_id, via, origin, product_id, capability_id FROM capabilities \
                     WHERE peer_id <> ",
                );
                query.push_bind(peer_id).push(" AND origin IN (");
                let mut list = query.separated(", ");
                for origin in chunk {
                    list.push_bind(*origin);
                }
                query.push(")");
                foreign.extend(query.build_query_as::<ForeignRow>().fetch_all(pool).await?);
            }
            Ok((active, existing, foreign))
        })
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    fn cap(product: &str, id: &str, name: &str) -> Capability {
        Capability {
            origin: "https://a.example".into(),
            via: None,
            product_id: product.into(),
            capability_id: id.into(),
            name: name.into(),
            description: String::new(),
            input_schema: "{}".into(),
            output_schema: None,
            price_usd: 0.0,
            p50_latency_ms: None,
            success_rate: None,
            invoke_url: None,
            tool_json: format!("{{\"name\":\"{name}\"}}"),
        }
    }

    #[test]
    fn duplicates_keep_the_last_listing_in_first_position() {
        let out = dedupe_last_wins(vec![
            cap("p", "a", "first"),
            cap("p", "b", "other"),
            cap("p", "a", "second"),
        ]);
        let names: Vec<&str> = out.iter().map(|p| p.cap().name.as_str()).collect();
        assert_eq!(names, ["second", "other"]);
    }

    #[test]
    fn hash_covers_origin_via_and_tool_json() {
        let base = cap("p", "a", "n");
        let mut via = base.clone();
        via.via = Some("https://hub.example".into());
        let mut tool = base.clone();
        tool.tool_json.push(' ');
        assert_ne!(content_hash(&base), content_hash(&via));
        assert_ne!(content_hash(&base), content_hash(&tool));
        assert_eq!(content_hash(&base), content_hash(&base.clone()));
        assert_eq!(content_hash(&base).len(), 64);
    }
}
