//! Whole-document signatures (the well-known, as the reference hub signs it) and the
//! request-bound provider response signature of spec §7.1.

use serde_json::{Map, Value, json};

use super::{
    KeyPair, PublicKey, as_object, as_object_mut, check_embedded_keys, signature_object,
    signature_parts, verify_named,
};
use crate::canonical::{Style, digest_hex, to_canonical_string};
use crate::error::ProtocolError;

/// Compact sorted JSON of the document without its top-level `signature` key.
pub fn document_canonical(doc: &Value) -> String {
    match doc.as_object() {
        Some(m) if m.contains_key("signature") => {
            let mut m: Map<String, Value> = m.clone();
            m.remove("signature");
            to_canonical_string(&Value::Object(m), Style::Compact)
        }
        _ => to_canonical_string(doc, Style::Compact),
    }
}

/// Signs the whole document in place with `{algorithm, public_key, value}`. The caller
/// sets `signer_public_key` (it is part of the signed bytes).
pub fn sign_document(doc: &mut Value, key: &KeyPair) -> Result<(), ProtocolError> {
    as_object(doc, "document")?;
    let canonical = document_canonical(doc);
    let sig = signature_object(key, &canonical);
    as_object_mut(doc, "document")?.insert("signature".into(), Value::Object(sig));
    Ok(())
}

/// Verifies a whole-document signature (object, or a bare base64 string). Extra signature
/// members such as the reference hub's `pq_*` are ignored. An embedded key
/// (`signature.public_key` or `signer_public_key`) naming another key fails with
/// [`ProtocolError::KeyMismatch`].
pub fn verify_document(doc: &Value, key: &PublicKey) -> Result<(), ProtocolError> {
    let m = as_object(doc, "document")?;
    let sig = signature_parts(m, true)?;
    check_embedded_keys(m, &sig, key)?;
    verify_named(key, &document_canonical(doc), sig.value, "document")
}

/// Compact sorted JSON of `{capability_id, input_sha256, product_id, result}` where
/// `input_sha256` is the SHA-256 hex of the compact sorted `input` (spec §7.1; the bytes a
/// provider's `X-Provider-Signature` covers).
pub fn provider_response_canonical(
    capability_id: &str,
    product_id: &str,
    input: &Value,
    result: &Value,
) -> String {
    let doc = json!({
        "capability_id": capability_id,
        "input_sha256": digest_hex(input, Style::Compact),
        "product_id": product_id,
        "result": result,
    });
    to_canonical_string(&doc, Style::Compact)
}

/// The base64 `X-Provider-Signature` for a response.
pub fn sign_provider_response(
    capability_id: &str,
    product_id: &str,
    input: &Value,
    result: &Value,
    key: &KeyPair,
) -> String {
    key.sign_b64(provider_response_canonical(capability_id, product_id, input, result).as_bytes())
}

/// Verifies an `X-Provider-Signature` against the listing's `provider_pubkey`.
pub fn verify_provider_response(
    capability_id: &str,
    product_id: &str,
    input: &Value,
    result: &Value,
    sig_b64: &str,
    key: &PublicKey,
) -> Result<(), ProtocolError> {
    let canonical = provider_response_canonical(capability_id, product_id, input, result);
    verify_named(key, &canonical, sig_b64, "provider response")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn provider_canonical_shape() {
        let input = json!({"text": "hé", "n": 1});
        let c = provider_response_canonical("c@v1", "p", &input, &json!({"ok": true}));
        let h = crate::canonical::sha256_hex(r#"{"n":1,"text":"hé"}"#.as_bytes());
        assert_eq!(
            c,
            format!(
                r#"{{"capability_id":"c@v1","input_sha256":"{h}","product_id":"p","result":{{"ok":true}}}}"#
            )
        );
    }

    #[test]
    fn provider_signature_is_bound_to_the_input() {
        let k = KeyPair::from_seed(&[1u8; 32]);
        let input = json!({"q": 1});
        let sig = sign_provider_response("c@v1", "p", &input, &json!([1]), &k);
        verify_provider_response("c@v1", "p", &input, &json!([1]), &sig, &k.public_key()).unwrap();
        assert_eq!(
            verify_provider_response(
                "c@v1",
                "p",
                &json!({"q": 2}),
                &json!([1]),
                &sig,
                &k.public_key()
            ),
            Err(ProtocolError::BadSignature {
                what: "provider response"
            })
        );
    }

    #[test]
    fn document_round_trip_ignores_extra_signature_members() {
        let k = KeyPair::from_seed(&[2u8; 32]);
        let mut d = json!({"name": "hub", "signer_public_key": k.public_key().to_b64(), "n": 0.5});
        sign_document(&mut d, &k).unwrap();
        assert_eq!(
            document_canonical(&d),
            format!(
                r#"{{"n":0.5,"name":"hub","signer_public_key":"{}"}}"#,
                k.public_key()
            )
        );
        d["signature"]["pq_value"] = json!("xyz");
        verify_document(&d, &k.public_key()).unwrap();
        d["n"] = json!(0.6);
        assert_eq!(
            verify_document(&d, &k.public_key()),
            Err(ProtocolError::BadSignature { what: "document" })
        );
    }
}
