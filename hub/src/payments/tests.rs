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
use crate::testing::fake_rpc as rpc;

use std::sync::Arc;

use aimarket_protocol::signing::{KeyPair, ReceiptVersion, sign_receipt};
use serde_json::{Value, json};

use super::verifier::{DemoVerifier, PaymentVerifier, Verifiers};
use super::{Channel, Ledger, LedgerConfig, OpenChannel};
pub(super) use crate::store::tests::Ctx;
use crate::store::tests::{run_postgres, run_sqlite};

/// The ledger on a case's store: the suite runs on the store suite's two-engine harness.
pub(super) trait LedgerCtx {
    /// A ledger on this store with demo payments and the default config.
    fn demo_ledger(&self) -> Ledger;
    /// A ledger on this store.
    fn ledger(&self, verifiers: Verifiers, config: LedgerConfig) -> Ledger;
}

impl LedgerCtx for Ctx {
    fn demo_ledger(&self) -> Ledger {
        self.ledger(demo(), LedgerConfig::default())
    }

    fn ledger(&self, verifiers: Verifiers, config: LedgerConfig) -> Ledger {
        Ledger::new(self.store.clone(), verifiers, config)
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
    channels::dropped_hold_guard_is_released_once_and_counted,
    channels::duplicate_hold_id_changes_nothing,
    channels::without_verifiers_payments_are_unavailable,
    channels::nul_in_ids_is_not_found,
    amounts::bad_amounts_are_refused,
    idempotency::begin_replay_conflict,
    idempotency::abandoned_and_expired_records_are_taken_over,
    records::receipts_are_stored_once_and_read_back,
    records::invocations_are_recorded_and_summed,
);
