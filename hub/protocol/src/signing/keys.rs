//! Ed25519 key pairs and public keys, plus the only I/O in this crate: the 32-byte seed
//! file (the reference hub's and the provider scaffold's format).

use std::fmt;
use std::io::{ErrorKind, Write};
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use crate::error::ProtocolError;

/// An Ed25519 signing key. `Debug` prints only the public key.
#[derive(Clone)]
pub struct KeyPair {
    key: SigningKey,
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyPair")
            .field("public_key", &self.public_key().to_b64())
            .finish_non_exhaustive()
    }
}

fn io_err(path: &Path, e: &std::io::Error) -> ProtocolError {
    ProtocolError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

impl KeyPair {
    /// A fresh key from the operating system's CSPRNG.
    pub fn generate() -> Self {
        let seed: [u8; 32] = rand::random();
        Self::from_seed(&seed)
    }

    /// The key whose RFC 8032 secret seed is `seed`.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self {
            key: SigningKey::from_bytes(seed),
        }
    }

    /// The 32-byte secret seed. Handle with care: this is the secret.
    pub fn seed(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey {
            key: self.key.verifying_key(),
        }
    }

    /// Signs `msg` and returns the signature in standard base64 with padding.
    pub fn sign_b64(&self, msg: &[u8]) -> String {
        B64.encode(self.key.sign(msg).to_bytes())
    }

    /// Loads a key file holding exactly the 32 raw seed bytes.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ProtocolError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| io_err(path, &e))?;
        let seed: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| ProtocolError::BadSeed { len: bytes.len() })?;
        Ok(Self::from_seed(&seed))
    }

    /// Writes the 32-byte seed to `path` with mode 0600 (owner only), creating parent
    /// directories and replacing an existing file.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), ProtocolError> {
        self.write_seed(path.as_ref(), false)
    }

    /// Loads the key at `path`, or generates and saves one if there is no file yet. The
    /// boolean is `true` when the key was created. Creation uses `create_new`, so two
    /// processes racing on first start end up with the same key, never with two.
    pub fn load_or_create(path: impl AsRef<Path>) -> Result<(Self, bool), ProtocolError> {
        let path = path.as_ref();
        match std::fs::metadata(path) {
            Ok(_) => return Ok((Self::load(path)?, false)),
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(path, &e)),
        }
        let key = Self::generate();
        match key.write_seed(path, true) {
            Ok(()) => Ok((key, true)),
            Err(ProtocolError::Io { .. }) if path.exists() => Ok((Self::load(path)?, false)),
            Err(e) => Err(e),
        }
    }

    fn write_seed(&self, path: &Path, create_new: bool) -> Result<(), ProtocolError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| io_err(parent, &e))?;
        }
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true);
        if create_new {
            opts.create_new(true);
        } else {
            opts.create(true).truncate(true);
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            opts.mode(0o600);
        }
        let mut file = opts.open(path).map_err(|e| io_err(path, &e))?;
        // `mode` only applies to newly created files; tighten a pre-existing one too.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            file.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(|e| io_err(path, &e))?;
        }
        file.write_all(&self.seed()).map_err(|e| io_err(path, &e))?;
        file.sync_all().map_err(|e| io_err(path, &e))
    }
}

/// An Ed25519 public key. `Debug` and [`PublicKey::to_b64`] print standard base64.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey {
    key: VerifyingKey,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PublicKey").field(&self.to_b64()).finish()
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_b64())
    }
}

impl PublicKey {
    /// Parses a standard-base64 (padded) 32-byte Ed25519 public key.
    pub fn from_b64(s: &str) -> Result<Self, ProtocolError> {
        Self::from_b64_field(s, "public_key")
    }

    /// Like [`PublicKey::from_b64`], naming `field` in a base64 error.
    pub(crate) fn from_b64_field(s: &str, field: &'static str) -> Result<Self, ProtocolError> {
        let bytes = B64
            .decode(s.trim())
            .map_err(|_| ProtocolError::BadBase64 { field })?;
        Self::from_bytes(&bytes)
    }

    /// Builds a key from its 32 raw bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ProtocolError> {
        let arr: [u8; 32] = bytes.try_into().map_err(|_| ProtocolError::BadKey)?;
        let key = VerifyingKey::from_bytes(&arr).map_err(|_| ProtocolError::BadKey)?;
        Ok(Self { key })
    }

    /// The 32 raw bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// Standard base64 with padding, as documents carry it.
    pub fn to_b64(&self) -> String {
        B64.encode(self.key.to_bytes())
    }

    /// Verifies a base64 Ed25519 signature over `msg`. Uses strict verification (rejects
    /// non-canonical and small-order encodings), which every honest signer satisfies.
    /// The error says only that the signature is bad; the typed signing functions replace
    /// `what` with the canonical that failed.
    pub fn verify_b64(&self, msg: &[u8], sig_b64: &str) -> Result<(), ProtocolError> {
        let bytes = B64
            .decode(sig_b64.trim())
            .map_err(|_| ProtocolError::BadBase64 { field: "signature" })?;
        let arr: [u8; 64] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| ProtocolError::BadSignature { what: "ed25519" })?;
        let sig = Signature::from_bytes(&arr);
        self.key
            .verify_strict(msg, &sig)
            .map_err(|_| ProtocolError::BadSignature { what: "ed25519" })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn sign_and_verify_round_trip() {
        let k = KeyPair::generate();
        let sig = k.sign_b64(b"hello");
        let pk = PublicKey::from_b64(&k.public_key().to_b64()).unwrap();
        assert_eq!(pk, k.public_key());
        pk.verify_b64(b"hello", &sig).unwrap();
        assert!(matches!(
            pk.verify_b64(b"hellO", &sig),
            Err(ProtocolError::BadSignature { .. })
        ));
        assert_eq!(
            pk.verify_b64(b"hello", "!!"),
            Err(ProtocolError::BadBase64 { field: "signature" })
        );
        assert!(matches!(
            pk.verify_b64(b"hello", "AAAA"),
            Err(ProtocolError::BadSignature { .. })
        ));
    }

    #[test]
    fn debug_never_prints_the_seed() {
        let k = KeyPair::from_seed(&[7u8; 32]);
        let dbg = format!("{k:?}");
        assert!(dbg.contains(&k.public_key().to_b64()));
        assert!(!dbg.contains(&B64.encode([7u8; 32])));
        assert!(!dbg.contains("7, 7"));
        assert_eq!(
            format!("{:?}", k.public_key()),
            format!("PublicKey({:?})", k.public_key().to_b64())
        );
    }

    #[test]
    fn bad_public_keys_are_rejected() {
        assert_eq!(
            PublicKey::from_b64("not base64!"),
            Err(ProtocolError::BadBase64 {
                field: "public_key"
            })
        );
        assert_eq!(
            PublicKey::from_b64(&B64.encode([1u8; 31])),
            Err(ProtocolError::BadKey)
        );
    }

    #[test]
    fn seed_file_round_trip_with_0600_and_parent_dirs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/hub_signing_key");
        let (k1, created) = KeyPair::load_or_create(&path).unwrap();
        assert!(created);
        assert_eq!(std::fs::read(&path).unwrap(), k1.seed());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let (k2, created) = KeyPair::load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(k1.public_key(), k2.public_key());

        let other = dir.path().join("other");
        std::fs::write(&other, b"short").unwrap();
        assert_eq!(
            KeyPair::load(&other).unwrap_err(),
            ProtocolError::BadSeed { len: 5 }
        );
        k1.save(&other).unwrap();
        assert_eq!(KeyPair::load(&other).unwrap().public_key(), k1.public_key());
        assert!(matches!(
            KeyPair::load(dir.path().join("missing")),
            Err(ProtocolError::Io { .. })
        ));
    }
}
