//! The x402 exact rail (EIP-3009 on the hub's token) inside a routed invoke:
//!
//! - **buyer → hub** ([`verify`]): an `X-Payment` / `PAYMENT-SIGNATURE` authorization to this
//!   hub's wallet is checked for the routed price before the provider is called; the
//!   pipeline settles it on-chain only after the provider succeeded (verify, run, settle, as
//!   x402 facilitators do), so a failed call never charges the buyer.

use super::InvokeCall;
use super::error::InvokeError;
use super::pipeline::Funding;
use super::rails;
use crate::payments::PaymentError;
use crate::payments::x402::ExactPayment;
use crate::state::AppState;

/// Verifies the buyer's x402 authorization to this hub for `routed_micros` (token base
/// units are micro-USD: 6 decimals, 1:1) without settling it.
pub(super) async fn verify(
    state: &AppState,
    call: &InvokeCall,
    routed_micros: i64,
) -> Result<Funding, InvokeError> {
    let payout = state
        .ledger
        .payout()
        .ok_or(PaymentError::PaymentsUnavailable)?;
    // The rail was chosen because this header pays the hub's wallet.
    let header = rails::hub_x402_payment(&call.headers, Some(payout.wallet().address()))
        .ok_or_else(|| InvokeError::Internal("the x402 rail without its payment".into()))?;
    let payment = ExactPayment::parse(header)?;
    let price = u64::try_from(routed_micros)
        .map_err(|_| InvokeError::Internal("negative routed price".into()))?;
    state
        .ledger
        .verify_x402(&payment, payout.domain(), price)
        .await?;
    Ok(Funding::X402 {
        payment,
        micros: routed_micros,
    })
}
