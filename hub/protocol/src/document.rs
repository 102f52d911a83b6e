//! Kind detection and one-call verification of any protocol document, as the
//! `aimarket-hub verify` CLI and the crawler need it. Never panics on any input.

use std::fmt;

use serde_json::Value;

use crate::schema::{self, SchemaKind};
use crate::signing::{self, PublicKey, ReceiptVersion};

/// The signed (or signable) documents of the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DocumentKind {
    /// A capability manifest (v1 or federated v2), five-field canonical.
    Manifest,
    /// An invocation receipt, v1 or v2 canonical.
    Receipt,
    /// A federation announcement, three-field canonical.
    Announce,
    /// `/.well-known/ai-market.json`, whole-document signature (optional).
    WellKnown,
    /// A hub's pipeline bill of materials, whole-document signature (required).
    Bill,
}

impl DocumentKind {
    /// Short lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Manifest => "manifest",
            Self::Receipt => "receipt",
            Self::Announce => "announce",
            Self::WellKnown => "well-known",
            Self::Bill => "pipeline-bill",
        }
    }

    /// The schema that applies to this kind (`None` for a bill, which has no published
    /// schema: [`verify_any`] checks its shape itself).
    pub fn schema(self) -> Option<SchemaKind> {
        match self {
            Self::Manifest => Some(SchemaKind::Manifest),
            Self::Receipt => Some(SchemaKind::Receipt),
            Self::Announce => Some(SchemaKind::Announce),
            Self::WellKnown => Some(SchemaKind::WellKnown),
            Self::Bill => None,
        }
    }
}

impl fmt::Display for DocumentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Guesses the kind from the keys a document carries: `tools` → manifest; `nonce` with
/// `product_id`/`capability_id`/`timestamp` → receipt; `hub_url` with `well_known_url` →
/// announce; `manifest_url` or `protocol_versions` → well-known; `trace_id` with `steps` and
/// `total_usd` → pipeline bill. `None` for anything else, including non-objects.
pub fn detect(doc: &Value) -> Option<DocumentKind> {
    let m = doc.as_object()?;
    let has = |k: &str| m.contains_key(k);
    if has("tools") {
        Some(DocumentKind::Manifest)
    } else if has("trace_id") && has("steps") && has("total_usd") {
        Some(DocumentKind::Bill)
    } else if has("nonce") && (has("product_id") || has("capability_id") || has("timestamp")) {
        Some(DocumentKind::Receipt)
    } else if has("hub_url") && has("well_known_url") {
        Some(DocumentKind::Announce)
    } else if has("manifest_url") || has("protocol_versions") {
        Some(DocumentKind::WellKnown)
    } else {
        None
    }
}

/// What [`verify_any`] found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VerifyReport {
    /// Detected kind, `None` when the document is not recognised.
    pub kind: Option<DocumentKind>,
    /// Schema-valid and, if signed (or a kind that must be signed), the signature verifies.
    pub valid: bool,
    /// Why the document is invalid (`None` when valid).
    pub reason: Option<String>,
    /// Whether the document carries a signature.
    pub signed: bool,
    /// Base64 key the signature was checked with (given or embedded).
    pub signer: Option<String>,
    /// Receipts: the signed canonical version (1 or 2).
    pub signature_version: Option<u8>,
    /// Receipts: v2 fields present but not covered by a v1 signature (§7.3.4).
    pub unsigned_fields: Vec<String>,
    /// The canonical string the signature covers, when it could be built.
    pub canonical: Option<String>,
    /// Whether the signature verifies (`None` when there is none, or no key to check it).
    /// Reported apart from the schema: a receipt with `latency_ms: 5.52` or `success: 1`
    /// deviates from the schema yet verifies, because the canonical renders them as sent.
    pub signature_valid: Option<bool>,
    /// Where the document deviates from its JSON Schema (empty when it conforms).
    pub schema_deviations: Vec<String>,
}

impl VerifyReport {
    fn invalid(mut self, reason: impl Into<String>) -> Self {
        self.valid = false;
        self.reason = Some(reason.into());
        self
    }
}

fn canonical_for(kind: DocumentKind, doc: &Value) -> Option<String> {
    match kind {
        DocumentKind::Manifest => signing::manifest_canonical(doc).ok(),
        DocumentKind::Announce => signing::announce_canonical(doc).ok(),
        DocumentKind::WellKnown | DocumentKind::Bill => Some(signing::document_canonical(doc)),
        DocumentKind::Receipt => {
            let v2 = doc
                .pointer("/signature/version")
                .is_some_and(|v| v.as_u64() == Some(2) || v.as_str() == Some("2"));
            if v2 {
                signing::receipt_canonical_v2(doc).ok()
            } else {
                signing::receipt_canonical_v1(doc).ok()
            }
        }
    }
}

/// Detects, schema-validates and signature-checks a document.
///
/// The key is `key` when given, else the one the document embeds (`signature.public_key`
/// or `signer_public_key`); a signed document with neither is invalid ("no key").
/// Manifests, receipts and announces must be signed. A well-known without a signature is
/// valid when it passes its schema and is reported with `signed: false`. A v1-signed
/// receipt carrying v2 fields is valid, with those fields in `unsigned_fields`.
pub fn verify_any(doc: &Value, key: Option<&PublicKey>) -> VerifyReport {
    let mut report = VerifyReport::default();
    let Some(obj) = doc.as_object() else {
        return report.invalid("not a JSON object");
    };
    let Some(kind) = detect(doc) else {
        return report.invalid("unrecognised document: expected a manifest, receipt, federation announce or well-known");
    };
    report.kind = Some(kind);
    report.canonical = canonical_for(kind, doc);
    report.signed = obj.get("signature").is_some_and(|s| !s.is_null());

    // Checked before the schema (which also requires it) for the clearer message.
    if !report.signed && kind != DocumentKind::WellKnown {
        return report.invalid(format!(
            "unsigned {kind}: the `signature` field is required"
        ));
    }

    // The spec's announce carries a bare string signature; the schema describes the object
    // form. Validate the string form as its object equivalent.
    let schema_result = match (kind, obj.get("signature")) {
        (DocumentKind::Announce, Some(Value::String(s))) => {
            let mut copy = obj.clone();
            copy.insert(
                "signature".into(),
                serde_json::json!({"algorithm": signing::ALGORITHM, "value": s}),
            );
            schema::validate(SchemaKind::Announce, &Value::Object(copy))
        }
        _ => match kind.schema() {
            Some(schema_kind) => schema::validate(schema_kind, doc),
            None => bill_shape(doc),
        },
    };
    // Receipts are read tolerantly (real providers sign float latencies and `success: 1`):
    // a deviation is reported, and validity rests on the signature. Every other kind must
    // also conform, as a hub crawling it will insist; its signature is still checked and
    // reported on its own.
    let schema_error = match schema_result {
        Ok(()) => None,
        Err(e) => {
            report.schema_deviations = match &e {
                crate::error::ProtocolError::SchemaInvalid { errors, .. } => errors.clone(),
                other => vec![other.to_string()],
            };
            (kind != DocumentKind::Receipt).then(|| e.to_string())
        }
    };
    if !report.signed {
        // Discovery documents need no signature; reported with `signed: false`.
        return match schema_error {
            Some(reason) => report.invalid(reason),
            None => {
                report.valid = true;
                report
            }
        };
    }

    let key = match key {
        Some(k) => *k,
        None => match signing::embedded_key(doc) {
            Ok(Some(k)) => k,
            Ok(None) => {
                return report.invalid(
                    "no key: pass a key or embed signature.public_key / signer_public_key",
                );
            }
            Err(e) => return report.invalid(format!("embedded key: {e}")),
        },
    };
    report.signer = Some(key.to_b64());

    let result = match kind {
        DocumentKind::Manifest => signing::verify_manifest(doc, &key),
        DocumentKind::Announce => signing::verify_announce(doc, &key),
        DocumentKind::WellKnown | DocumentKind::Bill => signing::verify_document(doc, &key),
        DocumentKind::Receipt => signing::verify_receipt(doc, &key).map(|check| {
            report.signature_version = Some(check.version.number());
            report.unsigned_fields = check.unsigned_fields;
            if check.version == ReceiptVersion::V2 {
                report.canonical = signing::receipt_canonical_v2(doc).ok();
            }
        }),
    };
    report.signature_valid = Some(result.is_ok());
    match (result, schema_error) {
        (Ok(()), None) => {
            report.valid = true;
            report
        }
        (Ok(()), Some(reason)) => report.invalid(reason),
        (Err(e), _) => report.invalid(e.to_string()),
    }
}

/// The shape of a pipeline bill: a string `trace_id`, an array of object `steps`, a
/// non-negative number `total_usd`.
fn bill_shape(doc: &Value) -> Result<(), crate::error::ProtocolError> {
    use crate::error::ProtocolError::WrongType;
    if !doc["trace_id"].is_string() {
        return Err(WrongType {
            field: "trace_id",
            expected: "a string",
        });
    }
    if !doc["steps"]
        .as_array()
        .is_some_and(|s| s.iter().all(Value::is_object))
    {
        return Err(WrongType {
            field: "steps",
            expected: "an array of objects",
        });
    }
    if !doc["total_usd"].as_f64().is_some_and(|t| t >= 0.0) {
        return Err(WrongType {
            field: "total_usd",
            expected: "a number >= 0",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn detection_by_keys() {
        assert_eq!(detect(&json!({"tools": []})), Some(DocumentKind::Manifest));
        assert_eq!(
            detect(&json!({"nonce": "n", "timestamp": "t"})),
            Some(DocumentKind::Receipt)
        );
        assert_eq!(
            detect(&json!({"hub_url": "a", "well_known_url": "b"})),
            Some(DocumentKind::Announce)
        );
        assert_eq!(
            detect(&json!({"manifest_url": "a"})),
            Some(DocumentKind::WellKnown)
        );
        assert_eq!(detect(&json!({"nonce": "n"})), None);
        assert_eq!(detect(&json!([1])), None);
        assert_eq!(detect(&json!(null)), None);
    }

    #[test]
    fn a_signed_bill_verifies_and_a_changed_one_does_not() {
        let key = signing::KeyPair::from_seed(&[7; 32]);
        let mut bill = json!({"kind": "pipeline_bill", "trace_id": "tr_1", "total_usd": 0.5,
            "steps": [{"node_id": "a", "price_usd": 0.5}],
            "signer_public_key": key.public_key().to_b64()});
        assert_eq!(detect(&bill), Some(DocumentKind::Bill));
        signing::sign_document(&mut bill, &key).unwrap();
        let r = verify_any(&bill, None);
        assert!(r.valid, "{r:?}");
        assert_eq!(r.kind, Some(DocumentKind::Bill));
        bill["total_usd"] = json!(0.1);
        assert!(!verify_any(&bill, None).valid);
        bill["total_usd"] = json!("x");
        assert!(!verify_any(&bill, None).valid);
        let mut unsigned = bill.clone();
        unsigned.as_object_mut().unwrap().remove("signature");
        assert!(!verify_any(&unsigned, None).valid);
    }

    #[test]
    fn garbage_is_invalid_not_a_panic() {
        for v in [
            json!(null),
            json!(1),
            json!("s"),
            json!([]),
            json!({}),
            json!({"tools": 5}),
            json!({"nonce": {}, "timestamp": [], "signature": "x"}),
            json!({"hub_url": 1, "well_known_url": null, "signature": 3}),
        ] {
            let r = verify_any(&v, None);
            assert!(!r.valid, "{v}");
            assert!(r.reason.is_some(), "{v}");
        }
    }
}
