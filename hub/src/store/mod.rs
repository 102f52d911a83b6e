//! The catalog store: peers, their capabilities, crawl runs and the catalog version.
//!
//! One code path for two engines (ARCHITECTURE.md §C.3): [`Store`] is an enum over a SQLite
//! pool (the embedded default, a WAL file in the data directory) and a PostgreSQL pool
//! (`DATABASE_URL=postgres://…`). Each repository method writes its SQL once with `$N`
//! parameters, which both drivers accept, and runs it through [`on_pool!`], which compiles
//! the body once per engine. Where the dialects differ a method carries two strings.
//!
//! Conventions shared by both schemas (`migrations/sqlite`, `migrations/postgres`):
//! timestamps are `INTEGER`/`BIGINT` unix milliseconds, JSON is `TEXT`, money is a double,
//! booleans decode to `bool`. Only capabilities of **active** peers are visible through the
//! read queries (search, manifest and invoke read through them), so a pending peer's rows can
//! never leak.

mod capabilities;
mod catalog;
mod checkpoint;
mod crawl_runs;
pub(crate) mod error;
mod federation;
mod ledger;
mod peer_types;
mod peers;
mod pipelines;
mod reputation;
#[cfg(test)]
pub(crate) mod tests;

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

pub use capabilities::{CapabilityKey, CapabilityRow, CountByOrigin, CountByPeer};
pub use catalog::CatalogDiff;
pub use checkpoint::CHECKPOINT_INTERVAL;
pub use crawl_runs::{
    CrawlRunRow, PeerRejections, PeerVerdict, RunError, RunStatus, RunSummary, ToolRejection,
};
pub use error::StoreError;
pub use federation::{InboundCrawler, NewPreview, PreviewRow, rfc3339_from_ms};
pub use ledger::{
    ChannelAuthRow, ChannelRow, DebitRow, EscrowDebit, HoldCapture, HoldReserve, IdempotencyRow,
    InvocationRecord, InvocationSummaryRow, NewChainSend, NewChannelRow, NewEscrowDebit, NewHold,
    PeerStats, ReceiptRow, SendRow,
};
pub use peer_types::{CrawlSuccess, KeySource, NewPeer, PeerRow, PeerState, Validators};
pub use reputation::{
    CapabilityCalls, CapabilityReputationRow, EventKinds, EventLine, InvocationTotals,
    NewReputationEvent, PeerReputationRow, RecentEvent, ReputationWrite,
};

/// File name of the embedded database inside the data directory.
pub const SQLITE_FILE: &str = "hub.db";

/// Readers run in parallel under WAL; writers are serialised by `BEGIN IMMEDIATE`, so a
/// handful of connections is plenty on a small machine.
const SQLITE_MAX_CONNECTIONS: u32 = 8;
const POSTGRES_MAX_CONNECTIONS: u32 = 16;
/// How long a writer waits for SQLite's write lock before failing with "database is locked".
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);
/// Rows the SQLite worker thread may run ahead of the reader. sqlx's default (50) makes
/// large reads (a peer's existing rows, catalog pages) hop threads every 50 rows.
const SQLITE_ROW_BUFFER: usize = 1024;

static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");
static POSTGRES_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

/// Handle to the catalog database. Cloning is cheap (it clones pool handles).
#[derive(Clone, Debug)]
pub enum Store {
    /// The embedded SQLite file `<data_dir>/hub.db`.
    Sqlite(SqliteStore),
    /// A PostgreSQL database from `DATABASE_URL`.
    Postgres(PgPool),
}

/// The SQLite pool plus an in-process writer lock.
///
/// SQLite admits one writer at a time. Without the lock, concurrent write transactions
/// queue inside SQLite's busy handler, which polls with sleeps of up to 100 ms and leaves
/// the database idle between them; an async mutex hands the write slot over at once.
/// `BEGIN IMMEDIATE` still guards against writers in other processes (a CLI crawl).
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    writer: Arc<tokio::sync::Mutex<()>>,
}

impl SqliteStore {
    /// The connection pool (for queries written outside this module).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Waits for this process's SQLite write slot; hold the guard for the whole transaction.
    pub async fn write_slot(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.writer.lock().await
    }
}

/// Runs `$body` with `$pool` bound to the active pool (`&SqlitePool` or `&PgPool`). The body
/// is compiled once per engine, so `sqlx::query(..)` and friends infer the right database
/// type in each arm.
macro_rules! on_pool {
    ($store:expr, |$pool:ident| $body:expr) => {
        match $store {
            $crate::store::Store::Sqlite(db) => {
                let $pool = db.pool();
                $body
            }
            $crate::store::Store::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_pool;

/// Like [`on_pool!`] for bodies that run a write transaction: on SQLite the body runs while
/// holding the process's write slot (see [`SqliteStore`]).
macro_rules! on_pool_write {
    ($store:expr, |$pool:ident| $body:expr) => {
        match $store {
            $crate::store::Store::Sqlite(db) => {
                let _slot = db.write_slot().await;
                let $pool = db.pool();
                $body
            }
            $crate::store::Store::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_pool_write;

impl Store {
    /// Opens the store and applies pending migrations.
    ///
    /// `None` opens (creating if needed) the SQLite file `<data_dir>/hub.db` in WAL mode with
    /// `synchronous=NORMAL`, foreign keys on and a busy timeout. `postgres://` or
    /// `postgresql://` connects to PostgreSQL. Any other URL is refused with
    /// [`StoreError::UnsupportedScheme`].
    pub async fn connect(database_url: Option<&str>, data_dir: &Path) -> Result<Store, StoreError> {
        let Some(url) = database_url.map(str::trim).filter(|u| !u.is_empty()) else {
            return Self::connect_sqlite(data_dir).await;
        };
        let scheme = url.split_once(':').map_or("", |(scheme, _)| scheme);
        if !matches!(
            scheme.to_ascii_lowercase().as_str(),
            "postgres" | "postgresql"
        ) {
            return Err(StoreError::UnsupportedScheme {
                scheme: scheme.to_owned(),
            });
        }
        let options =
            PgConnectOptions::from_str(url).map_err(|e| StoreError::InvalidDatabaseUrl {
                reason: e.to_string(),
            })?;
        Self::connect_postgres(options).await
    }

    async fn connect_sqlite(data_dir: &Path) -> Result<Store, StoreError> {
        tokio::fs::create_dir_all(data_dir)
            .await
            .map_err(|source| StoreError::DataDir {
                path: data_dir.to_path_buf(),
                source,
            })?;
        let options = SqliteConnectOptions::new()
            .filename(data_dir.join(SQLITE_FILE))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(SQLITE_BUSY_TIMEOUT)
            .pragma(
                "wal_autocheckpoint",
                checkpoint::SQLITE_AUTOCHECKPOINT_PAGES.to_string(),
            )
            .row_buffer_size(SQLITE_ROW_BUFFER);
        let pool = SqlitePoolOptions::new()
            .max_connections(SQLITE_MAX_CONNECTIONS)
            // sqlx pings every connection it hands out by default; for a local file that is
            // one more hop to the connection's worker thread per query and never finds a
            // dead connection (a paid invoke acquires three times).
            .test_before_acquire(false)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await?;
        let store = Store::Sqlite(SqliteStore {
            pool,
            writer: Arc::new(tokio::sync::Mutex::new(())),
        });
        store.migrate().await?;
        Ok(store)
    }

    /// Connects with explicit options (tests use this to set `search_path` per schema).
    pub(crate) async fn connect_postgres(options: PgConnectOptions) -> Result<Store, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(POSTGRES_MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await?;
        let store = Store::Postgres(pool);
        store.migrate().await?;
        Ok(store)
    }

    /// Applies the embedded migrations for the active engine. Idempotent: already applied
    /// migrations are checked against their checksums and skipped.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(db) => SQLITE_MIGRATOR.run(db.pool()).await?,
            Store::Postgres(pool) => POSTGRES_MIGRATOR.run(pool).await?,
        }
        Ok(())
    }

    /// `"sqlite"` or `"postgres"`, for logs and the health endpoint.
    pub fn backend(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgres",
        }
    }

    /// Checks that the database answers (readiness probes).
    pub async fn ping(&self) -> Result<(), StoreError> {
        on_pool!(self, |pool| {
            sqlx::query("SELECT 1").execute(pool).await?;
        });
        Ok(())
    }

    /// Closes every pooled connection; later calls fail. Used at shutdown so SQLite can
    /// checkpoint its WAL.
    pub async fn close(&self) {
        on_pool!(self, |pool| pool.close().await)
    }
}

/// Starts a transaction that is allowed to write.
///
/// On SQLite this is `BEGIN IMMEDIATE`: a deferred transaction that reads first and writes
/// later fails with `SQLITE_BUSY` (no busy-wait) when another connection committed in
/// between; taking the write lock up front makes concurrent writers queue on the busy
/// timeout instead. PostgreSQL needs nothing special.
pub(crate) trait BeginWrite {
    /// The engine of this pool.
    type Db: sqlx::Database;
    /// Acquires a connection and begins a write transaction on it.
    fn begin_write(
        &self,
    ) -> impl Future<Output = Result<sqlx::Transaction<'static, Self::Db>, sqlx::Error>> + Send;
}

impl BeginWrite for SqlitePool {
    type Db = sqlx::Sqlite;
    fn begin_write(
        &self,
    ) -> impl Future<Output = Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error>> + Send
    {
        self.begin_with("BEGIN IMMEDIATE")
    }
}

impl BeginWrite for PgPool {
    type Db = sqlx::Postgres;
    fn begin_write(
        &self,
    ) -> impl Future<Output = Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error>> + Send
    {
        self.begin()
    }
}

impl StoreError {
    /// Whether the store was closed (the hub is shutting down): background loops stop
    /// instead of logging the error.
    pub fn is_closed(&self) -> bool {
        matches!(self, StoreError::Database(sqlx::Error::PoolClosed))
    }
}

/// Current wall-clock time in unix milliseconds, the unit of every stored timestamp.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Reduces a peer URL to its origin (`scheme://host[:port]`, lower-case host, default port
/// dropped), the form in which peers are keyed.
///
/// A path is dropped rather than refused: the well-known document lives at the origin root
/// (RFC 8615), so two URLs on one origin are the same hub.
pub fn normalize_origin(url: &str) -> Result<String, StoreError> {
    let invalid = |reason| StoreError::InvalidPeerUrl {
        url: url.to_owned(),
        reason,
    };
    let parsed = url::Url::parse(url.trim()).map_err(|_| invalid("not an absolute URL"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(invalid("scheme must be http or https"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(invalid("URL has no host"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(invalid("URL must not carry credentials"));
    }
    Ok(parsed.origin().ascii_serialization())
}

/// Parses a JSON array of strings stored as `TEXT` (peer categories).
fn parse_string_list(json: &str, what: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}
