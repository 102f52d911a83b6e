//! JSON Schema validation against the protocol's bundled schemas (draft 2020-12).
//!
//! The schemas are compiled into the binary (`include_str!`) and built once. No remote
//! `$ref` is ever fetched (jsonschema is built without its network features). `format` is
//! an annotation in draft 2020-12 and is not asserted, as in the Python reference's
//! default validator; timestamps and URLs get their own checks where they matter.

use std::fmt;
use std::sync::LazyLock;

use jsonschema::{Draft, Validator};
use serde_json::Value;

use crate::error::ProtocolError;

const MANIFEST: &str = include_str!("../schemas/manifest.json");
const WELL_KNOWN: &str = include_str!("../schemas/well-known.json");
const RECEIPT: &str = include_str!("../schemas/receipt.json");
const ANNOUNCE: &str = include_str!("../schemas/federation-announce.json");

/// Most violations reported per document; a hostile document could otherwise produce an
/// error list as large as itself.
const MAX_ERRORS: usize = 20;

/// Which bundled schema to apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SchemaKind {
    /// `schemas/manifest.json`.
    Manifest,
    /// One manifest tool: the manifest schema's `properties.tools.items`.
    Tool,
    /// `schemas/well-known.json`.
    WellKnown,
    /// `schemas/receipt.json`.
    Receipt,
    /// `schemas/federation-announce.json`.
    Announce,
}

impl SchemaKind {
    /// Short lowercase name used in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Manifest => "manifest",
            Self::Tool => "tool",
            Self::WellKnown => "well-known",
            Self::Receipt => "receipt",
            Self::Announce => "announce",
        }
    }
}

impl fmt::Display for SchemaKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn parse(src: &str) -> Value {
    serde_json::from_str(src).expect("bundled schema is valid JSON")
}

fn build(schema: &Value) -> Validator {
    jsonschema::options()
        .with_draft(Draft::Draft202012)
        .build(schema)
        .expect("bundled schema compiles")
}

struct Validators {
    manifest: Validator,
    tool: Validator,
    well_known: Validator,
    receipt: Validator,
    announce: Validator,
}

static VALIDATORS: LazyLock<Validators> = LazyLock::new(|| {
    let manifest = parse(MANIFEST);
    let tool = manifest
        .pointer("/properties/tools/items")
        .cloned()
        .expect("manifest schema defines tools.items");
    Validators {
        manifest: build(&manifest),
        tool: build(&tool),
        well_known: build(&parse(WELL_KNOWN)),
        receipt: build(&parse(RECEIPT)),
        announce: build(&parse(ANNOUNCE)),
    }
});

/// The raw bundled schema text for `kind` (the tool schema is the manifest's).
pub fn schema_source(kind: SchemaKind) -> &'static str {
    match kind {
        SchemaKind::Manifest | SchemaKind::Tool => MANIFEST,
        SchemaKind::WellKnown => WELL_KNOWN,
        SchemaKind::Receipt => RECEIPT,
        SchemaKind::Announce => ANNOUNCE,
    }
}

/// Validates `instance` against the schema for `kind`. On failure the error lists up to
/// 20 violations, each as `<instance path>: <message>` (`/` is the document root).
pub fn validate(kind: SchemaKind, instance: &Value) -> Result<(), ProtocolError> {
    let v = &*VALIDATORS;
    let validator = match kind {
        SchemaKind::Manifest => &v.manifest,
        SchemaKind::Tool => &v.tool,
        SchemaKind::WellKnown => &v.well_known,
        SchemaKind::Receipt => &v.receipt,
        SchemaKind::Announce => &v.announce,
    };
    if validator.is_valid(instance) {
        return Ok(());
    }
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .take(MAX_ERRORS)
        .map(|e| {
            let path = e.instance_path().to_string();
            format!("{}: {e}", if path.is_empty() { "/" } else { path.as_str() })
        })
        .collect();
    Err(ProtocolError::SchemaInvalid { kind, errors })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn all_schemas_compile() {
        let _ = &*VALIDATORS;
    }

    #[test]
    fn errors_carry_the_instance_path() {
        let err = validate(SchemaKind::Manifest, &json!({"protocol_version": "v3", "generated_at": "x",
            "tools": [{"name": "a", "description": "d", "input_schema": {}, "price_per_call_usd": -1}],
            "signature": {"algorithm": "ed25519", "public_key": "k", "value": "v"}}))
        .unwrap_err();
        let ProtocolError::SchemaInvalid { kind, errors } = err else {
            panic!("wrong error")
        };
        assert_eq!(kind, SchemaKind::Manifest);
        assert!(
            errors.iter().any(|e| e.starts_with("/protocol_version: ")),
            "{errors:?}"
        );
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("/tools/0/price_per_call_usd: ")),
            "{errors:?}"
        );
    }

    #[test]
    fn tool_schema_is_the_manifest_item_schema() {
        validate(
            SchemaKind::Tool,
            &json!({"name": "a", "description": "d", "input_schema": {"type": "object"}}),
        )
        .unwrap();
        let err =
            validate(SchemaKind::Tool, &json!({"name": "a", "input_schema": {}})).unwrap_err();
        assert!(err.to_string().contains("description"), "{err}");
        let err = validate(SchemaKind::Tool, &json!(["not", "an", "object"])).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("tool schema validation failed: /: "),
            "{err}"
        );
    }

    #[test]
    fn error_list_is_bounded() {
        let tools: Vec<Value> = (0..100).map(|_| json!({})).collect();
        let err = validate(SchemaKind::Manifest, &json!({"tools": tools})).unwrap_err();
        let ProtocolError::SchemaInvalid { errors, .. } = err else {
            panic!("wrong error")
        };
        assert_eq!(errors.len(), MAX_ERRORS);
    }
}
