//! The normative signed vectors verify with the published key, and every tampering the
//! spec cares about makes verification fail.

use aimarket_protocol::ProtocolError;
use aimarket_protocol::signing::{
    KeyPair, PublicKey, ReceiptVersion, legacy_manifest_canonical, manifest_canonical,
    receipt_canonical_v1, unsigned_receipt_fields, verify_announce, verify_manifest,
    verify_receipt,
};
use serde_json::{Value, json};

use crate::support::{vector, vector_key};

fn other_key() -> PublicKey {
    KeyPair::from_seed(&[42u8; 32]).public_key()
}

#[test]
fn manifest_vector_verifies() {
    verify_manifest(&vector("manifest-signed.json"), &vector_key()).unwrap();
}

#[test]
fn receipt_vectors_verify_at_their_versions() {
    let v1 = verify_receipt(&vector("receipt-signed.json"), &vector_key()).unwrap();
    assert_eq!(v1.version, ReceiptVersion::V1);
    assert!(v1.unsigned_fields.is_empty());
    let v2 = verify_receipt(&vector("receipt-v2-signed.json"), &vector_key()).unwrap();
    assert_eq!(v2.version, ReceiptVersion::V2);
    assert!(v2.unsigned_fields.is_empty());
}

#[test]
fn announce_vector_verifies() {
    verify_announce(&vector("federation-announce-signed.json"), &vector_key()).unwrap();
}

#[test]
fn receipt_canonical_renders_the_vector_like_python() {
    assert_eq!(
        receipt_canonical_v1(&vector("receipt-signed.json")).unwrap(),
        "nonce:rcpt_test001|product_id:prod-001|capability_id:translate.multi@v2|price_usd:0.4\
         |timestamp:2026-08-28T09:00:50Z|success:1|latency_ms:8100"
    );
}

fn bad_sig(what: &'static str) -> Result<(), ProtocolError> {
    Err(ProtocolError::BadSignature { what })
}

#[test]
fn manifest_tampering_fails() {
    let key = vector_key();
    let base = vector("manifest-signed.json");
    let tamper = |f: &dyn Fn(&mut Value)| {
        let mut m = base.clone();
        f(&mut m);
        verify_manifest(&m, &key)
    };
    assert_eq!(
        tamper(&|m| m["tools"][0]["price_per_call_usd"] = json!(0.04)),
        bad_sig("manifest")
    );
    // Same price written as a different number type is a different document.
    assert_eq!(
        tamper(&|m| m["tools"][0]["p50_latency_ms"] = json!(8100.0)),
        bad_sig("manifest")
    );
    assert_eq!(
        tamper(&|m| m["by_hub"] = json!({"https://x.example": {"trust_score": 0.99}})),
        bad_sig("manifest")
    );
    assert_eq!(
        tamper(&|m| m["capabilities_count"] = json!(6)),
        bad_sig("manifest")
    );
    assert_eq!(
        tamper(&|m| m["generated_at"] = json!("2026-08-29T09:00:50Z")),
        bad_sig("manifest")
    );
    assert_eq!(
        tamper(&|m| m["tools"].as_array_mut().unwrap().clear()),
        bad_sig("manifest")
    );
    // An empty by_hub is the same as an absent one (§7.3.2): still valid.
    assert_eq!(tamper(&|m| m["by_hub"] = json!({})), Ok(()));
    // Unsigned top-level fields are not covered by design.
    assert_eq!(
        tamper(&|m| m["base_url"] = json!("https://elsewhere.example")),
        Ok(())
    );
    // The signer: a different embedded key, or verification with another key.
    assert_eq!(
        tamper(&|m| m["signature"]["public_key"] = json!(other_key().to_b64())),
        Err(ProtocolError::KeyMismatch)
    );
    assert_eq!(
        verify_manifest(&base, &other_key()),
        Err(ProtocolError::KeyMismatch)
    );
    let mut no_embedded = base.clone();
    no_embedded["signature"]
        .as_object_mut()
        .unwrap()
        .remove("public_key");
    assert_eq!(
        verify_manifest(&no_embedded, &other_key()),
        bad_sig("manifest")
    );
    assert_eq!(
        tamper(&|m| m["signature"]["algorithm"] = json!("rsa")),
        Err(ProtocolError::UnsupportedAlgorithm("rsa".into()))
    );
    assert_eq!(
        tamper(&|m| m["signature"]["value"] = json!("***")),
        Err(ProtocolError::BadBase64 {
            field: "signature.value"
        })
    );
}

#[test]
fn legacy_three_field_manifest_signature_fails() {
    let seed = [7u8; 32];
    let key = KeyPair::from_seed(&seed);
    let mut m = vector("manifest-signed.json");
    let legacy = legacy_manifest_canonical(&m);
    assert_eq!(
        legacy,
        "capabilities_count:5|generated_at:2026-08-28T09:00:50Z|protocol_version:v1"
    );
    m["signature"] = json!({"algorithm": "ed25519", "public_key": key.public_key().to_b64(),
                            "value": key.sign_b64(legacy.as_bytes())});
    assert_eq!(verify_manifest(&m, &key.public_key()), bad_sig("manifest"));
    // And the published vector is not a three-field signature either.
    let vector_sig = vector("manifest-signed.json")["signature"]["value"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        vector_key()
            .verify_b64(legacy.as_bytes(), &vector_sig)
            .is_err()
    );
    assert!(
        vector_key()
            .verify_b64(manifest_canonical(&m).unwrap().as_bytes(), &vector_sig)
            .is_ok()
    );
}

#[test]
fn receipt_tampering_fails() {
    let key = vector_key();
    for (file, what) in [
        ("receipt-signed.json", "receipt v1"),
        ("receipt-v2-signed.json", "receipt v2"),
    ] {
        let base = vector(file);
        let tamper = |f: &dyn Fn(&mut Value)| {
            let mut r = base.clone();
            f(&mut r);
            verify_receipt(&r, &key).map(|_| ())
        };
        let flipped = !base["success"].as_bool().unwrap();
        assert_eq!(
            tamper(&|r| r["success"] = json!(flipped)),
            bad_sig(what),
            "{file}"
        );
        assert_eq!(
            tamper(&|r| r["latency_ms"] = json!(1)),
            bad_sig(what),
            "{file}"
        );
        assert_eq!(
            tamper(&|r| r["price_usd"] = json!(0.41)),
            bad_sig(what),
            "{file}"
        );
        assert_eq!(
            tamper(&|r| r["nonce"] = json!("rcpt_replay")),
            bad_sig(what),
            "{file}"
        );
        assert_eq!(
            tamper(&|r| r["timestamp"] = json!("2026-08-28T09:00:51Z")),
            bad_sig(what),
            "{file}"
        );
        assert_eq!(
            tamper(&|r| r["signer_public_key"] = json!(other_key().to_b64())),
            Err(ProtocolError::KeyMismatch)
        );
        assert!(verify_receipt(&base, &other_key()).is_err(), "{file}");
    }
    let base = vector("receipt-v2-signed.json");
    for (field, v) in [
        ("reason", json!("ok")),
        ("verify_score", json!(0.9)),
        ("refunded", json!(false)),
        ("channel_id", json!("ch_other")),
        ("trace_id", json!("x")),
        ("delivery_reasons", json!([])),
        ("type", json!("success")),
        ("category", json!("c")),
        ("plugin", json!("p")),
    ] {
        let mut r = base.clone();
        r[field] = v;
        assert_eq!(
            verify_receipt(&r, &vector_key()).map(|_| ()),
            bad_sig("receipt v2"),
            "{field}"
        );
    }
    // Deleting a v2 field changes the digest (absent is bound as null).
    let mut r = base.clone();
    r.as_object_mut().unwrap().remove("trace_id");
    assert_eq!(
        verify_receipt(&r, &vector_key()).map(|_| ()),
        bad_sig("receipt v2")
    );
    // Downgrading the announced version breaks it too.
    let mut r = base.clone();
    r["signature"].as_object_mut().unwrap().remove("version");
    assert_eq!(
        verify_receipt(&r, &vector_key()).map(|_| ()),
        bad_sig("receipt v1")
    );
}

#[test]
fn v1_signed_receipt_with_v2_fields_reports_them_unsigned() {
    let mut r = vector("receipt-signed.json");
    r["reason"] = json!("verification_below_threshold");
    r["refunded"] = json!(true);
    r["verify_score"] = json!(0.1);
    r["plugin"] = Value::Null; // present but null carries no claim
    let check = verify_receipt(&r, &vector_key()).unwrap();
    assert_eq!(check.version, ReceiptVersion::V1);
    assert_eq!(
        check.unsigned_fields,
        ["reason", "verify_score", "refunded"]
    );
    assert_eq!(unsigned_receipt_fields(&r), check.unsigned_fields);
    assert!(unsigned_receipt_fields(&vector("receipt-v2-signed.json")).is_empty());
}

#[test]
fn announce_tampering_fails() {
    let base = vector("federation-announce-signed.json");
    let tamper = |f: &dyn Fn(&mut Value)| {
        let mut a = base.clone();
        f(&mut a);
        verify_announce(&a, &vector_key())
    };
    assert_eq!(
        tamper(&|a| a["capabilities_count"] = json!(500)),
        bad_sig("announce")
    );
    assert_eq!(
        tamper(&|a| a["hub_url"] = json!("https://evil.example")),
        bad_sig("announce")
    );
    assert_eq!(
        tamper(&|a| a["well_known_url"] = json!("https://evil.example/wk")),
        bad_sig("announce")
    );
    assert_eq!(
        tamper(&|a| a["signer_public_key"] = json!(other_key().to_b64())),
        Err(ProtocolError::KeyMismatch)
    );
    // Not bound by the canonical, by design (§7.3.5).
    assert_eq!(tamper(&|a| a["hub_name"] = json!("Renamed")), Ok(()));
    // The bare-string signature form verifies the same.
    let value = base["signature"]["value"].clone();
    assert_eq!(tamper(&|a| a["signature"] = value.clone()), Ok(()));
}
