//! Draft inputs: a starting `input` for a capability, built from its input schema and the
//! caller's query, so an agent (v1 `discover`, MCP `market_search`) can call it at once and
//! adjust.
//!
//! Rules: only `required` properties are filled, in the order `required` lists them. A
//! property with a `default`, `const`, `enum` or `examples` takes that value; otherwise the
//! first plain string property gets the query text (cut to `maxLength`), other strings a
//! placeholder fitting their `format` and `minLength`, numbers their lower bound (or 1),
//! booleans `false`, arrays `minItems` drafted items, objects their own required properties.
//! Nesting deeper than [`MAX_DEPTH`] stops with `null`.

use serde_json::{Map, Value, json};

/// Deepest nesting drafted.
pub const MAX_DEPTH: usize = 8;
/// Most items drafted for an array with `minItems`.
const MAX_ITEMS: u64 = 8;

/// The draft input of `schema` for `query`.
pub fn draft_input(schema: &Value, query: &str) -> Value {
    let mut query_used = false;
    match object(schema, query, &mut query_used, 0) {
        value @ Value::Object(_) => value,
        _ => Value::Object(Map::new()),
    }
}

fn object(schema: &Value, query: &str, query_used: &mut bool, depth: usize) -> Value {
    let mut out = Map::new();
    let properties = schema.get("properties").and_then(Value::as_object);
    let required = schema.get("required").and_then(Value::as_array);
    for name in required.into_iter().flatten().filter_map(Value::as_str) {
        let property = properties.and_then(|p| p.get(name)).unwrap_or(&Value::Null);
        out.insert(
            name.to_owned(),
            value(property, query, query_used, depth + 1),
        );
    }
    Value::Object(out)
}

/// The schema's `type`, the first one when it lists several (`["string", "null"]`).
fn type_of(schema: &Value) -> Option<&str> {
    match schema.get("type") {
        Some(Value::String(t)) => Some(t.as_str()),
        Some(Value::Array(types)) => types
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null"),
        _ => None,
    }
}

fn value(schema: &Value, query: &str, query_used: &mut bool, depth: usize) -> Value {
    if depth > MAX_DEPTH {
        return Value::Null;
    }
    for key in ["default", "const"] {
        if let Some(v) = schema.get(key) {
            return v.clone();
        }
    }
    for key in ["enum", "examples"] {
        if let Some(first) = schema
            .get(key)
            .and_then(Value::as_array)
            .and_then(|a| a.first())
        {
            return first.clone();
        }
    }
    let number_bound = |integer: bool| {
        let min = schema.get("minimum").and_then(Value::as_f64);
        let exclusive = schema.get("exclusiveMinimum").and_then(Value::as_f64);
        let max = schema.get("maximum").and_then(Value::as_f64);
        let mut v = match (min, exclusive) {
            (Some(m), _) => m,
            (None, Some(e)) => e + if integer { 1.0 } else { 0.5 },
            (None, None) => 1.0,
        };
        if let Some(max) = max {
            v = v.min(max);
        }
        if integer {
            json!(v.ceil() as i64)
        } else {
            json!(v)
        }
    };
    match type_of(schema) {
        Some("string") => string(schema, query, query_used),
        Some("integer") => number_bound(true),
        Some("number") => number_bound(false),
        Some("boolean") => Value::Bool(false),
        Some("array") => {
            let count = schema
                .get("minItems")
                .and_then(Value::as_u64)
                .unwrap_or(0)
                .min(MAX_ITEMS);
            let items = schema.get("items").unwrap_or(&Value::Null);
            Value::Array(
                (0..count)
                    .map(|_| value(items, query, query_used, depth + 1))
                    .collect(),
            )
        }
        Some("object") => object(schema, query, query_used, depth),
        Some("null") => Value::Null,
        // No type: the query text is the most useful guess for a free-form field.
        _ => string(schema, query, query_used),
    }
}

fn string(schema: &Value, query: &str, query_used: &mut bool) -> Value {
    let min = schema.get("minLength").and_then(Value::as_u64).unwrap_or(0);
    let max = schema.get("maxLength").and_then(Value::as_u64);
    let placeholder = match schema.get("format").and_then(Value::as_str) {
        Some("date") => Some(chrono::Utc::now().format("%Y-%m-%d").to_string()),
        Some("date-time") => Some(chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()),
        Some("uri" | "url") => Some("https://example.com".to_owned()),
        Some("email") => Some("user@example.com".to_owned()),
        _ => None,
    };
    if let Some(p) = placeholder {
        return Value::String(p);
    }
    let text = if *query_used || schema.get("pattern").is_some() {
        String::new()
    } else {
        *query_used = true;
        query.to_owned()
    };
    let mut text: String = match max {
        Some(max) => text
            .chars()
            .take(usize::try_from(max).unwrap_or(usize::MAX))
            .collect(),
        None => text,
    };
    let have = text.chars().count() as u64;
    if have < min {
        text.extend(std::iter::repeat_n(
            'x',
            usize::try_from(min - have).unwrap_or(0),
        ));
    }
    Value::String(text)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn required_properties_get_type_appropriate_values() {
        let schema = json!({"type": "object", "required": ["text", "lang", "n", "ratio", "flag", "tags", "opt", "second", "when"],
            "properties": {
                "text": {"type": "string", "maxLength": 5},
                "lang": {"type": "string", "enum": ["es", "fr"]},
                "n": {"type": "integer", "minimum": 3, "maximum": 9},
                "ratio": {"type": "number", "exclusiveMinimum": 0},
                "flag": {"type": "boolean"},
                "tags": {"type": "array", "minItems": 2, "items": {"type": "integer"}},
                "opt": {"type": "string", "default": "d"},
                "second": {"type": "string", "minLength": 2},
                "when": {"type": "string", "format": "uri"},
                "ignored": {"type": "string"}}});
        let draft = draft_input(&schema, "hello world");
        assert_eq!(
            draft,
            json!({"text": "hello", "lang": "es", "n": 3, "ratio": 0.5, "flag": false,
            "tags": [1, 1], "opt": "d", "second": "xx", "when": "https://example.com"})
        );
    }

    #[test]
    fn nested_and_degenerate_schemas() {
        let nested = json!({"type": "object", "required": ["a"], "properties": {"a": {"type": "object",
            "required": ["q"], "properties": {"q": {"type": "string"}}}}});
        assert_eq!(draft_input(&nested, "x"), json!({"a": {"q": "x"}}));
        assert_eq!(draft_input(&json!({}), "x"), json!({}));
        assert_eq!(draft_input(&json!("nonsense"), "x"), json!({}));
        // A self-similar schema stops at the depth bound instead of recursing forever.
        let mut deep = json!({"type": "string"});
        for _ in 0..20 {
            deep = json!({"type": "object", "required": ["d"], "properties": {"d": deep}});
        }
        let drafted = draft_input(&deep, "x").to_string();
        assert!(drafted.contains("null"));
    }
}
