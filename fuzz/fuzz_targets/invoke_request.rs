//! Invoke bodies (`POST /ai-market/v2/invoke`, MCP `market_invoke` arguments) and the payment
//! headers that come with them.
//!
//! Input: the body, then optionally `\n--\n` and header lines `Name: value` (payment headers,
//! `Idempotency-Key`, …), read into [`BuyerHeaders`] as the handler does and checked.
#![no_main]

use std::sync::LazyLock;

use aimarket_hub::invoke::{BuyerHeaders, Caller, InvokeRequest};
use aimarket_hub::limits::Identities;
use aimarket_hub::settings::ApiKeys;
use libfuzzer_sys::fuzz_target;

/// One configured key, so both the accepted and the unknown path are reached.
static IDENTITIES: LazyLock<Identities> =
    LazyLock::new(|| Identities::new(&"fuzz-key".parse::<ApiKeys>().expect("a valid key list")));

const SEPARATOR: &[u8] = b"\n--\n";

fuzz_target!(|data: &[u8]| {
    let (body, headers) = match data.windows(SEPARATOR.len()).position(|w| w == SEPARATOR) {
        Some(at) => (&data[..at], &data[at + SEPARATOR.len()..]),
        None => (data, &[][..]),
    };
    if let Ok(request) = InvokeRequest::from_slice(body, "https://hub.example.com") {
        let _ = request.fingerprint();
    }
    let mut buyer = BuyerHeaders::default();
    for line in String::from_utf8_lossy(headers).lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = Some(value.trim().to_owned());
        match name.trim().to_ascii_lowercase().as_str() {
            "x-payment-channel" => buyer.channel_id = value,
            "x-payment-channel-secret" => buyer.channel_secret = value,
            "x-payment" => buyer.x_payment = value,
            "payment-signature" => buyer.payment_signature = value,
            "x-payment-nonce" => buyer.x_payment_nonce = value,
            "x-payment-secret" => buyer.x_payment_secret = value,
            "idempotency-key" => buyer.idempotency_key = value,
            "traceparent" => buyer.traceparent = value,
            "x-request-id" => buyer.request_id = value,
            "x-api-key" => buyer.api_key = value,
            _ => {}
        }
    }
    let _ = buyer.pays_provider();
    let _ = buyer.check();
    // An unverified key or channel only ever names the caller's address bucket.
    let caller = Caller {
        address: None,
        api_key: buyer.api_key.clone(),
    };
    let _ = IDENTITIES.identify_key(&caller);
});
