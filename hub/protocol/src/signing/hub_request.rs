//! The hub admission signature `aimarket-hub-request/v1`: a hub that has admitted a routed
//! call (it took the buyer's payment, or the capability is free) tells the provider so with
//! five headers signed by its federation key.
//!
//! The signed text is `"aimarket-hub-request/v1\n"` followed by the compact, key-sorted
//! JSON of `{aud, capability_id, hub, input_sha256, nonce, ts}` with non-ASCII kept as
//! UTF-8; `input_sha256` is the SHA-256 of the input rendered the same way (a missing or
//! `null` input counts as `{}`), and both URLs are normalised by [`normalize_url`].
//! Providers allow ±120 s of clock skew and reject a nonce they have seen.

use serde_json::{Value, json};
use url::Url;

use super::keys::{KeyPair, PublicKey};
use crate::canonical::{Style, sha256_hex, to_canonical_vec};
use crate::error::ProtocolError;

/// The domain-separation prefix of the signed text.
pub const HUB_REQUEST_PREFIX: &str = "aimarket-hub-request/v1\n";
/// Clock skew a verifier allows, in seconds (what the published providers allow).
pub const HUB_REQUEST_MAX_SKEW_S: i64 = 120;

/// Header names, as providers read them.
pub mod headers {
    /// The signing hub's URL, normalised.
    pub const SIGNER: &str = "x-aimarket-hub-signer";
    /// The invoke URL posted to, normalised.
    pub const AUDIENCE: &str = "x-aimarket-hub-audience";
    /// Unix seconds.
    pub const TIMESTAMP: &str = "x-aimarket-hub-timestamp";
    /// 32 lowercase hex characters, fresh per call.
    pub const NONCE: &str = "x-aimarket-hub-nonce";
    /// Base64 Ed25519 signature over the canonical.
    pub const SIGNATURE: &str = "x-aimarket-hub-signature";
}

/// Normalises a URL the way the signature binds it: scheme and host lowercased, the
/// scheme's default port dropped, one trailing `/` of the path dropped, query and fragment
/// dropped, IPv6 hosts in brackets. Only `http` and `https` URLs are accepted.
pub fn normalize_url(raw: &str) -> Result<String, ProtocolError> {
    let bad = || ProtocolError::WrongType {
        field: "url",
        expected: "an absolute http(s) URL",
    };
    // The url crate lowercases the scheme and host, drops default ports and brackets IPv6.
    let url = Url::parse(raw.trim()).map_err(|_| bad())?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad());
    }
    let host = url.host_str().ok_or_else(bad)?;
    let mut out = format!("{}://{host}", url.scheme());
    if let Some(port) = url.port() {
        out.push(':');
        out.push_str(&port.to_string());
    }
    let path = url.path();
    out.push_str(path.strip_suffix('/').unwrap_or(path));
    Ok(out)
}

/// Hex SHA-256 of `input` as compact sorted JSON (`null` counts as `{}`).
pub fn hub_request_input_sha256(input: &Value) -> String {
    match input {
        Value::Null => sha256_hex(b"{}"),
        other => sha256_hex(&to_canonical_vec(other, Style::Compact)),
    }
}

/// What one signature binds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubRequestClaims {
    /// The hub URL, normalised.
    pub hub: String,
    /// The invoke URL posted to, normalised.
    pub aud: String,
    /// The capability called.
    pub capability_id: String,
    /// [`hub_request_input_sha256`] of the input.
    pub input_sha256: String,
    /// Unix seconds.
    pub ts: i64,
    /// 32 lowercase hex characters.
    pub nonce: String,
}

impl HubRequestClaims {
    /// Claims for a call to `audience` (both URLs are normalised here).
    pub fn new(
        hub_url: &str,
        audience: &str,
        capability_id: &str,
        input: &Value,
        ts: i64,
        nonce: &str,
    ) -> Result<Self, ProtocolError> {
        Ok(Self {
            hub: normalize_url(hub_url)?,
            aud: normalize_url(audience)?,
            capability_id: capability_id.to_owned(),
            input_sha256: hub_request_input_sha256(input),
            ts,
            nonce: nonce.to_owned(),
        })
    }

    /// The exact signed text.
    pub fn canonical(&self) -> String {
        let body = json!({
            "aud": self.aud,
            "capability_id": self.capability_id,
            "hub": self.hub,
            "input_sha256": self.input_sha256,
            "nonce": self.nonce,
            "ts": self.ts,
        });
        let mut text = String::from(HUB_REQUEST_PREFIX);
        text.push_str(
            std::str::from_utf8(&to_canonical_vec(&body, Style::Compact))
                .expect("canonical JSON is UTF-8"),
        );
        text
    }

    /// Signs the claims: the five `(header, value)` pairs to send, in a fixed order.
    pub fn sign(&self, key: &KeyPair) -> [(&'static str, String); 5] {
        let signature = key.sign_b64(self.canonical().as_bytes());
        [
            (headers::SIGNER, self.hub.clone()),
            (headers::AUDIENCE, self.aud.clone()),
            (headers::TIMESTAMP, self.ts.to_string()),
            (headers::NONCE, self.nonce.clone()),
            (headers::SIGNATURE, signature),
        ]
    }
}

/// A fresh nonce: 16 random bytes as 32 lowercase hex characters.
pub fn hub_request_nonce() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// Verifies the five headers (looked up by lower-case name) of a request to `audience`
/// for `capability_id` carrying `input`, signed by `key`, at time `now` (unix seconds).
/// Returns the claims; nonce replay is the caller's to check (it needs memory).
pub fn verify_hub_request(
    header: impl Fn(&str) -> Option<String>,
    audience: &str,
    capability_id: &str,
    input: &Value,
    key: &PublicKey,
    now: i64,
) -> Result<HubRequestClaims, ProtocolError> {
    let get = |name: &'static str| header(name).ok_or(ProtocolError::MissingField(name));
    let ts: i64 =
        get(headers::TIMESTAMP)?
            .trim()
            .parse()
            .map_err(|_| ProtocolError::WrongType {
                field: headers::TIMESTAMP,
                expected: "unix seconds",
            })?;
    // `abs_diff`, not `(now - ts).abs()`: the timestamp is the sender's, and an extreme one
    // (i64::MIN) overflowed the subtraction (a panic with overflow checks on).
    if now.abs_diff(ts) > HUB_REQUEST_MAX_SKEW_S.unsigned_abs() {
        return Err(ProtocolError::WrongType {
            field: headers::TIMESTAMP,
            expected: "within 120 s of the verifier's clock",
        });
    }
    let nonce = get(headers::NONCE)?;
    if nonce.len() != 32
        || !nonce
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(ProtocolError::WrongType {
            field: headers::NONCE,
            expected: "32 lowercase hex characters",
        });
    }
    let claims = HubRequestClaims::new(
        &get(headers::SIGNER)?,
        audience,
        capability_id,
        input,
        ts,
        &nonce,
    )?;
    if let Some(claimed) = header(headers::AUDIENCE)
        && normalize_url(&claimed)? != claims.aud
    {
        return Err(ProtocolError::WrongType {
            field: headers::AUDIENCE,
            expected: "the URL the request was posted to",
        });
    }
    key.verify_b64(
        claims.canonical().as_bytes(),
        get(headers::SIGNATURE)?.trim(),
    )
    .map_err(|_| ProtocolError::BadSignature {
        what: "hub request",
    })?;
    Ok(claims)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn normalises_urls() {
        for (raw, want) in [
            ("https://Hub.Example:443/", "https://hub.example"),
            ("HTTP://h.example:80/a/b/", "http://h.example/a/b"),
            ("http://127.0.0.1:9083", "http://127.0.0.1:9083"),
            (
                "https://p.example:8443/x/?q=1#f",
                "https://p.example:8443/x",
            ),
            ("http://[::1]:8080/", "http://[::1]:8080"),
        ] {
            assert_eq!(normalize_url(raw).unwrap(), want, "{raw}");
        }
        for bad in ["ftp://x", "not a url", "/relative"] {
            assert!(normalize_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sign_then_verify_and_tamper() {
        let key = KeyPair::from_seed(&[7u8; 32]);
        let input = json!({"b": 1, "a": "ü"});
        let claims = HubRequestClaims::new(
            "http://127.0.0.1:1/",
            "http://127.0.0.1:2/ai-market/v2/invoke",
            "c@v1",
            &input,
            1_000,
            &hub_request_nonce(),
        )
        .unwrap();
        let pairs = claims.sign(&key);
        let lookup = |pairs: [(&'static str, String); 5]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.clone())
            }
        };
        let aud = "http://127.0.0.1:2/ai-market/v2/invoke";
        let ok = verify_hub_request(
            lookup(pairs.clone()),
            aud,
            "c@v1",
            &input,
            &key.public_key(),
            1_050,
        );
        assert_eq!(ok.unwrap(), claims);
        // Another capability, input, audience, time or key fails.
        assert!(
            verify_hub_request(
                lookup(pairs.clone()),
                aud,
                "d@v1",
                &input,
                &key.public_key(),
                1_000
            )
            .is_err()
        );
        assert!(
            verify_hub_request(
                lookup(pairs.clone()),
                aud,
                "c@v1",
                &json!({}),
                &key.public_key(),
                1_000
            )
            .is_err()
        );
        assert!(
            verify_hub_request(
                lookup(pairs.clone()),
                "http://127.0.0.1:3/ai-market/v2/invoke",
                "c@v1",
                &input,
                &key.public_key(),
                1_000
            )
            .is_err()
        );
        assert!(
            verify_hub_request(
                lookup(pairs.clone()),
                aud,
                "c@v1",
                &input,
                &key.public_key(),
                1_121
            )
            .is_err()
        );
        let other = KeyPair::from_seed(&[8u8; 32]).public_key();
        assert!(verify_hub_request(lookup(pairs), aud, "c@v1", &input, &other, 1_000).is_err());
    }

    #[test]
    fn extreme_timestamps_are_refused_without_overflow() {
        let key = KeyPair::from_seed(&[5; 32]).public_key();
        for ts in [i64::MIN, i64::MAX, -1] {
            let header = |name: &str| (name == headers::TIMESTAMP).then(|| ts.to_string());
            for now in [0, i64::MAX, i64::MIN, 1_700_000_000] {
                let err = verify_hub_request(
                    header,
                    "https://a.example",
                    "c@v1",
                    &Value::Null,
                    &key,
                    now,
                );
                assert!(err.is_err(), "ts {ts} now {now}");
            }
        }
    }
}
