//! `aimarket-hub invoke PRODUCT CAPABILITY --input JSON [--channel ID --secret S] [--hub URL]
//! [--json]`: a client of any hub's `POST /ai-market/v2/invoke`. Prints the result, the
//! price and the receipts (or the raw JSON); a 402 prints what to pay and how, and exits 2.

use std::fmt::Write as _;
use std::process::ExitCode;

use clap::Args;
use serde_json::{Value, json};

use super::remote::{self, Answer, DEFAULT_HUB};
use crate::telemetry::print_line;

/// Exit status when the hub answers 402 Payment Required.
pub const EXIT_PAYMENT_REQUIRED: u8 = 2;

/// `invoke` flags.
#[derive(Debug, Clone, Args)]
pub struct InvokeArgs {
    /// Product id (from `search`).
    pub product_id: String,
    /// Capability id (from `search`).
    pub capability_id: String,
    /// The input, a JSON object.
    #[arg(long, value_name = "JSON", default_value = "{}")]
    pub input: String,
    /// Payment channel id at the hub (from `POST /ai-market/v2/channel/open`).
    #[arg(long, value_name = "ID", requires = "secret")]
    pub channel: Option<String>,
    /// The channel's secret.
    #[arg(long, value_name = "SECRET", requires = "channel")]
    pub secret: Option<String>,
    /// Pay the provider directly: the proof it asked for in its 402 (a transaction hash or
    /// an x402 payload), sent as `X-Payment` through the hub (seller-direct rail).
    #[arg(long, value_name = "PROOF", conflicts_with = "channel")]
    pub payment: Option<String>,
    /// The `X-Payment-Nonce` the provider's 402 handed out, with `--payment`.
    #[arg(long, value_name = "NONCE", requires = "payment")]
    pub payment_nonce: Option<String>,
    /// The `X-Payment-Secret` the provider's 402 handed out, with `--payment`.
    #[arg(long, value_name = "SECRET", requires = "payment")]
    pub payment_secret: Option<String>,
    /// The owning hub (a match's `source_hub`); default: wherever the hub finds it.
    #[arg(long, value_name = "URL")]
    pub source_hub: Option<String>,
    /// Refuse the call if it costs more than this, USD.
    #[arg(long, value_name = "USD")]
    pub max_price: Option<f64>,
    /// The hub to call.
    #[arg(long, value_name = "URL", default_value = DEFAULT_HUB)]
    pub hub: String,
    /// Print the hub's JSON answer instead of a summary.
    #[arg(long)]
    pub json: bool,
}

/// Runs `invoke`.
pub fn run(args: &InvokeArgs) -> ExitCode {
    match remote::with_client(|client| invoke(client, args)) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn invoke(client: reqwest::Client, args: &InvokeArgs) -> Result<ExitCode, String> {
    let hub = remote::hub_base(&args.hub)?;
    let input: Value =
        serde_json::from_str(&args.input).map_err(|e| format!("--input is not JSON: {e}"))?;
    if !input.is_object() {
        return Err("--input must be a JSON object, e.g. '{\"text\": \"hello\"}'".into());
    }
    let mut body =
        json!({"product_id": args.product_id, "capability_id": args.capability_id, "input": input});
    if let Some(hub) = &args.source_hub {
        body["source_hub"] = Value::from(hub.as_str());
    }
    if let Some(max) = args.max_price {
        body["max_price_usd"] = Value::from(max);
    }
    let mut request = client
        .post(format!("{hub}/ai-market/v2/invoke"))
        .json(&body);
    if let (Some(channel), Some(secret)) = (&args.channel, &args.secret) {
        request = request
            .header("X-Payment-Channel", channel)
            .header("X-Payment-Channel-Secret", secret);
    }
    for (name, value) in [
        ("X-Payment", &args.payment),
        ("X-Payment-Nonce", &args.payment_nonce),
        ("X-Payment-Secret", &args.payment_secret),
    ] {
        if let Some(value) = value {
            request = request.header(name, value);
        }
    }
    let answer = remote::send(request, &hub).await?;
    let ok = (200..300).contains(&answer.status)
        && answer.body.get("success").and_then(Value::as_bool) != Some(false);
    if args.json {
        print_line(&serde_json::to_string_pretty(&answer.body).unwrap_or_default());
    } else if ok {
        print_line(&summary(&answer.body));
    } else if answer.status == 402 {
        eprintln!("{}", payment_help(&answer, &hub));
    } else {
        eprintln!("error: {}", remote::error_line(&answer));
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else if answer.status == 402 {
        ExitCode::from(EXIT_PAYMENT_REQUIRED)
    } else {
        ExitCode::FAILURE
    })
}

/// A successful call: price, latency, the receipts' nonces, then the result.
pub fn summary(body: &Value) -> String {
    let f = |k: &str| body.get(k).and_then(Value::as_f64).unwrap_or(0.0);
    let mut out = format!(
        "OK  price {} USD  latency {} ms",
        f("price_usd"),
        f("latency_ms")
    );
    if let Some(hub) = body.get("source_hub").and_then(Value::as_str) {
        let _ = write!(out, "  provider {hub}");
    }
    out.push('\n');
    for (label, key) in [
        ("provider receipt", "receipt"),
        ("hub receipt", "routing_receipt"),
    ] {
        if let Some(nonce) = body
            .get(key)
            .and_then(|r| r.get("nonce"))
            .and_then(Value::as_str)
        {
            let _ = writeln!(out, "{label}: {nonce}");
        }
    }
    let result = body.get("result").unwrap_or(&Value::Null);
    out.push_str(&serde_json::to_string_pretty(result).unwrap_or_default());
    out
}

/// A 402: what the provider asks, and how to pay through this hub.
pub fn payment_help(answer: &Answer, hub: &str) -> String {
    let needed = answer.body.get("needed").and_then(Value::as_f64);
    let mut out = String::from("payment required");
    if let Some(needed) = needed {
        let _ = write!(out, ": {needed} USD per call at the provider");
    }
    if let Some(detail) = answer.body.get("detail").and_then(Value::as_str) {
        let _ = write!(out, "\n  {detail}");
    }
    if let Some(header) = &answer.payment_required {
        let _ = write!(out, "\n  X-Payment-Required: {header}");
    }
    // Only the ways the hub says can succeed for this capability (all of them when an older
    // hub does not say).
    let offered = |way: &str| {
        answer
            .payment_ways
            .as_ref()
            .is_none_or(|ways| ways.iter().any(|w| w == way))
    };
    let mut ways = 0;
    if offered("hub_channel") {
        ways += 1;
        let _ = write!(
            out,
            "\nTo pay through the hub, open a channel and call again with it:\n  \
             curl -s -X POST {hub}/ai-market/v2/channel/open -H 'Content-Type: application/json' \
             -d '{{\"deposit_usd\": 1.0, \"tx_hash\": \"<deposit transaction hash>\"}}'\n  \
             aimarket-hub invoke ... --channel <channel_id> --secret <channel_secret> --hub {hub}"
        );
    }
    if offered("seller_direct") {
        ways += 1;
        let _ = write!(
            out,
            "\nTo pay the provider directly, make the payment its challenge above asks for and \
             call again with the proof (the hub forwards it and charges no routing fee unless \
             it says otherwise):\n  \
             aimarket-hub invoke ... --payment <proof> [--payment-nonce <nonce>] --hub {hub}"
        );
    }
    if ways == 0 {
        let _ = write!(
            out,
            "\nThis hub cannot pay this provider for you, and the provider offers no payment \
             a buyer can send through the hub: call the provider directly."
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_and_payment_help() {
        let body = json!({"success": true, "price_usd": 0.00202, "latency_ms": 3, "source_hub": "http://f",
            "receipt": {"nonce": "rcpt_a"}, "routing_receipt": {"nonce": "rcpt_b"}, "result": {"morse": "..."}});
        let text = summary(&body);
        assert!(text.starts_with("OK  price 0.00202 USD  latency 3 ms  provider http://f\n"));
        assert!(
            text.contains("provider receipt: rcpt_a")
                && text.contains("hub receipt: rcpt_b")
                && text.contains("\"morse\"")
        );
        let answer = Answer {
            status: 402,
            body: json!({"needed": 0.002, "detail": "pay up"}),
            payment_required: Some("{\"amount\":\"0.002\"}".into()),
            payment_ways: None,
        };
        let help = payment_help(&answer, "http://hub");
        assert!(
            help.contains("0.002 USD")
                && help.contains("pay up")
                && help.contains("X-Payment-Required")
        );
        assert!(help.contains("http://hub/ai-market/v2/channel/open"));
        // Only the ways the hub names.
        let only_direct = Answer {
            payment_ways: Some(vec!["seller_direct".into()]),
            ..answer
        };
        let help = payment_help(&only_direct, "http://hub");
        assert!(!help.contains("channel/open") && help.contains("--payment <proof>"));
        let none = Answer {
            payment_ways: Some(Vec::new()),
            ..only_direct
        };
        let help = payment_help(&none, "http://hub");
        assert!(!help.contains("channel/open") && !help.contains("--payment <proof>"));
        assert!(help.contains("cannot pay this provider"));
    }
}
