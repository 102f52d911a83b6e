//! Invoke bodies (`POST /ai-market/v2/invoke`, MCP `market_invoke` arguments) and the payment
//! headers that come with them.
//!
//! Input: the body, then optionally `\n--\n` and header lines `Name: value` (payment headers,
//! `Idempotency-Key`, …), read into [`BuyerHeaders`] as the handler does and checked.
#![no_main]

use aimarket_hub::invoke::{BuyerHeaders, ClientId, InvokeRequest};
use libfuzzer_sys::fuzz_target;

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
            "x-api-key" => {
                let _ = ClientId::api_key(value.as_deref().unwrap_or_default());
            }
            _ => {}
        }
    }
    let _ = buyer.pays_provider();
    let _ = buyer.check();
    if let Some(id) = &buyer.channel_id {
        let _ = ClientId::channel(id);
    }
});
