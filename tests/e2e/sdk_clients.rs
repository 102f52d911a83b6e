//! The published SDKs, installed from their registries and run unchanged against the demo
//! hub: the TypeScript `@aimarket/agent` 0.2.1 (npm, into a cached dir under
//! `target/tsclients/`) and the Rust `aimarket-agent` = "=0.3.0" (crates.io, built in its
//! own throwaway cargo project under `target/rsclients/`, so this workspace never depends
//! on it). Our client programs are `tests/clients/ts_agent.js` and
//! `tests/clients/rust_agent/main.rs`; each prints one `RESULT: {json}` line.
//!
//! When the registry cannot be reached the test is skipped with a message, unless `CI` is
//! set: then it fails, so CI can never pass without having run the real SDKs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use aimarket_e2e::pyenv::{reachable, read, run_logged, run_result, target_dir};
use serde_json::Value;

use crate::demo::running_demo;

/// The pinned TypeScript SDK.
const TS_SDK: &str = "@aimarket/agent@0.2.1";
/// The pinned Rust SDK (an exact requirement, so a new release cannot change the test).
const RUST_SDK: &str = "=0.3.0";
/// Bound on installing or building an SDK.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(1200);
/// Bound on one client run.
const RUN_TIMEOUT: Duration = Duration::from_secs(300);
/// Written once an install succeeded.
const READY_MARKER: &str = ".aimarket-sdk-ready";

fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("clients")
}

/// An install that failed: skipped (registry unreachable, `CI` unset) or a panic.
fn unavailable(what: &str, hosts: &[&str], log: &Path) -> Option<PathBuf> {
    match reachable(hosts) {
        Err(why) if std::env::var_os("CI").is_none() => {
            eprintln!("SKIPPED: {what}: the registry is unreachable ({why})");
            None
        }
        Err(why) => panic!("{what}: the registry is unreachable and CI is set: {why}"),
        Ok(()) => panic!(
            "{what} failed although the registry is reachable:\n{}",
            read(log)
        ),
    }
}

/// Installs the TypeScript SDK with npm (once; cached); the `node_modules` dir.
fn install_ts() -> Option<PathBuf> {
    let node = Command::new("node")
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("node is required for the TypeScript SDK test: {e}"));
    let version = String::from_utf8_lossy(&node.stdout).trim().to_owned();
    let major = version
        .trim_start_matches('v')
        .split('.')
        .next()
        .unwrap_or("x");
    let key = format!("node{major}-{TS_SDK}").replace(['@', '/', '.'], "_");
    let dir = target_dir().join("tsclients").join(key);
    let modules = dir.join("node_modules");
    if dir.join(READY_MARKER).exists() && modules.join("@aimarket/agent").exists() {
        return Some(modules);
    }
    // A half-made install (an interrupted earlier run) is redone from scratch.
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // A package.json of its own stops npm from walking up into the repository.
    std::fs::write(
        dir.join("package.json"),
        r#"{"name": "aimarket-ts-clients", "private": true}"#,
    )
    .unwrap();
    let log = dir.with_extension("log");
    let mut npm = Command::new("npm");
    npm.current_dir(&dir)
        .args(["install", "--no-audit", "--no-fund", "--save-exact", TS_SDK]);
    if !run_logged(npm, &log, INSTALL_TIMEOUT).unwrap_or(false) {
        return unavailable(
            &format!("npm install {TS_SDK}"),
            &["registry.npmjs.org:443"],
            &log,
        );
    }
    std::fs::write(dir.join(READY_MARKER), TS_SDK).unwrap();
    Some(modules)
}

/// Builds our Rust client against the pinned crate in a throwaway project; the binary.
fn build_rust_client() -> Option<PathBuf> {
    let key = format!("aimarket-agent-{}", RUST_SDK.trim_start_matches('='));
    let dir = target_dir().join("rsclients").join(key);
    std::fs::create_dir_all(dir.join("src")).unwrap();
    // `[workspace]` makes it a project of its own, not a stray member of this workspace.
    let manifest = format!(
        "[package]\nname = \"aimarket-rust-client\"\nversion = \"0.0.0\"\nedition = \"2021\"\n\
         publish = false\n\n[dependencies]\naimarket-agent = \"{RUST_SDK}\"\n\
         serde_json = \"1\"\ntokio = {{ version = \"1\", features = [\"macros\", \"rt-multi-thread\"] }}\n\n\
         [workspace]\n"
    );
    std::fs::write(dir.join("Cargo.toml"), manifest).unwrap();
    std::fs::copy(
        clients_dir().join("rust_agent").join("main.rs"),
        dir.join("src").join("main.rs"),
    )
    .unwrap();
    let log = dir.join("build.log");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .current_dir(&dir)
        .args(["build", "--quiet"])
        .env("CARGO_TARGET_DIR", dir.join("target"))
        // The outer test run's flags are for this workspace, not for the client.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS");
    if !run_logged(build, &log, INSTALL_TIMEOUT).unwrap_or(false) {
        return unavailable(
            &format!("cargo build of aimarket-agent {RUST_SDK}"),
            &["index.crates.io:443", "static.crates.io:443"],
            &log,
        );
    }
    Some(
        dir.join("target")
            .join("debug")
            .join("aimarket-rust-client"),
    )
}

/// Runs `cmd` (a client given the hub URL) and returns its `RESULT:` JSON.
async fn run_client(name: &'static str, cmd: Command) -> Value {
    run_result(name, cmd, RUN_TIMEOUT).await
}

/// What both SDKs must have seen: the same walk through the demo hub.
fn assert_the_walk(out: &Value) {
    // The floor the hub advertises, and the peers it lists pass it (TS `market.run` filters
    // on `trust_score >= 0.3`).
    assert_eq!(out["min_trust_score"], 0.3, "{out}");
    let search = &out["search"];
    assert_eq!(search["first"], "translate.morse@v1", "{out}");
    assert!(search["morse_trust"].as_f64().unwrap() >= 0.3, "{out}");
    assert_eq!(search["morse_product"], "polyglot-translate");
    assert!(
        search["morse_source_hub"]
            .as_str()
            .unwrap()
            .starts_with("http://127.0.0.1:")
    );
    assert_eq!(out["channel"]["deposit_usd"], 1.0, "{out}");
    assert_eq!(out["channel"]["has_secret"], true, "{out}");
    let with = &out["with_product"];
    assert_eq!(with["success"], true, "{out}");
    assert_eq!(with["price_usd"], 0.00202, "{out}");
    assert_eq!(with["result"]["morse"], "... --- ...", "{out}");
    let without = &out["without_product"];
    assert_eq!(without["success"], true, "{out}");
    assert_eq!(without["result"]["morse"], ".... ..", "{out}");
    let batch = out["batch"].as_array().unwrap();
    assert_eq!(batch.len(), 2, "{out}");
    assert_eq!(batch[0]["result"]["morse"], "--- -.-", "{out}");
    assert_eq!(batch[1]["result"]["label"], "positive", "{out}");
    assert_eq!(
        (
            batch[0]["price_usd"].as_f64(),
            batch[1]["price_usd"].as_f64()
        ),
        (Some(0.00202), Some(0.00505)),
        "{out}"
    );
    // 3 morse calls and one sentiment call, debited at the routed prices.
    let spent = 3.0 * 0.00202 + 0.00505;
    let balance = out["balance_usd"].as_f64().unwrap();
    assert!((balance - (1.0 - spent)).abs() < 1e-9, "{out}");
    let settlement = &out["settlement"];
    assert!(
        (settlement["total_spent_usd"].as_f64().unwrap() - spent).abs() < 1e-9,
        "{out}"
    );
    assert!(
        (settlement["refund_usd"].as_f64().unwrap() - (1.0 - spent)).abs() < 1e-9,
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typescript_sdk_searches_pays_recovers_and_settles() {
    let Some(modules) = tokio::task::spawn_blocking(install_ts).await.unwrap() else {
        return;
    };
    let (demo, _data) = running_demo().await;
    let mut cmd = Command::new("node");
    cmd.arg(clients_dir().join("ts_agent.js"))
        .arg(demo.hub_url())
        .env("NODE_PATH", &modules)
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost");
    let out = run_client("ts_agent.js", cmd).await;
    assert_the_walk(&out);
    // A channel this hub does not know is a 402 the SDK treats as "open a new channel".
    assert_eq!(
        out["unknown_channel"],
        serde_json::json!({"payment_exception": true, "status": 402}),
        "{out}"
    );
    // The TS SDK returns the close body as it came: the flat fields and the invocations.
    assert_eq!(out["settlement"]["invocations"], 4, "{out}");
    demo.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_sdk_searches_pays_recovers_and_settles() {
    let Some(binary) = tokio::task::spawn_blocking(build_rust_client)
        .await
        .unwrap()
    else {
        return;
    };
    let (demo, _data) = running_demo().await;
    let mut cmd = Command::new(binary);
    cmd.arg(demo.hub_url())
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost");
    let out = run_client("rust_agent", cmd).await;
    assert_the_walk(&out);
    // The SDK shows the hub's detail to its user: it must send them to this hub.
    let message = out["unknown_channel"]["payment_error"]
        .as_str()
        .unwrap_or_else(|| panic!("no payment error: {out}"));
    let open = format!("{}/ai-market/v2/channel/open", demo.hub_url());
    assert!(message.contains(&open), "{message}");
    assert!(message.contains("ch_opened_at_the_factory"), "{message}");
    demo.stop().await;
}
