//! Reading the catalog: pages for index rebuilds and the manifest, lookups for invoke,
//! counts, and the catalog version.
//!
//! Every query here returns capabilities of **active** peers only.

use aimarket_protocol::capability::Capability;

use super::catalog::CURRENT_VERSION;
use super::{Store, StoreError, on_pool, parse_string_list};

/// Keys per lookup statement (3 parameters each).
const KEY_CHUNK: usize = 300;

/// Selected columns of a visible capability (`c`) and its peer (`p`). `last_seen` is the
/// later of the row's last write and the peer's last successful crawl (a 304 or an
/// unchanged catalog confirms the row without rewriting it).
macro_rules! capability_columns {
    () => {
        "SELECT c.id, c.peer_id, c.origin, c.via, c.product_id, c.capability_id, c.name, \
         c.description, c.input_schema, c.output_schema, c.price_usd, c.p50_latency_ms, \
         c.success_rate, c.invoke_url, c.tool_json, c.content_hash, c.first_seen, \
         CASE WHEN p.last_success IS NOT NULL AND p.last_success > c.last_seen \
         THEN p.last_success ELSE c.last_seen END AS last_seen, \
         p.url AS peer_url, p.name AS peer_name, p.categories AS peer_categories, \
         p.trust_score AS peer_trust_score, \
         COALESCE(r.calls_30d, 0) AS observed_calls_30d, \
         COALESCE(r.successes_30d, 0) AS observed_successes_30d, \
         r.trust_score AS observed_trust"
    };
}

/// Measured outcomes of the capability (`r`, reputation's `capability_reputation`), joined
/// after the capability and its peer.
macro_rules! reputation_join {
    () => {
        " LEFT JOIN capability_reputation r ON r.origin = c.origin \
         AND r.product_id = c.product_id AND r.capability_id = c.capability_id"
    };
}

/// Visible capabilities, driven from `capabilities`. `CROSS JOIN` fixes SQLite's join order
/// (PostgreSQL plans it freely): otherwise SQLite may start from the small `peers` table
/// and sort the whole catalog for every keyset page.
macro_rules! capability_from {
    () => {
        concat!(
            " FROM capabilities c CROSS JOIN peers p",
            reputation_join!(),
            " WHERE p.id = c.peer_id AND p.state = 'active'"
        )
    };
}

/// One keyset page of the visible catalog (`$1` = last id seen, `$2` = page size).
pub(super) const LIST_PAGE: &str = concat!(
    capability_columns!(),
    capability_from!(),
    " AND c.id > $1 ORDER BY c.id LIMIT $2"
);

/// The catalog key of a capability: one row per key across the whole catalog.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, sqlx::FromRow)]
pub struct CapabilityKey {
    /// Owning origin (`source_hub`).
    pub origin: String,
    /// Product id.
    pub product_id: String,
    /// Capability id.
    pub capability_id: String,
}

/// A stored capability of an active peer: the [`Capability`] record as the crawler produced
/// it, with what the store knows about the row, its listing peer and its measured outcomes.
/// Timestamps are unix milliseconds.
#[derive(Clone, Debug, PartialEq)]
pub struct CapabilityRow {
    /// Row id (stable while the key exists; used for paging).
    pub id: i64,
    /// The peer whose manifest listed it.
    pub peer_id: i64,
    /// The record as stored.
    pub capability: Capability,
    /// Hex SHA-256 fingerprint of the row's content.
    pub content_hash: String,
    /// When the key first appeared.
    pub first_seen: i64,
    /// When the listing was last confirmed.
    pub last_seen: i64,
    /// URL (origin) of the listing peer.
    pub peer_url: String,
    /// Name of the listing peer.
    pub peer_name: Option<String>,
    /// Categories the listing peer declares.
    pub peer_categories: Vec<String>,
    /// The listing peer's trust score.
    pub peer_trust_score: f64,
    /// Calls to this capability routed through this hub in the last 30 days, as of the
    /// last reputation recompute.
    pub observed_calls_30d: i64,
    /// Of those, the calls that delivered a result.
    pub observed_successes_30d: i64,
    /// The capability's own trust score once it has enough calls (reputation), else `None`.
    pub observed_trust: Option<f64>,
}

/// Number of visible capabilities listed by one peer.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct CountByPeer {
    /// Peer id.
    pub peer_id: i64,
    /// Peer URL.
    pub peer_url: String,
    /// Capabilities it lists.
    pub count: i64,
}

/// Number of visible capabilities owned by one origin (the manifest's `by_hub`).
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct CountByOrigin {
    /// Owning origin.
    pub origin: String,
    /// Capabilities it owns.
    pub count: i64,
}

/// A row as the SQL returns it (flat columns, JSON text), before it becomes a
/// [`CapabilityRow`].
#[derive(sqlx::FromRow)]
struct RawCapability {
    id: i64,
    peer_id: i64,
    origin: String,
    via: Option<String>,
    product_id: String,
    capability_id: String,
    name: String,
    description: String,
    input_schema: String,
    output_schema: Option<String>,
    price_usd: f64,
    p50_latency_ms: Option<i64>,
    success_rate: Option<f64>,
    invoke_url: Option<String>,
    tool_json: String,
    content_hash: String,
    first_seen: i64,
    last_seen: i64,
    peer_url: String,
    peer_name: Option<String>,
    peer_categories: String,
    peer_trust_score: f64,
    observed_calls_30d: i64,
    observed_successes_30d: i64,
    observed_trust: Option<f64>,
}

impl TryFrom<RawCapability> for CapabilityRow {
    type Error = StoreError;
    fn try_from(r: RawCapability) -> Result<Self, StoreError> {
        Ok(CapabilityRow {
            peer_categories: parse_string_list(&r.peer_categories, "peer categories")?,
            id: r.id,
            peer_id: r.peer_id,
            capability: Capability {
                origin: r.origin,
                via: r.via,
                product_id: r.product_id,
                capability_id: r.capability_id,
                name: r.name,
                description: r.description,
                input_schema: r.input_schema,
                output_schema: r.output_schema,
                price_usd: r.price_usd,
                // Written from a `u64`; anything else was not written by this store.
                p50_latency_ms: r.p50_latency_ms.and_then(|ms| u64::try_from(ms).ok()),
                success_rate: r.success_rate,
                invoke_url: r.invoke_url,
                tool_json: r.tool_json,
            },
            content_hash: r.content_hash,
            first_seen: r.first_seen,
            last_seen: r.last_seen,
            peer_url: r.peer_url,
            peer_name: r.peer_name,
            peer_trust_score: r.peer_trust_score,
            observed_calls_30d: r.observed_calls_30d,
            observed_successes_30d: r.observed_successes_30d,
            observed_trust: r.observed_trust,
        })
    }
}

fn convert(rows: Vec<RawCapability>) -> Result<Vec<CapabilityRow>, StoreError> {
    rows.into_iter().map(CapabilityRow::try_from).collect()
}

impl Store {
    /// One page of the visible catalog in row-id order: rows with `id > after_id`, at most
    /// `limit`. Start with `after_id = 0` and pass the last row's id to continue; a short
    /// page is the last one. Keyset paging keeps each page an index range scan at any size.
    pub async fn list_capabilities(
        &self,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<CapabilityRow>, StoreError> {
        let rows: Vec<RawCapability> = on_pool!(self, |pool| {
            sqlx::query_as(LIST_PAGE)
                .bind(after_id)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?
        });
        convert(rows)
    }

    /// Every visible offer of `product_id`/`capability_id`: at most one with `origin` given,
    /// otherwise one per owning origin, ordered by origin.
    pub async fn get_capability(
        &self,
        origin: Option<&str>,
        product_id: &str,
        capability_id: &str,
    ) -> Result<Vec<CapabilityRow>, StoreError> {
        const SQL: &str = concat!(
            capability_columns!(),
            capability_from!(),
            " AND c.product_id = $1 AND c.capability_id = $2 AND ($3 IS NULL OR c.origin = $3) \
             ORDER BY c.origin"
        );
        let rows: Vec<RawCapability> = on_pool!(self, |pool| {
            sqlx::query_as(SQL)
                .bind(product_id)
                .bind(capability_id)
                .bind(origin)
                .fetch_all(pool)
                .await?
        });
        convert(rows)
    }

    /// The distinct `(product_id, origin)` pairs that list `capability_id` in the visible
    /// catalog, ordered, at most `limit` (for an invoke that named no product).
    pub async fn products_of_capability(
        &self,
        capability_id: &str,
        limit: u32,
    ) -> Result<Vec<(String, String)>, StoreError> {
        const SQL: &str = concat!(
            "SELECT DISTINCT c.product_id, c.origin",
            capability_from!(),
            " AND c.capability_id = $1 ORDER BY c.product_id, c.origin LIMIT $2"
        );
        Ok(on_pool!(self, |pool| {
            sqlx::query_as(SQL)
                .bind(capability_id)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?
        }))
    }

    /// The visible rows for these keys (keys not in the visible catalog are skipped), for
    /// applying a [`CatalogDiff`](super::CatalogDiff)'s `added` and `changed` keys.
    ///
    /// More keys than one statement takes are read in one read transaction (a snapshot:
    /// SQLite's WAL read transaction, PostgreSQL's repeatable read), so the rows never mix
    /// states before and after a write committed between two statements (a peer's trust
    /// changing halfway through would publish two scores for one peer).
    pub async fn get_capabilities_by_keys(
        &self,
        keys: &[super::CapabilityKey],
    ) -> Result<Vec<CapabilityRow>, StoreError> {
        /// One statement per chunk of keys on `$conn`.
        macro_rules! by_keys {
            ($conn:expr) => {{
                let mut rows: Vec<RawCapability> = Vec::with_capacity(keys.len());
                for chunk in keys.chunks(KEY_CHUNK) {
                    // The keys drive the join so each one is an index lookup, not a scan.
                    let mut query =
                        sqlx::QueryBuilder::new(concat!(capability_columns!(), " FROM (VALUES "));
                    let mut first = true;
                    for key in chunk {
                        query.push(if first { "(" } else { ", (" });
                        first = false;
                        query.push_bind(key.origin.as_str()).push(", ");
                        query.push_bind(key.product_id.as_str()).push(", ");
                        query.push_bind(key.capability_id.as_str()).push(")");
                    }
                    query.push(concat!(
                        ") AS k CROSS JOIN capabilities c CROSS JOIN peers p",
                        reputation_join!(),
                        " WHERE c.origin = k.column1 AND c.product_id = k.column2 \
                         AND c.capability_id = k.column3 AND p.id = c.peer_id \
                         AND p.state = 'active' ORDER BY c.id",
                    ));
                    let page: Vec<RawCapability> =
                        query.build_query_as().fetch_all(&mut *$conn).await?;
                    rows.extend(page);
                }
                rows
            }};
        }
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<RawCapability> = match self {
            Store::Sqlite(db) => {
                let mut tx = db.pool().begin().await?;
                let rows = by_keys!(tx);
                tx.commit().await?;
                rows
            }
            Store::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                if keys.len() > KEY_CHUNK {
                    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                        .execute(&mut *tx)
                        .await?;
                }
                let rows = by_keys!(tx);
                tx.commit().await?;
                rows
            }
        };
        let mut out = convert(rows)?;
        // Each statement is ordered by id; the whole answer is too.
        out.sort_by_key(|r| r.id);
        Ok(out)
    }

    /// Total visible capabilities.
    pub async fn count_capabilities(&self) -> Result<i64, StoreError> {
        const SQL: &str = concat!("SELECT COUNT(*)", capability_from!());
        Ok(on_pool!(self, |pool| {
            sqlx::query_scalar(SQL).fetch_one(pool).await?
        }))
    }

    /// Visible capabilities per listing peer (active peers with at least one), by URL.
    pub async fn count_by_peer(&self) -> Result<Vec<CountByPeer>, StoreError> {
        const SQL: &str = "SELECT p.id AS peer_id, p.url AS peer_url, COUNT(*) AS count \
             FROM capabilities c JOIN peers p ON p.id = c.peer_id WHERE p.state = 'active' \
             GROUP BY p.id, p.url ORDER BY p.url";
        Ok(on_pool!(self, |pool| {
            sqlx::query_as(SQL).fetch_all(pool).await?
        }))
    }

    /// Visible capabilities per owning origin, by origin.
    pub async fn count_by_origin(&self) -> Result<Vec<CountByOrigin>, StoreError> {
        const SQL: &str = "SELECT c.origin, COUNT(*) AS count \
             FROM capabilities c JOIN peers p ON p.id = c.peer_id WHERE p.state = 'active' \
             GROUP BY c.origin ORDER BY c.origin";
        Ok(on_pool!(self, |pool| {
            sqlx::query_as(SQL).fetch_all(pool).await?
        }))
    }

    /// The current catalog version: starts at 0 and goes up by one with every change to
    /// the visible catalog or the set of active peers.
    pub async fn catalog_version(&self) -> Result<i64, StoreError> {
        Ok(on_pool!(self, |pool| {
            sqlx::query_scalar(CURRENT_VERSION).fetch_one(pool).await?
        }))
    }
}
