//! `aimarket-hub serve`: load settings, start the hub, print `listening on http://ADDR`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::settings::{DatabaseUrl, Overrides, PublicUrl, RedisUrl, Seed, Settings, SettingsError};
use crate::startup::Application;
use crate::telemetry::print_line;

/// The settings flags. Environment variables and `--config` are described in the README;
/// flags take precedence over both.
#[derive(Debug, Clone, Default, Args)]
pub struct SettingsArgs {
    /// TOML configuration file (unknown keys are rejected).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to bind, e.g. 127.0.0.1:9083; port 0 picks a free port [env: AIMARKET_LISTEN].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Directory for the database, index and signing key [env: AIMARKET_DATA_DIR].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Public base URL of this hub [env: AIMARKET_PUBLIC_URL].
    #[arg(long, value_name = "URL")]
    pub public_url: Option<PublicUrl>,
    /// Seed peer, optionally pinned to its base64 key; repeatable [env: AIMARKET_SEEDS].
    #[arg(long = "seed", value_name = "URL[=PUBKEY]")]
    pub seeds: Vec<Seed>,
    /// postgres://… (default: the SQLite file hub.db in the data dir) [env: DATABASE_URL].
    #[arg(long, value_name = "URL")]
    pub database_url: Option<DatabaseUrl>,
    /// Redis URL for multi-replica mode [env: REDIS_URL].
    #[arg(long, value_name = "URL")]
    pub redis_url: Option<RedisUrl>,
}

impl SettingsArgs {
    /// Loads settings: defaults, `--config`, the process environment, then these flags.
    pub fn load(&self) -> Result<Settings, SettingsError> {
        let overrides = Overrides {
            listen: self.listen,
            data_dir: self.data_dir.clone(),
            public_url: self.public_url.clone(),
            seeds: self.seeds.clone(),
            database_url: self.database_url.clone(),
            redis_url: self.redis_url.clone(),
        };
        Settings::load_from_process_env(self.config.as_deref(), overrides)
    }
}

/// Runs `serve` until Ctrl-C or SIGTERM, with settings already loaded (the trace exporter, if any, was installed
/// from them); `traces` is flushed and stopped after the server stops.
pub fn run_loaded(settings: Settings, traces: Option<crate::telemetry::TracesGuard>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = serve(settings, runtime);
    drop(traces);
    code
}

fn serve(settings: Settings, runtime: tokio::runtime::Runtime) -> ExitCode {
    let outcome = runtime.block_on(async {
        let app = Application::build(settings)
            .await
            .map_err(|e| e.to_string())?;
        print_line(&format!("listening on http://{}", app.local_addr()));
        app.run_until_stopped()
            .await
            .map_err(|e| format!("server failed: {e}"))
    });
    match outcome {
        Ok(()) => {
            tracing::info!("hub stopped");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}
