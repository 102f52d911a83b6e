//! What an operator could configure: every built-in with its hooks, its settings as a JSON
//! Schema and their defaults (`GET /ai-market/v2/plugins` lists it next to the loaded
//! chain). Kept next to the built-ins so a new setting is described where it is added; a
//! unit test checks that every factory is described and that each schema names exactly the
//! fields of its settings' defaults.

use serde_json::{Value, json};

use super::{allow_deny, failover, price_guard, quality, webhook};
use crate::plugin::Hook;

fn number(description: &str) -> Value {
    json!({"type": "number", "description": description})
}

fn patterns(description: &str) -> Value {
    json!({"type": "array", "items": {"type": "string"}, "description": description})
}

fn object(properties: Value, required: &[&str]) -> Value {
    json!({
        "type": "object",
        "additionalProperties": false,
        "properties": properties,
        "required": required,
    })
}

fn entry(name: &str, summary: &str, hooks: &[Hook], schema: Value, defaults: Value) -> Value {
    json!({
        "name": name,
        "summary": summary,
        "hooks": hooks.iter().map(|h| h.as_str()).collect::<Vec<_>>(),
        "settings_schema": schema,
        "defaults": defaults,
    })
}

/// Every built-in, in the order of `builtin::factories`: `{name, summary, hooks,
/// settings_schema, defaults}`. `hooks` are those the plugin can serve (the webhook serves
/// the subset its `hooks` setting names).
pub fn describe() -> Value {
    let defaults = |v: Result<Value, serde_json::Error>| v.unwrap_or(Value::Null);
    Value::Array(vec![
        entry(
            quality::NAME,
            "the default ranking: relevance, trust, success rate, latency and price, weighted",
            &[Hook::Rank],
            object(
                json!({
                    "weights": object(json!({
                        "relevance": number("text relevance (normalised BM25)"),
                        "trust": number("peer trust score"),
                        "success_rate": number("30-day success rate"),
                        "latency": number("latency factor"),
                        "price": number("routed price factor"),
                    }), &[]),
                    "latency_ref_ms": number("latency at which the latency factor is 0.5, ms"),
                    "price_ref_usd": number("routed price at which the price factor is 0.5, USD"),
                }),
                &[],
            ),
            defaults(serde_json::to_value(quality::QualitySettings::default())),
        ),
        entry(
            price_guard::NAME,
            "refuses a provider's 402 asking more than its advertised price",
            &[Hook::AfterInvoke],
            object(
                json!({
                    "tolerance": number("allowed excess over the advertised price, a fraction"),
                    "slack_usd": number("absolute allowance for rounding, USD"),
                    "on_unreadable": {
                        "type": "string",
                        "enum": ["allow", "block"],
                        "description": "what to do with a 402 whose amount cannot be read",
                    },
                }),
                &[],
            ),
            defaults(serde_json::to_value(
                price_guard::PriceGuardSettings::default(),
            )),
        ),
        entry(
            allow_deny::NAME,
            "allow and deny lists (globs) of hubs, products and capabilities",
            &[Hook::Rank, Hook::Route, Hook::BeforeInvoke],
            object(
                json!({
                    "allow_hubs": patterns("hubs allowed; empty = all"),
                    "deny_hubs": patterns("hubs denied"),
                    "allow_products": patterns("product ids allowed; empty = all"),
                    "deny_products": patterns("product ids denied"),
                    "allow_capabilities": patterns("capability id patterns allowed; empty = all"),
                    "deny_capabilities": patterns("capability id patterns denied"),
                }),
                &[],
            ),
            defaults(serde_json::to_value(
                allow_deny::AllowDenySettings::default(),
            )),
        ),
        entry(
            failover::NAME,
            "orders a capability's providers for failover and declares one retry",
            &[Hook::Route],
            object(
                json!({
                    "min_trust": number("providers below this trust score are dropped"),
                    "trust_bucket": number("width of the trust buckets, 0 < x <= 1"),
                    "prefer": patterns("hub patterns to try first, in order"),
                    "retry": {"type": "boolean", "description": "declare the one-retry rule"},
                }),
                &[],
            ),
            defaults(serde_json::to_value(failover::FailoverSettings::default())),
        ),
        entry(
            webhook::NAME,
            "delegates rank and/or before_invoke to an operator's HTTP service",
            &[Hook::Rank, Hook::BeforeInvoke],
            object(
                json!({
                    "url": {"type": "string", "format": "uri", "description": "the endpoint"},
                    "hooks": {
                        "type": "array",
                        "minItems": 1,
                        "items": {"type": "string", "enum": ["rank", "before_invoke"]},
                        "description": "hooks to delegate",
                    },
                    "timeout_ms": {"type": "integer", "minimum": 1, "description": "bound of one call, ms"},
                    "headers": {
                        "type": "object",
                        "additionalProperties": {"type": "string"},
                        "description": "extra request headers (redacted when listed)",
                    },
                    "include_tool": {"type": "boolean", "description": "send each candidate's tool JSON"},
                    "include_input": {"type": "boolean", "description": "send the buyer's input"},
                    "max_candidates": {"type": "integer", "minimum": 1, "description": "candidates sent at most"},
                    "max_response_bytes": {"type": "integer", "minimum": 1, "description": "largest accepted reply"},
                }),
                &["url", "hooks"],
            ),
            defaults(serde_json::to_value(webhook::WebhookSettings::default())),
        ),
    ])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_builtin_is_described_with_the_fields_of_its_settings() {
        let described = describe();
        let list = described.as_array().unwrap();
        let names: Vec<&str> = list.iter().map(|e| e["name"].as_str().unwrap()).collect();
        let factories: Vec<&str> = super::super::factories().iter().map(|f| f.0).collect();
        assert_eq!(names, factories);
        for entry in list {
            let mut schema: Vec<&String> = entry["settings_schema"]["properties"]
                .as_object()
                .unwrap()
                .keys()
                .collect();
            let mut defaults: Vec<&String> =
                entry["defaults"].as_object().unwrap().keys().collect();
            schema.sort();
            defaults.sort();
            assert_eq!(schema, defaults, "{}", entry["name"]);
            assert!(!entry["hooks"].as_array().unwrap().is_empty());
        }
    }
}
