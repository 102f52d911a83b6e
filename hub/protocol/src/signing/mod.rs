//! Ed25519 signing and verification for every canonical of spec §7.3.
//!
//! All functions work on the parsed [`serde_json::Value`]: the canonical bytes are
//! rebuilt from the document as received, so unknown fields and number spellings survive.
//!
//! | canonical | form |
//! |---|---|
//! | manifest (§7.3.2) | `capabilities_count:..|generated_at:..|protocol_version:..|tools_hash:..|by_hub_hash:..` (digests with Python default separators) |
//! | receipt v1 (§7.3.3) | `nonce:..|product_id:..|capability_id:..|price_usd:..|timestamp:..|success:1/0|latency_ms:..` |
//! | receipt v2 (§7.3.4) | `{v1}|v:2|fields:{sha256 of compact sorted JSON of the nine v2 keys, absent = null}` |
//! | announce (§7.3.5) | `hub_url:..|well_known_url:..|capabilities_count:..` |
//! | provider response (§7.1) | compact sorted JSON of `{capability_id, input_sha256, product_id, result}` |
//! | hub request (extension) | `aimarket-hub-request/v1\n` + compact sorted JSON of `{aud, capability_id, hub, input_sha256, nonce, ts}` |
//! | whole document (well-known) | compact sorted JSON of the document without `signature` |

mod announce;
mod document;
mod hub_request;
mod keys;
mod manifest;
mod receipt;

use serde_json::{Map, Value};

pub use announce::{announce_canonical, sign_announce, verify_announce};
pub use document::{
    document_canonical, provider_response_canonical, sign_document, sign_provider_response,
    verify_document, verify_provider_response,
};
pub use hub_request::{
    HUB_REQUEST_MAX_SKEW_S, HUB_REQUEST_PREFIX, HubRequestClaims, headers as hub_request_headers,
    hub_request_input_sha256, hub_request_nonce, normalize_url, verify_hub_request,
};
pub use keys::{KeyPair, PublicKey};
pub use manifest::{legacy_manifest_canonical, manifest_canonical, sign_manifest, verify_manifest};
pub use receipt::{
    RECEIPT_V2_FIELDS, ReceiptCheck, ReceiptVersion, receipt_canonical_v1, receipt_canonical_v2,
    sign_receipt, unsigned_receipt_fields, verify_receipt,
};

use crate::canonical::py_str;
use crate::error::ProtocolError;

/// The only algorithm the protocol allows (§7.3.1).
pub const ALGORITHM: &str = "ed25519";

/// The document as a JSON object, or a typed error naming it.
pub(crate) fn as_object<'a>(
    doc: &'a Value,
    what: &'static str,
) -> Result<&'a Map<String, Value>, ProtocolError> {
    doc.as_object().ok_or(ProtocolError::WrongType {
        field: what,
        expected: "a JSON object",
    })
}

pub(crate) fn as_object_mut<'a>(
    doc: &'a mut Value,
    what: &'static str,
) -> Result<&'a mut Map<String, Value>, ProtocolError> {
    doc.as_object_mut().ok_or(ProtocolError::WrongType {
        field: what,
        expected: "a JSON object",
    })
}

/// One `name:value` value of a pipe canonical: Python `str()` of the field, the spec's
/// default when the key is absent, `MissingField` when there is no default. A present
/// `null` renders as Python would (`None`) for defaulted fields and counts as missing for
/// required ones. Containers are refused: no honest document puts one there.
pub(crate) fn pipe_value(
    doc: &Map<String, Value>,
    name: &'static str,
    default: Option<&'static str>,
) -> Result<String, ProtocolError> {
    match (doc.get(name), default) {
        (None, Some(d)) => Ok(d.to_owned()),
        (None | Some(Value::Null), None) => Err(ProtocolError::MissingField(name)),
        (Some(Value::Array(_) | Value::Object(_)), _) => Err(ProtocolError::WrongType {
            field: name,
            expected: "a string, number or boolean",
        }),
        (Some(v), _) => Ok(py_str(v)),
    }
}

/// The parts of a signature this crate reads.
pub(crate) struct SigParts<'a> {
    pub value: &'a str,
    pub public_key: Option<&'a str>,
    pub version: Option<&'a Value>,
}

/// Reads `signature` as the object `{algorithm, value, public_key?, version?}` or, where the
/// spec allows it (announce), as a bare base64 string.
pub(crate) fn signature_parts(
    doc: &Map<String, Value>,
    allow_string: bool,
) -> Result<SigParts<'_>, ProtocolError> {
    match doc.get("signature") {
        None | Some(Value::Null) => Err(ProtocolError::MissingField("signature")),
        Some(Value::String(s)) if allow_string => Ok(SigParts {
            value: s,
            public_key: None,
            version: None,
        }),
        Some(Value::Object(sig)) => {
            match sig.get("algorithm") {
                None => {}
                Some(Value::String(a)) if a.eq_ignore_ascii_case(ALGORITHM) => {}
                Some(other) => return Err(ProtocolError::UnsupportedAlgorithm(py_str(other))),
            }
            let value = match sig.get("value") {
                Some(Value::String(s)) => s.as_str(),
                None | Some(Value::Null) => {
                    return Err(ProtocolError::MissingField("signature.value"));
                }
                Some(_) => {
                    return Err(ProtocolError::WrongType {
                        field: "signature.value",
                        expected: "a string",
                    });
                }
            };
            let public_key = match sig.get("public_key") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.as_str()),
                Some(_) => {
                    return Err(ProtocolError::WrongType {
                        field: "signature.public_key",
                        expected: "a string",
                    });
                }
            };
            Ok(SigParts {
                value,
                public_key,
                version: sig.get("version"),
            })
        }
        Some(_) => Err(ProtocolError::WrongType {
            field: "signature",
            expected: if allow_string {
                "a base64 string or a signature object"
            } else {
                "a signature object"
            },
        }),
    }
}

/// The key a document embeds for its signer: `signature.public_key`, else
/// `signer_public_key`. Errors only when one is present but malformed.
pub fn embedded_key(doc: &Value) -> Result<Option<PublicKey>, ProtocolError> {
    let Some(obj) = doc.as_object() else {
        return Ok(None);
    };
    if let Some(Value::Object(sig)) = obj.get("signature")
        && let Some(pk) = sig.get("public_key").filter(|v| !v.is_null())
    {
        let s = pk.as_str().ok_or(ProtocolError::WrongType {
            field: "signature.public_key",
            expected: "a string",
        })?;
        return PublicKey::from_b64_field(s, "signature.public_key").map(Some);
    }
    match obj.get("signer_public_key") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => PublicKey::from_b64_field(s, "signer_public_key").map(Some),
        Some(_) => Err(ProtocolError::WrongType {
            field: "signer_public_key",
            expected: "a string",
        }),
    }
}

/// Refuses a document whose embedded signer key (`signature.public_key` or
/// `signer_public_key`) names a different key than the one it is verified with: a pinned
/// key must not be silently overridden by what the document claims.
pub(crate) fn check_embedded_keys(
    doc: &Map<String, Value>,
    sig: &SigParts<'_>,
    key: &PublicKey,
) -> Result<(), ProtocolError> {
    if let Some(pk) = sig.public_key
        && PublicKey::from_b64_field(pk, "signature.public_key")? != *key
    {
        return Err(ProtocolError::KeyMismatch);
    }
    match doc.get("signer_public_key") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(s)) => {
            if PublicKey::from_b64_field(s, "signer_public_key")? == *key {
                Ok(())
            } else {
                Err(ProtocolError::KeyMismatch)
            }
        }
        Some(_) => Err(ProtocolError::WrongType {
            field: "signer_public_key",
            expected: "a string",
        }),
    }
}

/// Verifies `sig_b64` over `canonical`, naming the canonical in the error.
pub(crate) fn verify_named(
    key: &PublicKey,
    canonical: &str,
    sig_b64: &str,
    what: &'static str,
) -> Result<(), ProtocolError> {
    key.verify_b64(canonical.as_bytes(), sig_b64)
        .map_err(|e| match e {
            ProtocolError::BadSignature { .. } => ProtocolError::BadSignature { what },
            ProtocolError::BadBase64 { .. } => ProtocolError::BadBase64 {
                field: "signature.value",
            },
            other => other,
        })
}

/// The standard signature object `{algorithm, public_key, value}`.
pub(crate) fn signature_object(key: &KeyPair, canonical: &str) -> Map<String, Value> {
    let mut sig = Map::new();
    sig.insert("algorithm".into(), ALGORITHM.into());
    sig.insert("public_key".into(), key.public_key().to_b64().into());
    sig.insert("value".into(), key.sign_b64(canonical.as_bytes()).into());
    sig
}
