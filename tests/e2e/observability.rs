//! Metrics an operator scrapes, checked by the real tools (issue #16): a real Prometheus
//! (Debian's package) scrapes a hub under a small mixed load and its HTTP API returns series
//! for the histograms and counters; `promtool` lints the live `/metrics` and the alert
//! rules; every metric the Grafana dashboard and the alert rules use exists.
//!
//! Without `prometheus`/`promtool` on the PATH the tests are skipped with a message, except
//! under CI (`CI` set), where they fail: `.ci/run` installs the package.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use aimarket_e2e::catalog_server::{CatalogServer, tool};
use aimarket_e2e::provider::{FakeProvider, FakeTool, seed_provider};
use aimarket_e2e::{TestHub, wait_until};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::invoke_payments::{call_body, hub_paying, open_channel, paid_call, paid_tool};

/// The repository root.
pub(crate) fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `name` on the PATH; `None` (skip) when missing outside CI, a panic under CI.
pub(crate) fn require_binary(name: &str, package: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    let found = std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file());
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "`{name}` is not installed (Debian package `{package}`; .ci/run installs it)"
        );
        eprintln!("skipped: `{name}` is not installed (apt-get install {package})");
    }
    found
}

/// A hub with a free and a paid provider seeded, a crawled seed, and traffic of every kind
/// behind it: searches, free and paid invokes, a 402, a rejected call, a 404.
pub(crate) struct Loaded {
    pub hub: TestHub,
    _provider: FakeProvider,
    _catalog: CatalogServer,
}

pub(crate) async fn loaded_hub() -> Loaded {
    loaded_hub_with(|_| {}).await
}

/// [`loaded_hub`] with more settings.
pub(crate) async fn loaded_hub_with(
    change: impl FnOnce(&mut aimarket_hub::settings::Settings),
) -> Loaded {
    let free = FakeTool::echo("obs-free@v1");
    let paid = paid_tool("obs-paid@v1", 0.25);
    let provider = FakeProvider::builder()
        .tool(free.clone())
        .tool(paid.clone())
        .start()
        .await;
    let catalog = CatalogServer::with_tools(vec![tool("prod-obs", "crawled@v1", 0.1)]).await;
    let seed = catalog.url.parse().unwrap();
    let hub = hub_paying(&provider.url, |s| {
        s.seeds = vec![seed];
        change(s);
    })
    .await;
    seed_provider(&hub, &provider).await;
    crate::crawl::crawl(&hub).await;

    for intent in ["echo", "translate", "obs", ""] {
        let (status, body) = hub
            .get(&format!("/ai-market/v2/search?intent={intent}"))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    for _ in 0..3 {
        let (status, body) = hub
            .post(
                "/ai-market/v2/invoke",
                &call_body(&free, json!({"text": "hi"})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let channel = open_channel(&hub, 1.0).await;
    for _ in 0..2 {
        let (status, _, body) = paid_call(&hub, &paid, &channel, None, json!({"text": "x"})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    // No payment at all: a 402.
    let (status, body) = hub
        .post(
            "/ai-market/v2/invoke",
            &call_body(&paid, json!({"text": "x"})),
        )
        .await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{body}");
    // Refused by the hub before any provider is called.
    let (status, body) = hub
        .post(
            "/ai-market/v2/invoke",
            &json!({"capability_id": "nobody-has@v1", "product_id": "none", "input": {}}),
        )
        .await;
    assert!(status.is_client_error(), "{status} {body}");
    let (status, _) = hub.get("/no/such/route").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    Loaded {
        hub,
        _provider: provider,
        _catalog: catalog,
    }
}

/// The live `/metrics` text.
pub(crate) async fn scrape(hub: &TestHub) -> String {
    let response = hub.request(Method::GET, "/metrics").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.text().await.unwrap()
}

/// A free loopback port (bound and released; Prometheus binds it right after).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A Prometheus child process, killed when dropped.
struct Prometheus {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Starts `binary` scraping `target` (`host:port`) every second, with the hub's alert
    /// rules loaded (a rule file Prometheus cannot load stops it: checked too).
    fn start(binary: &Path, target: &str) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let rules = repo_root().join("deploy/prometheus/alerts.yaml");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files: [\"{}\"]\n\
             scrape_configs:\n  - job_name: aimarket-hub\n    static_configs:\n      - targets: [\"{target}\"]\n",
            rules.display()
        );
        let config_path = dir.path().join("prometheus.yml");
        std::fs::File::create(&config_path)
            .unwrap()
            .write_all(config.as_bytes())
            .unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// The result vector of an instant query (empty on any error).
    async fn query(&self, client: &reqwest::Client, query: &str) -> Vec<Value> {
        let url = reqwest::Url::parse_with_params(
            &format!("{}/api/v1/query", self.url),
            &[("query", query)],
        )
        .unwrap();
        let Ok(response) = client.get(url).send().await else {
            return Vec::new();
        };
        let body: Value = response.json().await.unwrap_or(Value::Null);
        body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

/// The histograms and counters the issue names, as queries that must return series.
const EXPECTED_SERIES: &[&str] = &[
    "aimarket_http_request_duration_seconds_count{route=\"/ai-market/v2/invoke\",status_class=\"2xx\"}",
    "aimarket_http_request_duration_seconds_count{route=\"unmatched\",status_class=\"4xx\"}",
    "aimarket_search_duration_seconds_count{stage=\"total\"}",
    "aimarket_search_duration_seconds_count{stage=\"index\"}",
    "aimarket_invoke_added_latency_seconds_count{outcome=\"ok\"}",
    "aimarket_invoke_provider_duration_seconds_count{outcome=\"ok\"}",
    "aimarket_invoke_added_latency_seconds_count{outcome=\"payment_required\"}",
    "aimarket_invoke_added_latency_seconds_count{outcome=\"rejected\"}",
    "aimarket_crawl_run_duration_seconds_count{result=\"completed\"}",
    "aimarket_ledger_operation_duration_seconds_count{operation=\"hold\"}",
    "aimarket_ledger_operation_duration_seconds_count{operation=\"capture\"}",
    "aimarket_invokes_total{outcome=\"ok\",rail=\"hub_channel\"}",
    "aimarket_invokes_total{outcome=\"ok\",rail=\"none\"}",
    "aimarket_invoke_routed_usd_total",
    "aimarket_invoke_fees_earned_usd_total",
    "aimarket_crawl_peers_total{result=\"updated\"}",
    "aimarket_crawl_runs_total{result=\"completed\"}",
    "aimarket_limit_refusals_total",
    "aimarket_ssrf_refusals_total",
    "aimarket_otel_spans_dropped_total",
    "aimarket_index_documents",
    "aimarket_index_lag",
    "aimarket_peers{status=\"active\"}",
    "aimarket_channels_open",
    "aimarket_replica_mode{mode=\"single-replica\"}",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_histograms_and_counters_from_a_loaded_hub() {
    let Some(binary) = require_binary("prometheus", "prometheus") else {
        return;
    };
    let loaded = loaded_hub().await;
    let hub = &loaded.hub;
    let target = hub.url("").trim_start_matches("http://").to_owned();
    let target = target.trim_end_matches('/').to_owned();
    let prometheus = Prometheus::start(&binary, &target);
    let client = reqwest::Client::builder().no_proxy().build().unwrap();

    // Scraped at least twice, so counters have a rate too.
    let scraped = wait_until(Duration::from_secs(60), || async {
        prometheus
            .query(
                &client,
                "count_over_time(up{job=\"aimarket-hub\"}[1m]) >= 2",
            )
            .await
            .len()
            == 1
    })
    .await;
    assert!(
        scraped,
        "Prometheus never scraped the hub:\n{}",
        prometheus.log()
    );
    let up = prometheus.query(&client, "up{job=\"aimarket-hub\"}").await;
    assert_eq!(up[0]["value"][1], "1", "{up:?}\n{}", prometheus.log());

    for query in EXPECTED_SERIES {
        let series = prometheus.query(&client, query).await;
        assert!(
            !series.is_empty(),
            "no series for {query}\n/metrics:\n{}",
            scrape(hub).await
        );
    }
    // Values, not just names: what the load did is what Prometheus stored.
    let ok = prometheus
        .query(&client, "sum(aimarket_invokes_total{outcome=\"ok\"})")
        .await;
    assert_eq!(ok[0]["value"][1], "5", "{ok:?}");
    let fees = prometheus
        .query(&client, "aimarket_invoke_fees_earned_usd_total > 0")
        .await;
    assert!(!fees.is_empty(), "{fees:?}");
    let p99 = prometheus
        .query(
            &client,
            "histogram_quantile(0.99, sum by (le) (rate(aimarket_http_request_duration_seconds_bucket[1m])))",
        )
        .await;
    assert_eq!(p99.len(), 1, "{p99:?}");
    // The rule file loaded and its groups are evaluated.
    let rules: Value = client
        .get(format!("{}/api/v1/rules", prometheus.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let groups = rules["data"]["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1, "{rules}");
    assert!(groups[0]["rules"].as_array().unwrap().len() >= 5, "{rules}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_accepts_the_live_metrics_and_the_alert_rules() {
    let Some(promtool) = require_binary("promtool", "prometheus") else {
        return;
    };
    let loaded = loaded_hub().await;
    let metrics = scrape(&loaded.hub).await;

    let mut check = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    check
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics:\n{}{}\n{metrics}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let rules = repo_root().join("deploy/prometheus/alerts.yaml");
    let out = Command::new(&promtool)
        .args(["check", "rules"])
        .arg(&rules)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool check rules:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Every metric the dashboard and the alerts use is one the hub exports.
    for file in [
        "deploy/grafana/aimarket-hub.json",
        "deploy/prometheus/alerts.yaml",
    ] {
        let text = std::fs::read_to_string(repo_root().join(file)).unwrap();
        for name in metric_names(&text) {
            let base = ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .filter(|base| metrics.contains(&format!("# TYPE {base} histogram")))
                .unwrap_or(&name);
            assert!(
                metrics.contains(&format!("# TYPE {base} ")),
                "{file} uses {name}, which /metrics does not export"
            );
        }
    }
}

/// The `aimarket_…` identifiers in `text`.
fn metric_names(text: &str) -> Vec<String> {
    let mut names: Vec<String> = text
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|word| word.starts_with("aimarket_"))
        .map(str::to_owned)
        .collect();
    names.sort();
    names.dedup();
    names
}
