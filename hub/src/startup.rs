//! The composition root: turns [`Settings`] into a running server.
//!
//! [`Application::build`] binds the listener first (so port 0 works and the real port is
//! known before anything else), then prepares the data dir and the signing key, builds the
//! shared [`AppState`] and starts actix on the bound listener. Nothing is served until
//! [`Application::run_until_stopped`] is awaited (or the server future is spawned).

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::{HttpServer, web};
use aimarket_plugins::{PluginError, PluginFactory, PluginServices, Registry, RegistryBuilder};
use aimarket_protocol::ProtocolError;
use aimarket_protocol::signing::KeyPair;

use crate::catalog::{Catalog, CatalogConfig, CatalogError, QualityRanker};
use crate::crawl::{self, CrawlContext, CrawlRunError, CrawlService};
use crate::http;
use crate::payments::{Ledger, PaymentError};
use crate::replica::{ReplicaError, SharedState};
use crate::settings::{DatabaseUrl, PublicUrl, Settings, SettingsError};
use crate::state::{AppState, Components};
use crate::store::{Store, StoreError};

/// How long a graceful stop (Ctrl-C, SIGTERM) waits for in-flight requests.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the hub could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The settings do not validate.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// The listen address cannot be bound (in use, no permission, not local).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The configured address.
        addr: SocketAddr,
        /// The operating-system error.
        source: std::io::Error,
    },
    /// The data dir cannot be created.
    #[error("cannot create data dir {}: {source}", path.display())]
    DataDir {
        /// The configured directory.
        path: PathBuf,
        /// The operating-system error.
        source: std::io::Error,
    },
    /// The signing key cannot be loaded or created.
    #[error("signing key {}: {source}", path.display())]
    SigningKey {
        /// The key file.
        path: PathBuf,
        /// What went wrong.
        source: ProtocolError,
    },
    /// The HTTP server could not be started on the listener.
    #[error("cannot start the HTTP server: {0}")]
    Server(std::io::Error),
    /// The catalog store could not be opened or migrated.
    #[error("cannot open the catalog store: {0}")]
    Store(#[from] StoreError),
    /// The payment ledger could not be set up or its abandoned holds not recovered.
    #[error("cannot set up payments: {0}")]
    Payments(#[from] PaymentError),
    /// The crawler's HTTP clients could not be built.
    #[error("cannot set up the crawler: {0}")]
    Crawler(#[from] CrawlRunError),
    /// The plugin chain could not be built or a fail-closed plugin did not start.
    #[error("cannot load plugins: {0}")]
    Plugins(#[from] PluginError),
    /// The search index could not be opened.
    #[error("cannot open the search index: {0}")]
    Catalog(#[from] CatalogError),
    /// `REDIS_URL` is set and Redis cannot be reached.
    #[error(transparent)]
    Replica(#[from] ReplicaError),
    /// The OTLP metric exporter could not be built from the telemetry settings.
    #[error(transparent)]
    Metrics(#[from] crate::metrics::otlp::ExportError),
}

/// Plugin factories registered next to the built-ins (`name`, factory), for embedders and
/// tests that load plugins of their own (see [`Application::build_with`]).
pub type ExtraPlugins = Vec<(String, PluginFactory)>;

/// Builds the configured plugin chain (built-ins plus `extra` factories) and starts it.
pub async fn start_plugins(
    settings: &Settings,
    extra: ExtraPlugins,
    services: PluginServices,
) -> Result<Arc<Registry>, PluginError> {
    let mut builder = RegistryBuilder::new().with_services(services);
    for (name, factory) in extra {
        builder.register_factory(&name, move |s, services| factory(s, services))?;
    }
    let registry = builder.build(&settings.plugins.registry_config())?;
    registry.startup().await?;
    tracing::info!(plugins = ?registry.names(), "plugin chain loaded");
    Ok(Arc::new(registry))
}

/// Opens the search index in the data dir with the ranking the plugin chain configures.
pub async fn open_catalog(
    settings: &Settings,
    store: Store,
    signing_key: KeyPair,
    public_url: &PublicUrl,
) -> Result<Arc<Catalog>, StartupError> {
    let ranker = QualityRanker::from_chain(&settings.plugins.registry_config())?;
    let config = CatalogConfig {
        routing_fee_bps: settings.routing_fee_bps,
        public_url: public_url.as_str().to_owned(),
        min_trust_score: settings.reputation.min_trust_score,
    };
    let data_dir = settings.data_dir.clone();
    let catalog = tokio::task::spawn_blocking(move || {
        Catalog::open(&data_dir, store, signing_key, config, ranker)
    })
    .await
    .map_err(|e| CatalogError::Task(e.to_string()))??;
    Ok(Arc::new(catalog))
}

/// Opens the catalog store the settings describe: PostgreSQL for a `DATABASE_URL`, else the
/// embedded SQLite file `<data dir>/hub.db` (the one place that decides which). Migrations
/// are applied.
pub async fn open_store(settings: &Settings) -> Result<Store, StoreError> {
    let url = settings.database_url.as_ref().map(DatabaseUrl::expose);
    Store::connect(url, &settings.data_dir).await
}

/// A built, not yet running hub.
pub struct Application {
    local_addr: SocketAddr,
    state: web::Data<AppState>,
    server: Server,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("local_addr", &self.local_addr)
            .field("public_url", &self.state.public_url)
            .finish_non_exhaustive()
    }
}

/// Installs rustls' `ring` provider as the process default. reqwest is built without a
/// provider (so aws-lc is never compiled) and panics when it builds a client without one, so
/// every entry point calls this first. Idempotent.
pub fn install_crypto_provider() {
    // An error means a provider is already installed, which is just as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The default public URL: where the hub is actually reachable on the bound address.
fn public_url_for(addr: SocketAddr) -> PublicUrl {
    format!("http://{addr}")
        .parse()
        .expect("http://<socket address> is always a valid public URL")
}

impl Application {
    /// Binds, prepares the data dir and key, and starts the server (not yet polled).
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        Self::build_with(settings, ExtraPlugins::new()).await
    }

    /// [`Application::build`] with extra plugin factories, which `[[plugins]]` entries can
    /// then name like the built-ins.
    pub async fn build_with(
        settings: Settings,
        extra_plugins: ExtraPlugins,
    ) -> Result<Self, StartupError> {
        install_crypto_provider();
        settings.validate()?;
        let listener = TcpListener::bind(settings.listen).map_err(|source| StartupError::Bind {
            addr: settings.listen,
            source,
        })?;
        let local_addr = listener.local_addr().map_err(|source| StartupError::Bind {
            addr: settings.listen,
            source,
        })?;
        let public_url = match &settings.public_url {
            Some(url) => url.clone(),
            None => {
                if local_addr.ip().is_unspecified() {
                    tracing::warn!(
                        %local_addr,
                        "listening on an unspecified address without AIMARKET_PUBLIC_URL; \
                         peers will be told an address they cannot reach"
                    );
                }
                public_url_for(local_addr)
            }
        };

        std::fs::create_dir_all(&settings.data_dir).map_err(|source| StartupError::DataDir {
            path: settings.data_dir.clone(),
            source,
        })?;
        let key_path = settings.signing_key_path();
        let (signing_key, created) =
            KeyPair::load_or_create(&key_path).map_err(|source| StartupError::SigningKey {
                path: key_path.clone(),
                source,
            })?;
        if created {
            tracing::info!(path = %key_path.display(), "created a new hub signing key");
        }
        tracing::info!(
            %local_addr,
            public_url = %public_url,
            public_key = %signing_key.public_key().to_b64(),
            database = %settings.database().backend().as_str(),
            "hub configured"
        );

        let store = open_store(&settings).await?;
        let catalog_version = store.catalog_version().await?;
        // Before anything else that needs other replicas: an unreachable Redis stops here.
        let shared = SharedState::connect(&settings, &store).await?;
        let crawl = CrawlContext::new(store.clone(), &settings, public_url.as_str())?;
        // Holds a killed previous run left open are released before anything is served.
        let mut ledger = Ledger::from_settings(store.clone(), &settings)?;
        ledger.recover_on_startup().await?;
        if let Some(payout) =
            crate::payments::refunds::payout_from_settings(&settings.payments).await?
        {
            if let Some(contract) = &settings.payments.escrow_contract {
                let contract = contract.as_str().parse().map_err(|_| {
                    crate::payments::PaymentError::InvalidRequest(
                        "AIMARKET_ESCROW_CONTRACT is not an address".into(),
                    )
                })?;
                let domain = crate::payments::escrow::EscrowDomain {
                    chain_id: payout.wallet().chain_id(),
                    contract,
                };
                tracing::info!(contract = %contract, "escrow channels on");
                ledger = ledger.with_escrow(crate::payments::escrow::Escrow::new(domain));
            }
            ledger = ledger.with_payout(payout);
            // Refunds a killed previous run signed but may not have broadcast or recorded.
            match ledger.reconcile_sends().await {
                Ok(0) => {}
                Ok(n) => tracing::warn!(settled = n, "finished wallet sends of a previous run"),
                Err(e) => {
                    tracing::warn!(error = %e, "reconciling the wallet's sends failed; retried every 30 s")
                }
            }
            // Escrow debits a killed previous run captured but did not see on-chain.
            match ledger.collect_debits().await {
                Ok(0) => {}
                Ok(n) => tracing::warn!(debited = n, "finished escrow debits of a previous run"),
                Err(e) => {
                    tracing::warn!(error = %e, "collecting escrow debits failed; retried every 30 s")
                }
            }
        }
        if !ledger.payments_available() {
            tracing::info!("payment channels are off (no demo payments, no EVM verifier)");
        }
        // price-guard's mismatches become reputation events (stored off the request path).
        let (mismatch_sink, mismatches) = crate::reputation::mismatch_channel();
        let services = PluginServices {
            reputation: mismatch_sink,
            http: None,
        };
        let plugins = start_plugins(&settings, extra_plugins, services).await?;
        let catalog =
            open_catalog(&settings, store.clone(), signing_key.clone(), &public_url).await?;
        let state = web::Data::new(AppState::new(Components {
            settings,
            public_url,
            signing_key,
            store,
            ledger,
            crawl: CrawlService::new(crawl),
            catalog_version,
            catalog,
            plugins,
            shared,
        }));
        // Before serving, so the first requests are in the exported histograms too.
        crate::metrics::otlp::start(&state.clone().into_inner()).await?;
        let server_state = state.clone();
        let server = HttpServer::new(move || http::app(server_state.clone()))
            .shutdown_timeout(SHUTDOWN_TIMEOUT.as_secs())
            // Signals are handled in `run_until_stopped`, so that Ctrl-C drains gracefully
            // and embedding (tests) never takes over the process's signal handlers.
            .disable_signals()
            .listen(listener)
            .map_err(StartupError::Server)?
            .run();
        // The listener is bound (connections queue from here on); the first crawl runs in
        // the background and never delays serving.
        // The index is synced (and rebuilt if stale) in the background: a current index is
        // served at once, a stale one keeps answering until its replacement is committed.
        state.catalog.spawn_sync(state.subscribe_catalog());
        crawl::spawn_scheduler(state.clone().into_inner());
        // Catalog changes of other replicas, and the catalog-version poll.
        crate::replica::spawn(&state.clone().into_inner());
        // Admission workers and trust scores, off the request path.
        crate::federation::spawn(state.clone().into_inner());
        crate::reputation::spawn(state.clone().into_inner());
        crate::reputation::spawn_recorder(state.clone().into_inner(), mismatches);
        state.ledger.spawn_hold_sweeper();
        state.store.spawn_checkpointer();
        Ok(Self {
            local_addr,
            state,
            server,
        })
    }

    /// The address actually bound (the real port when the settings asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The port actually bound.
    pub fn port(&self) -> u16 {
        self.local_addr.port()
    }

    /// The public base URL the hub advertises.
    pub fn public_url(&self) -> &PublicUrl {
        &self.state.public_url
    }

    /// The shared state (for tests and in-process tools).
    pub fn state(&self) -> web::Data<AppState> {
        self.state.clone()
    }

    /// A handle that stops the server: `handle.stop(true).await` drains in-flight requests,
    /// `stop(false)` drops them.
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until stopped by Ctrl-C, SIGTERM or a [`ServerHandle`]. The first signal drains
    /// in-flight requests (up to [`SHUTDOWN_TIMEOUT`]); a second one stops at once.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let handle = self.server.handle();
        let watcher = tokio::spawn(async move {
            wait_for_shutdown_signal().await;
            tracing::info!("shutdown signal received; draining in-flight requests");
            let graceful = handle.stop(true);
            tokio::select! {
                () = graceful => {}
                () = wait_for_shutdown_signal() => {
                    tracing::warn!("second shutdown signal; stopping now");
                    handle.stop(false).await;
                }
            }
        });
        let result = self.server.await;
        watcher.abort();
        self.state.crawl.shutdown();
        self.state.shared.shutdown();
        self.state.catalog.close();
        self.state.catalog.wait_released(SHUTDOWN_TIMEOUT).await;
        self.state.plugins.shutdown().await;
        // The last OTLP metric export (bounded by its timeout; the SDK blocks).
        let state = self.state.clone();
        let _ = tokio::task::spawn_blocking(move || state.metrics.shutdown_export()).await;
        // Lets SQLite checkpoint its WAL.
        self.state.store.close().await;
        result
    }

    /// The server future without signal handling, for embedding: spawn it and stop it with
    /// [`Application::handle`]. Tests use this so the test process keeps its own Ctrl-C.
    /// The crawl schedule is not tied to this future: stop it with
    /// `state.crawl.shutdown()` (it also ends with the runtime).
    pub fn into_server(self) -> Server {
        self.server
    }
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM. If a handler cannot be installed the error is
/// logged and that signal is simply not awaited.
async fn wait_for_shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
