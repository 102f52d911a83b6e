//! Federation announce canonical, spec §7.3.5 (three fields).

use serde_json::{Map, Value};

use super::{
    KeyPair, PublicKey, as_object, as_object_mut, check_embedded_keys, pipe_value, signature_parts,
    verify_named,
};
use crate::error::ProtocolError;

/// `hub_url:{hub_url}|well_known_url:{well_known_url}|capabilities_count:{n}` (count
/// defaults to `0`). It binds no timestamp: an announcement is replayable by design and
/// must never be the basis of an admission decision.
pub fn announce_canonical(announce: &Value) -> Result<String, ProtocolError> {
    let a = as_object(announce, "announce")?;
    Ok(format!(
        "hub_url:{}|well_known_url:{}|capabilities_count:{}",
        pipe_value(a, "hub_url", None)?,
        pipe_value(a, "well_known_url", None)?,
        pipe_value(a, "capabilities_count", Some("0"))?
    ))
}

/// Signs in place: sets `signer_public_key` to this key and `signature` to the object form
/// `{algorithm, value}` (the reference hub refuses the bare-string form).
pub fn sign_announce(announce: &mut Value, key: &KeyPair) -> Result<(), ProtocolError> {
    let canonical = announce_canonical(announce)?;
    let mut sig = Map::new();
    sig.insert("algorithm".into(), super::ALGORITHM.into());
    sig.insert("value".into(), key.sign_b64(canonical.as_bytes()).into());
    let a = as_object_mut(announce, "announce")?;
    a.insert("signer_public_key".into(), key.public_key().to_b64().into());
    a.insert("signature".into(), Value::Object(sig));
    Ok(())
}

/// Verifies an announce whose `signature` is either the spec's bare base64 string or the
/// object `{algorithm, value}`. A `signer_public_key` naming another key fails with
/// [`ProtocolError::KeyMismatch`].
pub fn verify_announce(announce: &Value, key: &PublicKey) -> Result<(), ProtocolError> {
    let a = as_object(announce, "announce")?;
    let sig = signature_parts(a, true)?;
    check_embedded_keys(a, &sig, key)?;
    let canonical = announce_canonical(announce)?;
    verify_named(key, &canonical, sig.value, "announce")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn string_and_object_signatures_both_verify() {
        let k = KeyPair::from_seed(&[9u8; 32]);
        let mut a = json!({"hub_url": "https://h.example", "well_known_url": "https://h.example/.well-known/ai-market.json"});
        assert_eq!(
            announce_canonical(&a).unwrap(),
            "hub_url:https://h.example|well_known_url:https://h.example/.well-known/ai-market.json|capabilities_count:0"
        );
        sign_announce(&mut a, &k).unwrap();
        verify_announce(&a, &k.public_key()).unwrap();
        let value = a["signature"]["value"].clone();
        a["signature"] = value;
        verify_announce(&a, &k.public_key()).unwrap();
        a["capabilities_count"] = json!(1);
        assert_eq!(
            verify_announce(&a, &k.public_key()),
            Err(ProtocolError::BadSignature { what: "announce" })
        );
    }

    #[test]
    fn missing_hub_url_is_named() {
        assert_eq!(
            announce_canonical(&json!({"well_known_url": "x"})),
            Err(ProtocolError::MissingField("hub_url"))
        );
    }
}
