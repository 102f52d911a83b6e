//! Input validation against a capability's `input_schema`, before anything is forwarded or
//! charged.
//!
//! Schemas are compiled once per distinct schema text and cached by its SHA-256, so a
//! catalog where thousands of tools share a schema compiles it once, and a re-crawl that
//! does not change a schema does not recompile it.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use jsonschema::Validator;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::error::InputViolation;

/// Most violations reported for one input.
pub const MAX_VIOLATIONS: usize = 20;
/// Compiled schemas kept; past this the cache starts over (schemas are cheap to recompile,
/// memory is not free).
const MAX_CACHED_SCHEMAS: usize = 20_000;

/// A compiled input schema.
pub struct InputSchema {
    validator: Validator,
}

impl std::fmt::Debug for InputSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InputSchema")
    }
}

impl InputSchema {
    /// Checks `input`; on failure lists up to [`MAX_VIOLATIONS`] failing paths.
    pub fn check(&self, input: &Value) -> Result<(), Vec<InputViolation>> {
        if self.validator.is_valid(input) {
            return Ok(());
        }
        let violations: Vec<InputViolation> = self
            .validator
            .iter_errors(input)
            .take(MAX_VIOLATIONS)
            .map(|e| {
                let pointer = e.instance_path().to_string();
                InputViolation {
                    path: if pointer.is_empty() {
                        "/".to_owned()
                    } else {
                        pointer
                    },
                    message: e.to_string(),
                }
            })
            .collect();
        Err(violations)
    }
}

/// Compiled schemas by content hash. `None` marks a schema that does not compile (for
/// example one with a remote `$ref`, which this hub never fetches): such capabilities are
/// forwarded unvalidated and the provider remains the judge of its input.
#[derive(Debug, Default)]
pub struct SchemaCache {
    compiled: RwLock<HashMap<[u8; 32], Option<Arc<InputSchema>>>>,
}

impl SchemaCache {
    /// The compiled form of `schema_text` (JSON text), compiling it on first use.
    pub fn get(&self, schema_text: &str) -> Option<Arc<InputSchema>> {
        let hash: [u8; 32] = Sha256::digest(schema_text.as_bytes()).into();
        if let Some(found) = self
            .compiled
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&hash)
        {
            return found.clone();
        }
        let compiled = compile(schema_text);
        let mut map = self
            .compiled
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() >= MAX_CACHED_SCHEMAS {
            map.clear();
        }
        map.entry(hash).or_insert(compiled).clone()
    }

    /// Number of distinct schemas cached.
    pub fn len(&self) -> usize {
        self.compiled
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn compile(schema_text: &str) -> Option<Arc<InputSchema>> {
    let schema: Value = match serde_json::from_str(schema_text) {
        Ok(schema) => schema,
        Err(e) => {
            tracing::warn!(error = %e, "stored input_schema is not JSON; input is not validated");
            return None;
        }
    };
    // An empty or non-object schema constrains nothing worth compiling.
    if !schema.is_object() && !schema.is_boolean() {
        tracing::warn!("stored input_schema is not a schema object; input is not validated");
        return None;
    }
    match jsonschema::validator_for(&schema) {
        Ok(validator) => Some(Arc::new(InputSchema { validator })),
        Err(e) => {
            tracing::warn!(error = %e, "input_schema does not compile; input is not validated");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn lists_failing_paths() {
        let cache = SchemaCache::default();
        let schema = json!({"type": "object", "required": ["text"],
            "properties": {"text": {"type": "string"}, "n": {"type": "integer", "maximum": 3}}})
        .to_string();
        let s = cache.get(&schema).unwrap();
        s.check(&json!({"text": "hi", "n": 2})).unwrap();
        let errs = s.check(&json!({"n": 9})).unwrap_err();
        let paths: Vec<&str> = errs.iter().map(|v| v.path.as_str()).collect();
        assert!(paths.contains(&"/"), "{errs:?}");
        assert!(paths.contains(&"/n"), "{errs:?}");
        let errs = s.check(&json!({"text": 5})).unwrap_err();
        assert_eq!(errs[0].path, "/text");
    }

    #[test]
    fn compiles_each_distinct_schema_once_and_tolerates_bad_ones() {
        let cache = SchemaCache::default();
        let schema = json!({"type": "object"}).to_string();
        let a = cache.get(&schema).unwrap();
        let b = cache.get(&schema).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert!(cache.get("not json").is_none());
        assert!(cache.get("[1]").is_none());
        assert!(
            cache
                .get(r#"{"$ref": "https://example.com/remote.json"}"#)
                .is_none()
        );
        assert_eq!(cache.len(), 4);
    }
}
