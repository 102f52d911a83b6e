//! Cross-check of the §7.3 pipe canonicals, the whole-document canonical and the §7.1
//! provider canonical against an independent Python rendering of the spec formulas, on
//! random documents; and of our Ed25519 signatures against Python's `cryptography`
//! (when that module is installed).

use aimarket_protocol::signing::{
    KeyPair, RECEIPT_V2_FIELDS, ReceiptVersion, announce_canonical, document_canonical,
    manifest_canonical, provider_response_canonical, receipt_canonical_v1, receipt_canonical_v2,
    sign_announce, sign_document, sign_manifest, sign_provider_response, sign_receipt,
};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use serde_json::{Map, Value, json};

use crate::python_json::{float, string, value};

const PER_KIND: usize = 200;

/// Spec §7.3 and §7.1, written in Python straight from the formulas. Python's own `str()`
/// renders every number, which is the point of the comparison.
const SCRIPT: &str = r#"
import sys, json, hashlib, base64
try:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
except ImportError:
    Ed25519PublicKey = None
def dumps(v, compact):
    return json.dumps(v, sort_keys=True, ensure_ascii=False, separators=(",", ":") if compact else (", ", ": "))
def sha(s):
    return hashlib.sha256(s.encode("utf-8")).hexdigest()
V2 = ("type", "channel_id", "category", "plugin", "reason", "verify_score", "delivery_reasons", "trace_id", "refunded")
def canonical(kind, d):
    if kind == "manifest":
        return (f"capabilities_count:{d.get('capabilities_count', 0)}|generated_at:{d.get('generated_at', '')}"
                f"|protocol_version:{d.get('protocol_version', 'v1')}|tools_hash:{sha(dumps(d.get('tools', []), False))}"
                f"|by_hub_hash:{sha(dumps(d.get('by_hub', {}), False))}")
    if kind == "receipt":
        c = (f"nonce:{d['nonce']}|product_id:{d['product_id']}|capability_id:{d['capability_id']}"
             f"|price_usd:{d['price_usd']}|timestamp:{d['timestamp']}|success:{1 if d.get('success') else 0}"
             f"|latency_ms:{d.get('latency_ms', 0)}")
        if d["signature"].get("version") == 2:
            c += "|v:2|fields:" + sha(dumps({k: d.get(k) for k in V2}, True))
        return c
    if kind == "announce":
        return f"hub_url:{d['hub_url']}|well_known_url:{d['well_known_url']}|capabilities_count:{d.get('capabilities_count', 0)}"
    if kind == "document":
        return dumps({k: v for k, v in d.items() if k != "signature"}, True)
    if kind == "provider":
        return dumps({"capability_id": d["capability_id"], "input_sha256": sha(dumps(d["input"], True)),
                      "product_id": d["product_id"], "result": d["result"]}, True)
out = []
for item in json.loads(sys.stdin.buffer.read().decode("utf-8")):
    c = canonical(item["kind"], item["doc"])
    ok = None
    if Ed25519PublicKey is not None:
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(item["pub"]))
        try:
            key.verify(base64.b64decode(item["sig"]), c.encode("utf-8"))
            ok = True
        except Exception:
            ok = False
    out.append([c, ok])
sys.stdout.write(json.dumps(out))
"#;

fn draw<S: Strategy>(runner: &mut TestRunner, s: &S) -> S::Value {
    s.new_tree(runner).expect("strategy generates").current()
}

/// A non-negative price: random doubles plus the awkward small ones (`5e-05`).
fn price() -> impl Strategy<Value = Value> {
    prop_oneof![
        float().prop_map(|f| json!(f.abs())),
        prop::sample::select(vec![0.4, 1.0, 0.00005, 0.0001, 0.001, 0.0, 1e16, 123.0])
            .prop_map(|f| json!(f)),
        (0u32..100_000).prop_map(|n| json!(n)),
    ]
}

fn opt_insert(m: &mut Map<String, Value>, k: &str, v: Option<Value>) {
    if let Some(v) = v {
        m.insert(k.to_owned(), v);
    }
}

fn receipt(runner: &mut TestRunner) -> Value {
    let mut m = Map::new();
    for k in ["nonce", "product_id", "capability_id", "timestamp"] {
        m.insert(k.into(), Value::String(draw(runner, &string())));
    }
    m.insert("price_usd".into(), draw(runner, &price()));
    opt_insert(
        &mut m,
        "success",
        draw(
            runner,
            &prop::option::of(any::<bool>().prop_map(Value::Bool)),
        ),
    );
    opt_insert(
        &mut m,
        "latency_ms",
        draw(
            runner,
            &prop::option::of((0u64..10_000_000).prop_map(Value::from)),
        ),
    );
    for k in RECEIPT_V2_FIELDS {
        opt_insert(&mut m, k, draw(runner, &prop::option::of(value())));
    }
    Value::Object(m)
}

fn manifest(runner: &mut TestRunner) -> Value {
    let mut m = Map::new();
    opt_insert(
        &mut m,
        "capabilities_count",
        draw(
            runner,
            &prop::option::of(any::<u32>().prop_map(Value::from)),
        ),
    );
    opt_insert(
        &mut m,
        "generated_at",
        draw(runner, &prop::option::of(string().prop_map(Value::String))),
    );
    opt_insert(
        &mut m,
        "protocol_version",
        draw(
            runner,
            &prop::option::of(prop::sample::select(vec!["v1", "v2"]).prop_map(Value::from)),
        ),
    );
    opt_insert(
        &mut m,
        "tools",
        draw(
            runner,
            &prop::option::of(prop::collection::vec(value(), 0..4).prop_map(Value::Array)),
        ),
    );
    opt_insert(
        &mut m,
        "by_hub",
        draw(
            runner,
            &prop::option::of(
                prop::collection::btree_map(string(), value(), 0..3)
                    .prop_map(|b| Value::Object(b.into_iter().collect())),
            ),
        ),
    );
    Value::Object(m)
}

fn announce(runner: &mut TestRunner) -> Value {
    let mut m = Map::new();
    m.insert("hub_url".into(), Value::String(draw(runner, &string())));
    m.insert(
        "well_known_url".into(),
        Value::String(draw(runner, &string())),
    );
    opt_insert(
        &mut m,
        "capabilities_count",
        draw(
            runner,
            &prop::option::of(any::<u32>().prop_map(Value::from)),
        ),
    );
    Value::Object(m)
}

/// One comparison item: kind, signed document, our canonical, our signature.
fn signed(
    kind: &'static str,
    doc: Value,
    canonical: String,
) -> (&'static str, Value, String, String) {
    let sig = doc["signature"]["value"].as_str().unwrap().to_owned();
    (kind, doc, canonical, sig)
}

#[test]
fn canonicals_and_signatures_match_python() {
    let mut runner = TestRunner::default();
    let key = KeyPair::generate();
    let pub_b64 = key.public_key().to_b64();
    let mut items = Vec::new(); // (kind, doc, our canonical, signature)
    for i in 0..PER_KIND {
        let mut r = receipt(&mut runner);
        let version = if i % 2 == 0 {
            ReceiptVersion::V1
        } else {
            ReceiptVersion::V2
        };
        sign_receipt(&mut r, &key, version).unwrap();
        let c = match version {
            ReceiptVersion::V1 => receipt_canonical_v1(&r).unwrap(),
            ReceiptVersion::V2 => receipt_canonical_v2(&r).unwrap(),
        };
        items.push(signed("receipt", r, c));

        let mut m = manifest(&mut runner);
        sign_manifest(&mut m, &key).unwrap();
        let c = manifest_canonical(&m).unwrap();
        items.push(signed("manifest", m, c));

        let mut a = announce(&mut runner);
        sign_announce(&mut a, &key).unwrap();
        let c = announce_canonical(&a).unwrap();
        items.push(signed("announce", a, c));

        let mut d = draw(
            &mut runner,
            &prop::collection::btree_map(string(), value(), 0..6),
        );
        let mut d = Value::Object(std::mem::take(&mut d).into_iter().collect());
        sign_document(&mut d, &key).unwrap();
        let c = document_canonical(&d);
        items.push(signed("document", d, c));

        let (cid, pid, input, result) = (
            draw(&mut runner, &string()),
            draw(&mut runner, &string()),
            draw(&mut runner, &value()),
            draw(&mut runner, &value()),
        );
        let c = provider_response_canonical(&cid, &pid, &input, &result);
        let sig = sign_provider_response(&cid, &pid, &input, &result, &key);
        items.push((
            "provider",
            json!({"capability_id": cid, "product_id": pid, "input": input, "result": result}),
            c,
            sig,
        ));
    }
    let payload: Vec<Value> = items
        .iter()
        .map(|(kind, doc, _, sig)| json!({"kind": kind, "doc": doc, "sig": sig, "pub": pub_b64}))
        .collect();
    let Some(stdout) = crate::python::run(
        "canonicals_and_signatures_match_python",
        SCRIPT,
        &serde_json::to_vec(&payload).unwrap(),
    ) else {
        return;
    };
    let answers: Vec<(String, Option<bool>)> = serde_json::from_str(&stdout).unwrap();
    assert_eq!(answers.len(), items.len());
    let mut failures = Vec::new();
    let mut crypto_checked = 0;
    for ((kind, doc, ours, _), (theirs, verified)) in items.iter().zip(&answers) {
        if ours != theirs {
            failures.push(format!("{kind} {doc}\n  python {theirs}\n  ours   {ours}"));
        }
        match verified {
            Some(true) => crypto_checked += 1,
            Some(false) => failures.push(format!(
                "{kind}: python's Ed25519 rejected our signature over {ours}"
            )),
            None => {}
        }
    }
    if crypto_checked == 0 {
        println!(
            "SKIPPED part: python `cryptography` not installed; canonicals compared, signatures not"
        );
    }
    println!(
        "compared {} canonicals with python; {crypto_checked} signatures verified by python",
        items.len()
    );
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures[..failures.len().min(5)].join("\n")
    );
}
