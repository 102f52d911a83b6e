//! What the client commands (`search`, `invoke`) share: the hub URL flag, a runtime, an
//! HTTP client, and reading an answer.

use std::time::Duration;

use serde_json::Value;

/// The hub a client command talks to when `--hub` is not given (the `serve` and `demo`
/// default address).
pub const DEFAULT_HUB: &str = "http://127.0.0.1:9083";
/// Per-request bound of the client commands.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// `--hub` reduced to a base URL without trailing slash; an http(s) URL is required.
pub fn hub_base(hub: &str) -> Result<String, String> {
    let url =
        url::Url::parse(hub.trim()).map_err(|e| format!("--hub {hub:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!("--hub {hub:?} must be an http(s) URL"));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// Runs `work` on a fresh current-thread runtime with an HTTP client.
pub fn with_client<F, Fut, T>(work: F) -> Result<T, String>
where
    F: FnOnce(reqwest::Client) -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let client = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .user_agent(concat!("aimarket-hub-cli/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
    runtime.block_on(work(client))
}

/// An answer: status, selected headers and the body (JSON, or the text as a JSON string).
#[derive(Debug)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// The body.
    pub body: Value,
    /// `X-Payment-Required`, if any.
    pub payment_required: Option<String>,
    /// `X-AIMarket-Payment-Ways` of a relayed 402: the ways that can succeed through the
    /// hub (`hub_channel`, `seller_direct`); `None` when the hub did not say.
    pub payment_ways: Option<Vec<String>>,
    /// The hub's own payment option (`X-AIMarket-Hub-Payment`, else the body's
    /// `hub_payment`), if any.
    pub hub_payment: Option<Value>,
}

/// Sends `request` and reads the answer.
pub async fn send(request: reqwest::RequestBuilder, hub: &str) -> Result<Answer, String> {
    let response = request
        .send()
        .await
        .map_err(|e| format!("cannot reach the hub at {hub}: {e}"))?;
    let status = response.status().as_u16();
    let payment_required = response
        .headers()
        .get("x-payment-required")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let payment_ways = response
        .headers()
        .get(crate::invoke::relay::PAYMENT_WAYS_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|w| !w.is_empty())
                .map(str::to_owned)
                .collect()
        });
    let hub_payment_header = response
        .headers()
        .get(crate::invoke::hub_payment::names::HUB_PAYMENT)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| serde_json::from_str::<Value>(v).ok());
    let bytes = response
        .bytes()
        .await
        .map_err(|e| format!("cannot read the hub's answer: {e}"))?;
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    let hub_payment = hub_payment_header
        .or_else(|| body.get("hub_payment").cloned())
        .filter(Value::is_object);
    Ok(Answer {
        status,
        body,
        payment_required,
        payment_ways,
        hub_payment,
    })
}

/// The protocol error of a failed answer, as one line.
pub fn error_line(answer: &Answer) -> String {
    let code = answer
        .body
        .get("error")
        .and_then(Value::as_str)
        .unwrap_or("error");
    let detail = answer
        .body
        .get("detail")
        .and_then(Value::as_str)
        .map_or_else(|| answer.body.to_string(), str::to_owned);
    format!("HTTP {} {code}: {detail}", answer.status)
}

/// `text` cut to `max` characters with an ellipsis.
pub fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_urls_and_clipping() {
        assert_eq!(
            hub_base("http://127.0.0.1:9083/").as_deref(),
            Ok("http://127.0.0.1:9083")
        );
        assert_eq!(
            hub_base("https://hub.example/base/").as_deref(),
            Ok("https://hub.example/base")
        );
        assert!(hub_base("ftp://x").is_err());
        assert!(hub_base("not a url").is_err());
        assert_eq!(clip("abcdef", 4), "abc…");
        assert_eq!(clip("abc", 4), "abc");
    }
}
