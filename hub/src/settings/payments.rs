//! Settings of payment channels (`[payments]` in the TOML file).
//!
//! | TOML key (`[payments]`) | env                               | default |
//! |-------------------------|-----------------------------------|---------|
//! | `evm_rpc_url`           | `AIMARKET_EVM_RPC_URL`            | none    |
//! | `recipient`             | `AIMARKET_PAYMENT_RECIPIENT`      | none    |
//! | `token_contract`        | `AIMARKET_PAYMENT_TOKEN_CONTRACT` | none    |
//! | `evm_confirmations`     | `AIMARKET_EVM_CONFIRMATIONS`      | 0 (no check) |
//! | `channel_ttl_s`         | `AIMARKET_CHANNEL_TTL_S`          | 86400   |
//! | `wallet_key_path`       | `AIMARKET_WALLET_KEY_PATH`        | none    |
//! | `wallet_key`            | `AIMARKET_WALLET_KEY`             | none    |
//! | `evm_chain_id`          | `AIMARKET_EVM_CHAIN_ID`           | asked of the node |
//! | `evm_max_fee_gwei`      | `AIMARKET_EVM_MAX_FEE_GWEI`       | 100     |
//! | `token_name`            | `AIMARKET_PAYMENT_TOKEN_NAME`     | `USD Coin` |
//! | `token_version`         | `AIMARKET_PAYMENT_TOKEN_VERSION`  | `2`     |
//! | `escrow_contract`       | `AIMARKET_ESCROW_CONTRACT`        | none    |
//!
//! The EVM deposit verifier is on when the first three are set (all or none). The RPC URL
//! often embeds a provider API key, so it is never printed in full. The hub's wallet (a
//! secp256k1 key, hex, from the file or the variable; never logged) needs the EVM settings:
//! it refunds channels on close and settles x402 payments. With `escrow_contract` too, the hub
//! also mirrors non-custodial channels of that escrow contract (`contracts/AIMarketEscrow.sol`)
//! and debits them with the depositors' signed authorizations.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::Deserialize;

use super::values::Secret;

/// Default channel lifetime (spec §6.1: 24 h).
pub const DEFAULT_CHANNEL_TTL_S: u64 = 24 * 3600;
/// Longest channel lifetime accepted (30 days).
pub const MAX_CHANNEL_TTL_S: u64 = 30 * 24 * 3600;
/// Most confirmations one can demand (beyond this a deposit would never be usable).
pub const MAX_EVM_CONFIRMATIONS: u64 = 1000;

/// The `[payments]` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PaymentSettings {
    /// JSON-RPC endpoint of the chain deposits are checked on (`AIMARKET_EVM_RPC_URL`).
    pub evm_rpc_url: Option<RpcUrl>,
    /// The hub's address that deposits must be sent to (`AIMARKET_PAYMENT_RECIPIENT`).
    pub recipient: Option<EvmAddress>,
    /// The ERC-20 contract deposits must use, 6 decimals (`AIMARKET_PAYMENT_TOKEN_CONTRACT`).
    pub token_contract: Option<EvmAddress>,
    /// Blocks a deposit must have on top of it, counting its own; 0 = no check
    /// (`AIMARKET_EVM_CONFIRMATIONS`).
    pub evm_confirmations: u64,
    /// Lifetime of a new channel, seconds (`AIMARKET_CHANNEL_TTL_S`).
    pub channel_ttl_s: u64,
    /// File holding the hub wallet's hex secp256k1 key (`AIMARKET_WALLET_KEY_PATH`).
    pub wallet_key_path: Option<PathBuf>,
    /// The hub wallet's hex key itself (`AIMARKET_WALLET_KEY`); never logged.
    pub wallet_key: Option<Secret>,
    /// Chain id transactions are signed for (`AIMARKET_EVM_CHAIN_ID`); checked against the
    /// node at start, asked of it when unset.
    pub evm_chain_id: Option<u64>,
    /// Highest `maxFeePerGas` the wallet signs, gwei (`AIMARKET_EVM_MAX_FEE_GWEI`).
    pub evm_max_fee_gwei: u64,
    /// The token's EIP-712 domain name, for x402 authorizations (`AIMARKET_PAYMENT_TOKEN_NAME`;
    /// USDC: `USD Coin` on mainnets, `USDC` on some testnets).
    pub token_name: String,
    /// The token's EIP-712 domain version (`AIMARKET_PAYMENT_TOKEN_VERSION`; USDC: `2`).
    pub token_version: String,
    /// The escrow contract of non-custodial channels (`AIMARKET_ESCROW_CONTRACT`); needs the
    /// hub wallet.
    pub escrow_contract: Option<EvmAddress>,
}

/// Default fee cap, gwei.
pub const DEFAULT_MAX_FEE_GWEI: u64 = 100;

impl Default for PaymentSettings {
    fn default() -> Self {
        Self {
            evm_rpc_url: None,
            recipient: None,
            token_contract: None,
            evm_confirmations: 0,
            channel_ttl_s: DEFAULT_CHANNEL_TTL_S,
            wallet_key_path: None,
            wallet_key: None,
            evm_chain_id: None,
            evm_max_fee_gwei: DEFAULT_MAX_FEE_GWEI,
            token_name: "USD Coin".to_owned(),
            token_version: "2".to_owned(),
            escrow_contract: None,
        }
    }
}

impl PaymentSettings {
    /// Whether the EVM verifier is configured.
    pub fn evm_enabled(&self) -> bool {
        self.evm_rpc_url.is_some()
    }

    /// Checks ranges and that the EVM settings come together; the error names the TOML key,
    /// the value and the reason.
    pub fn check(&self) -> Result<(), (&'static str, String, String)> {
        check_channel_ttl(self.channel_ttl_s)
            .map_err(|r| ("payments.channel_ttl_s", self.channel_ttl_s.to_string(), r))?;
        check_confirmations(self.evm_confirmations).map_err(|r| {
            (
                "payments.evm_confirmations",
                self.evm_confirmations.to_string(),
                r,
            )
        })?;
        if (self.wallet_key.is_some() || self.wallet_key_path.is_some()) && !self.evm_enabled() {
            return Err((
                "payments.wallet_key",
                String::new(),
                "the hub wallet needs the EVM settings (AIMARKET_EVM_RPC_URL, \
                 AIMARKET_PAYMENT_RECIPIENT, AIMARKET_PAYMENT_TOKEN_CONTRACT)"
                    .to_owned(),
            ));
        }
        if self.escrow_contract.is_some()
            && self.wallet_key.is_none()
            && self.wallet_key_path.is_none()
        {
            return Err((
                "payments.escrow_contract",
                self.escrow_contract
                    .as_ref()
                    .map(|a| a.as_str().to_owned())
                    .unwrap_or_default(),
                "escrow channels need the hub wallet (AIMARKET_WALLET_KEY or \
                 AIMARKET_WALLET_KEY_PATH) and the EVM settings"
                    .to_owned(),
            ));
        }
        if self.wallet_key.is_some() && self.wallet_key_path.is_some() {
            return Err((
                "payments.wallet_key",
                String::new(),
                "set the wallet key or its file, not both".to_owned(),
            ));
        }
        if self.evm_max_fee_gwei == 0 || self.evm_max_fee_gwei > 1_000_000 {
            return Err((
                "payments.evm_max_fee_gwei",
                self.evm_max_fee_gwei.to_string(),
                "must be 1 to 1000000".to_owned(),
            ));
        }
        let set = [
            ("payments.evm_rpc_url", self.evm_rpc_url.is_some()),
            ("payments.recipient", self.recipient.is_some()),
            ("payments.token_contract", self.token_contract.is_some()),
        ];
        if set.iter().any(|(_, s)| *s)
            && let Some((missing, _)) = set.iter().find(|(_, s)| !*s)
        {
            return Err((
                missing,
                String::new(),
                "the EVM deposit verifier needs evm_rpc_url, recipient and token_contract \
                 (AIMARKET_EVM_RPC_URL, AIMARKET_PAYMENT_RECIPIENT, \
                 AIMARKET_PAYMENT_TOKEN_CONTRACT) together"
                    .to_owned(),
            ));
        }
        Ok(())
    }
}

pub(super) fn check_channel_ttl(seconds: u64) -> Result<(), String> {
    if seconds == 0 || seconds > MAX_CHANNEL_TTL_S {
        return Err(format!("must be 1 to {MAX_CHANNEL_TTL_S} seconds"));
    }
    Ok(())
}

pub(super) fn check_confirmations(n: u64) -> Result<(), String> {
    if n > MAX_EVM_CONFIRMATIONS {
        return Err(format!("must be at most {MAX_EVM_CONFIRMATIONS}"));
    }
    Ok(())
}

/// A 20-byte EVM address, `0x` + 40 hex digits, kept lower-case.
#[derive(Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct EvmAddress(String);

impl EvmAddress {
    /// `0x…`, lower-case.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 40 hex digits without `0x`, lower-case.
    pub fn hex_digits(&self) -> &str {
        &self.0[2..]
    }
}

impl FromStr for EvmAddress {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let digits = s
            .strip_prefix("0x")
            .or_else(|| s.strip_prefix("0X"))
            .ok_or("must start with 0x")?;
        if digits.len() != 40 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err("must be 0x followed by 40 hexadecimal digits".into());
        }
        Ok(Self(format!("0x{}", digits.to_ascii_lowercase())))
    }
}

impl TryFrom<String> for EvmAddress {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl fmt::Display for EvmAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for EvmAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An `http(s)` JSON-RPC endpoint. `Debug`/`Display` show only scheme, host and port: node
/// provider URLs carry API keys in the path or query.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct RpcUrl(url::Url);

impl RpcUrl {
    /// The full URL (for the HTTP client only; never log it).
    pub fn url(&self) -> &url::Url {
        &self.0
    }
}

impl FromStr for RpcUrl {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let url = url::Url::parse(s.trim()).map_err(|e| format!("not a URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err("scheme must be http or https".into());
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err("URL has no host".into());
        }
        Ok(Self(url))
    }
}

impl TryFrom<String> for RpcUrl {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl fmt::Display for RpcUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.origin().ascii_serialization())
    }
}

impl fmt::Debug for RpcUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RpcUrl({}/…)", self.0.origin().ascii_serialization())
    }
}

/// Shows an RPC URL in an error message without its path or query.
pub(super) fn show_rpc_url(value: &str) -> String {
    match value.parse::<RpcUrl>() {
        Ok(url) => format!("{url}/<redacted>"),
        Err(_) => format!("<redacted, {} characters>", value.chars().count()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn addresses_are_checked_and_lower_cased() {
        let a: EvmAddress = "0xAbCdEf0123456789abcdef0123456789ABCDEF01"
            .parse()
            .unwrap();
        assert_eq!(a.as_str(), "0xabcdef0123456789abcdef0123456789abcdef01");
        assert_eq!(a.hex_digits().len(), 40);
        for bad in ["abcdef0123456789abcdef0123456789abcdef01", "0x1234", "0xZZ"] {
            assert!(bad.parse::<EvmAddress>().is_err(), "{bad}");
        }
    }

    #[test]
    fn rpc_urls_never_show_their_path() {
        let u: RpcUrl = "https://node.example/v3/SECRETKEY".parse().unwrap();
        assert!(!format!("{u} {u:?}").contains("SECRETKEY"));
        assert!(!show_rpc_url("https://node.example/v3/SECRETKEY").contains("SECRETKEY"));
        assert!("ftp://node.example".parse::<RpcUrl>().is_err());
    }

    #[test]
    fn evm_settings_come_together() {
        let mut p = PaymentSettings {
            evm_rpc_url: Some("http://127.0.0.1:8545".parse().unwrap()),
            ..PaymentSettings::default()
        };
        let (key, _, reason) = p.check().unwrap_err();
        assert_eq!(key, "payments.recipient");
        assert!(reason.contains("AIMARKET_PAYMENT_RECIPIENT"), "{reason}");
        p.recipient = Some(
            "0x1111111111111111111111111111111111111111"
                .parse()
                .unwrap(),
        );
        p.token_contract = Some(
            "0x2222222222222222222222222222222222222222"
                .parse()
                .unwrap(),
        );
        p.check().unwrap();
        assert!(p.evm_enabled());
        p.channel_ttl_s = 0;
        assert_eq!(p.check().unwrap_err().0, "payments.channel_ttl_s");
    }
}
