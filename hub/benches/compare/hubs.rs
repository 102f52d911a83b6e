//! The two hubs as child processes: ours (the `aimarket-hub` binary) and the reference (the
//! PyPI package under uvicorn, through `bench/reference_hub.py`), each on a free loopback
//! port with its own scratch folder, seeded with the same providers (key pinned) and with
//! every background job that would call out or compete for the CPU switched off.
//!
//! A [`HubProcess`] kills its child when dropped, so a failing run leaves nothing behind;
//! the reference launcher also exits by itself when this process goes away.

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tempfile::TempDir;

use crate::providers::Provider;

/// The admin bearer token both hubs are given.
pub const ADMIN_TOKEN: &str = "compare-bench-admin-token";

/// Environment prefixes removed from the children, so the caller's shell cannot change what
/// is measured (a stray `AIMARKET_*` setting, a trace exporter, a database URL).
const SCRUBBED: [&str; 6] = [
    "AIMARKET_",
    "AIFACTORY_",
    "OTEL_",
    "DATABASE_URL",
    "REDIS_URL",
    "RUST_LOG",
];

/// A hub child process.
pub struct HubProcess {
    /// `ours` or `reference`.
    pub name: &'static str,
    /// `http://127.0.0.1:PORT`.
    pub base_url: String,
    child: Child,
    spawned: Instant,
    log: PathBuf,
    _dir: TempDir,
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free loopback port: {e}"))
}

fn scrubbed(program: &Path) -> Command {
    let mut cmd = Command::new(program);
    for (name, _) in std::env::vars_os() {
        let name_text = name.to_string_lossy();
        if SCRUBBED.iter().any(|p| name_text.starts_with(p)) {
            cmd.env_remove(&name);
        }
    }
    // Loopback only, whatever proxy the caller's shell names.
    cmd.env("NO_PROXY", "127.0.0.1,localhost,::1")
        .env("no_proxy", "127.0.0.1,localhost,::1")
        .stdin(Stdio::null());
    cmd
}

fn spawn(
    name: &'static str,
    mut cmd: Command,
    dir: TempDir,
    port: u16,
) -> Result<HubProcess, String> {
    let log = dir.path().join(format!("{name}.log"));
    let out = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    let spawned = Instant::now();
    let child = cmd
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("cannot start the {name} hub ({cmd:?}): {e}"))?;
    Ok(HubProcess {
        name,
        base_url: format!("http://127.0.0.1:{port}"),
        child,
        spawned,
        log,
        _dir: dir,
    })
}

/// Starts our hub binary with the providers as operator seeds (keys pinned). It crawls at
/// startup; the providers' catalogs are closed then, so that crawl finds nothing.
pub fn start_ours(binary: &Path, providers: &[Provider]) -> Result<HubProcess, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let port = free_port()?;
    let seeds: Vec<String> = providers
        .iter()
        .map(|p| format!("{}={}", p.origin, p.public_key))
        .collect();
    let mut cmd = scrubbed(binary);
    cmd.arg("serve")
        .env("AIMARKET_LISTEN", format!("127.0.0.1:{port}"))
        .env("AIMARKET_DATA_DIR", dir.path())
        .env("AIMARKET_SEEDS", seeds.join(","))
        .env("AIMARKET_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("AIMARKET_AUTO_CRAWL", "false")
        // One client measures: the per-client limits would measure themselves.
        .env("AIMARKET_SEARCH_RATE_PER_MIN", "0")
        .env("AIMARKET_INVOKE_RATE_PER_MIN", "0")
        .env("RUST_LOG", "warn");
    spawn("ours", cmd, dir, port)
}

/// Starts the reference hub: sealed (`uni` realm, no packaged seeds, no release check, no
/// answer probe, no assay, no demo rows, no post-quantum keys), the providers as seeds with
/// pinned keys, no automatic crawl, no invoke rate limit.
pub fn start_reference(
    python: &Path,
    launcher: &Path,
    providers: &[Provider],
) -> Result<HubProcess, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let port = free_port()?;
    let base = format!("http://127.0.0.1:{port}");
    let seeds_file = dir.path().join("no-seeds.json");
    std::fs::write(&seeds_file, "[]").map_err(|e| e.to_string())?;
    let seed_list: Vec<String> = providers.iter().map(Provider::well_known_url).collect();
    let pins: HashMap<String, String> = providers
        .iter()
        .map(|p| (p.well_known_url(), p.public_key.clone()))
        .collect();
    let data = dir.path().join("data");
    let mut cmd = scrubbed(python);
    cmd.arg(launcher)
        .arg(port.to_string())
        .arg(std::process::id().to_string())
        .current_dir(dir.path())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("AIMARKET_HUB_URL", &base)
        .env("AIMARKET_CHAIN_REALM", "uni")
        .env("AIMARKET_SEEDS_FILE", &seeds_file)
        .env("AIMARKET_SEED_LIST", seed_list.join(","))
        .env("AIMARKET_SEED_PUBKEYS", json!(pins).to_string())
        .env("AIMARKET_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("AIMARKET_AUTO_CRAWL", "0")
        .env("AIMARKET_UPDATE_CHECK", "0")
        .env("AIMARKET_ANSWER_PROBE", "0")
        .env("AIMARKET_FEDERATION_ASSAY", "0")
        .env("AIMARKET_SKIP_SEED", "1")
        .env("AIMARKET_PQC", "0")
        .env("AIMARKET_INVOKE_RATE_PER_MIN", "0")
        .env("AIMARKET_DB_PATH", data.join("hub.db"))
        .env("AIMARKET_SIGNING_KEY_PATH", data.join("hub_signing_key"));
    spawn("reference", cmd, dir, port)
}

impl HubProcess {
    /// The absolute URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// The last lines of the child's output (for error messages).
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Why the hub is unusable, with its output: for every failure after it started.
    pub fn failure(&mut self, what: &str) -> String {
        let status = match self.child.try_wait() {
            Ok(Some(status)) => format!(" (the process exited: {status})"),
            _ => String::new(),
        };
        format!(
            "{} hub: {what}{status}\n--- its output ---\n{}",
            self.name,
            self.log_tail()
        )
    }

    /// Waits (bounded) for `GET /ai-market/v2/health` to answer 200; returns the time from
    /// the spawn. Fails at once when the process exits.
    pub async fn wait_ready(
        &mut self,
        client: &reqwest::Client,
        timeout: Duration,
    ) -> Result<Duration, String> {
        let started = Instant::now();
        let health = self.url("/ai-market/v2/health");
        loop {
            // `failure` adds the exit status.
            if let Ok(Some(_)) = self.child.try_wait() {
                return Err(self.failure("exited during startup"));
            }
            if let Ok(r) = client.get(&health).send().await
                && r.status().is_success()
            {
                return Ok(self.spawned.elapsed());
            }
            if started.elapsed() > timeout {
                return Err(self.failure(&format!(
                    "no 200 on /ai-market/v2/health within {} s",
                    timeout.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `GET path` as JSON (status checked).
    pub async fn get_json(
        &mut self,
        client: &reqwest::Client,
        path: &str,
    ) -> Result<Value, String> {
        let answer = client.get(self.url(path)).send().await;
        self.json_of(answer, path).await
    }

    /// Admin `POST path` (empty JSON body) as JSON (status checked), bounded by `timeout`.
    pub async fn admin_post(
        &mut self,
        client: &reqwest::Client,
        path: &str,
        timeout: Duration,
    ) -> Result<Value, String> {
        let answer = client
            .post(self.url(path))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({}))
            .timeout(timeout)
            .send()
            .await;
        self.json_of(answer, path).await
    }

    async fn json_of(
        &mut self,
        answer: reqwest::Result<reqwest::Response>,
        path: &str,
    ) -> Result<Value, String> {
        let response = match answer {
            Ok(r) => r,
            Err(e) => return Err(self.failure(&format!("{path}: {e}"))),
        };
        let status = response.status();
        let body = response.bytes().await.unwrap_or_default();
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body).into_owned();
            return Err(self.failure(&format!("{path} answered {status}: {text}")));
        }
        serde_json::from_slice(&body).map_err(|e| format!("{path}: not JSON ({e})"))
    }
}
