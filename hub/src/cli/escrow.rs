//! `aimarket-hub escrow sign-debit`: a depositor's EIP-712 `DebitAuthorization` (spec §6.2)
//! for a paid call on an escrow channel, printed as the `payment_authorization` object an
//! invoke body carries. For testing and walkthroughs: the key is read from a file.

use std::path::PathBuf;
use std::process::ExitCode;

use alloy_primitives::{Address, B256, U256};
use clap::{Args, Subcommand};

use crate::payments::chain::WalletKey;
use crate::payments::escrow::{DebitAuthorization, EscrowDomain, parse_bytes32, sign_debit};
use crate::telemetry::print_line;

/// Arguments of `escrow`.
#[derive(Debug, Args)]
pub struct EscrowArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: EscrowCommand,
}

/// The `escrow` subcommands.
#[derive(Debug, Subcommand)]
pub enum EscrowCommand {
    /// Sign a DebitAuthorization with the depositor's key and print the
    /// `payment_authorization` JSON object.
    SignDebit(SignDebitArgs),
}

/// Arguments of `escrow sign-debit`.
#[derive(Debug, Clone, Args)]
pub struct SignDebitArgs {
    /// File holding the depositor's secp256k1 key (hex).
    #[arg(long, value_name = "PATH")]
    pub key: PathBuf,
    /// The escrow contract (the domain's verifyingContract).
    #[arg(long, value_name = "0x…")]
    pub contract: String,
    /// The chain id (the domain's chainId).
    #[arg(long)]
    pub chain_id: u64,
    /// The escrow channel id (bytes32).
    #[arg(long, value_name = "0x…")]
    pub channel_id: String,
    /// The hub's address (its `payment_channels.escrow.hub` in the well-known).
    #[arg(long, value_name = "0x…")]
    pub hub: String,
    /// The escrowed token.
    #[arg(long, value_name = "0x…")]
    pub token: String,
    /// Base units (the routed price in micro-USD: the hub's `needed_base_units`).
    #[arg(long)]
    pub amount: u64,
    /// The receipt id (bytes32); a random one when left out.
    #[arg(long, value_name = "0x…")]
    pub receipt_id: Option<String>,
    /// The channel's next nonce.
    #[arg(long)]
    pub nonce: u64,
    /// Unix seconds after which the contract refuses the debit; now + 600 s when left out.
    #[arg(long)]
    pub deadline: Option<u64>,
}

/// Runs `escrow`.
pub fn run(args: &EscrowArgs) -> ExitCode {
    let EscrowCommand::SignDebit(args) = &args.command;
    match sign(args) {
        Ok(json) => {
            print_line(&json);
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn address(text: &str, what: &str) -> Result<Address, String> {
    text.trim()
        .parse()
        .map_err(|_| format!("--{what} must be a 0x-prefixed 20-byte address"))
}

/// The signed `payment_authorization` object, compact JSON.
pub fn sign(args: &SignDebitArgs) -> Result<String, String> {
    let key = WalletKey::from_file(&args.key)?;
    let domain = EscrowDomain {
        chain_id: args.chain_id,
        contract: address(&args.contract, "contract")?,
    };
    let bytes32 = |text: &str, what: &str| {
        parse_bytes32(text).ok_or_else(|| format!("--{what} must be 0x followed by 64 hex digits"))
    };
    let receipt_id = match &args.receipt_id {
        Some(text) => bytes32(text, "receipt-id")?,
        None => B256::from(rand::random::<[u8; 32]>()),
    };
    let deadline = args
        .deadline
        .unwrap_or_else(|| u64::try_from(chrono::Utc::now().timestamp()).unwrap_or_default() + 600);
    let message = DebitAuthorization {
        channelId: bytes32(&args.channel_id, "channel-id")?,
        hub: address(&args.hub, "hub")?,
        token: address(&args.token, "token")?,
        amount: U256::from(args.amount),
        receiptId: receipt_id,
        nonce: U256::from(args.nonce),
        deadline: U256::from(deadline),
    };
    let signed = sign_debit(&key, &domain, &message)?;
    Ok(signed.to_json().to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::payments::escrow::SignedDebit;

    #[test]
    fn signs_what_recovers_to_the_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, format!("0x{}\n", "42".repeat(32))).unwrap();
        let args = SignDebitArgs {
            key: path,
            contract: format!("{:#x}", Address::repeat_byte(5)),
            chain_id: 31337,
            channel_id: format!("{:#x}", B256::repeat_byte(1)),
            hub: format!("{:#x}", Address::repeat_byte(2)),
            token: format!("{:#x}", Address::repeat_byte(3)),
            amount: 2020,
            receipt_id: None,
            nonce: 4,
            deadline: Some(2_000_000_000),
        };
        let json: serde_json::Value = serde_json::from_str(&sign(&args).unwrap()).unwrap();
        assert_eq!(json["amount"], "2020");
        assert_eq!(json["nonce"], "4");
        let debit = SignedDebit::parse(&json).unwrap();
        let domain = EscrowDomain {
            chain_id: 31337,
            contract: Address::repeat_byte(5),
        };
        assert_eq!(
            debit.signer(&domain).unwrap().to_string(),
            "0x17c5185167401eD00cF5F5b2fc97D9BBfDb7D025"
        );
        let bad = SignDebitArgs {
            hub: "0x12".into(),
            ..args
        };
        assert!(sign(&bad).unwrap_err().contains("--hub"));
    }
}
