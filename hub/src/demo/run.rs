//! `aimarket-hub demo`: the three built-in factories and a hub in one process, crawled and
//! ready, with a printed walkthrough of ready-to-paste `curl` commands and MCP client
//! configuration.
//!
//! The factories listen on free loopback ports. The hub is configured from defaults (not the
//! environment, so a stray `DATABASE_URL` cannot change what a newcomer sees) with demo
//! payments on and the factories as **operator seeds with pinned keys**: operator seeds are
//! exempt from the private-address rule of spec §7.4, so the hub crawls and invokes these
//! loopback factories while `allow_private_peers` stays off for every other peer.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use actix_web::web;
use serde_json::json;

use super::{DemoFactory, FactoryError, FactorySpec};
use crate::settings::{PublicUrl, Seed, Settings, SettingsError};
use crate::startup::{Application, StartupError};
use crate::state::AppState;

/// How long `start` waits for the first crawl to be indexed.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The capability the walkthrough invokes: priced, so it shows the 402 and the paid call.
pub const WALKTHROUGH_PRODUCT: &str = "polyglot-translate";
/// See [`WALKTHROUGH_PRODUCT`].
pub const WALKTHROUGH_CAPABILITY: &str = "translate.morse@v1";
/// The input of the walkthrough's invokes.
pub const WALKTHROUGH_INPUT: &str = r#"{"text":"SOS help"}"#;
/// The intent of the walkthrough's search.
pub const WALKTHROUGH_INTENT: &str = "translate text to morse code";
/// The walkthrough's one-line agent task: two demo capabilities in one pipeline.
pub const WALKTHROUGH_TASK: &str = "translate text to morse code then analyze the sentiment";

/// `demo` options.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Where the hub listens (the factories always take free loopback ports).
    pub listen: SocketAddr,
    /// Data dir of the hub; `None` makes a temporary one, removed at the end.
    pub data_dir: Option<PathBuf>,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            listen: crate::settings::DEFAULT_LISTEN,
            data_dir: None,
        }
    }
}

/// Why the demo could not start.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// A factory could not start.
    #[error("demo factory: {0}")]
    Factory(#[from] FactoryError),
    /// The hub settings are invalid.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// The hub could not start.
    #[error(transparent)]
    Startup(#[from] StartupError),
    /// The temporary data dir could not be created.
    #[error("cannot create the data dir {}: {source}", path.display())]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The operating-system error.
        source: std::io::Error,
    },
    /// The factories were not crawled and indexed in time.
    #[error("the demo factories were not indexed within {}s: {detail}", READY_TIMEOUT.as_secs())]
    NotReady {
        /// What was seen.
        detail: String,
    },
}

/// A running demo: factories, hub, and what to print.
pub struct Demo {
    factories: Vec<DemoFactory>,
    app: Option<Application>,
    state: web::Data<AppState>,
    handle: ServerHandle,
    local_addr: SocketAddr,
    hub_url: String,
    /// A data dir this demo created and removes when it ends.
    temp_dir: Option<PathBuf>,
}

impl std::fmt::Debug for Demo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Demo")
            .field("hub_url", &self.hub_url)
            .field("factories", &self.factories)
            .finish_non_exhaustive()
    }
}

/// The hub settings of the demo: defaults, demo payments, the factories as pinned seeds.
pub fn demo_settings(
    listen: SocketAddr,
    data_dir: &Path,
    factories: &[DemoFactory],
) -> Result<Settings, SettingsError> {
    let seeds = factories
        .iter()
        .map(|f| {
            format!("{}={}", f.url(), f.public_key().to_b64())
                .parse::<Seed>()
                .map_err(|e| SettingsError::Invalid {
                    setting: "seeds",
                    origin: "demo".into(),
                    value: f.url().to_owned(),
                    reason: e.to_string(),
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let settings = Settings {
        name: "AIMarket Demo Hub".to_owned(),
        listen,
        data_dir: data_dir.to_path_buf(),
        seeds,
        demo_payments: true,
        ..Settings::default()
    };
    settings.validate()?;
    Ok(settings)
}

fn temp_data_dir() -> Result<PathBuf, DemoError> {
    let path =
        std::env::temp_dir().join(format!("aimarket-demo-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&path).map_err(|source| DemoError::DataDir {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

impl Demo {
    /// Starts the factories and the hub, crawls the factories and waits until their
    /// capabilities are searchable. The hub is built but not yet serving requests from its
    /// own task: call [`Demo::run_until_stopped`] (the CLI) or [`Demo::spawn`] (tests).
    pub async fn start(options: DemoOptions) -> Result<Self, DemoError> {
        let mut factories = Vec::new();
        for spec in FactorySpec::built_in() {
            factories.push(DemoFactory::start(spec).await?);
        }
        let (data_dir, temp_dir) = match options.data_dir {
            Some(dir) => (dir, None),
            None => {
                let dir = temp_data_dir()?;
                (dir.clone(), Some(dir))
            }
        };
        let built = match demo_settings(options.listen, &data_dir, &factories) {
            Ok(settings) => Application::build(settings).await.map_err(DemoError::from),
            Err(e) => Err(DemoError::from(e)),
        };
        let app = match built {
            Ok(app) => app,
            Err(e) => {
                if let Some(dir) = &temp_dir {
                    let _ = std::fs::remove_dir_all(dir);
                }
                return Err(e);
            }
        };
        let state = app.state();
        let handle = app.handle();
        let local_addr = app.local_addr();
        let hub_url = app.public_url().as_str().trim_end_matches('/').to_owned();
        Ok(Self {
            factories,
            app: Some(app),
            state,
            handle,
            local_addr,
            hub_url,
            temp_dir,
        })
    }

    /// Serves in a background task (tests), after waiting until the demo is ready.
    pub async fn spawn(&mut self) -> Result<(), DemoError> {
        if let Some(app) = self.app.take() {
            tokio::spawn(app.into_server());
        }
        self.wait_ready().await
    }

    /// Crawls the factories (joining the startup crawl) and waits until every demo
    /// capability is in the search index.
    pub async fn wait_ready(&self) -> Result<(), DemoError> {
        let expected: u64 = self
            .factories
            .iter()
            .map(|f| f.spec().capabilities.len() as u64)
            .sum();
        let state: Arc<AppState> = self.state.clone().into_inner();
        let mut detail = String::from("no crawl finished");
        match crate::crawl::trigger(&state).await {
            Ok(ticket) => match ticket.outcome().await {
                Ok(summary) => {
                    if !summary.errors.is_empty() {
                        detail = format!(
                            "crawl errors: {}",
                            json!(
                                summary
                                    .errors
                                    .iter()
                                    .map(|e| format!("{}: {}", e.url, e.error))
                                    .collect::<Vec<_>>()
                            )
                        );
                    }
                }
                Err(e) => detail = format!("crawl failed: {e}"),
            },
            Err(e) => detail = format!("crawl failed to start: {e}"),
        }
        let deadline = Instant::now() + READY_TIMEOUT;
        // Bounded by the deadline; the index is synced by a background task after the crawl.
        loop {
            let indexed = self
                .state
                .catalog
                .index()
                .map(|i| i.num_docs())
                .unwrap_or(0);
            if indexed >= expected {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(DemoError::NotReady {
                    detail: format!("{indexed} of {expected} capabilities indexed; {detail}"),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Serves until Ctrl-C or SIGTERM (the CLI), then stops the factories and removes a
    /// temporary data dir.
    pub async fn run_until_stopped(mut self) -> std::io::Result<()> {
        let result = match self.app.take() {
            Some(app) => app.run_until_stopped().await,
            None => Ok(()),
        };
        self.stop_factories().await;
        result
    }

    /// Stops the hub (draining in-flight requests) and the factories: after [`Demo::spawn`]
    /// (tests), or instead of serving when [`Demo::wait_ready`] failed.
    pub async fn stop(mut self) {
        match self.app.take() {
            // Never polled: dropping the server future is what stops it (a stop command
            // would wait for an answer that never comes).
            Some(app) => drop(app),
            None => self.handle.stop(true).await,
        }
        self.state.crawl.shutdown();
        self.state.catalog.close();
        self.state.plugins.shutdown().await;
        self.state.store.close().await;
        self.stop_factories().await;
    }

    async fn stop_factories(&mut self) {
        for factory in &self.factories {
            factory.stop().await;
        }
        if let Some(dir) = self.temp_dir.take() {
            remove_data_dir(&dir);
        }
    }

    /// The temporary data dir this demo made (removed when it stops), if any.
    pub fn temp_dir(&self) -> Option<&Path> {
        self.temp_dir.as_deref()
    }

    /// The hub's base URL.
    pub fn hub_url(&self) -> &str {
        &self.hub_url
    }

    /// The address the hub is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The running factories.
    pub fn factories(&self) -> &[DemoFactory] {
        &self.factories
    }

    /// The shared state of the hub (tests).
    pub fn state(&self) -> &web::Data<AppState> {
        &self.state
    }

    /// The hub's public URL.
    pub fn public_url(&self) -> &PublicUrl {
        &self.state.public_url
    }

    /// The walkthrough the CLI prints.
    pub fn walkthrough(&self) -> String {
        walkthrough(&self.hub_url, &self.factories)
    }
}

/// Removes a demo data dir. The search index's own threads may still be finishing a write
/// when the hub has stopped (its files appear while the dir is being removed), so a dir that
/// is not empty yet is tried again, a bounded number of times.
pub fn remove_data_dir(dir: &Path) {
    const ATTEMPTS: u32 = 40;
    for attempt in 1..=ATTEMPTS {
        match std::fs::remove_dir_all(dir) {
            Ok(()) => return,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) if attempt == ATTEMPTS => {
                tracing::warn!(path = %dir.display(), error = %e, "cannot remove the demo data dir");
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// The lines that introduce each pasteable step; tests split the walkthrough on them.
pub const STEP_PREFIX: &str = "# Step ";

/// Renders the printed walkthrough: where things run, the steps as shell commands (bash or
/// zsh; only `curl` and `sed` are needed), and the MCP configuration.
pub fn walkthrough(hub: &str, factories: &[DemoFactory]) -> String {
    let mut out = String::new();
    // The console first: it is where a newcomer should look.
    out.push_str(&format!(
        "Console: {hub}/\nAIMarket demo hub: {hub}\n\nDemo factories (crawled, keys pinned):\n"
    ));
    for f in factories {
        let caps = &f.spec().capabilities;
        let priced = caps.iter().filter(|c| c.is_priced()).count();
        out.push_str(&format!(
            "  {:<15} {}  {} capabilities ({} priced, {} free)\n",
            f.name(),
            f.url(),
            caps.len(),
            priced,
            caps.len() - priced
        ));
    }
    let invoke_body = format!(
        r#"{{"product_id":"{WALKTHROUGH_PRODUCT}","capability_id":"{WALKTHROUGH_CAPABILITY}","input":{WALKTHROUGH_INPUT}}}"#
    );
    let intent = WALKTHROUGH_INTENT.replace(' ', "+");
    let json_header = "-H 'Content-Type: application/json'";
    let steps = [
        (
            "1: search the federated catalog",
            format!("curl -s '{hub}/ai-market/v2/search?intent={intent}&limit=3&fields=compact'"),
        ),
        (
            "2: invoke a priced capability without paying -> 402 with the payment challenge",
            format!(
                "curl -s -i -X POST {hub}/ai-market/v2/invoke {json_header} -d '{invoke_body}'"
            ),
        ),
        (
            "3: open a payment channel at the hub (demo deposit); keeps its id and secret in shell variables",
            format!(
                "OPEN=$(curl -s -X POST {hub}/ai-market/v2/channel/open {json_header} -d \"{{\\\"deposit_usd\\\":1.0,\\\"tx_hash\\\":\\\"demo-$(date +%s)-$$\\\"}}\"); printf '%s\\n' \"$OPEN\"\n\
                 CHANNEL_ID=$(printf '%s' \"$OPEN\" | sed -n 's/.*\"channel_id\":\"\\([^\"]*\\)\".*/\\1/p')\n\
                 CHANNEL_SECRET=$(printf '%s' \"$OPEN\" | sed -n 's/.*\"channel_secret\":\"\\([^\"]*\\)\".*/\\1/p')"
            ),
        ),
        (
            "4: paid invoke -> result, the provider's signed receipt and the hub's routing receipt",
            format!(
                "PAID=$(curl -s -X POST {hub}/ai-market/v2/invoke {json_header} -H \"X-Payment-Channel: $CHANNEL_ID\" -H \"X-Payment-Channel-Secret: $CHANNEL_SECRET\" -d '{invoke_body}'); printf '%s\\n' \"$PAID\""
            ),
        ),
        (
            "5: verify the hub's routing receipt",
            format!(
                "NONCE=$(printf '%s' \"$PAID\" | sed -n 's/.*\"routing_receipt\":{{[^}}]*\"nonce\":\"\\([^\"]*\\)\".*/\\1/p')\n\
                 curl -s {hub}/ai-market/receipt/$NONCE | curl -s -X POST {hub}/ai-market/v2/receipts/verify {json_header} --data-binary @-"
            ),
        ),
        (
            "6: close the channel (the unused deposit is refunded)",
            format!(
                "curl -s -X POST {hub}/ai-market/v2/channel/close {json_header} -d \"{{\\\"channel_id\\\":\\\"$CHANNEL_ID\\\"}}\""
            ),
        ),
    ];
    out.push_str("\nTry it (paste into bash or zsh; steps 3-6 share shell variables):\n\n");
    for (title, command) in steps {
        out.push_str(&format!("{STEP_PREFIX}{title}\n{command}\n\n"));
    }
    let mcp = format!("{hub}/ai-market/mcp");
    out.push_str(&format!(
        "MCP (Streamable HTTP): {mcp}\n\
         \n  Cursor (~/.cursor/mcp.json) or any client that speaks Streamable HTTP:\n\
         {{\"mcpServers\": {{\"aimarket\": {{\"url\": \"{mcp}\"}}}}}}\n\
         \n  Claude Desktop (claude_desktop_config.json; bridges stdio to HTTP with mcp-remote):\n\
         {{\"mcpServers\": {{\"aimarket\": {{\"command\": \"npx\", \"args\": [\"-y\", \"mcp-remote\", \"{mcp}\"]}}}}}}\n\
         \n  Claude Code:\n\
         claude mcp add --transport http aimarket {mcp}\n\
         \nCLI clients: aimarket-hub search \"{WALKTHROUGH_INTENT}\" --hub {hub}\n\
         \x20            aimarket-hub invoke {WALKTHROUGH_PRODUCT} {WALKTHROUGH_CAPABILITY} --input '{WALKTHROUGH_INPUT}' --hub {hub}\n\
         \x20            aimarket-hub run \"{WALKTHROUGH_TASK}\" --budget 1 --hub {hub} --yes\n\
         \nPress Ctrl-C to stop.\n"
    ));
    out
}
