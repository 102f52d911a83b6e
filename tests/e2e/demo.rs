//! The `demo` walkthrough, run as printed: the demo (three factories and the hub) starts in
//! process, every printed step is pasted into one bash session, and each step's output must
//! say what the README says it says.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;

use aimarket_hub::demo::run::{Demo, DemoOptions, STEP_PREFIX};
use aimarket_protocol::signing::verify_receipt;
use serde_json::Value;

/// The marker printed before each step's output.
const MARKER: &str = "@@STEP@@";

/// The pasteable lines of each step (comment lines dropped), in order.
fn steps(walkthrough: &str) -> Vec<String> {
    let mut steps: Vec<String> = Vec::new();
    let mut current: Option<String> = None;
    for line in walkthrough.lines() {
        if line.starts_with(STEP_PREFIX) {
            steps.extend(current.take());
            current = Some(String::new());
        } else if line.starts_with("MCP") {
            break;
        } else if let Some(step) = current.as_mut()
            && !line.trim().is_empty()
        {
            step.push_str(line);
            step.push('\n');
        }
    }
    steps.extend(current);
    steps
}

fn json(text: &str) -> Value {
    let start = text
        .find('{')
        .unwrap_or_else(|| panic!("no JSON in {text:?}"));
    let mut stream = serde_json::Deserializer::from_str(&text[start..]).into_iter::<Value>();
    stream
        .next()
        .unwrap()
        .unwrap_or_else(|e| panic!("bad JSON ({e}) in {text:?}"))
}

fn have(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_printed_command_succeeds() {
    assert!(
        have("bash") && have("curl"),
        "the walkthrough test needs bash and curl on PATH"
    );
    let (demo, _data) = running_demo().await;
    let hub = demo.hub_url().to_owned();
    let text = demo.walkthrough();
    assert!(text.contains(&format!("{hub}/ai-market/mcp")));
    // The console's URL comes first, and it answers.
    let console = format!("{hub}/");
    assert_eq!(
        text.lines().next(),
        Some(format!("Console: {console}").as_str())
    );
    let page = reqwest::get(&console).await.unwrap();
    assert_eq!(page.status(), reqwest::StatusCode::OK);
    let steps = steps(&text);
    assert_eq!(steps.len(), 6, "{text}");

    let script: String = steps
        .iter()
        .map(|s| format!("printf '\\n{MARKER}\\n'\n{s}"))
        .collect();
    let output =
        tokio::task::spawn_blocking(move || Command::new("bash").arg("-c").arg(script).output())
            .await
            .unwrap()
            .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "bash failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    let outputs: Vec<&str> = stdout.split(MARKER).skip(1).collect();
    assert_eq!(outputs.len(), 6, "{stdout}");
    let polyglot = demo
        .factories()
        .iter()
        .find(|f| f.name() == "Polyglot Works")
        .unwrap();

    // 1: the search finds the Morse capability at its real origin.
    let search = json(outputs[0]);
    assert_eq!(
        search["matches"][0]["capability_id"], "translate.morse@v1",
        "{search}"
    );
    assert_eq!(search["matches"][0]["source_hub"], polyglot.url());

    // 2: unpaid → 402 with both challenge headers and the JSON body clients read.
    let unpaid = outputs[1];
    assert!(unpaid.trim_start().starts_with("HTTP/1.1 402"), "{unpaid}");
    let lower = unpaid.to_ascii_lowercase();
    assert!(
        lower.contains("\nx-payment-required: {") && lower.contains("\npayment-required: "),
        "{unpaid}"
    );
    let body = json(&unpaid[unpaid.find("\r\n\r\n").unwrap()..]);
    assert_eq!(
        (body["error"].as_str(), body["needed"].as_f64()),
        (Some("payment_required"), Some(0.002))
    );

    // 3: a channel with an id and a secret.
    let opened = json(outputs[2]);
    assert!(
        opened["channel"]["channel_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty()),
        "{opened}"
    );

    // 4: the paid call: the result, the provider's receipt (verifies with the factory key)
    // and the hub's routing receipt.
    let paid = json(outputs[3]);
    assert_eq!(paid["success"], true, "{paid}");
    assert_eq!(paid["result"]["morse"], "... --- ... / .... . .-.. .--.");
    verify_receipt(&paid["receipt"], polyglot.public_key()).unwrap();
    assert_eq!(paid["routing_receipt"]["routing_hub"], hub.as_str());

    // 5: the routing receipt verifies at the hub.
    let verdict = json(outputs[4]);
    assert_eq!(
        (
            verdict["valid"].as_bool(),
            verdict["signer_is_this_hub"].as_bool()
        ),
        (Some(true), Some(true)),
        "{verdict}"
    );

    // 6: closing refunds what was not spent.
    let closed = json(outputs[5]);
    let spent = paid["price_usd"].as_f64().unwrap();
    assert_eq!(closed["invocations"], 1, "{closed}");
    assert!(
        (closed["refund_usd"].as_f64().unwrap() - (1.0 - spent)).abs() < 1e-9,
        "{closed}"
    );

    demo.stop().await;
}

/// A running demo (hub + the three factories, crawled and indexed) on a free port, for the
/// MCP, v1 and client tests. Stop it with `demo.stop().await`.
pub(crate) async fn running_demo() -> (Demo, tempfile::TempDir) {
    aimarket_e2e::init_telemetry();
    let data = tempfile::tempdir().unwrap();
    let mut demo = Demo::start(DemoOptions {
        listen: SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 0),
        data_dir: Some(data.path().to_path_buf()),
    })
    .await
    .unwrap();
    demo.spawn().await.unwrap();
    (demo, data)
}
