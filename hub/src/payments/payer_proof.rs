//! The channel-open payer proof, `AIMarket-Payer-Proof/v1` (protocol extension
//! `payer-proof.json`): the wallet that paid a deposit signs, with EIP-191 `personal_sign`,
//!
//! ```text
//! AIMarket-Payer-Proof/v1
//! purpose:channel-open
//! chain:{chain}
//! tx:{tx}
//! payer:{payer}
//! amount_cents:{amount_cents}
//! ```
//!
//! and the hub credits the deposit only when the recovered signer is the transfer's sender.
//! Without it, anyone who sees a deposit's transaction hash on-chain could open the channel
//! first. Every field is canonicalised exactly as the extension says, because the signature
//! is over these bytes and clients build them independently.

use alloy_primitives::{Address, Signature};

use super::PaymentError;

/// First line of the signed message.
pub const PAYER_PROOF_VERSION: &str = "AIMarket-Payer-Proof/v1";
/// Longest `payer_signature` read (65 bytes hex is 132 characters with `0x`).
const MAX_SIGNATURE_CHARS: usize = 200;

/// `chain`: trimmed and lowercased.
pub fn canonical_chain(chain: &str) -> String {
    chain.trim().to_lowercase()
}

/// `tx`: a hex body becomes `0x` + lowercase (the prefix added when absent); anything else
/// (a base58 Solana signature, where case is significant) is kept byte-exact.
pub fn canonical_tx(tx: &str) -> String {
    let body = tx
        .strip_prefix("0x")
        .or_else(|| tx.strip_prefix("0X"))
        .unwrap_or(tx);
    if !body.is_empty() && body.bytes().all(|b| b.is_ascii_hexdigit()) {
        format!("0x{}", body.to_ascii_lowercase())
    } else {
        tx.to_owned()
    }
}

/// `payer`: a 42-character `0x` hex address lowercased; other handles kept as they are.
pub fn canonical_payer(payer: &str) -> String {
    let is_address = payer.len() == 42
        && payer.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("0x"))
        && payer.bytes().skip(2).all(|b| b.is_ascii_hexdigit());
    if is_address {
        payer.to_ascii_lowercase()
    } else {
        payer.to_owned()
    }
}

/// `amount_cents`: `round(amount_usd * 100)` with round-half-to-even on the float product, as
/// Python's `round` does (0.125 → 12; 0.135 → 14 because 0.135 × 100 is 13.500000000000002).
/// `None` for amounts that are not finite, negative or absurdly large.
pub fn amount_cents(amount_usd: f64) -> Option<i64> {
    let cents = (amount_usd * 100.0).round_ties_even();
    // 2^53: every integer below is exact in f64, so the cast is exact too.
    (cents.is_finite() && (0.0..9_007_199_254_740_992.0).contains(&cents)).then_some(cents as i64)
}

/// The exact message the payer signs.
pub fn message(chain: &str, tx: &str, payer: &str, amount_cents: i64) -> String {
    format!(
        "{PAYER_PROOF_VERSION}\npurpose:channel-open\nchain:{}\ntx:{}\npayer:{}\namount_cents:{amount_cents}",
        canonical_chain(chain),
        canonical_tx(tx),
        canonical_payer(payer),
    )
}

/// A payer proof as sent on `channel/open` (`payer`, `payer_signature`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayerProof {
    /// The paying wallet's address.
    pub payer: Address,
    /// 65-byte `r ‖ s ‖ v` signature (v 27/28 or 0/1).
    pub signature: Signature,
}

impl PayerProof {
    /// Parses the two body fields; `Ok(None)` when both are absent, an error when only one is
    /// present or either is malformed.
    pub fn parse(
        payer: Option<&str>,
        signature: Option<&str>,
    ) -> Result<Option<Self>, PaymentError> {
        let (payer, signature) = match (payer.map(str::trim), signature.map(str::trim)) {
            (None | Some(""), None | Some("")) => return Ok(None),
            (Some(p), Some(s)) if !p.is_empty() && !s.is_empty() => (p, s),
            _ => {
                return Err(PaymentError::InvalidRequest(
                    "payer and payer_signature go together".into(),
                ));
            }
        };
        let payer: Address = payer.parse().map_err(|_| {
            PaymentError::InvalidRequest("payer must be a 0x-prefixed 20-byte address".into())
        })?;
        if signature.len() > MAX_SIGNATURE_CHARS {
            return Err(PaymentError::InvalidRequest(
                "payer_signature is too long".into(),
            ));
        }
        let bytes = alloy_primitives::hex::decode(signature)
            .ok()
            .filter(|b| b.len() == 65)
            .ok_or_else(|| {
                PaymentError::InvalidRequest(
                    "payer_signature must be 65 bytes of hex (r, s, v)".into(),
                )
            })?;
        let signature = Signature::from_raw(&bytes).map_err(|e| {
            PaymentError::InvalidRequest(format!("payer_signature is malformed: {e}"))
        })?;
        Ok(Some(Self { payer, signature }))
    }

    /// Checks that the signature over this deposit's message recovers to `payer`;
    /// [`PaymentError::PayerProofInvalid`] otherwise.
    pub fn verify(&self, chain: &str, tx: &str, amount_usd: f64) -> Result<(), PaymentError> {
        let cents = amount_cents(amount_usd).ok_or_else(|| PaymentError::InvalidAmount {
            what: "deposit_usd",
            reason: "cannot be expressed in cents".into(),
        })?;
        let text = message(chain, tx, &self.payer.to_string(), cents);
        match self.signature.recover_address_from_msg(text.as_bytes()) {
            Ok(signer) if signer == self.payer => Ok(()),
            Ok(signer) => Err(PaymentError::PayerProofInvalid {
                reason: format!(
                    "the signature recovers to {signer:#x}, not to payer {:#x}",
                    self.payer
                ),
            }),
            Err(_) => Err(PaymentError::PayerProofInvalid {
                reason: "the signature recovers to no address".into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::Value;

    /// The protocol's vector file, byte for byte.
    const VECTORS: &str = include_str!("tests/payer-proof.json");

    #[test]
    fn every_vector_case_is_reproduced() {
        let file: Value = serde_json::from_str(VECTORS).unwrap();
        let cases = file["cases"].as_array().unwrap();
        assert_eq!(cases.len(), 7);
        for case in cases {
            let name = case["name"].as_str().unwrap();
            let usd = case["amount_usd"].as_f64().unwrap();
            assert_eq!(
                amount_cents(usd),
                case["amount_cents"].as_i64(),
                "{name}: amount_cents"
            );
            let text = message(
                case["chain"].as_str().unwrap(),
                case["tx_hash"].as_str().unwrap(),
                case["payer"].as_str().unwrap(),
                amount_cents(usd).unwrap(),
            );
            assert_eq!(text, case["message"].as_str().unwrap(), "{name}: message");
            if let Some(signature) = case["signature"].as_str() {
                let proof = PayerProof::parse(case["payer"].as_str(), Some(signature))
                    .unwrap()
                    .unwrap();
                let expected: Address = case["recovers_to"].as_str().unwrap().parse().unwrap();
                assert_eq!(proof.payer, expected, "{name}");
                proof
                    .verify(
                        case["chain"].as_str().unwrap(),
                        case["tx_hash"].as_str().unwrap(),
                        usd,
                    )
                    .unwrap();
                // Any other amount is another message: the signature no longer recovers.
                assert!(matches!(
                    proof.verify("base", case["tx_hash"].as_str().unwrap(), usd + 0.01),
                    Err(PaymentError::PayerProofInvalid { .. })
                ));
            }
        }
    }

    #[test]
    fn the_vector_key_signs_what_the_file_says() {
        let file: Value = serde_json::from_str(VECTORS).unwrap();
        let key = crate::payments::chain::WalletKey::from_hex(file["test_key"].as_str().unwrap())
            .unwrap();
        assert_eq!(
            key.address(),
            file["test_address"]
                .as_str()
                .unwrap()
                .parse::<Address>()
                .unwrap()
        );
        let case = &file["cases"][0];
        let signature = key
            .sign_message(case["message"].as_str().unwrap().as_bytes())
            .unwrap();
        assert_eq!(
            crate::payments::chain::signature_hex(&signature),
            case["signature"].as_str().unwrap()
        );
    }

    #[test]
    fn malformed_proofs_are_bad_requests_not_panics() {
        assert_eq!(PayerProof::parse(None, None).unwrap(), None);
        assert_eq!(PayerProof::parse(Some(" "), Some("")).unwrap(), None);
        let address = "0x17c5185167401eD00cF5F5b2fc97D9BBfDb7D025";
        let good = format!("0x{}1b", "11".repeat(64));
        for (payer, signature) in [
            (Some(address), None),
            (None, Some(good.as_str())),
            (Some("alice"), Some(good.as_str())),
            (Some(address), Some("0x1234")),
            (Some(address), Some("0xzz")),
            (Some(address), Some("é".repeat(150).as_str())),
        ] {
            assert!(
                matches!(
                    PayerProof::parse(payer, signature),
                    Err(PaymentError::InvalidRequest(_))
                ),
                "{payer:?} {signature:?}"
            );
        }
        assert_eq!(amount_cents(f64::NAN), None);
        assert_eq!(amount_cents(-1.0), None);
        assert_eq!(amount_cents(f64::MAX), None);
    }
}
