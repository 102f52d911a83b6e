//! A secp256k1 wallet key: the hub's own (refunds, x402 settlement, paying providers) and, in
//! tests, a payer's. Signing is k256's RFC 6979 ECDSA with a recovery id, wrapped in alloy's
//! [`Signature`]; the address is alloy's derivation from the public key. `Debug` never shows
//! the key.

use std::fmt;
use std::path::Path;

use alloy_primitives::{Address, B256, Signature, eip191_hash_message};
use k256::ecdsa::SigningKey;

/// A private key that signs hashes and EIP-191 messages.
#[derive(Clone)]
pub struct WalletKey {
    key: SigningKey,
    address: Address,
}

impl fmt::Debug for WalletKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WalletKey({}, <redacted>)", self.address)
    }
}

impl WalletKey {
    /// From 32 bytes of hex (`0x` optional, surrounding whitespace ignored). The error never
    /// repeats the input.
    pub fn from_hex(text: &str) -> Result<Self, String> {
        let bytes = alloy_primitives::hex::decode(text.trim())
            .map_err(|_| "the wallet key is not hexadecimal".to_owned())?;
        if bytes.len() != 32 {
            return Err(format!(
                "the wallet key must be 32 bytes, got {}",
                bytes.len()
            ));
        }
        let key = SigningKey::from_slice(&bytes)
            .map_err(|_| "the wallet key is not a valid secp256k1 key".to_owned())?;
        let address = Address::from_public_key(key.verifying_key());
        Ok(Self { key, address })
    }

    /// Reads a key file holding the hex key (as `cast wallet new` or anvil print it).
    pub fn from_file(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the wallet key file {}: {e}", path.display()))?;
        Self::from_hex(&text)
    }

    /// The wallet's address.
    pub fn address(&self) -> Address {
        self.address
    }

    /// Signs a 32-byte digest (a transaction's signing hash, an EIP-712 digest).
    pub fn sign_hash(&self, hash: &B256) -> Result<Signature, String> {
        let (signature, recovery) = self
            .key
            .sign_prehash_recoverable(hash.as_slice())
            .map_err(|e| format!("signing failed: {e}"))?;
        Ok(Signature::from_signature_and_parity(
            signature,
            recovery.is_y_odd(),
        ))
    }

    /// EIP-191 `personal_sign` of `message`.
    pub fn sign_message(&self, message: &[u8]) -> Result<Signature, String> {
        self.sign_hash(&eip191_hash_message(message))
    }
}

/// `0x` + 130 hex digits: `r ‖ s ‖ v` with v 27/28, as wallets print personal signatures.
pub fn signature_hex(signature: &Signature) -> String {
    format!("0x{}", alloy_primitives::hex::encode(signature.as_bytes()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn keys_parse_sign_and_hide() {
        let key = WalletKey::from_hex(&format!(" 0x{} \n", "42".repeat(32))).unwrap();
        assert_eq!(
            key.address().to_string(),
            "0x17c5185167401eD00cF5F5b2fc97D9BBfDb7D025"
        );
        assert!(!format!("{key:?}").contains("4242"));
        let signature = key.sign_message(b"hello").unwrap();
        assert_eq!(
            signature.recover_address_from_msg(b"hello").unwrap(),
            key.address()
        );
        for bad in ["", "0x12", "zz", &"00".repeat(32)] {
            assert!(WalletKey::from_hex(bad).is_err(), "{bad}");
        }
    }
}
