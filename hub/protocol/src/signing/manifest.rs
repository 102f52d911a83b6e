//! Manifest canonical, spec §7.3.2 (five fields).

use serde_json::{Map, Value};

use super::{
    KeyPair, PublicKey, as_object, as_object_mut, check_embedded_keys, pipe_value,
    signature_object, signature_parts, verify_named,
};
use crate::canonical::{Style, digest_hex};
use crate::error::ProtocolError;

/// `capabilities_count:{n}|generated_at:{ts}|protocol_version:{v}|tools_hash:{h}|by_hub_hash:{h}`.
///
/// Digests use Python's default separators. Defaults for absent keys: `capabilities_count`
/// `0`, `generated_at` `""`, `protocol_version` `"v1"`, `tools` `[]`, `by_hub` `{}`.
pub fn manifest_canonical(manifest: &Value) -> Result<String, ProtocolError> {
    let m = as_object(manifest, "manifest")?;
    let count = pipe_value(m, "capabilities_count", Some("0"))?;
    let generated_at = pipe_value(m, "generated_at", Some(""))?;
    let version = pipe_value(m, "protocol_version", Some("v1"))?;
    let tools_hash = digest_or(m, "tools", Value::Array(Vec::new()));
    let by_hub_hash = digest_or(m, "by_hub", Value::Object(Map::new()));
    Ok(format!(
        "capabilities_count:{count}|generated_at:{generated_at}|protocol_version:{version}\
         |tools_hash:{tools_hash}|by_hub_hash:{by_hub_hash}"
    ))
}

fn digest_or(m: &Map<String, Value>, key: &str, default: Value) -> String {
    digest_hex(m.get(key).unwrap_or(&default), Style::Python)
}

/// The insecure pre-2026-07-29 three-field form
/// (`capabilities_count:..|generated_at:..|protocol_version:..`). It binds neither tools nor
/// `by_hub`; it exists only so tests can prove such signatures are rejected. Never sign
/// or verify with it.
pub fn legacy_manifest_canonical(manifest: &Value) -> String {
    let empty = Map::new();
    let m = manifest.as_object().unwrap_or(&empty);
    let get = |k: &'static str, d: &'static str| {
        pipe_value(m, k, Some(d)).unwrap_or_else(|_| d.to_owned())
    };
    format!(
        "capabilities_count:{}|generated_at:{}|protocol_version:{}",
        get("capabilities_count", "0"),
        get("generated_at", ""),
        get("protocol_version", "v1")
    )
}

/// Signs the manifest in place, setting `signature` to `{algorithm, public_key, value}`.
pub fn sign_manifest(manifest: &mut Value, key: &KeyPair) -> Result<(), ProtocolError> {
    let canonical = manifest_canonical(manifest)?;
    let sig = signature_object(key, &canonical);
    as_object_mut(manifest, "manifest")?.insert("signature".into(), Value::Object(sig));
    Ok(())
}

/// Verifies the five-field signature against `key` (a pinned key, or the embedded one the
/// caller chose to trust). An embedded `signature.public_key` naming another key fails with
/// [`ProtocolError::KeyMismatch`].
pub fn verify_manifest(manifest: &Value, key: &PublicKey) -> Result<(), ProtocolError> {
    let m = as_object(manifest, "manifest")?;
    let sig = signature_parts(m, false)?;
    check_embedded_keys(m, &sig, key)?;
    let canonical = manifest_canonical(manifest)?;
    verify_named(key, &canonical, sig.value, "manifest")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn absent_fields_take_spec_defaults() {
        let c = manifest_canonical(&json!({})).unwrap();
        let empty_list = crate::canonical::sha256_hex(b"[]");
        let empty_obj = crate::canonical::sha256_hex(b"{}");
        assert_eq!(
            c,
            format!(
                "capabilities_count:0|generated_at:|protocol_version:v1|tools_hash:{empty_list}|by_hub_hash:{empty_obj}"
            )
        );
        // An explicit empty by_hub agrees with an absent one (§7.3.2).
        assert_eq!(c, manifest_canonical(&json!({"by_hub": {}})).unwrap());
    }

    #[test]
    fn digests_use_python_default_separators() {
        let m = json!({"tools": [{"a": 1, "b": [1.0]}]});
        let c = manifest_canonical(&m).unwrap();
        assert!(c.contains(&crate::canonical::sha256_hex(br#"[{"a": 1, "b": [1.0]}]"#)));
    }

    #[test]
    fn round_trip_and_tamper() {
        let k = KeyPair::from_seed(&[3u8; 32]);
        let mut m = json!({"protocol_version": "v2", "generated_at": "2026-01-01T00:00:00Z",
            "tools": [{"name": "a", "price_per_call_usd": 0.001}], "by_hub": {"h": {"trust_score": 0.5}}});
        sign_manifest(&mut m, &k).unwrap();
        verify_manifest(&m, &k.public_key()).unwrap();
        let mut t = m.clone();
        t["by_hub"]["h"]["trust_score"] = json!(0.9);
        assert_eq!(
            verify_manifest(&t, &k.public_key()),
            Err(ProtocolError::BadSignature { what: "manifest" })
        );
        let other = KeyPair::from_seed(&[4u8; 32]).public_key();
        assert_eq!(verify_manifest(&m, &other), Err(ProtocolError::KeyMismatch));
        assert!(sign_manifest(&mut json!([1]), &k).is_err());
    }

    #[test]
    fn container_in_pipe_field_is_refused() {
        let e = manifest_canonical(&json!({"generated_at": {"x": 1}})).unwrap_err();
        assert_eq!(e.code(), "wrong_type");
    }
}
