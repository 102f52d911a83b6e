//! Helpers to run the built binary with a clean environment and talk to a served hub.

#![allow(dead_code)]

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Longest we wait for a child to print its address or to exit. Generous: a loaded 2-core
/// CI machine can be slow; the bound only keeps a broken hub from hanging the suite.
pub const WAIT: Duration = Duration::from_secs(60);

/// The test signing key of the protocol vectors.
pub const VECTOR_KEY: &str = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";

/// The in-repo protocol test vectors.
pub fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("protocol/tests/vectors")
}

/// A command for the built binary with every hub setting variable removed, so the caller's
/// environment (or CI's) cannot leak into the test.
pub fn hub() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_aimarket-hub"));
    for name in aimarket_hub::settings::env_names() {
        cmd.env_remove(name);
    }
    cmd.env_remove("AIMARKET_LOG_FORMAT")
        .env("RUST_LOG", "warn");
    cmd
}

/// Runs the binary to completion with `args`.
pub fn run(args: &[&str]) -> Output {
    hub().args(args).stdin(Stdio::null()).output().unwrap()
}

/// Runs `serve`-like commands that are expected to exit by themselves (startup failures);
/// kills the child and panics if it is still running after [`WAIT`].
pub fn run_expecting_exit(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut child = hub()
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "`aimarket-hub {}` with {env:?} kept running",
                args.join(" ")
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// Stdout as text.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Stderr as text.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A `serve` child process, killed on drop.
pub struct Served {
    child: Child,
    /// `http://ADDR` as printed on the `listening on` line.
    pub base_url: String,
}

impl Served {
    /// Starts the binary with `args` (plus `env`) and waits for the `listening on` line.
    pub fn start(args: &[&str], env: &[(&str, &str)], stderr_file: &Path) -> Self {
        let mut cmd = hub();
        cmd.args(args).envs(env.iter().copied());
        let log = std::fs::File::create(stderr_file).unwrap();
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.strip_prefix("listening on ") {
                    let _ = tx.send(addr.to_owned());
                }
            }
        });
        let base_url = match rx.recv_timeout(WAIT) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "hub did not print its address; stderr:\n{}",
                    std::fs::read_to_string(stderr_file).unwrap_or_default()
                );
            }
        };
        Self { child, base_url }
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits (bounded) for the child to exit on its own and returns whether it succeeded.
    pub fn wait_exit(mut self) -> Option<bool> {
        let deadline = std::time::Instant::now() + WAIT;
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status.success());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP client for talking to a served hub.
pub fn client() -> reqwest::Client {
    aimarket_hub::startup::install_crypto_provider();
    reqwest::Client::builder().timeout(WAIT).build().unwrap()
}
