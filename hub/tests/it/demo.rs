//! `aimarket-hub demo` as a user runs it: it prints the walkthrough once ready, writes the
//! port file, serves the crawled factories, and Ctrl-C (SIGINT) stops everything cleanly,
//! removing its temporary data dir.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::mpsc;

use serde_json::Value;

use crate::support::{WAIT, client, hub};

/// A running `demo` child with its printed walkthrough and hub URL; killed on drop.
pub(crate) struct DemoChild {
    child: Child,
    text: String,
    /// The demo hub's `http://ADDR`.
    pub(crate) hub_url: String,
}

impl Drop for DemoChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `aimarket-hub demo` (temporary files under `dir`) and waits for its walkthrough.
pub(crate) fn start_demo(dir: &Path, port_file: &Path) -> DemoChild {
    let mut child = hub()
        .args(["demo", "--listen", "127.0.0.1:0", "--port-file"])
        .arg(port_file)
        .env("TMPDIR", dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            text.push_str(&line);
            text.push('\n');
            if line.starts_with("Press Ctrl-C") {
                let _ = tx.send(text.clone());
            }
        }
    });
    let Ok(text) = rx.recv_timeout(WAIT) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("demo did not print its walkthrough");
    };
    let hub_url = text
        .lines()
        .find_map(|l| l.strip_prefix("AIMarket demo hub: "))
        .unwrap()
        .to_owned();
    DemoChild {
        child,
        text,
        hub_url,
    }
}

#[tokio::test]
async fn demo_prints_the_walkthrough_serves_and_stops_on_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let port_file = dir.path().join("port");
    let mut demo = start_demo(dir.path(), &port_file);
    let (text, hub_url) = (demo.text.clone(), demo.hub_url.clone());
    let port: u16 = std::fs::read_to_string(&port_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        hub_url.ends_with(&format!(":{port}")),
        "{hub_url} vs port {port}"
    );
    for wanted in [
        "Polyglot Works",
        "Atlas Data",
        "Pixel Forge",
        "# Step 6",
        "/ai-market/mcp",
        "mcp-remote",
    ] {
        assert!(text.contains(wanted), "walkthrough lacks {wanted}:\n{text}");
    }
    // The demo data dir was made under TMPDIR.
    let made: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("aimarket-demo-")
        })
        .collect();
    assert_eq!(made.len(), 1);

    let search: Value = client()
        .get(format!(
            "{hub_url}/ai-market/v2/search?intent=weather+forecast&limit=5"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        search["matches"][0]["capability_id"], "weather.forecast@v1",
        "{search}"
    );

    let interrupted = std::process::Command::new("kill")
        .args(["-INT", &demo.child.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    let deadline = std::time::Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = demo.child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = demo.child.kill();
            panic!("demo did not stop on Ctrl-C");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(status.success(), "demo exited with {status}");
    assert!(
        !made[0].path().exists(),
        "the temporary data dir was not removed"
    );
}

/// The client commands against the demo: a table, JSON, a free call, a 402 (exit 2 with
/// directions), and a call paid from a channel.
#[tokio::test]
async fn search_and_invoke_clients() {
    let dir = tempfile::tempdir().unwrap();
    let demo = start_demo(dir.path(), &dir.path().join("port"));
    let hub_url = demo.hub_url.as_str();
    let run = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--hub", hub_url]);
        crate::support::run(&all)
    };

    let table = run(&["search", "weather forecast", "--limit", "3"]);
    assert!(table.status.success(), "{}", crate::support::stderr(&table));
    let text = crate::support::stdout(&table);
    assert!(
        text.starts_with(&format!("Search \"weather forecast\" at {hub_url}: 3 of ")),
        "{text}"
    );
    assert!(
        text.contains("atlas-weather / weather.forecast@v1") && text.contains("Atlas Data"),
        "{text}"
    );
    let json = run(&["search", "weather", "--budget", "0", "--json"]);
    let found: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert!(
        found["matches"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["routed_price_usd"] == 0.0)
    );

    let free = run(&[
        "invoke",
        "atlas-calc",
        "calc.evaluate@v1",
        "--input",
        r#"{"expression": "6*7"}"#,
    ]);
    assert!(free.status.success(), "{}", crate::support::stderr(&free));
    let text = crate::support::stdout(&free);
    assert!(
        text.starts_with("OK  price 0") && text.contains("\"result\": 42.0"),
        "{text}"
    );

    let unpaid = run(&[
        "invoke",
        "polyglot-translate",
        "translate.morse@v1",
        "--input",
        r#"{"text": "sos"}"#,
    ]);
    assert_eq!(unpaid.status.code(), Some(2));
    let help = crate::support::stderr(&unpaid);
    assert!(
        help.contains("payment required") && help.contains("/ai-market/v2/channel/open"),
        "{help}"
    );

    let opened: Value = client()
        .post(format!("{hub_url}/ai-market/v2/channel/open"))
        .json(&serde_json::json!({"deposit_usd": 1.0, "tx_hash": "demo-cli-test"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (id, secret) = (
        opened["channel"]["channel_id"].as_str().unwrap(),
        opened["channel"]["channel_secret"].as_str().unwrap(),
    );
    let paid = run(&[
        "invoke",
        "polyglot-translate",
        "translate.morse@v1",
        "--input",
        r#"{"text": "sos"}"#,
        "--channel",
        id,
        "--secret",
        secret,
        "--json",
    ]);
    assert!(paid.status.success(), "{}", crate::support::stderr(&paid));
    let body: Value = serde_json::from_slice(&paid.stdout).unwrap();
    assert_eq!(body["result"]["morse"], "... --- ...");

    let bad = run(&["invoke", "atlas-calc", "calc.evaluate@v1", "--input", "[1]"]);
    assert_eq!(bad.status.code(), Some(1));
    let unreachable = crate::support::run(&["search", "x", "--hub", "http://127.0.0.1:1"]);
    assert!(crate::support::stderr(&unreachable).contains("cannot reach the hub"));
}
