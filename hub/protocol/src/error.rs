//! The one error type of the protocol crate.
//!
//! Every variant names the field or rule that failed, so a caller (the hub's HTTP layer, the
//! `verify` CLI, the crawler) can tell a provider exactly what to fix. [`ProtocolError::code`]
//! gives a stable snake_case code suitable for the protocol error body.

use crate::schema::SchemaKind;

/// Everything that can go wrong while parsing, canonicalising, signing or verifying a
/// protocol document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// A field the canonical or the spec requires is absent (or `null`).
    #[error("missing field `{0}`")]
    MissingField(&'static str),
    /// A field is present but has a JSON type the rule does not accept.
    #[error("field `{field}` must be {expected}")]
    WrongType {
        /// Dotted path of the field, e.g. `signature.value`.
        field: &'static str,
        /// Human description of the accepted type(s).
        expected: &'static str,
    },
    /// The Ed25519 signature over the named canonical does not verify.
    #[error("{what} signature does not verify")]
    BadSignature {
        /// Which canonical failed: `manifest`, `receipt v1`, `receipt v2`, `announce`,
        /// `provider response`, `document`.
        what: &'static str,
    },
    /// The key embedded in the document differs from the key the caller verifies with.
    #[error("embedded public key does not match the verifying key")]
    KeyMismatch,
    /// The document does not validate against its JSON Schema.
    #[error("{kind} schema validation failed: {}", errors.join("; "))]
    SchemaInvalid {
        /// Which bundled schema was applied.
        kind: SchemaKind,
        /// One message per violation, each prefixed with the JSON pointer of the instance.
        errors: Vec<String>,
    },
    /// A number is NaN, infinite, or too large to be a finite double (e.g. `1e400`).
    #[error("non-finite number (NaN, Infinity or out of range) is not allowed")]
    NonFinite,
    /// A base64 field does not decode (standard alphabet with padding).
    #[error("field `{field}` is not valid base64")]
    BadBase64 {
        /// Name of the offending field.
        field: &'static str,
    },
    /// A public key is not 32 bytes or not a valid Ed25519 point.
    #[error("invalid Ed25519 public key")]
    BadKey,
    /// A seed/key file does not hold exactly 32 bytes.
    #[error("key file must hold a 32-byte Ed25519 seed, found {len} bytes")]
    BadSeed {
        /// Length actually found.
        len: usize,
    },
    /// `signature.algorithm` names something other than `ed25519`.
    #[error("unsupported signature algorithm `{0}` (only ed25519)")]
    UnsupportedAlgorithm(String),
    /// `signature.version` of a receipt is neither 1 nor 2.
    #[error("unsupported receipt signature version `{0}`")]
    UnsupportedVersion(String),
    /// The bytes are not JSON at all.
    #[error("invalid JSON: {0}")]
    InvalidJson(String),
    /// Reading or writing a key file failed.
    #[error("key file {path}: {message}")]
    Io {
        /// The file involved.
        path: String,
        /// The operating-system error text.
        message: String,
    },
}

impl ProtocolError {
    /// A stable snake_case code for logs and protocol error bodies.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingField(_) => "missing_field",
            Self::WrongType { .. } => "wrong_type",
            Self::BadSignature { .. } => "bad_signature",
            Self::KeyMismatch => "key_mismatch",
            Self::SchemaInvalid { .. } => "schema_invalid",
            Self::NonFinite => "non_finite_number",
            Self::BadBase64 { .. } => "bad_base64",
            Self::BadKey => "bad_key",
            Self::BadSeed { .. } => "bad_seed",
            Self::UnsupportedAlgorithm(_) => "unsupported_algorithm",
            Self::UnsupportedVersion(_) => "unsupported_version",
            Self::InvalidJson(_) => "invalid_json",
            Self::Io { .. } => "key_file_io",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_snake_case() {
        let all = [
            ProtocolError::MissingField("nonce"),
            ProtocolError::WrongType {
                field: "x",
                expected: "a string",
            },
            ProtocolError::BadSignature { what: "manifest" },
            ProtocolError::KeyMismatch,
            ProtocolError::SchemaInvalid {
                kind: SchemaKind::Receipt,
                errors: vec![],
            },
            ProtocolError::NonFinite,
            ProtocolError::BadBase64 {
                field: "public_key",
            },
            ProtocolError::BadKey,
            ProtocolError::BadSeed { len: 3 },
            ProtocolError::UnsupportedAlgorithm("rsa".into()),
            ProtocolError::UnsupportedVersion("7".into()),
            ProtocolError::InvalidJson("eof".into()),
            ProtocolError::Io {
                path: "p".into(),
                message: "m".into(),
            },
        ];
        let mut codes: Vec<_> = all.iter().map(ProtocolError::code).collect();
        assert!(codes.iter().all(|c| {
            c.chars()
                .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_')
        }));
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), all.len());
    }

    #[test]
    fn messages_name_the_field() {
        assert_eq!(
            ProtocolError::MissingField("nonce").to_string(),
            "missing field `nonce`"
        );
        let e = ProtocolError::SchemaInvalid {
            kind: SchemaKind::Manifest,
            errors: vec!["/tools: x".into(), "/: y".into()],
        };
        assert_eq!(
            e.to_string(),
            "manifest schema validation failed: /tools: x; /: y"
        );
    }
}
