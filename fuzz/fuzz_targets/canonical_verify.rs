//! Canonical JSON and every verify entry point of the protocol crate, on arbitrary bytes.
//! A document that parses is canonicalised in both styles (which must be stable: parsing the
//! compact canonical gives the same canonical again), detected, schema-checked, and run
//! through each verifier with and without a key. Nothing may panic; errors are fine.
#![no_main]

use aimarket_protocol::canonical::{Style, parse, to_canonical_string};
use aimarket_protocol::document::{detect, verify_any};
use aimarket_protocol::schema::{SchemaKind, validate};
use aimarket_protocol::signing::{
    KeyPair, announce_canonical, embedded_key, legacy_manifest_canonical, manifest_canonical,
    normalize_url, receipt_canonical_v1, receipt_canonical_v2, unsigned_receipt_fields,
    verify_announce, verify_document, verify_hub_request, verify_manifest,
    verify_provider_response, verify_receipt,
};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = normalize_url(text);
    }
    let Ok(doc) = parse(data) else { return };
    let compact = to_canonical_string(&doc, Style::Compact);
    let _ = to_canonical_string(&doc, Style::Python);
    // Canonicalisation is a fixed point: the canonical form of the canonical form is itself.
    let again = parse(compact.as_bytes()).expect("a canonical string is JSON");
    assert_eq!(to_canonical_string(&again, Style::Compact), compact);

    let key = KeyPair::from_seed(&[7; 32]).public_key();
    let _ = detect(&doc);
    let _ = verify_any(&doc, None);
    let _ = verify_any(&doc, Some(&key));
    let _ = embedded_key(&doc);
    for kind in [
        SchemaKind::Manifest,
        SchemaKind::Tool,
        SchemaKind::WellKnown,
        SchemaKind::Receipt,
        SchemaKind::Announce,
    ] {
        let _ = validate(kind, &doc);
    }
    let _ = manifest_canonical(&doc);
    let _ = legacy_manifest_canonical(&doc);
    let _ = verify_manifest(&doc, &key);
    let _ = receipt_canonical_v1(&doc);
    let _ = receipt_canonical_v2(&doc);
    let _ = unsigned_receipt_fields(&doc);
    let _ = verify_receipt(&doc, &key);
    let _ = announce_canonical(&doc);
    let _ = verify_announce(&doc, &key);
    let _ = verify_document(&doc, &key);

    // Provider response and hub request signatures: fields of the document stand in for the
    // signature and headers, so the fuzzer controls every string they read.
    let text = |k: &str| {
        doc.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let _ = verify_provider_response(
        &text("capability_id"),
        &text("product_id"),
        doc.get("input").unwrap_or(&Value::Null),
        doc.get("result").unwrap_or(&Value::Null),
        &text("signature"),
        &key,
    );
    let header = |name: &str| doc.get(name).and_then(Value::as_str).map(str::to_owned);
    let _ = verify_hub_request(
        header,
        &text("aud"),
        &text("capability_id"),
        doc.get("input").unwrap_or(&Value::Null),
        &key,
        doc.get("now").and_then(Value::as_i64).unwrap_or(0),
    );
});
