//! A minimal Ethereum JSON-RPC client: one POST per call, bounded in time and size, errors
//! that never carry the endpoint URL (node provider URLs embed API keys).

use std::time::Duration;

use serde_json::{Value, json};

use crate::payments::PaymentError;
use crate::settings::RpcUrl;

/// Whole-request bound on one JSON-RPC call.
pub const RPC_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest JSON-RPC answer read (a receipt with many logs is still far smaller).
const MAX_RPC_BODY_BYTES: usize = 4 * 1024 * 1024;

/// A JSON-RPC endpoint with its own HTTP client (no redirects, [`RPC_TIMEOUT`]).
#[derive(Debug, Clone)]
pub struct JsonRpc {
    url: RpcUrl,
    client: reqwest::Client,
}

/// The node could not be asked, or answered something unusable.
pub(crate) fn unavailable(reason: impl Into<String>) -> PaymentError {
    PaymentError::VerifierUnavailable {
        reason: reason.into(),
    }
}

/// Parses a JSON-RPC quantity (`0x1a`).
pub fn quantity(v: Option<&Value>, what: &str) -> Result<u64, PaymentError> {
    v.and_then(Value::as_str)
        .and_then(|s| s.strip_prefix("0x"))
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .ok_or_else(|| unavailable(format!("node answered a malformed {what}")))
}

impl JsonRpc {
    /// A client for `url`.
    pub fn new(url: RpcUrl) -> Result<Self, PaymentError> {
        crate::startup::install_crypto_provider();
        let client = reqwest::Client::builder()
            .timeout(RPC_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| unavailable(format!("cannot build the JSON-RPC client: {e}")))?;
        Ok(Self { url, client })
    }

    /// One call; the `result` member (may be `null`). A node `error` member is
    /// [`PaymentError::VerifierUnavailable`] with its message (at most 200 characters).
    pub async fn call(&self, method: &str, params: Value) -> Result<Value, PaymentError> {
        let request = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let response = self
            .client
            .post(self.url.url().clone())
            .json(&request)
            .send()
            .await
            .map_err(|e| unavailable(format!("{method}: {}", e.without_url())))?;
        let status = response.status();
        if !status.is_success() {
            return Err(unavailable(format!(
                "{method}: node answered HTTP {status}"
            )));
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| unavailable(format!("{method}: {}", e.without_url())))?;
        if bytes.len() > MAX_RPC_BODY_BYTES {
            return Err(unavailable(format!("{method}: answer too large")));
        }
        let mut body: Value = serde_json::from_slice(&bytes)
            .map_err(|_| unavailable(format!("{method}: node answered non-JSON")))?;
        if let Some(error) = body.get("error").filter(|e| !e.is_null()) {
            let message = error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("unknown error");
            let message: String = message.chars().take(200).collect();
            return Err(unavailable(format!("{method}: node error: {message}")));
        }
        match body.get_mut("result") {
            Some(result) => Ok(result.take()),
            None => Err(unavailable(format!("{method}: answer has no result"))),
        }
    }

    /// `eth_blockNumber`.
    pub async fn block_number(&self) -> Result<u64, PaymentError> {
        quantity(
            Some(&self.call("eth_blockNumber", json!([])).await?),
            "block number",
        )
    }

    /// `eth_chainId`.
    pub async fn chain_id(&self) -> Result<u64, PaymentError> {
        quantity(
            Some(&self.call("eth_chainId", json!([])).await?),
            "chain id",
        )
    }

    /// `eth_call` of `data` on `to` at the latest block; the returned bytes.
    pub async fn eth_call(&self, to: &str, data: &[u8]) -> Result<Vec<u8>, PaymentError> {
        let result = self
            .call(
                "eth_call",
                json!([{"to": to, "data": format!("0x{}", hex::encode(data))}, "latest"]),
            )
            .await?;
        result
            .as_str()
            .and_then(|s| s.strip_prefix("0x"))
            .and_then(|h| hex::decode(h).ok())
            .ok_or_else(|| unavailable("eth_call: node answered malformed data"))
    }
}
