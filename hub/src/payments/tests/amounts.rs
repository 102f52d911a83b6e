//! Money conversion and the refusal of bad amounts.

use super::{Ctx, LedgerCtx, open_demo};
use crate::payments::{MAX_AMOUNT_USD, OpenChannel, PaymentError, micros_to_usd, usd_to_micros};

#[test]
fn usd_converts_to_whole_micros_and_back() {
    assert_eq!(usd_to_micros(0.001).unwrap(), 1_000);
    assert_eq!(usd_to_micros(0.1 + 0.2).unwrap(), 300_000);
    assert_eq!(usd_to_micros(0.0).unwrap(), 0);
    assert_eq!(usd_to_micros(0.0000004).unwrap(), 0);
    assert_eq!(usd_to_micros(0.0000005).unwrap(), 1);
    assert_eq!(
        usd_to_micros(MAX_AMOUNT_USD).unwrap(),
        1_000_000_000_000_000
    );
    assert_eq!(micros_to_usd(1_000), 0.001);
    assert_eq!(micros_to_usd(2_100_000), 2.1);
    for bad in [
        -0.01,
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        MAX_AMOUNT_USD * 1.01,
    ] {
        assert!(
            matches!(usd_to_micros(bad), Err(PaymentError::InvalidAmount { .. })),
            "{bad}"
        );
    }
}

pub async fn bad_amounts_are_refused(ctx: Ctx) {
    let ledger = ctx.demo_ledger();
    for deposit in [
        0.0,
        -1.0,
        f64::NAN,
        f64::INFINITY,
        1_000_000.01,
        1e300,
        1e-9,
    ] {
        let err = ledger
            .open_channel(OpenChannel {
                deposit_usd: deposit,
                ..OpenChannel::default()
            })
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                PaymentError::InvalidAmount {
                    what: "deposit_usd",
                    ..
                }
            ),
            "{deposit}: {err:?}"
        );
    }
    // The largest deposit is accepted.
    let big = open_demo(&ledger, 1_000_000.0).await;
    assert_eq!(big.deposit_micros, 1_000_000_000_000);
    let err = ledger.hold(&big.id, None, -1, "neg").await.unwrap_err();
    assert!(matches!(err, PaymentError::InvalidAmount { .. }), "{err:?}");
    for (field, value) in [("tx_hash", "x".repeat(201)), ("token", "t".repeat(65))] {
        let mut request = OpenChannel {
            deposit_usd: 1.0,
            ..OpenChannel::default()
        };
        match field {
            "tx_hash" => request.tx_hash = Some(format!("demo{value}")),
            _ => request.token = Some(value),
        }
        let err = ledger.open_channel(request).await.unwrap_err();
        assert!(
            matches!(err, PaymentError::InvalidRequest(_)),
            "{field}: {err:?}"
        );
    }
    assert_eq!(ctx.count("SELECT COUNT(*) FROM channels").await, 1);
}
