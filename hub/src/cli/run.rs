//! `aimarket-hub run "TASK" --budget USD [--hub URL] [--yes]`: a one-line agent.
//!
//! 1. Plans with the hub's own keyword planner: the task is split into steps at `then`,
//!    `;` and `, then`; each step is one `POST /ai-market/discover` whose best match (within
//!    the budget) becomes a node with its draft input. Steps run in order (each depends on
//!    the previous one); inputs are the drafts, not mapped from earlier outputs.
//! 2. Prints the plan with routed prices and asks for confirmation (`--yes` skips it).
//! 3. Opens a demo channel for the budget, runs the plan as one pipeline
//!    (`POST /ai-market/v2/pipelines`, `max_total_usd` = the budget), prints each step's
//!    result, verifies the bill of materials with the hub's `signer_public_key`, closes the
//!    channel and prints the refund.

use std::io::BufRead as _;
use std::process::ExitCode;

use aimarket_protocol::document::verify_any;
use aimarket_protocol::signing::PublicKey;
use clap::Args;
use serde_json::{Value, json};

use super::remote::{self, DEFAULT_HUB};
use crate::telemetry::print_line;

/// Most steps one task is split into.
pub const MAX_STEPS: usize = 8;

/// `run` flags.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// What to do, in plain words; `then` separates steps
    /// (e.g. "translate text to morse code then analyze the sentiment").
    pub task: String,
    /// Most the whole run may spend, USD (also the demo channel's deposit).
    #[arg(long, value_name = "USD")]
    pub budget: f64,
    /// The hub to use.
    #[arg(long, value_name = "URL", default_value = DEFAULT_HUB)]
    pub hub: String,
    /// Run without asking for confirmation.
    #[arg(long)]
    pub yes: bool,
}

/// Runs `run`.
pub fn run(args: &RunArgs) -> ExitCode {
    let confirm = |plan: &str| -> bool {
        print_line(plan);
        if args.yes {
            return true;
        }
        eprint!("Run it? [y/N] ");
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).is_ok()
            && matches!(line.trim(), "y" | "Y" | "yes")
    };
    match remote::with_client(|client| run_task(client, args, confirm)) {
        Ok(report) => {
            print_line(&report.text);
            if report.success {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The task's steps: split at `then`, `;` and `, then`.
pub fn split_task(task: &str) -> Vec<String> {
    let lowered = task.replace(';', " then ").replace(", then ", " then ");
    lowered
        .split(" then ")
        .map(|s| s.trim().trim_matches(',').trim().to_owned())
        .filter(|s| !s.is_empty())
        .take(MAX_STEPS)
        .collect()
}

/// What `run` did.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// Every node ran and the bill verified.
    pub success: bool,
    /// The printed report.
    pub text: String,
    /// The pipeline answer.
    pub answer: Value,
    /// The bill verified against the hub's published key.
    pub bill_verified: bool,
    /// The channel refund, USD.
    pub refund_usd: f64,
}

/// Plans, confirms (`confirm` sees the printed plan), pays, runs, verifies and settles.
pub async fn run_task(
    client: reqwest::Client,
    args: &RunArgs,
    confirm: impl FnOnce(&str) -> bool,
) -> Result<RunReport, String> {
    let hub = remote::hub_base(&args.hub)?;
    if !(args.budget.is_finite() && args.budget > 0.0) {
        return Err("--budget must be a positive number of USD".into());
    }
    let steps = split_task(&args.task);
    if steps.is_empty() {
        return Err("the task is empty".into());
    }
    let mut nodes = Vec::new();
    let mut plan = format!("Plan for \"{}\" (budget {} USD):\n", args.task, args.budget);
    let mut total = 0.0;
    for (i, step) in steps.iter().enumerate() {
        let request = client
            .post(format!("{hub}/ai-market/discover"))
            .json(&json!({"query": step, "budget_usd": args.budget, "limit": 1}));
        let answer = remote::send(request, &hub).await?;
        if answer.status != 200 {
            return Err(format!("discover: {}", remote::error_line(&answer)));
        }
        let Some(m) = answer.body["matches"].get(0) else {
            return Err(format!("no capability matches step {}: \"{step}\"", i + 1));
        };
        let price = m["routed_price_usd"].as_f64().unwrap_or(0.0);
        total += price;
        let id = format!("s{}", i + 1);
        plan.push_str(&format!(
            "  {id}. {step:?} -> {}/{} ({} USD) input {}\n",
            m["product_id"].as_str().unwrap_or_default(),
            m["capability_id"].as_str().unwrap_or_default(),
            price,
            m["draft_input"]
        ));
        let mut node = json!({"id": id, "product_id": m["product_id"],
            "capability_id": m["capability_id"], "input": m["draft_input"]});
        if let Some(hub) = m["source_hub"].as_str().filter(|h| h.starts_with("http")) {
            node["source_hub"] = Value::from(hub);
        }
        if i > 0 {
            node["depends_on"] = json!([format!("s{i}")]);
        }
        nodes.push(node);
    }
    plan.push_str(&format!("  total {total:.6} USD\n"));
    if total > args.budget {
        return Err(format!(
            "{plan}the plan costs {total} USD, above the budget of {} USD",
            args.budget
        ));
    }
    if !confirm(&plan) {
        return Err("not confirmed; nothing was spent".into());
    }

    // A demo deposit: hubs with demo payments accept any `demo-` transaction hash.
    let open = client
        .post(format!("{hub}/ai-market/v2/channel/open"))
        .json(&json!({"deposit_usd": args.budget,
            "tx_hash": format!("demo-run-{}", uuid::Uuid::new_v4().simple())}));
    let opened = remote::send(open, &hub).await?;
    let channel = &opened.body["channel"];
    let (Some(channel_id), Some(secret)) = (
        channel["channel_id"].as_str(),
        channel["channel_secret"].as_str(),
    ) else {
        return Err(format!("channel open: {}", remote::error_line(&opened)));
    };
    let request = client
        .post(format!("{hub}/ai-market/v2/pipelines"))
        .header("X-Payment-Channel", channel_id)
        .header("X-Payment-Channel-Secret", secret)
        .header("Idempotency-Key", format!("run-{channel_id}"))
        .json(&json!({"nodes": nodes, "max_total_usd": args.budget}));
    let ran = remote::send(request, &hub).await;
    // The channel is closed whatever happened, so the deposit comes back.
    let close = client
        .post(format!("{hub}/ai-market/v2/channel/close"))
        .json(&json!({"channel_id": channel_id}));
    let closed = remote::send(close, &hub).await?;
    let ran = ran?;
    if ran.body.get("bill_of_materials").is_none() {
        return Err(format!("pipeline: {}", remote::error_line(&ran)));
    }
    let mut text = String::new();
    let bill = &ran.body["bill_of_materials"];
    for step in bill["steps"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let node = step["node_id"].as_str().unwrap_or_default();
        let result = ran.body["results"].get(node).map_or_else(
            || step["error"].to_string(),
            |r| remote::clip(&r.to_string(), 200),
        );
        text.push_str(&format!(
            "{node} {} {} ({} USD, {} ms): {result}\n",
            step["capability_id"].as_str().unwrap_or_default(),
            step["status"].as_str().unwrap_or_default(),
            step["price_usd"],
            step["latency_ms"],
        ));
    }
    let key = hub_key(&client, &hub).await?;
    let report = verify_any(bill, Some(&key));
    let refund_usd = closed.body["refund_usd"].as_f64().unwrap_or(0.0);
    text.push_str(&format!(
        "bill {}: trace {} total {} USD ({})\nchannel closed: spent {} USD, refund {} USD",
        if report.valid { "verified" } else { "INVALID" },
        bill["trace_id"].as_str().unwrap_or_default(),
        bill["total_usd"],
        report
            .reason
            .clone()
            .unwrap_or_else(|| "signed by the hub's published key".into()),
        closed.body["total_spent_usd"],
        refund_usd,
    ));
    Ok(RunReport {
        success: report.valid && ran.body["success"] == Value::Bool(true),
        text,
        bill_verified: report.valid,
        refund_usd,
        answer: ran.body,
    })
}

/// The hub's `signer_public_key` from its well-known.
async fn hub_key(client: &reqwest::Client, hub: &str) -> Result<PublicKey, String> {
    let answer = remote::send(client.get(format!("{hub}/.well-known/ai-market.json")), hub).await?;
    let b64 = answer.body["signer_public_key"]
        .as_str()
        .ok_or("the hub's well-known has no signer_public_key")?;
    PublicKey::from_b64(b64).map_err(|e| format!("the hub's signer_public_key: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_split_into_steps() {
        assert_eq!(
            split_task("translate to morse, then count words; reverse it then x"),
            ["translate to morse", "count words", "reverse it", "x"]
        );
        assert_eq!(split_task("  one step "), ["one step"]);
        assert!(split_task(" ; then ").is_empty());
        assert_eq!(split_task(&"a then ".repeat(20)).len(), MAX_STEPS);
    }
}
