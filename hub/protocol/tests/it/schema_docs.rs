//! Schema validation positives and negatives; `detect`/`verify_any` on every vector and on
//! garbage.

use aimarket_protocol::ProtocolError;
use aimarket_protocol::canonical::parse;
use aimarket_protocol::document::{DocumentKind, detect, verify_any};
use aimarket_protocol::schema::{SchemaKind, validate};
use serde_json::{Value, json};

use crate::support::{VECTOR_KEY, vector, vector_key};

fn schema_errors(kind: SchemaKind, v: &Value) -> Vec<String> {
    match validate(kind, v) {
        Err(ProtocolError::SchemaInvalid { kind: k, errors }) => {
            assert_eq!(k, kind);
            assert!(!errors.is_empty());
            errors
        }
        other => panic!("expected SchemaInvalid for {v}, got {other:?}"),
    }
}

#[test]
fn vectors_pass_their_schemas() {
    validate(SchemaKind::Manifest, &vector("manifest-signed.json")).unwrap();
    validate(SchemaKind::Receipt, &vector("receipt-signed.json")).unwrap();
    validate(SchemaKind::Receipt, &vector("receipt-v2-signed.json")).unwrap();
    validate(
        SchemaKind::Announce,
        &vector("federation-announce-signed.json"),
    )
    .unwrap();
    validate(SchemaKind::WellKnown, &vector("well-known.json")).unwrap();
    for tool in vector("manifest-signed.json")["tools"].as_array().unwrap() {
        validate(SchemaKind::Tool, tool).unwrap();
    }
}

#[test]
fn schema_negatives_name_the_path() {
    let edit = |file: &str, f: &dyn Fn(&mut Value)| {
        let mut v = vector(file);
        f(&mut v);
        v
    };
    let cases: Vec<(SchemaKind, Value, &str)> = vec![
        (
            SchemaKind::Manifest,
            edit("manifest-signed.json", &|m| {
                m.as_object_mut().unwrap().remove("tools");
            }),
            "tools",
        ),
        (
            SchemaKind::Manifest,
            edit("manifest-signed.json", &|m| {
                m["protocol_version"] = json!("v9")
            }),
            "/protocol_version",
        ),
        (
            SchemaKind::Manifest,
            edit("manifest-signed.json", &|m| {
                m["tools"][0]["price_per_call_usd"] = json!(-1)
            }),
            "/tools/0/price_per_call_usd",
        ),
        (
            SchemaKind::Manifest,
            edit("manifest-signed.json", &|m| {
                m["tools"][0]["success_rate_30d"] = json!(1.5)
            }),
            "/tools/0/success_rate_30d",
        ),
        (
            SchemaKind::Manifest,
            edit("manifest-signed.json", &|m| {
                m["signature"].as_object_mut().unwrap().remove("public_key");
            }),
            "public_key",
        ),
        (
            SchemaKind::Manifest,
            edit("manifest-signed.json", &|m| {
                m["by_hub"] = json!({"h": {"trust_score": "high"}})
            }),
            "/by_hub/h/trust_score",
        ),
        (
            SchemaKind::Receipt,
            edit("receipt-signed.json", &|r| {
                r.as_object_mut().unwrap().remove("nonce");
            }),
            "nonce",
        ),
        (
            SchemaKind::Receipt,
            edit("receipt-signed.json", &|r| r["success"] = json!("yes")),
            "/success",
        ),
        (
            SchemaKind::Receipt,
            edit("receipt-signed.json", &|r| {
                r["signature"]["algorithm"] = json!("rsa")
            }),
            "/signature/algorithm",
        ),
        (
            SchemaKind::Announce,
            edit("federation-announce-signed.json", &|a| {
                a["capabilities_count"] = json!(-3)
            }),
            "/capabilities_count",
        ),
        (
            SchemaKind::Announce,
            edit("federation-announce-signed.json", &|a| {
                a.as_object_mut().unwrap().remove("signer_public_key");
            }),
            "signer_public_key",
        ),
        (
            SchemaKind::WellKnown,
            edit("well-known.json", &|w| {
                w["federation"]["crawl_interval_s"] = json!(59)
            }),
            "/federation/crawl_interval_s",
        ),
        (
            SchemaKind::WellKnown,
            edit("well-known.json", &|w| w["protocol_versions"] = json!([])),
            "/protocol_versions",
        ),
        (
            SchemaKind::WellKnown,
            edit("well-known.json", &|w| {
                w["peers"] = json!([{"url": "https://p.example"}])
            }),
            "/peers/0",
        ),
        (
            SchemaKind::Tool,
            json!({"name": 1, "description": "d", "input_schema": {}}),
            "/name",
        ),
        (SchemaKind::Receipt, json!("not an object"), "/"),
    ];
    for (kind, doc, needle) in cases {
        let errors = schema_errors(kind, &doc);
        assert!(
            errors.iter().any(|e| e.contains(needle)),
            "{kind}: expected `{needle}` in {errors:?}"
        );
    }
}

#[test]
fn detect_and_verify_every_vector() {
    let key = vector_key();
    let expect = [
        (
            "manifest-signed.json",
            DocumentKind::Manifest,
            Some(1u8).filter(|_| false),
        ),
        ("receipt-signed.json", DocumentKind::Receipt, Some(1)),
        ("receipt-v2-signed.json", DocumentKind::Receipt, Some(2)),
        (
            "federation-announce-signed.json",
            DocumentKind::Announce,
            None,
        ),
        ("well-known.json", DocumentKind::WellKnown, None),
    ];
    for (file, kind, version) in expect {
        let doc = vector(file);
        assert_eq!(detect(&doc), Some(kind), "{file}");
        let r = verify_any(&doc, Some(&key));
        assert!(r.valid, "{file}: {r:?}");
        assert_eq!(r.kind, Some(kind));
        assert_eq!(r.signature_version, version, "{file}");
        assert!(r.unsigned_fields.is_empty());
        assert!(r.canonical.is_some(), "{file}");
        if kind == DocumentKind::WellKnown {
            assert!(
                !r.signed && r.signer.is_none(),
                "the well-known vector is unsigned: {r:?}"
            );
        } else {
            assert!(r.signed);
            assert_eq!(r.signer.as_deref(), Some(VECTOR_KEY));
        }
    }
    let r = verify_any(&vector("receipt-v2-signed.json"), Some(&key));
    assert!(r.canonical.unwrap().contains("|v:2|fields:"));
}

#[test]
fn verify_any_uses_embedded_keys_and_refuses_keyless_receipts() {
    // Manifest embeds signature.public_key; announce embeds signer_public_key.
    assert!(verify_any(&vector("manifest-signed.json"), None).valid);
    assert!(verify_any(&vector("federation-announce-signed.json"), None).valid);
    // The receipt vectors embed no key: invalid without one.
    for file in ["receipt-signed.json", "receipt-v2-signed.json"] {
        let r = verify_any(&vector(file), None);
        assert!(!r.valid, "{file}");
        assert!(r.reason.as_deref().unwrap().starts_with("no key"), "{r:?}");
    }
    let mut r = vector("receipt-signed.json");
    r["signer_public_key"] = json!(VECTOR_KEY);
    assert!(verify_any(&r, None).valid);
}

#[test]
fn verify_any_reports_v1_receipt_with_v2_fields() {
    let mut r = vector("receipt-signed.json");
    r["reason"] = json!("x");
    r["channel_id"] = json!("ch_1");
    let rep = verify_any(&r, Some(&vector_key()));
    assert!(rep.valid, "{rep:?}");
    assert_eq!(rep.signature_version, Some(1));
    assert_eq!(rep.unsigned_fields, ["channel_id", "reason"]);
}

#[test]
fn verify_any_explains_every_failure() {
    let key = vector_key();
    let reason = |v: &Value, k| {
        let r = verify_any(v, k);
        assert!(!r.valid, "{v}");
        r.reason.unwrap()
    };
    let mut m = vector("manifest-signed.json");
    m.as_object_mut().unwrap().remove("signature");
    assert_eq!(
        reason(&m, Some(&key)),
        "unsigned manifest: the `signature` field is required"
    );
    let mut r = vector("receipt-signed.json");
    r.as_object_mut().unwrap().remove("signature");
    assert_eq!(
        reason(&r, None),
        "unsigned receipt: the `signature` field is required"
    );
    let mut a = vector("federation-announce-signed.json");
    a["signature"] = Value::Null;
    assert_eq!(
        reason(&a, None),
        "unsigned announce: the `signature` field is required"
    );
    let mut a = vector("federation-announce-signed.json");
    a["signature"]["value"] = json!("%%%not base64%%%");
    assert_eq!(
        reason(&a, Some(&key)),
        "field `signature.value` is not valid base64"
    );
    let mut a = vector("federation-announce-signed.json");
    a["signer_public_key"] = json!("@@@");
    assert_eq!(
        reason(&a, None),
        "embedded key: field `signer_public_key` is not valid base64"
    );
    let mut a = vector("federation-announce-signed.json");
    a["signer_public_key"] = json!("AAAA");
    assert_eq!(reason(&a, None), "embedded key: invalid Ed25519 public key");
    let mut rc = vector("receipt-signed.json");
    rc["success"] = json!(false);
    assert_eq!(
        reason(&rc, Some(&key)),
        "receipt v1 signature does not verify"
    );
    let mut w = vector("well-known.json");
    w["federation"]["routing_fee_bps"] = json!(20000);
    assert!(
        reason(&w, None)
            .starts_with("well-known schema validation failed: /federation/routing_fee_bps")
    );
}

#[test]
fn verify_any_never_panics_on_garbage() {
    let texts: [&[u8]; 10] = [
        b"",
        b"null",
        b"42",
        b"\"str\"",
        b"[1,2]",
        b"{}",
        b"{\"tools\": null}",
        b"{\"a\": 1e400}",
        b"\xff\xfe",
        b"{\"nonce\":",
    ];
    for t in texts {
        match parse(t) {
            Ok(v) => {
                let r = verify_any(&v, None);
                assert!(
                    !r.valid && r.reason.is_some(),
                    "{}",
                    String::from_utf8_lossy(t)
                );
            }
            Err(e) => assert!(
                matches!(e, ProtocolError::InvalidJson(_) | ProtocolError::NonFinite),
                "{e:?}"
            ),
        }
    }
    // Every vector with each top-level field replaced by odd values.
    let odd = [
        json!(null),
        json!(1.5),
        json!("s"),
        json!([]),
        json!({}),
        json!(true),
        json!(-1),
    ];
    for file in [
        "manifest-signed.json",
        "receipt-signed.json",
        "receipt-v2-signed.json",
        "federation-announce-signed.json",
        "well-known.json",
    ] {
        let base = vector(file);
        for field in base.as_object().unwrap().keys() {
            for v in &odd {
                let mut doc = base.clone();
                doc[field] = v.clone();
                let r = verify_any(&doc, Some(&vector_key()));
                let _ = verify_any(&doc, None);
                if !r.valid {
                    assert!(r.reason.is_some(), "{file}/{field}={v}");
                }
            }
        }
    }
}
