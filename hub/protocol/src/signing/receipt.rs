//! Receipt canonicals, spec §7.3.3 (v1, seven fields) and §7.3.4 (v2, fields digest).

use serde_json::{Map, Value};

use super::{
    KeyPair, PublicKey, as_object, as_object_mut, check_embedded_keys, pipe_value,
    signature_object, signature_parts, verify_named,
};
use crate::canonical::{Style, digest_hex, py_str};
use crate::error::ProtocolError;

/// The nine keys the v2 fields digest binds, in the spec's (documentary) order. The digest
/// itself sorts them.
pub const RECEIPT_V2_FIELDS: [&str; 9] = [
    "type",
    "channel_id",
    "category",
    "plugin",
    "reason",
    "verify_score",
    "delivery_reasons",
    "trace_id",
    "refunded",
];

/// Which receipt canonical a signature covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReceiptVersion {
    /// Seven fields (§7.3.3); announced by an absent `signature.version` or `1`.
    V1,
    /// v1 plus `|v:2|fields:{digest}` (§7.3.4); announced by `signature.version: 2`.
    V2,
}

impl ReceiptVersion {
    /// `1` or `2`.
    pub fn number(self) -> u8 {
        match self {
            Self::V1 => 1,
            Self::V2 => 2,
        }
    }
}

/// Outcome of a successful receipt verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptCheck {
    /// The canonical the signature covered.
    pub version: ReceiptVersion,
    /// v2 fields present in the receipt but not covered by the signature (non-empty only
    /// for a v1 signature over a receipt that carries v2 fields). Decisions must not rest
    /// on these.
    pub unsigned_fields: Vec<String>,
}

/// Python truthiness, which is how the reference turns `success` into `1`/`0`.
fn py_truthy(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0),
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
    }
}

fn v1_of(r: &Map<String, Value>) -> Result<String, ProtocolError> {
    Ok(format!(
        "nonce:{}|product_id:{}|capability_id:{}|price_usd:{}|timestamp:{}|success:{}|latency_ms:{}",
        pipe_value(r, "nonce", None)?,
        pipe_value(r, "product_id", None)?,
        pipe_value(r, "capability_id", None)?,
        pipe_value(r, "price_usd", None)?,
        pipe_value(r, "timestamp", None)?,
        if py_truthy(r.get("success")) { 1 } else { 0 },
        pipe_value(r, "latency_ms", Some("0"))?,
    ))
}

/// `nonce:..|product_id:..|capability_id:..|price_usd:..|timestamp:..|success:1/0|latency_ms:..`.
/// Numbers are rendered with Python `str()`; `latency_ms` defaults to `0`; `nonce`,
/// `timestamp`, ids and price are required.
pub fn receipt_canonical_v1(receipt: &Value) -> Result<String, ProtocolError> {
    v1_of(as_object(receipt, "receipt")?)
}

/// `{v1}|v:2|fields:{sha256 of compact sorted JSON of the nine v2 keys}`; absent keys are
/// bound as `null`, so deleting one changes the digest.
pub fn receipt_canonical_v2(receipt: &Value) -> Result<String, ProtocolError> {
    let r = as_object(receipt, "receipt")?;
    let fields: Map<String, Value> = RECEIPT_V2_FIELDS
        .iter()
        .map(|k| ((*k).to_owned(), r.get(*k).cloned().unwrap_or(Value::Null)))
        .collect();
    Ok(format!(
        "{}|v:2|fields:{}",
        v1_of(r)?,
        digest_hex(&Value::Object(fields), Style::Compact)
    ))
}

/// Signs in place with `{algorithm, public_key, value}` (plus `version: 2` for v2).
pub fn sign_receipt(
    receipt: &mut Value,
    key: &KeyPair,
    version: ReceiptVersion,
) -> Result<(), ProtocolError> {
    let canonical = match version {
        ReceiptVersion::V1 => receipt_canonical_v1(receipt)?,
        ReceiptVersion::V2 => receipt_canonical_v2(receipt)?,
    };
    let mut sig = signature_object(key, &canonical);
    if version == ReceiptVersion::V2 {
        sig.insert("version".into(), 2.into());
    }
    as_object_mut(receipt, "receipt")?.insert("signature".into(), Value::Object(sig));
    Ok(())
}

/// The signed version, read from the receipt's own signature block (never from a request).
fn signed_version(version: Option<&Value>) -> Result<ReceiptVersion, ProtocolError> {
    match version {
        None | Some(Value::Null) => Ok(ReceiptVersion::V1),
        Some(v) => match v
            .as_f64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        {
            Some(1.0) => Ok(ReceiptVersion::V1),
            Some(2.0) => Ok(ReceiptVersion::V2),
            _ => Err(ProtocolError::UnsupportedVersion(py_str(v))),
        },
    }
}

/// v2 fields present (non-null) in the receipt that its signature does not cover (§7.3.4):
/// empty for a v2 signature, otherwise every present v2 key, in the spec's order. A receipt
/// with an unreadable signature block is treated as v1-signed (the conservative answer).
pub fn unsigned_receipt_fields(receipt: &Value) -> Vec<String> {
    let Some(r) = receipt.as_object() else {
        return Vec::new();
    };
    let version = match r.get("signature") {
        Some(Value::Object(sig)) => {
            signed_version(sig.get("version")).unwrap_or(ReceiptVersion::V1)
        }
        _ => ReceiptVersion::V1,
    };
    if version == ReceiptVersion::V2 {
        return Vec::new();
    }
    RECEIPT_V2_FIELDS
        .iter()
        .filter(|k| r.get(**k).is_some_and(|v| !v.is_null()))
        .map(|k| (*k).to_owned())
        .collect()
}

/// Verifies a receipt at the version its signature block announces. A v1 signature over a
/// receipt carrying v2 fields is accepted (pre-v2 peers emit exactly that) but the
/// uncovered fields are listed in [`ReceiptCheck::unsigned_fields`].
pub fn verify_receipt(receipt: &Value, key: &PublicKey) -> Result<ReceiptCheck, ProtocolError> {
    let r = as_object(receipt, "receipt")?;
    let sig = signature_parts(r, false)?;
    let version = signed_version(sig.version)?;
    check_embedded_keys(r, &sig, key)?;
    match version {
        ReceiptVersion::V1 => verify_named(
            key,
            &receipt_canonical_v1(receipt)?,
            sig.value,
            "receipt v1",
        )?,
        ReceiptVersion::V2 => verify_named(
            key,
            &receipt_canonical_v2(receipt)?,
            sig.value,
            "receipt v2",
        )?,
    }
    Ok(ReceiptCheck {
        version,
        unsigned_fields: unsigned_receipt_fields(receipt),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn base() -> Value {
        json!({"nonce": "n1", "product_id": "p", "capability_id": "c@v1", "price_usd": 0.00005,
               "timestamp": "2026-01-01T00:00:00Z", "success": true})
    }

    #[test]
    fn v1_renders_python_numbers_and_defaults() {
        assert_eq!(
            receipt_canonical_v1(&base()).unwrap(),
            "nonce:n1|product_id:p|capability_id:c@v1|price_usd:5e-05|timestamp:2026-01-01T00:00:00Z|success:1|latency_ms:0"
        );
        let mut r = base();
        r["price_usd"] = json!(1.0);
        r["success"] = json!(false);
        r["latency_ms"] = json!(12);
        assert!(
            receipt_canonical_v1(&r)
                .unwrap()
                .ends_with("price_usd:1.0|timestamp:2026-01-01T00:00:00Z|success:0|latency_ms:12")
        );
    }

    #[test]
    fn nonce_and_timestamp_are_required() {
        let mut r = base();
        r.as_object_mut().unwrap().remove("timestamp");
        assert_eq!(
            receipt_canonical_v1(&r),
            Err(ProtocolError::MissingField("timestamp"))
        );
        r["nonce"] = Value::Null;
        assert_eq!(
            receipt_canonical_v2(&r),
            Err(ProtocolError::MissingField("nonce"))
        );
    }

    #[test]
    fn v2_digest_binds_absent_keys_as_null() {
        let all_null: Map<String, Value> = RECEIPT_V2_FIELDS
            .iter()
            .map(|k| ((*k).to_owned(), Value::Null))
            .collect();
        let want = digest_hex(&Value::Object(all_null), Style::Compact);
        assert!(
            receipt_canonical_v2(&base())
                .unwrap()
                .ends_with(&format!("|v:2|fields:{want}"))
        );
    }

    #[test]
    fn versions_round_trip_and_v1_reports_unsigned() {
        let k = KeyPair::from_seed(&[5u8; 32]);
        let mut r = base();
        r["reason"] = json!("bad");
        r["refunded"] = json!(true);
        sign_receipt(&mut r, &k, ReceiptVersion::V2).unwrap();
        let c = verify_receipt(&r, &k.public_key()).unwrap();
        assert_eq!(
            (c.version, c.unsigned_fields.len()),
            (ReceiptVersion::V2, 0)
        );
        r["reason"] = json!("good");
        assert_eq!(
            verify_receipt(&r, &k.public_key()),
            Err(ProtocolError::BadSignature { what: "receipt v2" })
        );

        sign_receipt(&mut r, &k, ReceiptVersion::V1).unwrap();
        let c = verify_receipt(&r, &k.public_key()).unwrap();
        assert_eq!(c.version, ReceiptVersion::V1);
        assert_eq!(c.unsigned_fields, ["reason", "refunded"]);
    }

    #[test]
    fn unknown_signature_version_is_refused() {
        let k = KeyPair::from_seed(&[5u8; 32]);
        let mut r = base();
        sign_receipt(&mut r, &k, ReceiptVersion::V1).unwrap();
        r["signature"]["version"] = json!(3);
        assert_eq!(
            verify_receipt(&r, &k.public_key()),
            Err(ProtocolError::UnsupportedVersion("3".into()))
        );
        r["signature"]["version"] = json!("2");
        assert_eq!(
            verify_receipt(&r, &k.public_key()),
            Err(ProtocolError::BadSignature { what: "receipt v2" })
        );
    }
}
