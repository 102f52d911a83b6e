//! The store suite, written once and run against both engines.
//!
//! Each case is `async fn case(ctx: Ctx)`; [`store_cases!`] instantiates it as
//! `store::tests::sqlite::<case>` (a fresh file in a temp dir) and
//! `store::tests::postgres::<case>` (a fresh schema in `AIMARKET_TEST_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`, dropped afterwards). When PostgreSQL is
//! unreachable the Postgres cases print SKIP and pass, unless `CI` is set, where they fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod catalog;
mod errors;
mod peers;
mod runs;

use std::future::Future;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use aimarket_protocol::capability::Capability;

use super::{CapabilityKey, Store, on_pool};

const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// What a case gets: the store, plus the means to open a second store on the same database.
///
/// Shared with the other suites that need a real database on both engines (the payments
/// ledger's): they take a `Ctx` and run through [`run_sqlite`] / [`run_postgres`].
pub(crate) struct Ctx {
    pub store: Store,
    target: Target,
    _dir: Option<tempfile::TempDir>,
}

enum Target {
    Sqlite(PathBuf),
    Postgres(Box<PgConnectOptions>),
}

impl Ctx {
    /// A new pool on the same database, migrated again on connect (as at a restart).
    pub async fn reconnect(&self) -> Store {
        match &self.target {
            Target::Sqlite(dir) => Store::connect(None, dir).await.unwrap(),
            Target::Postgres(options) => {
                Store::connect_postgres((**options).clone()).await.unwrap()
            }
        }
    }

    /// Executes a raw count query (white-box checks the public API cannot see).
    pub async fn count(&self, sql: &'static str) -> i64 {
        on_pool!(&self.store, |pool| {
            sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
        })
    }

    /// Whether this case runs on PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        matches!(self.target, Target::Postgres(_))
    }

    /// Executes a statement with one text parameter (to age rows in tests).
    pub async fn exec(&self, sql: &'static str, param: &str) -> u64 {
        on_pool!(&self.store, |pool| {
            sqlx::query(sql)
                .bind(param)
                .execute(pool)
                .await
                .unwrap()
                .rows_affected()
        })
    }
}

pub(crate) async fn run_sqlite<F, Fut>(case: F)
where
    F: FnOnce(Ctx) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let store = Store::connect(None, &data_dir).await.unwrap();
    case(Ctx {
        store,
        target: Target::Sqlite(data_dir),
        _dir: Some(dir),
    })
    .await;
}

pub(crate) async fn run_postgres<F, Fut>(case: F)
where
    F: FnOnce(Ctx) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let url = std::env::var("AIMARKET_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned());
    let base = PgConnectOptions::from_str(&url).expect("AIMARKET_TEST_POSTGRES_URL parses");
    let admin = match PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(base.clone())
        .await
    {
        Ok(pool) => pool,
        Err(e) if std::env::var_os("CI").is_none() => {
            eprintln!("SKIP: PostgreSQL test, {url} unreachable: {e}");
            return;
        }
        Err(e) => panic!("PostgreSQL at {url} unreachable and CI is set: {e}"),
    };
    let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&admin)
        .await
        .unwrap();
    let options = base.options([("search_path", schema.as_str())]);
    let store = Store::connect_postgres(options.clone()).await.unwrap();
    let ctx = Ctx {
        store: store.clone(),
        target: Target::Postgres(Box::new(options)),
        _dir: None,
    };
    // Run the case in its own task so a failing assertion still lets us drop the schema.
    let outcome = tokio::spawn(case(ctx)).await;
    store.close().await;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(&admin)
        .await
        .unwrap();
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

macro_rules! store_cases {
    ($($module:ident :: $case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::run_sqlite(super::$module::$case).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::run_postgres(super::$module::$case).await;
                }
            )*
        }
    };
}

store_cases!(
    peers::migrations_are_idempotent,
    peers::seed_upsert_normalises_and_promotes,
    peers::insert_if_absent_leaves_known_peers_alone,
    peers::key_pinning,
    peers::state_changes_show_and_hide_the_catalog,
    peers::crawl_outcomes_and_failed_crawl_keeps_catalog,
    peers::not_modified_is_one_batched_write,
    peers::delete_peer_cascades,
    catalog::replace_reports_added_changed_removed,
    catalog::unchanged_restore_writes_nothing,
    catalog::duplicate_ids_last_listing_wins,
    catalog::reexports_yield_to_direct_peers,
    catalog::pending_peer_catalog_is_invisible,
    catalog::paging_lookups_and_counts,
    catalog::concurrent_writers_all_succeed,
    catalog::unknown_peer_is_an_error,
    runs::crawl_run_bookkeeping,
    runs::peer_rejections_are_stored,
);

/// A tool on `origin` whose content is determined by `rev`.
pub(super) fn tool(origin: &str, product: &str, id: &str, rev: u32) -> Capability {
    let name = format!("{product}/{id} r{rev}");
    Capability {
        origin: origin.to_owned(),
        via: None,
        product_id: product.to_owned(),
        capability_id: id.to_owned(),
        name: name.clone(),
        description: format!("does {id} (revision {rev})"),
        input_schema: r#"{"type":"object","properties":{"text":{"type":"string"}}}"#.to_owned(),
        output_schema: Some(r#"{"type":"object"}"#.to_owned()),
        price_usd: 0.001 * f64::from(rev),
        p50_latency_ms: Some(120),
        success_rate: Some(0.99),
        invoke_url: Some(format!("{origin}/capabilities/{product}/{id}/invoke")),
        tool_json: format!(
            r#"{{"capability_id":"{id}","name":"{name}","product_id":"{product}","rev":{rev}}}"#
        ),
    }
}

/// A capability key.
pub(super) fn key(origin: &str, product: &str, id: &str) -> CapabilityKey {
    CapabilityKey {
        origin: origin.to_owned(),
        product_id: product.to_owned(),
        capability_id: id.to_owned(),
    }
}

/// Keys in a stable order (diffs list them in write order).
pub(super) fn sorted(mut keys: Vec<CapabilityKey>) -> Vec<CapabilityKey> {
    keys.sort();
    keys
}

/// The same tool re-exported by hub `via`.
pub(super) fn via(mut cap: Capability, hub: &str) -> Capability {
    cap.via = Some(hub.to_owned());
    cap
}

#[tokio::test]
async fn connect_refuses_other_schemes_by_name() {
    let dir = tempfile::tempdir().unwrap();
    for (url, scheme) in [
        ("mysql://root@localhost/db", "mysql"),
        ("sqlite://hub.db", "sqlite"),
        ("hub.db", ""),
    ] {
        let err = Store::connect(Some(url), dir.path()).await.unwrap_err();
        assert_eq!(err.code(), "database_url_unsupported", "{url}");
        assert!(err.to_string().contains(&format!("`{scheme}`")), "{err}");
    }
    let err = Store::connect(Some("postgres://u:secret@host:notaport/db"), dir.path())
        .await
        .unwrap_err();
    assert_eq!(err.code(), "database_url_invalid");
    assert!(!err.to_string().contains("secret"), "{err}");
}

#[tokio::test]
async fn sqlite_file_is_created_with_wal_and_foreign_keys() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("nested").join("data");
    let store = Store::connect(None, &data_dir).await.unwrap();
    assert_eq!(store.backend(), "sqlite");
    assert!(data_dir.join(super::SQLITE_FILE).is_file());
    let Store::Sqlite(db) = &store else {
        panic!("expected SQLite");
    };
    let pool = db.pool();
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(pool)
        .await
        .unwrap();
    let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
        .fetch_one(pool)
        .await
        .unwrap();
    let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!((mode.as_str(), fk, sync), ("wal", 1, 1));
    store.ping().await.unwrap();

    // Keyset pages must walk the primary key, not sort the whole catalog per page.
    let plan: Vec<(i64, i64, i64, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "EXPLAIN QUERY PLAN {}",
        super::capabilities::LIST_PAGE
    )))
    .bind(0_i64)
    .bind(10_i64)
    .fetch_all(pool)
    .await
    .unwrap();
    let plan: Vec<&str> = plan.iter().map(|row| row.3.as_str()).collect();
    assert!(
        plan[0].starts_with("SEARCH c USING INTEGER PRIMARY KEY"),
        "{plan:?}"
    );
    assert!(
        !plan.iter().any(|step| step.contains("TEMP B-TREE")),
        "{plan:?}"
    );
}

/// Commits must not checkpoint by themselves (their fsync was the paid invoke's p99): the
/// automatic threshold is raised and the hub's checkpointer copies the WAL back instead.
#[tokio::test]
async fn sqlite_wal_is_checkpointed_off_the_commit_path() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(None, dir.path()).await.unwrap();
    let Store::Sqlite(db) = &store else {
        panic!("expected SQLite");
    };
    let pages: i64 = sqlx::query_scalar("PRAGMA wal_autocheckpoint")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(
        pages,
        i64::from(super::checkpoint::SQLITE_AUTOCHECKPOINT_PAGES)
    );
    // An empty WAL (migrations already checkpointed or not) then a write: the next
    // checkpoint copies at least the pages of that write.
    store.checkpoint().await.unwrap();
    store
        .upsert_seed_peer("https://checkpoint.example", None)
        .await
        .unwrap();
    assert!(store.checkpoint().await.unwrap() > 0);

    let task = store
        .spawn_checkpointer()
        .expect("SQLite runs a checkpointer");
    store.close().await;
    tokio::time::timeout(std::time::Duration::from_secs(5), task)
        .await
        .expect("the checkpointer ends when the pool closes")
        .unwrap();
}

#[test]
fn origins_are_normalised_or_refused() {
    use super::normalize_origin;
    assert_eq!(
        normalize_origin("HTTPS://Hub.Example:443/ai-market?x=1").unwrap(),
        "https://hub.example"
    );
    assert_eq!(
        normalize_origin(" http://127.0.0.1:8080/ ").unwrap(),
        "http://127.0.0.1:8080"
    );
    for bad in [
        "ftp://x.example",
        "not a url",
        "https://u:p@x.example",
        "file:///etc",
    ] {
        let err = normalize_origin(bad).unwrap_err();
        assert_eq!(err.code(), "invalid_peer_url", "{bad}");
    }
}
