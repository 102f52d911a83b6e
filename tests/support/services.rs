//! Private PostgreSQL and Redis servers for tests that take a dependency away (issue #13):
//! each test gets its own server on a free loopback port, so stopping it never disturbs the
//! shared ones (the `main` cluster and Redis on 6379) or other tests running in parallel.
//!
//! When a binary is missing (or, for PostgreSQL, the tests do not run as root, which the
//! server needs in order to switch to the `postgres` user), the constructors print SKIP and
//! return `None`, unless `CI` is set, in which case they panic.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::wait_until;

/// Bound on a server becoming ready or going away.
const READY: Duration = Duration::from_secs(60);

fn unavailable(what: &str, reason: &str) {
    assert!(
        std::env::var_os("CI").is_none(),
        "{what} cannot be started in CI: {reason}"
    );
    println!("SKIP: {what} cannot be started ({reason})");
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A `redis-server` child process on its own port, without persistence.
pub struct OwnRedis {
    /// `redis://127.0.0.1:PORT`.
    pub url: String,
    port: u16,
    child: Option<Child>,
}

impl OwnRedis {
    /// Starts one and waits until it answers `PING`.
    pub async fn start() -> Option<Self> {
        if Command::new("redis-server")
            .arg("--version")
            .output()
            .is_err()
        {
            unavailable("redis-server", "binary not found");
            return None;
        }
        let port = free_port();
        let mut redis = Self {
            url: format!("redis://127.0.0.1:{port}"),
            port,
            child: None,
        };
        redis.resume().await;
        Some(redis)
    }

    /// Kills the server (SIGKILL: Redis "going away", not a clean shutdown).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port (empty: no persistence) and waits for `PING`.
    pub async fn resume(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        let url = self.url.clone();
        let up = wait_until(READY, || {
            let url = url.clone();
            async move { aimarket_hub::replica::ping(&url).await.is_ok() }
        })
        .await;
        assert!(up, "redis-server on {} did not answer", self.port);
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A PostgreSQL server of its own (`initdb` in a temp dir, `pg_ctl` as the `postgres` user),
/// with `trust` authentication on loopback.
pub struct OwnPostgres {
    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub url: String,
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
}

fn as_postgres(bin: &Path, tool: &str) -> Command {
    let mut command = Command::new("runuser");
    command
        .args(["-u", "postgres", "--"])
        .arg(bin.join(tool))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

impl OwnPostgres {
    /// Creates and starts one; waits until it accepts connections.
    pub async fn start() -> Option<Self> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .and_then(|dirs| {
                let mut versions: Vec<PathBuf> = dirs.flatten().map(|d| d.path()).collect();
                versions.sort();
                versions.pop()
            })
            .map(|v| v.join("bin"));
        let Some(bin) = bin.filter(|b| b.join("initdb").exists()) else {
            unavailable("PostgreSQL", "no /usr/lib/postgresql/<version>/bin/initdb");
            return None;
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let owned = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !owned {
            unavailable(
                "PostgreSQL",
                "cannot hand a data dir to the postgres user (not root?)",
            );
            return None;
        }
        let data = dir.path().join("data");
        let init = as_postgres(&bin, "initdb")
            .args(["-A", "trust", "-U", "postgres", "-D"])
            .arg(&data)
            .status()
            .is_ok_and(|s| s.success());
        if !init {
            unavailable("PostgreSQL", "initdb failed");
            return None;
        }
        let port = free_port();
        let pg = Self {
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            bin,
            dir,
            port,
        };
        pg.resume().await;
        Some(pg)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Stops the server (`fast`: open connections are terminated, as in a restart).
    pub fn stop(&self) {
        let _ = as_postgres(&self.bin, "pg_ctl")
            .args(["stop", "-m", "fast", "-w", "-t", "60", "-D"])
            .arg(self.data())
            .status();
    }

    /// Starts it (again) and waits until it accepts connections.
    pub async fn resume(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let started = as_postgres(&self.bin, "pg_ctl")
            .args(["start", "-w", "-t", "60", "-o", &options, "-l"])
            .arg(self.dir.path().join("log"))
            .arg("-D")
            .arg(self.data())
            .status()
            .is_ok_and(|s| s.success());
        assert!(started, "pg_ctl start failed on port {}", self.port);
        let addr = format!("127.0.0.1:{}", self.port);
        let up = wait_until(READY, || {
            let addr = addr.clone();
            async move { tokio::net::TcpStream::connect(&addr).await.is_ok() }
        })
        .await;
        assert!(up, "PostgreSQL on {} did not come up", self.port);
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let _ = as_postgres(&self.bin, "pg_ctl")
            .args(["stop", "-m", "immediate", "-D"])
            .arg(self.data())
            .status();
    }
}
