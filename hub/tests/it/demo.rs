//! `aimarket-hub demo` as a user runs it: it prints the walkthrough once ready, writes the
//! port file, serves the crawled factories, and Ctrl-C (SIGINT) stops everything cleanly,
//! removing its temporary data dir.

use std::io::{BufRead as _, BufReader};
use std::process::Stdio;
use std::sync::mpsc;

use serde_json::Value;

use crate::support::{WAIT, client, hub};

#[tokio::test]
async fn demo_prints_the_walkthrough_serves_and_stops_on_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let port_file = dir.path().join("port");
    let mut child = hub()
        .args(["demo", "--listen", "127.0.0.1:0", "--port-file"])
        .arg(&port_file)
        .env("TMPDIR", dir.path())
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
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    let deadline = std::time::Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
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
