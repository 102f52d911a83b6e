//! AIMarket Protocol v2: wire types, Python-compatible canonical JSON, Ed25519 signing of
//! every canonical of spec §7.3, and JSON Schema validation. No network I/O and no async;
//! the only file access is the signing-key seed file in [`signing::KeyPair`].
//!
//! Rule of the crate: anything signed is canonicalised from the parsed
//! [`serde_json::Value`], never from a typed struct.

pub mod canonical;
pub mod capability;
pub mod document;
pub mod error;
pub mod schema;
pub mod signing;
pub mod types;

pub use error::ProtocolError;
