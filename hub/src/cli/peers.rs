//! `aimarket-hub peers …`: the operator's federation controls, against a running hub.
//!
//! ```text
//! aimarket-hub peers [--hub URL] [--admin-token TOKEN] [--json] list
//! aimarket-hub peers approve URL
//! aimarket-hub peers remove URL
//! aimarket-hub peers repin URL KEY
//! aimarket-hub peers add-seed URL[=KEY]
//! ```
//!
//! `--hub` defaults to the `serve` address; the token comes from `--admin-token` or
//! `AIMARKET_ADMIN_TOKEN` (`list` needs none). Each command is one request to the hub's
//! federation endpoints; an error answer is printed as `error: HTTP <status> <code>: …` and
//! the exit code is 1.

use std::fmt::Write as _;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};

use super::remote::{DEFAULT_HUB, clip, error_line, hub_base, send, with_client};

/// `peers` flags and subcommand.
#[derive(Debug, Clone, Args)]
pub struct PeersArgs {
    /// The hub to manage.
    #[arg(long, default_value = DEFAULT_HUB)]
    pub hub: String,
    /// The hub's admin token.
    #[arg(long, env = "AIMARKET_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Print the hub's JSON answer instead of a summary.
    #[arg(long)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: PeersCommand,
}

/// The `peers` subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum PeersCommand {
    /// List active and pending peers (pending ones with their catalog preview).
    List,
    /// Admit a pending peer (it is crawled at once and stays active).
    Approve {
        /// The peer's URL.
        url: String,
    },
    /// Remove a peer and its catalog.
    Remove {
        /// The peer's URL.
        url: String,
    },
    /// Pin a new key for a peer after a legitimate key rotation.
    Repin {
        /// The peer's URL.
        url: String,
        /// The new Ed25519 public key (base64).
        key: String,
    },
    /// Add a seed at runtime: `URL` or `URL=KEY` (persisted; crawled at once).
    AddSeed {
        /// `URL` or `URL=KEY`.
        seed: String,
    },
}

/// Runs `peers`.
pub fn run(args: &PeersArgs) -> ExitCode {
    match with_client(|client| async move { execute(&client, args).await }) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Performs the command with `client` and returns what to print (library entry point for
/// tests and embedders).
pub async fn execute(client: &reqwest::Client, args: &PeersArgs) -> Result<String, String> {
    let base = hub_base(&args.hub)?;
    let peers = format!("{base}/ai-market/v2/federation/peers");
    let (method, url, body) = match &args.command {
        PeersCommand::List => (Method::GET, peers, None),
        PeersCommand::Approve { url } => (
            Method::POST,
            format!("{peers}/approve"),
            Some(json!({"url": url})),
        ),
        PeersCommand::Remove { url } => {
            let mut target = url::Url::parse(&peers).map_err(|e| e.to_string())?;
            target.query_pairs_mut().append_pair("url", url);
            (Method::DELETE, target.to_string(), None)
        }
        PeersCommand::Repin { url, key } => (
            Method::POST,
            format!("{peers}/repin"),
            Some(json!({"url": url, "public_key": key})),
        ),
        PeersCommand::AddSeed { seed } => {
            let spec = aimarket_crawler::SeedSpec::parse_operator(seed);
            let mut body = json!({"url": spec.url});
            if let Some(key) = spec.pinned_key {
                body["public_key"] = json!(key);
            }
            (
                Method::POST,
                format!("{base}/ai-market/v2/federation/seeds"),
                Some(body),
            )
        }
    };
    let mut request = client.request(method, url);
    if let Some(token) = &args.admin_token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = &body {
        request = request.json(body);
    }
    let answer = send(request, &base).await?;
    if !(200..300).contains(&answer.status) {
        return Err(error_line(&answer));
    }
    if args.json {
        return Ok(format!("{:#}\n", answer.body));
    }
    Ok(match &args.command {
        PeersCommand::List => render_list(&answer.body),
        _ => render_action(&args.command, &answer.body),
    })
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("-")
}

fn render_list(body: &Value) -> String {
    let mut out = String::new();
    let empty = Vec::new();
    let list = |key: &str| body.get(key).and_then(Value::as_array).unwrap_or(&empty);
    let _ = writeln!(
        out,
        "{:<8} {:<40} {:>6} {:>6} {:<9} LAST ERROR",
        "STATE", "URL", "TRUST", "CAPS", "KEY"
    );
    for p in list("peers").iter().chain(list("pending")) {
        let trust = p
            .get("trust_score")
            .and_then(Value::as_f64)
            .map_or_else(|| "-".to_owned(), |t| format!("{t:.3}"));
        let caps = match p.get("preview") {
            Some(preview) => format!("{}?", preview["capabilities_count"]),
            None => p["capability_count"].to_string(),
        };
        let _ = writeln!(
            out,
            "{:<8} {:<40} {:>6} {:>6} {:<9} {}",
            text(p, "state"),
            clip(text(p, "url"), 40),
            trust,
            caps,
            text(p, "key_source"),
            clip(
                p.get("last_error").and_then(Value::as_str).unwrap_or(""),
                60
            ),
        );
    }
    let _ = writeln!(
        out,
        "{} active, {} pending (caps with ? are an unapproved preview)",
        body["count"], body["pending_count"]
    );
    out
}

fn render_action(command: &PeersCommand, body: &Value) -> String {
    let verb = match command {
        PeersCommand::List => "listed",
        PeersCommand::Approve { .. } => "approved",
        PeersCommand::Remove { .. } => "removed",
        PeersCommand::Repin { .. } => "re-pinned",
        PeersCommand::AddSeed { .. } => "added seed",
    };
    let mut line = format!(
        "{verb} {} (status {})",
        text(body, "url"),
        text(body, "status")
    );
    if body["crawl_scheduled"] == true {
        line.push_str(", crawl started");
    }
    if let Some(n) = body["capabilities_removed"].as_u64().filter(|n| *n > 0) {
        let _ = write!(line, ", {n} capabilities removed");
    }
    if let Some(note) = body["note"].as_str() {
        let _ = write!(line, "\nnote: {note}");
    }
    line.push('\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_rendering_marks_previews() {
        let body = json!({
            "peers": [{"url": "https://a.example", "state": "active", "trust_score": 0.42,
                       "capability_count": 3, "key_source": "tofu", "last_error": null}],
            "pending": [{"url": "https://b.example", "state": "pending", "trust_score": null,
                         "capability_count": 0, "preview": {"capabilities_count": 7}}],
            "count": 1, "pending_count": 1,
        });
        let text = render_list(&body);
        assert!(text.contains("https://a.example"), "{text}");
        assert!(text.contains("0.420"), "{text}");
        assert!(text.contains("7?"), "{text}");
        assert!(text.contains("1 active, 1 pending"), "{text}");
    }

    #[test]
    fn action_rendering() {
        let body = json!({"url": "https://a.example", "status": "removed",
                          "capabilities_removed": 2, "note": "seed"});
        let text = render_action(&PeersCommand::Remove { url: "x".into() }, &body);
        assert_eq!(
            text,
            "removed https://a.example (status removed), 2 capabilities removed\nnote: seed\n"
        );
    }
}
