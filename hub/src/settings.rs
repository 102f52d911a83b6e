//! The hub's one typed configuration.
//!
//! Precedence, lowest first: built-in defaults, then an optional TOML file (`--config FILE`),
//! then environment variables, then command-line flags. Every layer is parsed into typed
//! values at the edge; [`Settings::validate`] then checks the merged result, so an invalid
//! value stops startup with a message naming the setting and the value.
//!
//! Environment names are a public contract (see the README table) and are not uniformly
//! prefixed (`DATABASE_URL`, `REDIS_URL`, a legacy `AIFACTORY_…` alias), so they are mapped
//! one by one in [`ENV_BINDINGS`] instead of through a blanket prefix.
//!
//! Adding a setting: add the field (with a doc comment) and its default, a row in
//! [`ENV_BINDINGS`] if it has an env variable, a rule in [`Settings::validate`], and a row in
//! the README table. Areas with many settings should add a nested struct with
//! `#[serde(default, deny_unknown_fields)]` (a TOML table) rather than many flat fields.

mod crawl;
mod invoke;
mod limits;
mod payments;
mod plugins;
mod replica;
mod reputation;
pub mod telemetry;
mod values;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use figment::Figment;
use figment::providers::{Format, Toml};
use serde::Deserialize;

pub use crawl::CrawlSettings;
pub use invoke::{
    CredentialKind, InvokeSettings, PeerCredential, PeerCredentials, SellerDirectFee, SellsFor,
};
pub use limits::{ApiKeys, LimitSettings, TrustedProxies};
pub use payments::{EvmAddress, PaymentSettings, RpcUrl};
pub use plugins::PluginChain;
pub use replica::ReplicaSettings;
pub use reputation::{PeerBonds, ReputationSettings};
pub use telemetry::TelemetrySettings;
use values::redact_password;
pub use values::{DatabaseBackend, DatabaseUrl, PublicUrl, RedisUrl, Secret, Seed, parse_bool};

/// Default listen address of `serve`.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 9083);
/// Smallest crawl interval the well-known schema allows.
pub const MIN_CRAWL_INTERVAL_S: u64 = 60;
/// Largest crawl interval we accept: a week. Longer means the catalog is effectively frozen,
/// which is better expressed with `auto_crawl = false`.
pub const MAX_CRAWL_INTERVAL_S: u64 = 7 * 24 * 3600;
/// 100% in basis points.
pub const MAX_ROUTING_FEE_BPS: u32 = 10_000;
/// Upper bound on the pending-peer bound: beyond this the bound no longer protects anything.
pub const MAX_MAX_PENDING_PEERS: u32 = 1_000_000;
/// File name of the hub signing key inside the data dir (when not configured explicitly).
pub const SIGNING_KEY_FILE: &str = "hub_signing_key";
/// File name of the embedded SQLite database inside the data dir: the store's, so the
/// settings describe exactly the file the store opens.
pub use crate::store::SQLITE_FILE;

/// Everything an operator can configure. Field names are the TOML keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Human-readable hub name published in the well-known document (`AIMARKET_HUB_NAME`).
    pub name: String,
    /// Address to bind (`AIMARKET_LISTEN` / `--listen`); port 0 picks a free port.
    pub listen: SocketAddr,
    /// Directory for the SQLite file, the search index and the signing key
    /// (`AIMARKET_DATA_DIR` / `--data-dir`).
    pub data_dir: PathBuf,
    /// Public base URL (`AIMARKET_PUBLIC_URL` / `--public-url`); `None` means
    /// `http://<bound address>`.
    pub public_url: Option<PublicUrl>,
    /// Operator seeds (`AIMARKET_SEEDS`, comma-separated / repeatable `--seed URL[=PUBKEY]`).
    pub seeds: Vec<Seed>,
    /// Database (`DATABASE_URL` / `--database-url`); `None` means a SQLite file in the data dir.
    pub database_url: Option<DatabaseUrl>,
    /// Redis (`REDIS_URL` / `--redis-url`); `None` means single-replica mode.
    pub redis_url: Option<RedisUrl>,
    /// Bearer token for admin endpoints (`AIMARKET_ADMIN_TOKEN`); `None` means admin
    /// endpoints answer 401. Never logged.
    pub admin_token: Option<Secret>,
    /// Routing fee in basis points (`AIMARKET_ROUTING_FEE_BPS`), 0..=10000.
    pub routing_fee_bps: u32,
    /// Seconds between periodic crawls (`AIMARKET_CRAWL_INTERVAL_S`), at least 60.
    pub crawl_interval_s: u64,
    /// Crawl periodically (`AIMARKET_AUTO_CRAWL`); false = at startup and on demand only.
    pub auto_crawl: bool,
    /// Lift the private-address rule of spec §7.4 for peers (`AIMARKET_ALLOW_PRIVATE_PEERS`).
    /// A dev/test switch; operator seeds may be private regardless.
    pub allow_private_peers: bool,
    /// Let unauthenticated announces create pending peers (`AIMARKET_OPEN_ADMISSION`).
    pub open_admission: bool,
    /// Bound on pending peers under open admission (`AIMARKET_MAX_PENDING_PEERS`).
    pub max_pending_peers: u32,
    /// Accept demo payment proofs (`AIMARKET_DEMO_PAYMENTS`, or legacy
    /// `AIFACTORY_AI_MARKET_DEMO_PAYMENT=1`). Never in production.
    pub demo_payments: bool,
    /// Signing key seed file (`AIMARKET_SIGNING_KEY_PATH`); `None` means
    /// `<data dir>/hub_signing_key`, created on first start.
    pub signing_key_path: Option<PathBuf>,
    /// Crawler: well-known refresh window, request timeout, manifest freshness (`[crawl]`).
    pub crawl: CrawlSettings,
    /// Routed invoke: provider timeout, body cap, rate limit, peer credentials (`[invoke]`).
    pub invoke: InvokeSettings,
    /// Payment channels: channel lifetime and the EVM deposit verifier (`[payments]`).
    pub payments: PaymentSettings,
    /// The plugin chain (`[[plugins]]` tables); default: `quality` alone.
    pub plugins: PluginChain,
    /// Trust scores: recompute interval and operator-configured peer bonds (`[reputation]`).
    pub reputation: ReputationSettings,
    /// Several replicas: Redis key prefix, catalog poll, crawl lease lifetime (`[replica]`).
    pub replica: ReplicaSettings,
    /// Trace export over OTLP (`[telemetry]`, the standard `OTEL_*` variables).
    pub telemetry: TelemetrySettings,
    /// Proxies whose `X-Forwarded-For` / `Forwarded` headers name the client
    /// (`AIMARKET_TRUSTED_PROXIES`); none by default, so those headers are ignored.
    pub trusted_proxies: TrustedProxies,
    /// Abuse limits: buyer API keys, search/MCP rates, per-provider caps (`[limits]`).
    pub limits: LimitSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            name: "AIMarket Hub".to_owned(),
            listen: DEFAULT_LISTEN,
            data_dir: PathBuf::from("./data"),
            public_url: None,
            seeds: Vec::new(),
            database_url: None,
            redis_url: None,
            admin_token: None,
            routing_fee_bps: 100,
            crawl_interval_s: 3600,
            auto_crawl: true,
            allow_private_peers: false,
            open_admission: false,
            max_pending_peers: 1000,
            demo_payments: false,
            signing_key_path: None,
            crawl: CrawlSettings::default(),
            invoke: InvokeSettings::default(),
            payments: PaymentSettings::default(),
            plugins: PluginChain::default(),
            reputation: ReputationSettings::default(),
            replica: ReplicaSettings::default(),
            telemetry: TelemetrySettings::default(),
            trusted_proxies: TrustedProxies::default(),
            limits: LimitSettings::default(),
        }
    }
}

/// Why settings could not be loaded. Each message names the setting and the value.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The `--config` file could not be read.
    #[error("cannot read config file {}: {message}", path.display())]
    ConfigRead {
        /// The file given with `--config`.
        path: PathBuf,
        /// The operating-system error.
        message: String,
    },
    /// The `--config` file is not valid TOML, has an unknown key, or a value of the wrong type.
    #[error("invalid config file {}: {message}", path.display())]
    ConfigParse {
        /// The file given with `--config`.
        path: PathBuf,
        /// The parser's message, which names the key.
        message: String,
    },
    /// A value is syntactically or semantically invalid.
    #[error("invalid value {value:?} for {origin} (setting `{setting}`): {reason}")]
    Invalid {
        /// The TOML key of the setting.
        setting: &'static str,
        /// Where the value came from: an env variable, a flag, or `config file or default`.
        origin: String,
        /// The offending value (redacted for secrets).
        value: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// Values given as command-line flags: the highest-precedence layer. Built by the CLI.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--listen`
    pub listen: Option<SocketAddr>,
    /// `--data-dir`
    pub data_dir: Option<PathBuf>,
    /// `--public-url`
    pub public_url: Option<PublicUrl>,
    /// `--seed` (repeatable); when non-empty it replaces seeds from lower layers.
    pub seeds: Vec<Seed>,
    /// `--database-url`
    pub database_url: Option<DatabaseUrl>,
    /// `--redis-url`
    pub redis_url: Option<RedisUrl>,
}

/// How one environment variable maps onto a setting.
struct EnvBinding {
    /// The variable's name (a public contract).
    env: &'static str,
    /// The TOML key of the setting it sets.
    setting: &'static str,
    /// How the value is shown in error messages (secrets never appear).
    shown: fn(&str) -> String,
    /// Parses the value and stores it; the error is a short reason.
    apply: fn(&mut Settings, &str) -> Result<(), String>,
}

/// Parses with `FromStr`, turning the error into the reason string.
fn parse<T: FromStr>(value: &str) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    value.trim().parse::<T>().map_err(|e| e.to_string())
}

/// The environment variables, in the order they are applied (later rows win).
const ENV_BINDINGS: &[EnvBinding] = &[
    EnvBinding {
        env: "AIMARKET_HUB_NAME",
        setting: "name",
        shown: str::to_owned,
        apply: |s, v| {
            s.name = v.trim().to_owned();
            Ok(())
        },
    },
    EnvBinding {
        env: "AIMARKET_LISTEN",
        setting: "listen",
        shown: str::to_owned,
        apply: |s, v| {
            s.listen = parse(v)?;
            Ok(())
        },
    },
    EnvBinding {
        env: "AIMARKET_DATA_DIR",
        setting: "data_dir",
        shown: str::to_owned,
        apply: |s, v| {
            s.data_dir = PathBuf::from(v);
            Ok(())
        },
    },
    EnvBinding {
        env: "AIMARKET_PUBLIC_URL",
        setting: "public_url",
        shown: str::to_owned,
        apply: |s, v| {
            s.public_url = Some(parse(v)?);
            Ok(())
        },
    },
    EnvBinding {
        env: "AIMARKET_SEEDS",
        setting: "seeds",
        shown: str::to_owned,
        apply: |s, v| {
            s.seeds = v
                .split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(|item| {
                    item.parse::<Seed>()
                        .map_err(|e| format!("seed `{item}`: {e}"))
                })
                .collect::<Result<_, _>>()?;
            Ok(())
        },
    },
    EnvBinding {
        env: "DATABASE_URL",
        setting: "database_url",
        shown: redact_password,
        apply: |s, v| {
            s.database_url = Some(parse(v)?);
            Ok(())
        },
    },
    EnvBinding {
        env: "REDIS_URL",
        setting: "redis_url",
        shown: redact_password,
        apply: |s, v| {
            s.redis_url = Some(parse(v)?);
            Ok(())
        },
    },
    EnvBinding {
        env: "AIMARKET_ADMIN_TOKEN",
        setting: "admin_token",
        shown: redact,
        apply: |s, v| {
            s.admin_token = Some(v.parse()?);
            Ok(())
        },
    },
    EnvBinding {
        env: "AIMARKET_ROUTING_FEE_BPS",
        setting: "routing_fee_bps",
        shown: str::to_owned,
        apply: |s, v| {
            s.routing_fee_bps = parse(v)?;
            check_routing_fee(s.routing_fee_bps)
        },
    },
    EnvBinding {
        env: "AIMARKET_CRAWL_INTERVAL_S",
        setting: "crawl_interval_s",
        shown: str::to_owned,
        apply: |s, v| {
            s.crawl_interval_s = parse(v)?;
            check_crawl_interval(s.crawl_interval_s)
        },
    },
    EnvBinding {
        env: "AIMARKET_AUTO_CRAWL",
        setting: "auto_crawl",
        shown: str::to_owned,
        apply: |s, v| {
            s.auto_crawl = parse_bool(v)?;
            Ok(())
        },
    },
    EnvBinding {
        env: "AIMARKET_ALLOW_PRIVATE_PEERS",
        setting: "allow_private_peers",
        shown: str::to_owned,
        apply: |s, v| {
            s.allow_private_peers = parse_bool(v)?;
            Ok(())
        },
    },
    EnvBinding {
        env: "AIMARKET_OPEN_ADMISSION",
        setting: "open_admission",
        shown: str::to_owned,
        apply: |s, v| {
            s.open_admission = parse_bool(v)?;
            Ok(())
        },
    },
    EnvBinding {
        env: "AIMARKET_MAX_PENDING_PEERS",
        setting: "max_pending_peers",
        shown: str::to_owned,
        apply: |s, v| {
            s.max_pending_peers = parse(v)?;
            check_max_pending(s.max_pending_peers)
        },
    },
    EnvBinding {
        env: "AIMARKET_DEMO_PAYMENTS",
        setting: "demo_payments",
        shown: str::to_owned,
        apply: |s, v| {
            s.demo_payments = parse_bool(v)?;
            Ok(())
        },
    },
    // Legacy factory-era switch: it can only turn demo payments on, never off.
    EnvBinding {
        env: "AIFACTORY_AI_MARKET_DEMO_PAYMENT",
        setting: "demo_payments",
        shown: str::to_owned,
        apply: |s, v| {
            s.demo_payments |= parse_bool(v)?;
            Ok(())
        },
    },
    EnvBinding {
        env: "AIMARKET_SIGNING_KEY_PATH",
        setting: "signing_key_path",
        shown: str::to_owned,
        apply: |s, v| {
            s.signing_key_path = Some(PathBuf::from(v));
            Ok(())
        },
    },
    EnvBinding {
        env: "AIMARKET_PROVIDER_TIMEOUT_S",
        setting: "invoke.provider_timeout_s",
        shown: str::to_owned,
        apply: |s, v| {
            s.invoke.provider_timeout_s = parse(v)?;
            invoke::check_provider_timeout(s.invoke.provider_timeout_s)
        },
    },
    EnvBinding {
        env: "AIMARKET_MAX_PROVIDER_BODY_BYTES",
        setting: "invoke.max_provider_body_bytes",
        shown: str::to_owned,
        apply: |s, v| {
            s.invoke.max_provider_body_bytes = parse(v)?;
            invoke::check_max_body(s.invoke.max_provider_body_bytes)
        },
    },
    EnvBinding {
        env: "AIMARKET_INVOKE_RATE_PER_MIN",
        setting: "invoke.rate_per_min",
        shown: str::to_owned,
        apply: |s, v| {
            s.invoke.rate_per_min = parse(v)?;
            Ok(())
        },
    },
    EnvBinding {
        env: "AIMARKET_PEER_CREDENTIALS",
        setting: "invoke.peer_credentials",
        shown: redact,
        apply: |s, v| {
            s.invoke.peer_credentials = v.parse()?;
            Ok(())
        },
    },
    EnvBinding {
        env: "AIMARKET_SELLS_FOR",
        setting: "invoke.sells_for",
        shown: str::to_owned,
        apply: |s, v| {
            s.invoke.sells_for = v.parse()?;
            Ok(())
        },
    },
    EnvBinding {
        env: "AIMARKET_SIGN_ALL_PEERS",
        setting: "invoke.sign_all_peers",
        shown: str::to_owned,
        apply: |s, v| {
            s.invoke.sign_all_peers = parse_bool(v)?;
            Ok(())
        },
    },
    EnvBinding {
        env: "AIMARKET_SELLER_DIRECT_FEE",
        setting: "invoke.seller_direct_fee",
        shown: str::to_owned,
        apply: |s, v| {
            s.invoke.seller_direct_fee = v.parse()?;
            Ok(())
        },
    },
    EnvBinding {
        env: "AIMARKET_EVM_RPC_URL",
        setting: "payments.evm_rpc_url",
        shown: payments::show_rpc_url,
        apply: |s, v| {
            s.payments.evm_rpc_url = Some(parse(v)?);
            Ok(())
        },
    },
    EnvBinding {
        env: "AIMARKET_PAYMENT_RECIPIENT",
        setting: "payments.recipient",
        shown: str::to_owned,
        apply: |s, v| {
            s.payments.recipient = Some(parse(v)?);
            Ok(())
        },
    },
    EnvBinding {
        env: "AIMARKET_PAYMENT_TOKEN_CONTRACT",
        setting: "payments.token_contract",
        shown: str::to_owned,
        apply: |s, v| {
            s.payments.token_contract = Some(parse(v)?);
            Ok(())
        },
    },
    EnvBinding {
        env: "AIMARKET_WALLET_KEY_PATH",
        setting: "payments.wallet_key_path",
        shown: str::to_owned,
        apply: |s, v| {
            s.payments.wallet_key_path = Some(PathBuf::from(v));
            Ok(())
        },
    },
    EnvBinding {
        env: "AIMARKET_WALLET_KEY",
        setting: "payments.wallet_key",
        shown: redact,
        apply: |s, v| {
            s.payments.wallet_key = Some(v.parse()?);
            Ok(())
        },
    },
    EnvBinding {
        env: "AIMARKET_EVM_CHAIN_ID",
        setting: "payments.evm_chain_id",
        shown: str::to_owned,
        apply: |s, v| {
            s.payments.evm_chain_id = Some(parse(v)?);
            Ok(())
        },
    },
    EnvBinding {
        env: "AIMARKET_ESCROW_CONTRACT",
        setting: "payments.escrow_contract",
        shown: str::to_owned,
        apply: |s, v| {
            s.payments.escrow_contract = Some(parse(v)?);
            Ok(())
        },
    },
    EnvBinding {
        env: "AIMARKET_EVM_MAX_FEE_GWEI",
        setting: "payments.evm_max_fee_gwei",
        shown: str::to_owned,
        apply: |s, v| {
            s.payments.evm_max_fee_gwei = parse(v)?;
            Ok(())
        },
    },
    EnvBinding {
        env: "AIMARKET_PAYMENT_TOKEN_NAME",
        setting: "payments.token_name",
        shown: str::to_owned,
        apply: |s, v| {
            s.payments.token_name = v.trim().to_owned();
            Ok(())
        },
    },
    EnvBinding {
        env: "AIMARKET_PAYMENT_TOKEN_VERSION",
        setting: "payments.token_version",
        shown: str::to_owned,
        apply: |s, v| {
            s.payments.token_version = v.trim().to_owned();
            Ok(())
        },
    },
    EnvBinding {
        env: "AIMARKET_EVM_CONFIRMATIONS",
        setting: "payments.evm_confirmations",
        shown: str::to_owned,
        apply: |s, v| {
            s.payments.evm_confirmations = parse(v)?;
            payments::check_confirmations(s.payments.evm_confirmations)
        },
    },
    EnvBinding {
        env: "AIMARKET_CHANNEL_TTL_S",
        setting: "payments.channel_ttl_s",
        shown: str::to_owned,
        apply: |s, v| {
            s.payments.channel_ttl_s = parse(v)?;
            payments::check_channel_ttl(s.payments.channel_ttl_s)
        },
    },
    EnvBinding {
        env: "AIMARKET_WELL_KNOWN_REFRESH_S",
        setting: "crawl.well_known_refresh_s",
        shown: str::to_owned,
        apply: |s, v| {
            s.crawl.well_known_refresh_s = parse(v)?;
            crawl::check_well_known_refresh(s.crawl.well_known_refresh_s)
        },
    },
    EnvBinding {
        env: "AIMARKET_CRAWL_TIMEOUT_S",
        setting: "crawl.request_timeout_s",
        shown: str::to_owned,
        apply: |s, v| {
            s.crawl.request_timeout_s = parse(v)?;
            crawl::check_request_timeout(s.crawl.request_timeout_s)
        },
    },
    EnvBinding {
        env: "AIMARKET_MANIFEST_MAX_AGE_S",
        setting: "crawl.manifest_max_age_s",
        shown: str::to_owned,
        apply: |s, v| {
            s.crawl.manifest_max_age_s = parse(v)?;
            crawl::check_freshness(s.crawl.manifest_max_age_s)
        },
    },
    EnvBinding {
        env: "AIMARKET_MANIFEST_MAX_FUTURE_S",
        setting: "crawl.manifest_max_future_s",
        shown: str::to_owned,
        apply: |s, v| {
            s.crawl.manifest_max_future_s = parse(v)?;
            crawl::check_freshness(s.crawl.manifest_max_future_s)
        },
    },
    EnvBinding {
        env: "AIMARKET_REPUTATION_INTERVAL_S",
        setting: "reputation.recompute_interval_s",
        shown: str::to_owned,
        apply: |s, v| {
            s.reputation.recompute_interval_s = parse(v)?;
            reputation::check_recompute_interval(s.reputation.recompute_interval_s)
        },
    },
    EnvBinding {
        env: "AIMARKET_REDIS_KEY_PREFIX",
        setting: "replica.key_prefix",
        shown: str::to_owned,
        apply: |s, v| {
            s.replica.key_prefix = v.trim().to_owned();
            replica::check_key_prefix(&s.replica.key_prefix)
        },
    },
    EnvBinding {
        env: "AIMARKET_CATALOG_POLL_MS",
        setting: "replica.catalog_poll_ms",
        shown: str::to_owned,
        apply: |s, v| {
            s.replica.catalog_poll_ms = parse(v)?;
            replica::check_catalog_poll(s.replica.catalog_poll_ms)
        },
    },
    EnvBinding {
        env: "AIMARKET_CRAWL_LEASE_TTL_S",
        setting: "replica.crawl_lease_ttl_s",
        shown: str::to_owned,
        apply: |s, v| {
            s.replica.crawl_lease_ttl_s = parse(v)?;
            replica::check_lease_ttl(s.replica.crawl_lease_ttl_s)
        },
    },
    EnvBinding {
        env: "AIMARKET_MIN_TRUST_SCORE",
        setting: "reputation.min_trust_score",
        shown: str::to_owned,
        apply: |s, v| {
            s.reputation.min_trust_score = parse(v)?;
            reputation::check_unit(s.reputation.min_trust_score)
        },
    },
    EnvBinding {
        env: "AIMARKET_TRUST_PRIOR",
        setting: "reputation.admitted_prior",
        shown: str::to_owned,
        apply: |s, v| {
            s.reputation.admitted_prior = parse(v)?;
            reputation::check_unit(s.reputation.admitted_prior)
        },
    },
    EnvBinding {
        env: "AIMARKET_TRUST_PRIOR_WEIGHT",
        setting: "reputation.prior_weight",
        shown: str::to_owned,
        apply: |s, v| {
            s.reputation.prior_weight = parse(v)?;
            reputation::check_prior_weight(s.reputation.prior_weight)
        },
    },
    EnvBinding {
        env: "AIMARKET_PEER_BONDS",
        setting: "reputation.peer_bonds",
        shown: str::to_owned,
        apply: |s, v| {
            s.reputation.peer_bonds = v.parse()?;
            Ok(())
        },
    },
];

/// The names of every environment variable the hub reads for its settings.
pub fn env_names() -> impl Iterator<Item = &'static str> {
    all_env_bindings().map(|b| b.env)
}

/// Every binding, core areas first.
fn all_env_bindings() -> impl Iterator<Item = &'static EnvBinding> {
    ENV_BINDINGS
        .iter()
        .chain(limits::ENV_BINDINGS)
        .chain(telemetry::ENV_BINDINGS)
}

fn check_routing_fee(bps: u32) -> Result<(), String> {
    if bps > MAX_ROUTING_FEE_BPS {
        return Err(format!(
            "must be at most {MAX_ROUTING_FEE_BPS} basis points (100%)"
        ));
    }
    Ok(())
}

fn check_crawl_interval(seconds: u64) -> Result<(), String> {
    if seconds < MIN_CRAWL_INTERVAL_S {
        return Err(format!("must be at least {MIN_CRAWL_INTERVAL_S} seconds"));
    }
    if seconds > MAX_CRAWL_INTERVAL_S {
        return Err(format!(
            "must be at most {MAX_CRAWL_INTERVAL_S} seconds (use auto_crawl = false to stop periodic crawls)"
        ));
    }
    Ok(())
}

fn check_max_pending(n: u32) -> Result<(), String> {
    if n > MAX_MAX_PENDING_PEERS {
        return Err(format!("must be at most {MAX_MAX_PENDING_PEERS}"));
    }
    Ok(())
}

fn check_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err("must not be empty".into());
    }
    if name.chars().count() > 200 {
        return Err("must be at most 200 characters".into());
    }
    if name.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    Ok(())
}

fn check_path(path: &Path) -> Result<(), String> {
    if path.as_os_str().is_empty() {
        return Err("must not be empty".into());
    }
    Ok(())
}

impl Settings {
    /// Loads settings from all layers: defaults, the optional TOML file, the environment (read
    /// through `env`, so tests never mutate the process environment) and `flags`.
    /// An env variable set to the empty string counts as unset.
    pub fn load(
        config_file: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
        flags: Overrides,
    ) -> Result<Self, SettingsError> {
        let mut settings = match config_file {
            Some(path) => Self::from_toml_file(path)?,
            None => Self::default(),
        };
        settings.apply_env(env)?;
        settings.apply_overrides(flags);
        settings.validate()?;
        Ok(settings)
    }

    /// Loads with the real process environment.
    pub fn load_from_process_env(
        config_file: Option<&Path>,
        flags: Overrides,
    ) -> Result<Self, SettingsError> {
        Self::load(config_file, &|name| std::env::var(name).ok(), flags)
    }

    /// Settings for tests: a free loopback port, the given data dir, no periodic crawl, and
    /// private peers allowed (test providers run on loopback).
    pub fn for_test(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            name: "AIMarket Test Hub".to_owned(),
            listen: SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            data_dir: data_dir.into(),
            auto_crawl: false,
            allow_private_peers: true,
            ..Self::default()
        }
    }

    /// Parses a TOML file over the defaults; unknown keys and wrong types are errors that
    /// name the key.
    pub fn from_toml_file(path: &Path) -> Result<Self, SettingsError> {
        let text = std::fs::read_to_string(path).map_err(|e| SettingsError::ConfigRead {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        Self::from_toml_str(&text).map_err(|message| SettingsError::ConfigParse {
            path: path.to_owned(),
            message,
        })
    }

    /// Parses TOML text over the defaults (the file layer without the file).
    pub fn from_toml_str(text: &str) -> Result<Self, String> {
        Figment::from(Toml::string(text))
            .extract::<Self>()
            .map_err(|e| e.to_string())
    }

    fn apply_env(&mut self, env: &dyn Fn(&str) -> Option<String>) -> Result<(), SettingsError> {
        for binding in all_env_bindings() {
            let Some(value) = env(binding.env).filter(|v| !v.is_empty()) else {
                continue;
            };
            (binding.apply)(self, &value).map_err(|reason| SettingsError::Invalid {
                setting: binding.setting,
                origin: binding.env.to_owned(),
                value: (binding.shown)(&value),
                reason,
            })?;
        }
        Ok(())
    }

    fn apply_overrides(&mut self, flags: Overrides) {
        if let Some(listen) = flags.listen {
            self.listen = listen;
        }
        if let Some(dir) = flags.data_dir {
            self.data_dir = dir;
        }
        if let Some(url) = flags.public_url {
            self.public_url = Some(url);
        }
        if !flags.seeds.is_empty() {
            self.seeds = flags.seeds;
        }
        if let Some(url) = flags.database_url {
            self.database_url = Some(url);
        }
        if let Some(url) = flags.redis_url {
            self.redis_url = Some(url);
        }
    }

    /// Checks every rule that the types alone do not enforce. Values that reached here from
    /// the environment were already checked with their variable's name; this catches the
    /// config file, flags and programmatic construction.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let invalid =
            |setting: &'static str, value: String, reason: String| SettingsError::Invalid {
                setting,
                origin: "config".to_owned(),
                value,
                reason,
            };
        check_name(&self.name).map_err(|r| invalid("name", self.name.clone(), r))?;
        check_path(&self.data_dir)
            .map_err(|r| invalid("data_dir", self.data_dir.display().to_string(), r))?;
        check_routing_fee(self.routing_fee_bps)
            .map_err(|r| invalid("routing_fee_bps", self.routing_fee_bps.to_string(), r))?;
        check_crawl_interval(self.crawl_interval_s)
            .map_err(|r| invalid("crawl_interval_s", self.crawl_interval_s.to_string(), r))?;
        check_max_pending(self.max_pending_peers)
            .map_err(|r| invalid("max_pending_peers", self.max_pending_peers.to_string(), r))?;
        if let Some(path) = &self.signing_key_path {
            check_path(path)
                .map_err(|r| invalid("signing_key_path", path.display().to_string(), r))?;
        }
        self.crawl
            .check()
            .map_err(|(setting, value, reason)| invalid(setting, value, reason))?;
        self.invoke
            .check()
            .map_err(|(setting, value, reason)| invalid(setting, value, reason))?;
        self.payments
            .check()
            .map_err(|(setting, value, reason)| invalid(setting, value, reason))?;
        self.reputation
            .check()
            .map_err(|(setting, value, reason)| invalid(setting, value, reason))?;
        self.replica
            .check()
            .map_err(|(setting, value, reason)| invalid(setting, value, reason))?;
        self.telemetry
            .check()
            .map_err(|(setting, value, reason)| invalid(setting, value, reason))?;
        Ok(())
    }

    /// Where the hub's Ed25519 seed lives.
    pub fn signing_key_path(&self) -> PathBuf {
        self.signing_key_path
            .clone()
            .unwrap_or_else(|| self.data_dir.join(SIGNING_KEY_FILE))
    }

    /// The database to use: the configured URL, or the embedded SQLite file in the data dir.
    pub fn database(&self) -> DatabaseUrl {
        self.database_url
            .clone()
            .unwrap_or_else(|| DatabaseUrl::sqlite_file(&self.data_dir.join(SQLITE_FILE)))
    }
}

/// Shows that a secret was set without showing it.
fn redact(value: &str) -> String {
    format!("<redacted, {} characters>", value.chars().count())
}

#[cfg(test)]
mod tests;
