//! The console in a real browser (issue #15): headless Chromium driven over WebDriver by
//! `tests/clients/console_browser.py` (Python `selenium`, pinned, in a cached virtualenv).
//! The script's checks are listed in its docstring. Without Chromium, chromedriver or PyPI
//! the test is skipped with a message, except under CI (`CI` set), where it fails. On failure
//! the browser's screenshot is kept under the test's temp dir (the path is printed).

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use aimarket_e2e::provider::{Behaviour, FakeProvider, FakeTool, seed_catalog};
use aimarket_e2e::pyenv::{Unavailable, install, read, run_logged};
use aimarket_e2e::{TEST_ADMIN_TOKEN, TestHub};
use aimarket_hub::crawl::CatalogUpdate;
use reqwest::StatusCode;

use crate::federation::{ANNOUNCE, server_with, signed};
use crate::invoke_payments::API_KEY;

const REQUIREMENTS: [&str; 1] = ["selenium==4.35.0"];
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/clients/console_browser.py");
/// A description that would run script if it were ever parsed as markup.
const HOSTILE: &str = "<img src=x onerror=\"window.__pwned=1\"><script>window.__pwned=2</script>";

/// Whether the browser tests must run (CI) rather than skip.
fn required() -> bool {
    std::env::var_os("CI").is_some()
}

fn skip_or_fail(why: &str) -> Option<std::path::PathBuf> {
    assert!(
        !required(),
        "CI is set, so the browser test must run: {why}"
    );
    eprintln!("SKIP console_browser: {why}");
    None
}

/// The virtualenv's python with selenium, once per test process; `None` when skipped.
fn python() -> Option<std::path::PathBuf> {
    static VENV: OnceLock<Result<std::path::PathBuf, String>> = OnceLock::new();
    for tool in ["chromium", "chromedriver"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            return skip_or_fail(&format!("{tool} is not installed (.ci/run installs it)"));
        }
    }
    let venv = VENV.get_or_init(|| match install("browser", &REQUIREMENTS, &[]) {
        Ok(python) => Ok(python),
        Err(Unavailable::Offline(why)) => Err(why),
        Err(Unavailable::Broken(why)) => panic!("cannot install selenium: {why}"),
    });
    match venv {
        Ok(python) => Some(python.clone()),
        Err(why) => skip_or_fail(why),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_works_in_a_real_browser() {
    let Some(python) = tokio::task::spawn_blocking(python).await.unwrap() else {
        return;
    };
    // The priced tool is paid by the hub with its API key at the provider; demo payments on,
    // so the console can open a demo channel and pay the hub.
    let provider = FakeProvider::builder()
        .tool(FakeTool::echo("echo@v1"))
        .tool(
            FakeTool::echo("priced@v1")
                .priced(0.01)
                .behaving(Behaviour::Priced {
                    price_usd: 0.01,
                    api_key: Some(API_KEY.to_owned()),
                }),
        )
        .tool(FakeTool::echo("hostile@v1"))
        .start()
        .await;
    let credentials = format!("{}=apikey:{API_KEY}", provider.url);
    let hub = TestHub::builder()
        .settings(|s| {
            s.open_admission = true;
            s.demo_payments = true;
            s.invoke.peer_credentials = credentials.parse().unwrap();
        })
        .start()
        .await;
    let mut catalog = provider.catalog();
    for capability in &mut catalog {
        if capability.capability_id == "hostile@v1" {
            capability.description = HOSTILE.to_owned();
        }
    }
    seed_catalog(&hub, &provider, catalog).await;
    let version = hub.state.store.catalog_version().await.unwrap();
    hub.state
        .publish_catalog_update(CatalogUpdate::initial(version));
    assert!(hub.state.settle_catalog().await.unwrap().caught_up);
    let pending = server_with("prod-pa").await;
    let (status, body) = hub.post(ANNOUNCE, &signed(&pending)).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let dir = tempfile::tempdir().unwrap();
    let shot = dir.path().join("failure.png");
    let log = dir.path().join("browser.log");
    let mut cmd = Command::new(python);
    cmd.arg(SCRIPT)
        .arg(hub.url(""))
        .arg(TEST_ADMIN_TOKEN)
        .arg(&pending.url)
        .arg(&shot);
    let passed = tokio::task::spawn_blocking({
        let log = log.clone();
        move || run_logged(cmd, &log, Duration::from_secs(240))
    })
    .await
    .unwrap();
    if !matches!(passed, Ok(true)) {
        let kept = dir.keep();
        panic!(
            "the console failed in the browser ({passed:?}); screenshot: {}\n{}",
            kept.join("failure.png").display(),
            read(&kept.join("browser.log"))
        );
    }
    keep_screenshot(&dir.path().join("console.png"));
}

/// `AIMARKET_SCREENSHOT_DIR` set: copies the passing run's screenshot there (how
/// `docs/console.png` is made).
fn keep_screenshot(shot: &Path) {
    if let Some(dir) = std::env::var_os("AIMARKET_SCREENSHOT_DIR") {
        std::fs::copy(shot, Path::new(&dir).join("console.png")).unwrap();
    }
}
