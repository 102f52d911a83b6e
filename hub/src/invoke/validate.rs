//! Input validation against a capability's `input_schema`, before anything is forwarded or
//! charged.
//!
//! Schemas are compiled once per distinct schema text and cached by its SHA-256, so a
//! catalog where thousands of tools share a schema compiles it once, and a re-crawl that
//! does not change a schema does not recompile it.
//!
//! A capability that declares a schema this hub cannot compile (not JSON, not a schema, a
//! remote `$ref` this hub never fetches) is refused, 502 `input_schema_invalid`, before
//! anything is held or forwarded: letting the input through unchecked would charge the
//! buyer for a call the hub promised to validate (issue #14; it was fail-open before).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use jsonschema::Validator;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::error::{InputViolation, InvokeError};
use super::resolve::Offer;

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

/// A capability's stored input schema, as this hub can use it.
#[derive(Debug, Clone, Default)]
pub enum Schema {
    /// No schema declared (`null`): any object is accepted.
    #[default]
    Unconstrained,
    /// The compiled schema.
    Compiled(Arc<InputSchema>),
    /// A declared schema that does not compile, and why: every call is refused.
    Uncompilable(Arc<str>),
}

/// Checks `input` against `offer`'s schema: its violations are 400 `input_invalid`; a
/// schema that does not compile is 502 `input_schema_invalid` naming the capability (fail
/// closed: the input cannot be checked, so the call is not made).
pub fn check_offer(offer: &Offer, input: &Value) -> Result<(), InvokeError> {
    match &offer.schema {
        Schema::Unconstrained => Ok(()),
        Schema::Compiled(schema) => schema
            .check(input)
            .map_err(|violations| InvokeError::InputInvalid { violations }),
        Schema::Uncompilable(reason) => Err(InvokeError::InputSchemaInvalid {
            product_id: offer.product_id.clone(),
            capability_id: offer.capability_id.clone(),
            source_hub: offer.origin.clone(),
            reason: reason.to_string(),
        }),
    }
}

/// Compiled schemas by content hash, including the ones that do not compile (so a broken
/// schema is diagnosed once, not on every call).
#[derive(Debug, Default)]
pub struct SchemaCache {
    compiled: RwLock<HashMap<[u8; 32], Schema>>,
}

impl SchemaCache {
    /// The compiled form of `schema_text` (JSON text), compiling it on first use.
    pub fn get(&self, schema_text: &str) -> Schema {
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

fn compile(schema_text: &str) -> Schema {
    // The crawler stores an absent `input_schema` as `null`.
    if matches!(schema_text.trim(), "" | "null") {
        return Schema::Unconstrained;
    }
    let uncompilable = |reason: String| {
        tracing::warn!(%reason, "stored input_schema does not compile; its calls are refused");
        Schema::Uncompilable(reason.into())
    };
    let schema: Value = match serde_json::from_str(schema_text) {
        Ok(schema) => schema,
        Err(e) => return uncompilable(format!("not JSON: {e}")),
    };
    if !schema.is_object() && !schema.is_boolean() {
        return uncompilable("not a JSON Schema object or boolean".to_owned());
    }
    match jsonschema::validator_for(&schema) {
        Ok(validator) => Schema::Compiled(Arc::new(InputSchema { validator })),
        Err(e) => uncompilable(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn compiled(schema: Schema) -> Arc<InputSchema> {
        match schema {
            Schema::Compiled(s) => s,
            other => panic!("expected a compiled schema, got {other:?}"),
        }
    }

    #[test]
    fn lists_failing_paths() {
        let cache = SchemaCache::default();
        let schema = json!({"type": "object", "required": ["text"],
            "properties": {"text": {"type": "string"}, "n": {"type": "integer", "maximum": 3}}})
        .to_string();
        let s = compiled(cache.get(&schema));
        s.check(&json!({"text": "hi", "n": 2})).unwrap();
        let errs = s.check(&json!({"n": 9})).unwrap_err();
        let paths: Vec<&str> = errs.iter().map(|v| v.path.as_str()).collect();
        assert!(paths.contains(&"/"), "{errs:?}");
        assert!(paths.contains(&"/n"), "{errs:?}");
        let errs = s.check(&json!({"text": 5})).unwrap_err();
        assert_eq!(errs[0].path, "/text");
    }

    #[test]
    fn compiles_each_distinct_schema_once_and_marks_bad_ones() {
        let cache = SchemaCache::default();
        let schema = json!({"type": "object"}).to_string();
        let a = compiled(cache.get(&schema));
        let b = compiled(cache.get(&schema));
        assert!(Arc::ptr_eq(&a, &b));
        for bad in [
            "not json",
            "[1]",
            r#"{"$ref": "https://example.com/remote.json"}"#,
        ] {
            assert!(matches!(cache.get(bad), Schema::Uncompilable(_)), "{bad}");
        }
        assert!(matches!(cache.get("null"), Schema::Unconstrained));
        assert_eq!(cache.len(), 5);
    }

    /// Issue #14: a schema that does not compile refuses the call (502, naming the
    /// capability) instead of letting any input through.
    #[test]
    fn an_uncompilable_schema_fails_closed() {
        let cache = SchemaCache::default();
        let mut offer = crate::invoke::resolve::test_offer("https://p.example", None);
        offer.schema = cache.get(r#"{"type": "no-such-type"}"#);
        let error = check_offer(&offer, &json!({"text": "hi"})).unwrap_err();
        let api = crate::error_code::ApiError::from(error);
        assert_eq!(
            (api.status(), api.code().as_str()),
            (502, "input_schema_invalid")
        );
        assert!(api.detail().contains("p/c@v1"), "{}", api.detail());
        assert_eq!(api.body()["source_hub"], "https://p.example");
        offer.schema = Schema::Unconstrained;
        check_offer(&offer, &json!({"text": "hi"})).unwrap();
    }
}
