#![allow(clippy::unwrap_used)]
//! The spec's `DebitAuthorization` vector, reproduced.

use alloy_primitives::{Address, B256, U256, keccak256};
use alloy_sol_types::{SolStruct, SolValue};
use serde_json::Value;

use super::*;

/// The spec's typed data, and the signature anvil's own EIP-712 code made of it.
const VECTOR: &str = include_str!("debit-authorization.json");

fn vector() -> (Value, EscrowDomain, SignedDebit) {
    let file: Value = serde_json::from_str(VECTOR).unwrap();
    let domain = EscrowDomain {
        chain_id: file["domain"]["chainId"].as_u64().unwrap(),
        contract: file["domain"]["verifyingContract"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap(),
    };
    let mut message = file["message"].clone();
    message["signature"] = file["signature"].clone();
    let debit = SignedDebit::parse(&message).unwrap();
    (file, domain, debit)
}

#[test]
fn the_typehash_is_the_spec_literal() {
    let (file, _, _) = vector();
    assert_eq!(file["typehash"], DEBIT_TYPE);
    assert_eq!(file["domain"]["name"], DOMAIN_NAME);
    assert_eq!(file["domain"]["version"], DOMAIN_VERSION);
    assert_eq!(DebitAuthorization::eip712_encode_type(), DEBIT_TYPE);
    assert_eq!(
        DebitAuthorization::eip712_type_hash(&vector().2.message()),
        keccak256(DEBIT_TYPE)
    );
}

#[test]
fn the_vector_digest_is_eip712_by_hand_and_anvil_signed_the_same() {
    let (file, domain, debit) = vector();
    // The digest spelled out as the contract computes it (abi.encode, keccak256, 0x1901).
    let separator = keccak256(
        (
            keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"),
            keccak256("AIMarketEscrow"),
            keccak256("1"),
            U256::from(8453u64),
            Address::ZERO,
        )
            .abi_encode(),
    );
    assert_eq!(domain.separator(), separator);
    let struct_hash = keccak256(
        (
            keccak256(DEBIT_TYPE),
            B256::with_last_byte(1),
            "0x000000000000000000000000000000000000bEEF"
                .parse::<Address>()
                .unwrap(),
            "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"
                .parse::<Address>()
                .unwrap(),
            U256::from(5_000_000u64),
            B256::left_padding_from(&[0x12, 0x34]),
            U256::ZERO,
            U256::from(2_000_000_000u64),
        )
            .abi_encode(),
    );
    let mut preimage = vec![0x19, 0x01];
    preimage.extend_from_slice(separator.as_slice());
    preimage.extend_from_slice(struct_hash.as_slice());
    let digest = keccak256(&preimage);
    assert_eq!(debit.digest(&domain), digest);
    // anvil's eth_signTypedData_v4 (an independent EIP-712 implementation) signed this digest.
    let signer: Address = file["signer_address"].as_str().unwrap().parse().unwrap();
    assert_eq!(debit.signer(&domain).unwrap(), signer);
    // RFC 6979 signatures are deterministic: ours is byte for byte anvil's.
    let key = WalletKey::from_hex(file["signer_key"].as_str().unwrap()).unwrap();
    let ours = sign_debit(&key, &domain, &debit.message()).unwrap();
    assert_eq!(ours.to_json()["signature"], file["signature"]);
    assert_eq!(ours, debit);
}

#[test]
fn any_other_field_chain_or_contract_recovers_someone_else() {
    let (file, domain, debit) = vector();
    let signer: Address = file["signer_address"].as_str().unwrap().parse().unwrap();
    let mut tampered = Vec::new();
    for change in 0..7 {
        let mut d = debit.clone();
        match change {
            0 => d.channel_id = B256::with_last_byte(2),
            1 => d.hub = Address::repeat_byte(1),
            2 => d.token = Address::repeat_byte(2),
            3 => d.amount += U256::from(1),
            4 => d.receipt_id = B256::with_last_byte(9),
            5 => d.nonce = U256::from(1),
            _ => d.deadline = U256::from(2_000_000_001u64),
        }
        tampered.push(d);
    }
    for d in &tampered {
        assert_ne!(d.signer(&domain).ok(), Some(signer), "{d:?}");
    }
    for other in [
        EscrowDomain {
            chain_id: 8454,
            ..domain
        },
        EscrowDomain {
            contract: Address::repeat_byte(3),
            ..domain
        },
    ] {
        assert_ne!(debit.signer(&other).ok(), Some(signer));
    }
}

#[test]
fn authorizations_parse_both_spellings_and_name_the_bad_field() {
    let (_, _, debit) = vector();
    let json = debit.to_json();
    assert_eq!(SignedDebit::parse(&json).unwrap(), debit);
    let mut snake = json.clone();
    let object = snake.as_object_mut().unwrap();
    let channel = object.remove("channelId").unwrap();
    let receipt = object.remove("receiptId").unwrap();
    object.insert("channel_id".into(), channel);
    object.insert("receipt_id".into(), receipt);
    object.insert("amount".into(), 5_000_000.into());
    object.insert("nonce".into(), "0x0".into());
    let sig = object["signature"].as_str().unwrap().to_owned();
    object.insert("signature".into(), format!("eip712:{}", &sig[2..]).into());
    assert_eq!(SignedDebit::parse(&snake).unwrap(), debit);
    for (member, value, field) in [
        ("channelId", Value::from("0x12"), "channelId"),
        ("hub", Value::from("nobody"), "hub"),
        ("token", Value::Null, "token"),
        ("amount", Value::from(-1), "amount"),
        ("amount", Value::from("1.5"), "amount"),
        ("receiptId", Value::from("é".repeat(33)), "receiptId"),
        ("nonce", Value::from(true), "nonce"),
        ("deadline", Value::from("9".repeat(100)), "deadline"),
        ("signature", Value::from("0x1234"), "signature"),
    ] {
        let mut bad = json.clone();
        bad[member] = value;
        match SignedDebit::parse(&bad) {
            Err(PaymentError::AuthorizationRequired { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{member}: {other:?}"),
        }
    }
    assert!(SignedDebit::parse(&Value::from("x")).is_err());
}
