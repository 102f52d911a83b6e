//! sign → verify round trips for every kind, through the typed functions and through
//! `verify_any`.

use aimarket_protocol::document::{DocumentKind, verify_any};
use aimarket_protocol::signing::{
    KeyPair, ReceiptVersion, sign_announce, sign_document, sign_manifest, sign_receipt,
    verify_announce, verify_document, verify_manifest, verify_receipt,
};
use aimarket_protocol::types::{FederationAnnounce, Manifest, Receipt, WellKnown};
use serde_json::json;

use crate::support::vector;

#[test]
fn every_kind_round_trips() {
    let key = KeyPair::generate();
    let pk = key.public_key();

    let mut m = vector("manifest-signed.json");
    m["by_hub"] = json!({"https://peer.example": {"capabilities_count": 3, "trust_score": 0.44}});
    sign_manifest(&mut m, &key).unwrap();
    verify_manifest(&m, &pk).unwrap();
    let r = verify_any(&m, None);
    assert!(r.valid && r.kind == Some(DocumentKind::Manifest), "{r:?}");
    assert_eq!(r.signer.as_deref(), Some(pk.to_b64().as_str()));

    for (file, version) in [
        ("receipt-signed.json", ReceiptVersion::V1),
        ("receipt-v2-signed.json", ReceiptVersion::V2),
    ] {
        let mut rc = vector(file);
        sign_receipt(&mut rc, &key, version).unwrap();
        assert_eq!(verify_receipt(&rc, &pk).unwrap().version, version);
        let r = verify_any(&rc, None);
        assert!(r.valid, "{r:?}");
        assert_eq!(r.signature_version, Some(version.number()));
    }

    let mut a = vector("federation-announce-signed.json");
    sign_announce(&mut a, &key).unwrap();
    verify_announce(&a, &pk).unwrap();
    assert_eq!(a["signer_public_key"], json!(pk.to_b64()));
    assert!(verify_any(&a, None).valid);

    let mut w = vector("well-known.json");
    w["signer_public_key"] = json!(pk.to_b64());
    sign_document(&mut w, &key).unwrap();
    verify_document(&w, &pk).unwrap();
    let r = verify_any(&w, None);
    assert!(r.valid && r.signed, "{r:?}");
    w["peers"] = json!([{"url": "https://x.example", "name": "x"}]);
    let r = verify_any(&w, None);
    assert!(
        !r.valid && r.reason.as_deref() == Some("document signature does not verify"),
        "{r:?}"
    );
}

#[test]
fn vectors_parse_into_wire_types_and_keep_unknown_fields() {
    let m: Manifest = serde_json::from_value(vector("manifest-signed.json")).unwrap();
    assert_eq!(m.tools[0].price_per_call_usd, Some(0.4));
    assert_eq!(m.tools[0].p50_latency_ms, Some(8100));
    let r: Receipt = serde_json::from_value(vector("receipt-v2-signed.json")).unwrap();
    assert_eq!(r.signature.as_ref().unwrap().version, Some(2));
    assert_eq!(
        r.delivery_reasons.as_deref(),
        Some(&["claim_unsupported".to_owned()][..])
    );
    let a: FederationAnnounce =
        serde_json::from_value(vector("federation-announce-signed.json")).unwrap();
    assert_eq!(a.capabilities_count, Some(5));

    let mut raw = vector("well-known.json");
    raw["payment_rails"] = json!({"channel": {"enabled": true}});
    raw["federation"]["future_knob"] = json!(1);
    let w: WellKnown = serde_json::from_value(raw.clone()).unwrap();
    assert_eq!(w.extra["payment_rails"], raw["payment_rails"]);
    // Re-serialising keeps every field (the hub re-serves these documents).
    assert_eq!(serde_json::to_value(&w).unwrap(), raw);
}
