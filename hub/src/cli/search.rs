//! `aimarket-hub search INTENT [--hub URL] [--budget X] [--limit N] [--json]`: a client of
//! any hub's `GET /ai-market/v2/search`, printing a table (or the raw JSON).

use std::fmt::Write as _;
use std::process::ExitCode;

use clap::Args;
use serde_json::Value;

use super::remote::{self, DEFAULT_HUB};
use crate::telemetry::print_line;

/// `search` flags.
#[derive(Debug, Clone, Args)]
pub struct SearchArgs {
    /// What you need done, in plain words.
    pub intent: String,
    /// The hub to ask.
    #[arg(long, value_name = "URL", default_value = DEFAULT_HUB)]
    pub hub: String,
    /// Highest price per call through the hub, USD.
    #[arg(long, value_name = "USD")]
    pub budget: Option<f64>,
    /// Highest median latency, ms.
    #[arg(long, value_name = "MS")]
    pub max_latency_ms: Option<u64>,
    /// How many matches.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub limit: u32,
    /// Print the hub's JSON answer instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Runs `search`.
pub fn run(args: &SearchArgs) -> ExitCode {
    match remote::with_client(|client| search(client, args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn search(client: reqwest::Client, args: &SearchArgs) -> Result<(), String> {
    let hub = remote::hub_base(&args.hub)?;
    let mut query: Vec<(&str, String)> = vec![
        ("intent", args.intent.clone()),
        ("limit", args.limit.to_string()),
        ("fields", "compact".to_owned()),
    ];
    if let Some(budget) = args.budget {
        query.push(("budget", budget.to_string()));
    }
    if let Some(ms) = args.max_latency_ms {
        query.push(("max_latency_ms", ms.to_string()));
    }
    let mut url = url::Url::parse(&format!("{hub}/ai-market/v2/search"))
        .map_err(|e| format!("--hub {hub:?}: {e}"))?;
    url.query_pairs_mut()
        .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
    let request = client.get(url);
    let answer = remote::send(request, &hub).await?;
    if !(200..300).contains(&answer.status) {
        return Err(remote::error_line(&answer));
    }
    if args.json {
        print_line(&serde_json::to_string_pretty(&answer.body).unwrap_or_default());
    } else {
        print_line(&table(&answer.body, &args.intent, &hub));
    }
    Ok(())
}

/// The human-readable answer: a header line, then one row per match with its description
/// underneath.
pub fn table(body: &Value, intent: &str, hub: &str) -> String {
    let matches = body
        .get("matches")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let total = body
        .get("total")
        .and_then(Value::as_u64)
        .unwrap_or(matches.len() as u64);
    let mut out = format!(
        "Search {intent:?} at {hub}: {} of {total} matches\n",
        matches.len()
    );
    if matches.is_empty() {
        return out;
    }
    let _ = writeln!(
        out,
        "{:>3}  {:<48} {:>11} {:>7} {:>5}  HUB",
        "#", "PRODUCT / CAPABILITY", "PRICE USD", "P50 MS", "TRUST"
    );
    for (i, m) in matches.iter().enumerate() {
        let s = |k: &str| m.get(k).and_then(Value::as_str).unwrap_or("");
        let f = |k: &str| m.get(k).and_then(Value::as_f64).unwrap_or(0.0);
        let price = f("routed_price_usd");
        let price = if price == 0.0 {
            "free".to_owned()
        } else {
            format!("{price}")
        };
        let id = remote::clip(&format!("{} / {}", s("product_id"), s("capability_id")), 48);
        let hub_name = if s("source_hub_name").is_empty() {
            s("source_hub")
        } else {
            s("source_hub_name")
        };
        let _ = writeln!(
            out,
            "{:>3}  {id:<48} {price:>11} {:>7} {:>5.2}  {hub_name}",
            i + 1,
            f("p50_latency_ms"),
            f("trust_score")
        );
        let description = s("description");
        if !description.is_empty() {
            let _ = writeln!(out, "     {}", remote::clip(description, 100));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn table_lists_matches() {
        let body = json!({"total": 7, "matches": [{"product_id": "p", "capability_id": "c@v1", "routed_price_usd": 0.00202,
            "p50_latency_ms": 12, "trust_score": 0.5, "source_hub_name": "Polyglot Works", "description": "Does things."},
            {"product_id": "q", "capability_id": "d@v1", "routed_price_usd": 0.0, "source_hub": "http://h"}]});
        let text = table(&body, "x", "http://hub");
        assert!(text.starts_with("Search \"x\" at http://hub: 2 of 7 matches\n"));
        assert!(
            text.contains("p / c@v1")
                && text.contains("0.00202")
                && text.contains("Polyglot Works")
        );
        assert!(
            text.contains("free")
                && text.contains("http://h")
                && text.contains("     Does things.")
        );
        assert!(table(&json!({"matches": []}), "x", "h").ends_with("0 of 0 matches\n"));
    }
}
