//! Verifying a receipt against the keys this hub knows: its own signing key and the keys
//! pinned for its active peers (`POST /ai-market/v2/receipts/verify`).

use aimarket_protocol::signing::{PublicKey, embedded_key, verify_receipt};
use serde_json::Value;

use super::PaymentError;
use crate::store::{PeerState, Store};

/// Who signed a receipt, as far as this hub knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownSigner {
    /// This hub's public URL, or the peer's origin.
    pub url: String,
    /// The signer's base64 Ed25519 key.
    pub public_key: String,
    /// Whether the signer is this hub.
    pub is_this_hub: bool,
}

/// The outcome of [`check_receipt`]. A receipt that does not verify is an answer
/// (`valid: false` with a reason), not an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptVerdict {
    /// The signature verifies under a key this hub trusts for the signer.
    pub valid: bool,
    /// The signer, when its key is known here.
    pub signer: Option<KnownSigner>,
    /// The canonical the signature covers (1 or 2), when readable.
    pub signature_version: Option<u8>,
    /// v2 fields the signature does not cover (decisions must not rest on them).
    pub unsigned_fields: Vec<String>,
    /// Machine reason when not valid.
    pub reason: Option<&'static str>,
    /// Human explanation when not valid.
    pub detail: Option<String>,
    /// Whether the receipt carries a post-quantum signature (not checked by this hub).
    pub pq_present: bool,
}

impl ReceiptVerdict {
    fn invalid(reason: &'static str, detail: String, receipt: &Value) -> Self {
        Self {
            valid: false,
            signer: None,
            signature_version: announced_version(receipt),
            unsigned_fields: Vec::new(),
            reason: Some(reason),
            detail: Some(detail),
            pq_present: pq_present(receipt),
        }
    }
}

fn announced_version(receipt: &Value) -> Option<u8> {
    match receipt.pointer("/signature/version") {
        None | Some(Value::Null) => receipt.get("signature").map(|_| 1),
        Some(v) => match v
            .as_f64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        {
            Some(1.0) => Some(1),
            Some(2.0) => Some(2),
            _ => None,
        },
    }
}

fn pq_present(receipt: &Value) -> bool {
    receipt
        .pointer("/signature/pq_value")
        .is_some_and(|v| !v.is_null())
}

/// Verifies `receipt` with the key of its signer: this hub's `hub_key` (signer
/// `hub_url`) or an active peer's pinned key.
///
/// The embedded `signature.public_key` (or `signer_public_key`) only selects the candidate;
/// it is trusted only when it equals a key this hub already holds. Without an embedded key
/// the hub's own key and then every active peer's pinned key are tried.
pub async fn check_receipt(
    store: &Store,
    hub_key: &PublicKey,
    hub_url: &str,
    receipt: &Value,
) -> Result<ReceiptVerdict, PaymentError> {
    let embedded = match embedded_key(receipt) {
        Ok(key) => key,
        Err(e) => return Ok(ReceiptVerdict::invalid(e.code(), e.to_string(), receipt)),
    };
    let hub = KnownSigner {
        url: hub_url.to_owned(),
        public_key: hub_key.to_b64(),
        is_this_hub: true,
    };
    let mut candidates: Vec<(PublicKey, KnownSigner)> = Vec::new();
    if embedded.is_none_or(|k| k == *hub_key) {
        candidates.push((*hub_key, hub));
    }
    if embedded.is_none_or(|k| k != *hub_key) {
        for peer in store.list_peers(Some(PeerState::Active)).await? {
            let Some(key) = peer
                .pinned_key
                .as_deref()
                .and_then(|k| PublicKey::from_b64(k).ok())
            else {
                continue;
            };
            if embedded.is_none_or(|k| k == key) {
                candidates.push((
                    key,
                    KnownSigner {
                        url: peer.url,
                        public_key: key.to_b64(),
                        is_this_hub: false,
                    },
                ));
            }
        }
    }
    if candidates.is_empty() {
        return Ok(ReceiptVerdict::invalid(
            "unknown_signer",
            "the receipt's signer key is neither this hub's key nor a pinned key of an \
             active peer"
                .to_owned(),
            receipt,
        ));
    }
    let mut last_error = None;
    for (key, signer) in candidates {
        match verify_receipt(receipt, &key) {
            Ok(check) => {
                return Ok(ReceiptVerdict {
                    valid: true,
                    signer: Some(signer),
                    signature_version: Some(check.version.number()),
                    unsigned_fields: check.unsigned_fields,
                    reason: None,
                    detail: None,
                    pq_present: pq_present(receipt),
                });
            }
            Err(e) => last_error = Some(e),
        }
    }
    Ok(match last_error {
        Some(e) => ReceiptVerdict::invalid(e.code(), e.to_string(), receipt),
        None => ReceiptVerdict::invalid("unknown_signer", String::new(), receipt),
    })
}
