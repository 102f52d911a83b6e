//! Channel open and close bodies, and channel ids, through the real handlers (issue #13: a
//! `tx_hash` starting with a multi-byte character used to panic in the ledger).
//!
//! Input: one byte choosing the endpoint, then the body (or, for `GET`, the channel id).
#![no_main]

#[path = "../common/app.rs"]
mod app;

use libfuzzer_sys::fuzz_target;

const JSON: &str = "application/json";

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    let headers = [("content-type".to_owned(), JSON.as_bytes().to_vec())];
    match which % 5 {
        0 => app::check(
            "POST",
            "/ai-market/v2/channel/open",
            &headers,
            body.to_vec(),
        ),
        1 => app::check("POST", "/ai-market/channel/open", &headers, body.to_vec()),
        2 => app::check(
            "POST",
            "/ai-market/v2/channel/close",
            &headers,
            body.to_vec(),
        ),
        3 => app::check("POST", "/ai-market/channel/close", &headers, body.to_vec()),
        _ => {
            let id: String = String::from_utf8_lossy(body)
                .bytes()
                .map(|b| format!("%{b:02X}"))
                .collect();
            app::check(
                "GET",
                &format!("/ai-market/v2/channel/{id}"),
                &[],
                Vec::new(),
            );
        }
    }
});
