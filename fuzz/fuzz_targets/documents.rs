//! What the crawler reads from a peer: the well-known (parsing, URL policy on every URL it
//! lists, the operator's same-origin exemption), the manifest (signature, key resolution,
//! freshness) and tool extraction.
//!
//! Input: one flags byte, then the well-known bytes, `\n--\n`, the manifest bytes. With the
//! `sign` flag a manifest that is a JSON object is re-signed with the key the well-known
//! names (and dated now with `fresh`), so the fuzzer gets past the signature into tool
//! extraction instead of stopping at "signature invalid" every time.
#![no_main]

use std::time::Duration;

use aimarket_crawler::verify::{parse_well_known, verify_catalog};
use aimarket_crawler::{SafeUrl, UrlPolicy, VerifyOptions};
use aimarket_protocol::signing::{KeyPair, sign_manifest};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

const SEPARATOR: &[u8] = b"\n--\n";

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let (operator, sign, fresh, pin, private) = (
        flags & 1 != 0,
        flags & 2 != 0,
        flags & 4 != 0,
        flags & 8 != 0,
        flags & 16 != 0,
    );
    let (wk_bytes, manifest_bytes) =
        match rest.windows(SEPARATOR.len()).position(|w| w == SEPARATOR) {
            Some(at) => (&rest[..at], &rest[at + SEPARATOR.len()..]),
            None => (rest, rest),
        };
    let key = KeyPair::from_seed(&[3; 32]);
    let url = if private {
        "http://127.0.0.1:8080/.well-known/ai-market.json"
    } else {
        "https://peer.example.com/.well-known/ai-market.json"
    };
    let wk_url = SafeUrl::parse(url).expect("a valid URL");
    let opts = VerifyOptions {
        policy: UrlPolicy::STRICT,
        self_origin: Some("https://hub.example.com".into()),
        ..VerifyOptions::default()
    };
    let wk = match parse_well_known(wk_bytes, &wk_url, operator, &opts) {
        Ok(wk) => wk,
        Err(_) => {
            let fallback = json!({
                "name": "fuzz peer",
                "protocol_versions": ["v2"],
                "manifest_url": wk_url.origin() + "/ai-market/v2/manifest",
                "signer_public_key": key.public_key().to_b64(),
            });
            let bytes = serde_json::to_vec(&fallback).expect("serialises");
            // The fallback is the harness's own document on the peer's own origin: parsed as
            // the operator's, so a loopback peer URL does not refuse it.
            let Ok(wk) = parse_well_known(&bytes, &wk_url, true, &opts) else {
                panic!("the harness's fallback well-known does not parse")
            };
            wk
        }
    };
    let mut manifest = manifest_bytes.to_vec();
    if sign
        && let Ok(mut doc) = serde_json::from_slice::<Value>(manifest_bytes)
        && doc.is_object()
    {
        if fresh {
            let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
            doc["generated_at"] = Value::String(now);
        }
        if sign_manifest(&mut doc, &key).is_ok() {
            manifest = serde_json::to_vec(&doc).expect("serialises");
        }
    }
    let pinned = pin.then(|| key.public_key().to_b64());
    let long = VerifyOptions {
        max_age: Duration::from_secs(100 * 365 * 24 * 3600),
        ..opts
    };
    let _ = verify_catalog(
        &wk,
        &wk.manifest_url,
        &manifest,
        pinned.as_deref(),
        &long,
        chrono::Utc::now(),
    );
});
