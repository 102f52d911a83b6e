//! Shared helpers: vector loading and the fixed test key.

use std::path::PathBuf;

use aimarket_protocol::signing::PublicKey;
use serde_json::Value;

/// The key every signed vector in `tests/vectors` is signed with.
pub const VECTOR_KEY: &str = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";

pub fn vector_key() -> PublicKey {
    PublicKey::from_b64(VECTOR_KEY).unwrap()
}

pub fn vector_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/vectors")
        .join(name)
}

/// Parses a vector file with the crate's own parser (float round-trip precision).
pub fn vector(name: &str) -> Value {
    let bytes = std::fs::read(vector_path(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    aimarket_protocol::canonical::parse(&bytes).unwrap()
}
