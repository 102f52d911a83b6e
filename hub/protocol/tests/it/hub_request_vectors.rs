//! Every case of the `aimarket-hub-request/v1` vector file (`extensions/hub-request-v1.json`)
//! is reproduced byte for byte: input digest, canonical text, headers and signature.

use aimarket_protocol::signing::{
    HubRequestClaims, KeyPair, hub_request_input_sha256, verify_hub_request,
};
use serde_json::Value;

use crate::support::vector;

#[test]
fn every_hub_request_case_is_byte_exact() {
    let file = vector("extensions/hub-request-v1.json");
    let seed: [u8; 32] = hex::decode(file["private_key_seed_hex"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let key = KeyPair::from_seed(&seed);
    assert_eq!(
        key.public_key().to_b64(),
        file["public_key_b64"].as_str().unwrap()
    );
    let cases = file["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 4);
    for case in cases {
        let s = |k: &str| case[k].as_str().unwrap().to_owned();
        assert_eq!(hub_request_input_sha256(&case["input"]), s("input_sha256"));
        let claims = HubRequestClaims::new(
            &s("hub_url_configured"),
            &s("audience_posted_to"),
            &s("capability_id"),
            &case["input"],
            case["timestamp"].as_i64().unwrap(),
            &s("nonce"),
        )
        .unwrap();
        assert_eq!(claims.canonical(), s("canonical"));
        let signed = claims.sign(&key);
        let want = case["headers"].as_object().unwrap();
        assert_eq!(want.len(), signed.len());
        for (name, value) in &signed {
            let expected = want
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str().unwrap())
                .unwrap_or_else(|| panic!("{name} missing from the vector"));
            assert_eq!(value, expected, "{name}");
        }
        let lookup = |name: &str| {
            want.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .and_then(|(_, v)| v.as_str().map(str::to_owned))
        };
        let now = case["timestamp"].as_i64().unwrap();
        verify_hub_request(
            lookup,
            &s("audience_posted_to"),
            &s("capability_id"),
            &case["input"],
            &key.public_key(),
            now,
        )
        .unwrap();
        // One changed input byte breaks it.
        let mut other = case["input"].clone();
        if let Value::Object(m) = &mut other {
            m.insert("tampered".into(), Value::Bool(true));
        } else {
            other = serde_json::json!({"tampered": true});
        }
        assert!(
            verify_hub_request(
                lookup,
                &s("audience_posted_to"),
                &s("capability_id"),
                &other,
                &key.public_key(),
                now
            )
            .is_err()
        );
    }
}
