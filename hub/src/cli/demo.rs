//! `aimarket-hub demo [--listen ADDR] [--data-dir DIR] [--port-file FILE]`: the hub and
//! three demo factories in one process, crawled, with a printed walkthrough (see
//! [`crate::demo::run`]). Runs offline; Ctrl-C stops everything.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::demo::run::{Demo, DemoOptions, remove_data_dir};
use crate::telemetry::print_line;

/// `demo` flags.
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Address of the hub; port 0 picks a free port.
    #[arg(long, value_name = "ADDR", default_value_t = crate::settings::DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// Data dir of the hub (default: a temporary dir, removed on exit).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Write the hub's port to this file once the demo is ready (for scripts).
    #[arg(long, value_name = "FILE")]
    pub port_file: Option<PathBuf>,
}

/// Runs `demo` until Ctrl-C or SIGTERM.
pub fn run(args: &DemoArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let options = DemoOptions {
        listen: args.listen,
        data_dir: args.data_dir.clone(),
    };
    let mut temp_dir = None;
    let outcome = runtime.block_on(async {
        let demo = Demo::start(options).await.map_err(|e| e.to_string())?;
        temp_dir = demo.temp_dir().map(std::path::Path::to_path_buf);
        if let Err(e) = demo.wait_ready().await {
            demo.stop().await;
            return Err(e.to_string());
        }
        // The port file first: whoever waits for the printed walkthrough may read it next.
        if let Some(path) = &args.port_file
            && let Err(e) = std::fs::write(path, format!("{}\n", demo.local_addr().port()))
        {
            demo.stop().await;
            return Err(format!("cannot write {}: {e}", path.display()));
        }
        print_line(&demo.walkthrough());
        demo.run_until_stopped()
            .await
            .map_err(|e| format!("server failed: {e}"))
    });
    // Background threads (the search index's) end with the runtime; only then is the
    // temporary data dir certainly free to remove.
    drop(runtime);
    if let Some(dir) = temp_dir {
        remove_data_dir(&dir);
    }
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}
