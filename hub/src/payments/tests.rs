//! The ledger suite, written once and run against both engines.
//!
//! Each case is `async fn case(ctx: Ctx)`; [`ledger_cases!`] instantiates it as
//! `payments::tests::sqlite::<case>` (a fresh SQLite file in a temp dir) and
//! `payments::tests::postgres::<case>` (a fresh schema in `AIMARKET_TEST_POSTGRES_URL`,
//! default `postgres://postgres@127.0.0.1:5432/test`, dropped afterwards). When PostgreSQL is
//! unreachable the Postgres cases print SKIP and pass, unless `CI` is set, where they fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod amounts;
mod channels;
mod concurrency;
mod evm;
mod idempotency;
mod records;
mod rpc;

use std::future::Future;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use aimarket_protocol::signing::{KeyPair, ReceiptVersion, sign_receipt};
use serde_json::{Value, json};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use super::verifier::{DemoVerifier, PaymentVerifier, Verifiers};
use super::{Channel, Ledger, LedgerConfig, OpenChannel};
use crate::store::{Store, on_pool};

const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// What a case gets: a migrated store, and the means to reconnect to the same database.
pub(super) struct Ctx {
    pub store: Store,
    target: Target,
    _dir: Option<tempfile::TempDir>,
}

enum Target {
    Sqlite(PathBuf),
    Postgres(Box<PgConnectOptions>),
}

impl Ctx {
    /// A ledger on this store with demo payments and the default config.
    pub fn demo_ledger(&self) -> Ledger {
        self.ledger(demo(), LedgerConfig::default())
    }

    /// A ledger on this store.
    pub fn ledger(&self, verifiers: Verifiers, config: LedgerConfig) -> Ledger {
        Ledger::new(self.store.clone(), verifiers, config)
    }

    /// A new pool on the same database, migrated again on connect (as at a restart).
    pub async fn reconnect(&self) -> Store {
        match &self.target {
            Target::Sqlite(dir) => Store::connect(None, dir).await.unwrap(),
            Target::Postgres(options) => {
                Store::connect_postgres((**options).clone()).await.unwrap()
            }
        }
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self.target, Target::Postgres(_))
    }

    /// Runs a scalar query (white-box checks the public API cannot see).
    pub async fn scalar(&self, sql: &'static str) -> i64 {
        on_pool!(&self.store, |pool| {
            sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
        })
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

/// Only the demo verifier.
pub(super) fn demo() -> Verifiers {
    Verifiers::new(vec![Arc::new(DemoVerifier) as Arc<dyn PaymentVerifier>])
}

/// Opens a demo channel of `usd`.
pub(super) async fn open_demo(ledger: &Ledger, usd: f64) -> Channel {
    ledger
        .open_channel(OpenChannel {
            deposit_usd: usd,
            ..OpenChannel::default()
        })
        .await
        .unwrap()
}

/// A receipt for call `nonce` at `price_usd`, signed (v1) by `key`.
pub(super) fn signed_receipt(key: &KeyPair, nonce: &str, price_usd: f64, channel: &str) -> Value {
    let mut receipt = json!({
        "nonce": nonce,
        "product_id": "acme",
        "capability_id": "echo@v1",
        "price_usd": price_usd,
        "timestamp": "2026-01-01T00:00:00Z",
        "success": true,
        "latency_ms": 3,
        "channel_id": channel,
    });
    sign_receipt(&mut receipt, key, ReceiptVersion::V1).unwrap();
    receipt
}

async fn run_sqlite<F, Fut>(case: F)
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

async fn run_postgres<F, Fut>(case: F)
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
            eprintln!("SKIP: PostgreSQL ledger test, {url} unreachable: {e}");
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
    // In its own task so that a failing assertion still lets us drop the schema.
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

macro_rules! ledger_cases {
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

ledger_cases!(
    concurrency::thousand_concurrent_holds_pay_exactly_five_hundred,
    concurrency::abandoned_holds_are_released_after_a_crash,
    concurrency::live_holds_of_other_replicas_survive_recovery,
    concurrency::concurrent_opens_with_one_tx_hash_fund_one_channel,
    channels::open_get_close_round_trip,
    channels::replayed_tx_hash_is_refused,
    channels::secrets_are_required_for_real_deposits_only,
    channels::expired_channels_refuse_debits_but_settle,
    channels::closed_channels_refuse_debits_and_close_is_idempotent,
    channels::hold_capture_release_errors,
    channels::duplicate_hold_id_changes_nothing,
    channels::without_verifiers_payments_are_unavailable,
    channels::nul_in_ids_is_not_found,
    amounts::bad_amounts_are_refused,
    idempotency::begin_replay_conflict,
    idempotency::abandoned_and_expired_records_are_taken_over,
    records::receipts_are_stored_once_and_read_back,
    records::invocations_are_recorded_and_summed,
);
