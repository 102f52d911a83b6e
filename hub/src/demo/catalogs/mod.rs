//! The three built-in catalogs and small helpers they share: reading typed arguments from
//! an input object, and building JSON Schemas tersely.
//!
//! Every computation is deterministic and local: the same input always gives the same
//! result, nothing is fetched. Where a real service would need outside data (weather,
//! exchange rates) the demo says so in the result (`simulated: true`, `rates_as_of`).

pub mod atlas;
mod calc_ops;
mod geo_ops;
mod image_ops;
pub mod pixel;
pub mod polyglot;
mod signal_ops;
mod text_ops;
mod translate_ops;

use serde_json::{Map, Value, json};

/// The input object an op receives.
pub type Args = Map<String, Value>;

/// A required string argument.
pub fn text<'a>(args: &'a Args, key: &str) -> Result<&'a str, String> {
    args.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("`{key}` must be a string"))
}

/// An optional string argument.
pub fn opt_text<'a>(args: &'a Args, key: &str, default: &'a str) -> &'a str {
    args.get(key).and_then(Value::as_str).unwrap_or(default)
}

/// A required finite number.
pub fn num(args: &Args, key: &str) -> Result<f64, String> {
    args.get(key)
        .and_then(Value::as_f64)
        .filter(|v| v.is_finite())
        .ok_or_else(|| format!("`{key}` must be a number"))
}

/// An optional finite number.
pub fn opt_num(args: &Args, key: &str, default: f64) -> Result<f64, String> {
    match args.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(_) => num(args, key),
    }
}

/// A required integer.
pub fn int(args: &Args, key: &str) -> Result<i64, String> {
    args.get(key)
        .and_then(Value::as_i64)
        .ok_or_else(|| format!("`{key}` must be an integer"))
}

/// An optional integer within `[min, max]`.
pub fn opt_int(args: &Args, key: &str, default: i64, min: i64, max: i64) -> Result<i64, String> {
    let value = match args.get(key) {
        None | Some(Value::Null) => default,
        Some(_) => int(args, key)?,
    };
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(format!("`{key}` must be between {min} and {max}"))
    }
}

/// An optional boolean.
pub fn opt_bool(args: &Args, key: &str, default: bool) -> bool {
    args.get(key).and_then(Value::as_bool).unwrap_or(default)
}

/// A required array of finite numbers.
pub fn numbers(args: &Args, key: &str) -> Result<Vec<f64>, String> {
    let items = args
        .get(key)
        .and_then(Value::as_array)
        .ok_or_else(|| format!("`{key}` must be an array of numbers"))?;
    items
        .iter()
        .map(|v| {
            v.as_f64()
                .filter(|f| f.is_finite())
                .ok_or_else(|| format!("`{key}` must contain only numbers"))
        })
        .collect()
}

/// A property schema: `{"type": ty, "description": description}`.
pub fn prop(ty: &str, description: &str) -> Value {
    json!({"type": ty, "description": description})
}

/// A property schema with extra keywords merged in (`minimum`, `enum`, `maxLength`, …).
pub fn prop_with(ty: &str, description: &str, extra: Value) -> Value {
    let mut schema = prop(ty, description);
    if let (Some(target), Value::Object(more)) = (schema.as_object_mut(), extra) {
        target.extend(more);
    }
    schema
}

/// An object input schema from `(name, property schema)` pairs and the required names.
pub fn input(props: Vec<(&str, Value)>, required: &[&str]) -> Value {
    let properties: Map<String, Value> = props
        .into_iter()
        .map(|(name, schema)| (name.to_owned(), schema))
        .collect();
    json!({"type": "object", "properties": properties, "required": required})
}

/// An object output schema where every listed field is required and typed.
pub fn output(fields: &[(&str, &str)]) -> Value {
    let properties: Map<String, Value> = fields
        .iter()
        .map(|(name, ty)| ((*name).to_owned(), json!({"type": ty})))
        .collect();
    let required: Vec<&str> = fields.iter().map(|(name, _)| *name).collect();
    json!({"type": "object", "properties": properties, "required": required})
}

/// Rounds to `places` decimals (results are shown to people; long float tails are noise).
pub fn round(value: f64, places: i32) -> f64 {
    let factor = 10f64.powi(places);
    (value * factor).round() / factor
}

/// A string property limited to what the demo accepts in one call.
pub fn text_prop(description: &str) -> Value {
    prop_with("string", description, json!({"maxLength": 20000}))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::demo::FactorySpec;

    fn validator(schema: &Value) -> jsonschema::Validator {
        jsonschema::validator_for(schema).unwrap()
    }

    /// Every capability's example is valid input, runs, and its result matches the
    /// declared output schema; ids are unique; prices are sane.
    #[test]
    fn every_example_runs_and_matches_its_output_schema() {
        for factory in FactorySpec::built_in() {
            assert!(
                factory.capabilities.len() >= 24,
                "{} is too small",
                factory.name
            );
            let mut seen = std::collections::HashSet::new();
            let priced = factory
                .capabilities
                .iter()
                .filter(|c| c.is_priced())
                .count();
            assert!(priced > 0 && priced < factory.capabilities.len());
            for cap in &factory.capabilities {
                assert!(
                    seen.insert((cap.product_id, cap.capability_id)),
                    "duplicate {}",
                    cap.capability_id
                );
                assert!(cap.capability_id.contains("@v"));
                assert!(cap.price_usd == 0.0 || cap.price_usd >= 0.0001);
                assert_eq!(cap.input_schema["type"], "object");
                for (name, schema) in cap.input_schema["properties"].as_object().unwrap() {
                    assert!(
                        schema["description"]
                            .as_str()
                            .is_some_and(|d| !d.is_empty()),
                        "{} property {name} has no description",
                        cap.capability_id
                    );
                }
                let input_ok = validator(&cap.input_schema);
                assert!(
                    input_ok.is_valid(&cap.example),
                    "{} example invalid",
                    cap.capability_id
                );
                let result = (cap.op)(cap.example.as_object().unwrap())
                    .unwrap_or_else(|e| panic!("{} failed: {e}", cap.capability_id));
                let errors: Vec<String> = validator(&cap.output_schema)
                    .iter_errors(&result)
                    .map(|e| e.to_string())
                    .collect();
                assert!(
                    errors.is_empty(),
                    "{} result {result} violates its schema: {errors:?}",
                    cap.capability_id
                );
                // Deterministic: the same input gives the same result.
                assert_eq!((cap.op)(cap.example.as_object().unwrap()).unwrap(), result);
            }
        }
    }

    #[test]
    fn argument_helpers_name_the_problem() {
        let args: Args =
            serde_json::from_value(json!({"a": "x", "n": 3, "f": 1.5, "l": [1, "x"]})).unwrap();
        assert_eq!(text(&args, "a").unwrap(), "x");
        assert!(text(&args, "n").unwrap_err().contains("`n`"));
        assert_eq!(num(&args, "f").unwrap(), 1.5);
        assert_eq!(opt_int(&args, "n", 1, 0, 5).unwrap(), 3);
        assert!(opt_int(&args, "n", 1, 0, 2).is_err());
        assert!(numbers(&args, "l").is_err());
        assert_eq!(opt_text(&args, "missing", "d"), "d");
    }
}
