//! Property test: `to_canonical_string` equals CPython's `json.dumps(v, sort_keys=True,
//! ensure_ascii=False)` in both separator styles, for random values generated now.
//!
//! Values are generated in one batch and sent to a single python3 process (fast); a
//! mismatch prints the offending value as JSON so it can be replayed.

use aimarket_protocol::canonical::{Style, to_canonical_string};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use serde_json::{Map, Number, Value};

const BATCH: usize = 3000;

/// Characters that stress escaping and key ordering, mixed into random unicode.
const SPECIAL: &[char] = &[
    '"', '\\', '\n', '\r', '\t', '\u{8}', '\u{c}', '\0', '\u{1f}', '\u{7f}', '\u{2028}',
    '\u{2029}', 'é', 'Я', '翻', '\u{e000}', '\u{ff21}', '𝄞', '🚀', 'a', 'B', ' ', '/',
];

pub fn string() -> impl Strategy<Value = String> {
    let ch = prop_oneof![3 => any::<char>(), 2 => prop::sample::select(SPECIAL)];
    prop::collection::vec(ch, 0..8).prop_map(String::from_iter)
}

pub fn float() -> impl Strategy<Value = f64> {
    prop_oneof![
        // Any finite double, from raw bits (subnormals, huge exponents, negative zero).
        3 => any::<u64>().prop_map(f64::from_bits).prop_filter("finite", |f| f.is_finite()),
        // Short decimals around the repr switch points (1e-4, 1e16).
        2 => (any::<i32>(), -25i32..25).prop_map(|(m, e)| f64::from(m) * 10f64.powi(e)).prop_filter("finite", |f| f.is_finite()),
        1 => prop::sample::select(vec![0.0, -0.0, 1.0, 0.1, 1e16, 1e-5, 5e-324, f64::MAX, f64::MIN_POSITIVE, 9007199254740993.0]),
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        prop::sample::select(vec![i64::MIN, i64::MAX, 0, -1]).prop_map(Value::from),
        Just(Value::from(u64::MAX)),
        float().prop_map(|f| Value::Number(Number::from_f64(f).expect("finite"))),
        string().prop_map(Value::String),
    ]
}

pub fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((string(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

const SCRIPT: &str = r#"
import sys, json
values = json.loads(sys.stdin.buffer.read().decode("utf-8"))
out = [[json.dumps(v, sort_keys=True, ensure_ascii=False),
         json.dumps(v, sort_keys=True, ensure_ascii=False, separators=(",", ":"))] for v in values]
sys.stdout.write(json.dumps(out))
"#;

#[test]
fn canonical_json_matches_cpython_on_random_values() {
    let mut runner = TestRunner::default();
    let strategy = value();
    let values: Vec<Value> = (0..BATCH)
        .map(|_| {
            strategy
                .new_tree(&mut runner)
                .expect("strategy generates")
                .current()
        })
        .collect();
    // Transport only: serde_json writes shortest round-trip floats, which Python reads back
    // to the same doubles; nothing here is signed.
    let payload = serde_json::to_vec(&values).unwrap();
    let Some(stdout) = crate::python::run(
        "canonical_json_matches_cpython_on_random_values",
        SCRIPT,
        &payload,
    ) else {
        return;
    };
    let expected: Vec<(String, String)> = serde_json::from_str(&stdout).unwrap();
    assert_eq!(expected.len(), values.len());
    let mut failures = Vec::new();
    for (v, (py_default, py_compact)) in values.iter().zip(&expected) {
        let ours = (
            to_canonical_string(v, Style::Python),
            to_canonical_string(v, Style::Compact),
        );
        if &ours.0 != py_default || &ours.1 != py_compact {
            failures.push(format!(
                "value {}\n  python  {py_default}\n  ours    {}\n  python, {py_compact}\n  ours,   {}",
                serde_json::to_string(v).unwrap(),
                ours.0,
                ours.1
            ));
        }
    }
    let floats = values.iter().map(count_floats).sum::<usize>();
    println!(
        "compared {} values ({floats} floats) with CPython in both styles",
        values.len()
    );
    assert!(
        floats > BATCH / 4,
        "generator produced too few floats ({floats})"
    );
    assert!(
        failures.is_empty(),
        "{} of {} differ:\n{}",
        failures.len(),
        values.len(),
        failures[..failures.len().min(5)].join("\n")
    );
}

fn count_floats(v: &Value) -> usize {
    match v {
        Value::Number(n) => usize::from(n.is_f64()),
        Value::Array(a) => a.iter().map(count_floats).sum(),
        Value::Object(m) => m.values().map(count_floats).sum(),
        _ => 0,
    }
}
