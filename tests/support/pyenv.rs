//! Throwaway Python virtualenvs with pinned packages from PyPI, for the tests that run real
//! published clients and providers unchanged, and the process helpers every such test uses
//! (bounded runs, registry reachability, the `RESULT: {json}` line a client script prints).
//!
//! A virtualenv is cached under `target/` keyed by the Python version and the pinned
//! requirements, so reruns do not reinstall. When PyPI cannot be reached the tests that need
//! it are skipped with a message, except under CI (`CI` set), where they fail: a green CI
//! must mean the real peers ran.

use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Bound on creating a virtualenv and installing the packages.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(900);
/// Written into the virtualenv once the install succeeded.
const READY_MARKER: &str = ".aimarket-ready";

/// The workspace's target directory (where caches live).
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
    }
}

/// Runs `cmd` to completion within `timeout`, output to `log`; returns whether it succeeded.
pub fn run_logged(mut cmd: Command, log: &Path, timeout: Duration) -> Result<bool, String> {
    let file = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let err = file.try_clone().map_err(|e| e.to_string())?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return Ok(status.success());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "{cmd:?} did not finish within {}s",
                timeout.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether every `host:port` answers a TCP connection (the question a skip depends on).
pub fn reachable(hosts: &[&str]) -> Result<(), String> {
    for host in hosts {
        let addr = host
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {host}: {e}"))?
            .next()
            .ok_or_else(|| format!("{host} has no address"))?;
        TcpStream::connect_timeout(&addr, Duration::from_secs(10))
            .map_err(|e| format!("cannot connect to {host}: {e}"))?;
    }
    Ok(())
}

/// Reads a file as text (empty when missing).
pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Why a virtualenv is not available.
#[derive(Debug)]
pub enum Unavailable {
    /// PyPI cannot be reached (and CI is not set): the caller skips.
    Offline(String),
    /// Anything else: the caller fails.
    Broken(String),
}

/// The python of a virtualenv named `name` holding `requirements` (pip specifiers), plus,
/// when `sdists` is not empty, those packages' source distributions downloaded (without
/// dependencies) into `<venv>/sdist`. Blocking; call it from `spawn_blocking`.
pub fn install(name: &str, requirements: &[&str], sdists: &[&str]) -> Result<PathBuf, Unavailable> {
    let python = Command::new("python3")
        .args([
            "-c",
            "import sys, venv; print('%d.%d' % sys.version_info[:2])",
        ])
        .output()
        .map_err(|e| {
            Unavailable::Broken(format!("python3 with the venv module is required: {e}"))
        })?;
    if !python.status.success() {
        return Err(Unavailable::Broken(
            "python3 lacks the venv module (install python3-venv)".into(),
        ));
    }
    let version = String::from_utf8_lossy(&python.stdout).trim().to_owned();
    let mut key = format!("py{version}-{}", requirements.join("-"));
    if !sdists.is_empty() {
        key.push_str("-src-");
        key.push_str(&sdists.join("-"));
    }
    // A digest keeps the folder name short whatever the requirements (the cache is only
    // ever compared with itself, so the hasher's stability across toolchains is moot).
    let key = {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut hasher);
        format!("py{version}-{:016x}", hasher.finish())
    };
    let dir = target_dir().join("pyenvs").join(name).join(key);
    let bin = dir.join("bin").join("python");
    if dir.join(READY_MARKER).exists() && bin.exists() {
        return Ok(bin);
    }
    // A half-made environment (an interrupted earlier run) is rebuilt from scratch.
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| Unavailable::Broken(e.to_string()))?;
    let log = dir.with_extension("log");
    let mut venv = Command::new("python3");
    venv.args(["-m", "venv"]).arg(&dir);
    if !run_logged(venv, &log, INSTALL_TIMEOUT).map_err(Unavailable::Broken)? {
        return Err(Unavailable::Broken(format!(
            "python3 -m venv failed:\n{}",
            read(&log)
        )));
    }
    let pip = |args: &[&str], extra: &[&str]| {
        let mut cmd = Command::new(&bin);
        cmd.args(["-m", "pip"])
            .args(args)
            .args(["--disable-pip-version-check", "--no-input", "-q"])
            .args(extra);
        run_logged(cmd, &log, INSTALL_TIMEOUT).unwrap_or(false)
    };
    let sdist_dir = dir.join("sdist");
    let sdist_dir_text = sdist_dir.to_string_lossy().into_owned();
    let installed = pip(&["install"], requirements)
        && (sdists.is_empty()
            || pip(
                &[
                    "download",
                    "--no-deps",
                    "--no-binary",
                    ":all:",
                    "-d",
                    &sdist_dir_text,
                ],
                sdists,
            ));
    if !installed {
        let why = read(&log);
        return Err(
            match reachable(&["pypi.org:443", "files.pythonhosted.org:443"]) {
                Err(offline) if std::env::var_os("CI").is_none() => Unavailable::Offline(offline),
                Err(offline) => Unavailable::Broken(format!(
                    "PyPI is unreachable under CI ({offline}); the real-peer tests cannot run:\n{why}"
                )),
                Ok(()) => {
                    Unavailable::Broken(format!("pip failed although PyPI is reachable:\n{why}"))
                }
            },
        );
    }
    std::fs::write(dir.join(READY_MARKER), requirements.join("\n"))
        .map_err(|e| Unavailable::Broken(e.to_string()))?;
    Ok(bin)
}

/// `python tests/clients/<script> ARGS…`, with loopback exempt from any proxy.
pub fn client_script(python: &Path, script: &str, args: &[String]) -> Command {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("clients")
        .join(script);
    let mut cmd = Command::new(python);
    cmd.arg(path)
        .args(args)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost");
    cmd
}

/// Runs a client program to completion within `timeout` and returns the JSON of the one
/// `RESULT: {json}` line it prints; panics with its output otherwise.
pub async fn run_result(name: &str, cmd: Command, timeout: Duration) -> serde_json::Value {
    let logs = tempfile::tempdir().expect("a temporary folder");
    let log = logs.path().join("out.log");
    let (ok, output) = tokio::task::spawn_blocking(move || {
        let ok = run_logged(cmd, &log, timeout).unwrap_or_else(|e| panic!("{e}"));
        (ok, read(&log))
    })
    .await
    .expect("the client run");
    assert!(ok, "{name} failed:\n{output}");
    let line = output
        .lines()
        .find_map(|l| l.strip_prefix("RESULT: "))
        .unwrap_or_else(|| panic!("{name} printed no result:\n{output}"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{name}: RESULT is not JSON ({e})"))
}
