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

/// A 402: first how to pay this hub (its own option, the one that works with this hub),
/// then why it was refused and what the provider itself asks (paying the provider directly
/// does not pay this hub, and a channel opened at the provider is unknown here). Only the
/// ways the hub names in `X-AIMarket-Payment-Ways` are advised (all of them when an older
/// hub does not say).
pub fn payment_help(answer: &Answer, hub: &str) -> String {
    let offered = |way: &str| {
        answer
            .payment_ways
            .as_ref()
            .is_none_or(|ways| ways.iter().any(|w| w == way))
    };
    let option = answer.hub_payment.as_ref();
    let field = |k: &str| option.and_then(|o| o.get(k));
    let open = field("open")
        .and_then(Value::as_str)
        .map_or_else(|| format!("{hub}/ai-market/v2/channel/open"), str::to_owned);
    let mut out = String::from("payment required");
    if offered("hub_channel") {
        if let Some(needed) = field("needed").and_then(Value::as_f64) {
            let _ = write!(out, ": {needed} USD per call through this hub");
            if let (Some(list), Some(bps)) = (
                field("list_price_usd").and_then(Value::as_f64),
                field("routing_fee_bps").and_then(Value::as_u64),
            ) {
                let _ = write!(out, " ({list} USD list price + {bps} bps routing fee)");
            }
        }
        let _ = write!(
            out,
            "\nPay this hub: open a channel here and call again with it:\n  \
             curl -s -X POST {open} -H 'Content-Type: application/json' \
             -d '{{\"deposit_usd\": 1.0, \"tx_hash\": \"<deposit transaction hash>\"}}'\n  \
             aimarket-hub invoke ... --channel <channel_id> --secret <channel_secret> --hub {hub}"
        );
        if let Some(rails) = field("hub_pays_provider_via").and_then(Value::as_array) {
            let rails: Vec<&str> = rails.iter().filter_map(Value::as_str).collect();
            if !rails.is_empty() {
                let _ = write!(
                    out,
                    "\n  (this hub pays the provider via {})",
                    rails.join(", ")
                );
            }
        }
    }
    if let Some(reason) = answer.body.get("reason").and_then(Value::as_str) {
        let _ = write!(out, "\nRefused: {reason}");
    }
    let provider_needed = answer.body.get("needed").and_then(Value::as_f64);
    let own = answer.body.get("hub_payment").is_some();
    if !own && (provider_needed.is_some() || answer.payment_required.is_some()) {
        out.push_str("\nThe provider's own challenge (pays the provider, not this hub):");
        if let Some(needed) = provider_needed {
            let _ = write!(out, "\n  {needed} USD per call at the provider");
        }
    }
    if let Some(detail) = answer.body.get("detail").and_then(Value::as_str) {
        let _ = write!(out, "\n  {detail}");
    }
    if let Some(header) = &answer.payment_required {
        let _ = write!(out, "\n  X-Payment-Required: {header}");
    }
    if !own && offered("seller_direct") {
        let _ = write!(
            out,
            "\nTo pay the provider directly, make the payment its challenge asks for and call \
             again with the proof (the hub forwards it and charges no routing fee unless it \
             says otherwise):\n  \
             aimarket-hub invoke ... --payment <proof> [--payment-nonce <nonce>] --hub {hub}"
        );
    }
    if !offered("hub_channel") && !offered("seller_direct") {
        out.push_str(
            "\nThis hub cannot pay this provider for you, and the provider offers no payment \
             a buyer can send through the hub: call the provider directly.",
        );
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
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
            body: json!({"needed": 0.002, "detail": "open a channel at this factory"}),
            payment_required: Some("{\"amount\":\"0.002\"}".into()),
            payment_ways: None,
            hub_payment: Some(json!({"open": "http://hub/ai-market/v2/channel/open",
                "needed": 0.00202, "list_price_usd": 0.002, "routing_fee_bps": 100,
                "hub_pays_provider_via": ["channel"]})),
        };
        let help = payment_help(&answer, "http://hub");
        // The hub's option comes first, then the provider's challenge.
        let hub_at = help.find("0.00202 USD per call through this hub").unwrap();
        let open_at = help.find("http://hub/ai-market/v2/channel/open").unwrap();
        let provider_at = help.find("0.002 USD per call at the provider").unwrap();
        assert!(hub_at < open_at && open_at < provider_at, "{help}");
        assert!(help.contains("via channel"));
        assert!(
            help.contains("open a channel at this factory") && help.contains("X-Payment-Required")
        );
        // Without the hub's option (an old hub) the channel URL is still this hub's.
        let bare = Answer {
            hub_payment: None,
            payment_required: answer.payment_required.clone(),
            body: answer.body.clone(),
            ..answer
        };
        assert!(payment_help(&bare, "http://hub").contains("http://hub/ai-market/v2/channel/open"));
        // Only the ways the hub names.
        let only_direct = Answer {
            payment_ways: Some(vec!["seller_direct".into()]),
            ..bare
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
