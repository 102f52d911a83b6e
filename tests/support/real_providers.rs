//! The published AIMarket providers from PyPI, run unchanged on loopback: three oracles of
//! the `aimarket-oracle-core` family (lattice, chronos, lumen) and HESTIA with two tenants of
//! `aimarket-hestia-agents`, started by `tests/providers/run_providers.py` (ours) from a
//! cached virtualenv. The virtualenv also holds `aimarket-oracle-gateway`, a real MCP client
//! of hubs.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::pyenv::{self, Unavailable};

/// The pinned providers (and the gateway client), as PAYMENT-RAILS.md names them.
pub const REQUIREMENTS: [&str; 9] = [
    "aimarket-oracle-core==0.6.2",
    "aimarket-oracle-lattice==0.1.0",
    "aimarket-oracle-chronos==0.1.0",
    "aimarket-oracle-lumen==0.1.0",
    "aimarket-hestia==0.1.3",
    "aimarket-hestia-agents==0.1.1",
    "aimarket-oracle-gateway==0.3.1",
    "mcp==1.30.0",
    "uvicorn==0.55.0",
];
/// HESTIA's tenants ship as `agents/*/deploy.json` in this sdist only.
const AGENTS_SDIST: &str = "aimarket-hestia-agents==0.1.1";
/// Bound on the providers' start (the script waits at most 60 s for each well-known).
const START_TIMEOUT: Duration = Duration::from_secs(180);

/// The virtualenv's python; `None` (after saying why) when PyPI is unreachable outside CI.
pub fn python() -> Option<PathBuf> {
    match pyenv::install("providers", &REQUIREMENTS, &[AGENTS_SDIST]) {
        Ok(bin) => Some(bin),
        Err(Unavailable::Offline(why)) => {
            eprintln!("SKIPPED: PyPI is unreachable ({why}); the published providers cannot run");
            None
        }
        Err(Unavailable::Broken(why)) => panic!("cannot install the published providers: {why}"),
    }
}

/// The unpacked `agents/` folder of the cached sdist (unpacked once, next to it).
fn agents_dir(python: &Path) -> PathBuf {
    let venv = python
        .parent()
        .and_then(Path::parent)
        .expect("python lives in <venv>/bin");
    let sdist = venv.join("sdist");
    let find = || {
        std::fs::read_dir(&sdist).ok().and_then(|entries| {
            entries
                .flatten()
                .map(|e| e.path().join("agents"))
                .find(|p| p.is_dir())
        })
    };
    if let Some(found) = find() {
        return found;
    }
    let archive = std::fs::read_dir(&sdist)
        .expect("the sdist folder")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with(".tar.gz"))
        .expect("the hestia-agents sdist was downloaded");
    let status = Command::new("tar")
        .arg("-xzf")
        .arg(&archive)
        .arg("-C")
        .arg(&sdist)
        .status()
        .expect("run tar");
    assert!(status.success(), "cannot unpack {}", archive.display());
    find().expect("the sdist holds an agents/ folder")
}

/// Running providers; stopped (with every child process) when dropped.
pub struct RealProviders {
    /// What `run_providers.py` printed: per provider its URLs, key and capabilities.
    pub info: Value,
    child: Child,
    stdin: Option<ChildStdin>,
    _dir: tempfile::TempDir,
}

impl RealProviders {
    /// Starts them with the script's `args` (`--trusted-hub URL=KEY`, …). Blocking.
    pub fn start(python: &Path, args: &[String]) -> Self {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("providers/run_providers.py");
        let log = dir.path().join("run_providers.log");
        let mut child = Command::new(python)
            .arg(&script)
            .arg("--python")
            .arg(python)
            .arg("--base-dir")
            .arg(dir.path().join("base"))
            .arg("--agents-dir")
            .arg(agents_dir(python))
            .args(args)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("NO_PROXY", "127.0.0.1,localhost")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("the log file"))
            .spawn()
            .expect("start run_providers.py");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let mut reader = BufReader::new(stdout);
            // One line is the whole answer; the rest of stdout is unused.
            while reader.read_line(&mut line).unwrap_or(0) > 0 {
                if let Some(json) = line.strip_prefix("PROVIDERS: ") {
                    let _ = tx.send(json.trim().to_owned());
                    return;
                }
                line.clear();
            }
        });
        let info = match rx.recv_timeout(START_TIMEOUT) {
            Ok(json) => serde_json::from_str(&json).expect("PROVIDERS is JSON"),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the published providers did not start:\n{}",
                    pyenv::read(&log)
                );
            }
        };
        let stdin = child.stdin.take();
        Self {
            info,
            child,
            stdin,
            _dir: dir,
        }
    }

    /// `info[name]`.
    pub fn provider(&self, name: &str) -> &Value {
        &self.info[name]
    }

    /// A provider's base URL.
    pub fn url(&self, name: &str) -> String {
        self.info[name]["base_url"]
            .as_str()
            .unwrap_or_else(|| panic!("no base_url for {name}: {}", self.info))
            .to_owned()
    }
}

impl Drop for RealProviders {
    fn drop(&mut self) {
        // Closing stdin asks the script to stop every child (tenants included).
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.flush();
        }
        for _ in 0..100 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
