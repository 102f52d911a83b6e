//! [`TestHub`]: the real `Application`, in process, on 127.0.0.1 port 0.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::web;
use aimarket_hub::settings::{Secret, Settings};
use aimarket_hub::startup::{Application, ExtraPlugins, install_crypto_provider};
use aimarket_hub::state::AppState;
use reqwest::header::HeaderMap;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::Value;
use tempfile::TempDir;
use tokio::task::JoinHandle;

/// The admin bearer token every test hub is configured with (unless a test overrides it).
pub const TEST_ADMIN_TOKEN: &str = "e2e-admin-token";

/// Per-request bound for the test client: generous for a loaded CI machine, finite so a
/// hung hub fails the test instead of hanging it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Configures a [`TestHub`] before it starts.
pub struct TestHubBuilder {
    settings: Settings,
    data_dir: Option<PathBuf>,
    plugins: ExtraPlugins,
}

impl TestHubBuilder {
    /// Changes settings (they start as `Settings::for_test` plus the test admin token).
    pub fn settings(mut self, change: impl FnOnce(&mut Settings)) -> Self {
        change(&mut self.settings);
        self
    }

    /// Uses an existing data dir (owned by the caller), e.g. to restart a hub on the same
    /// database and key. By default each hub gets a fresh temporary dir.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// Registers a plugin factory next to the built-ins, so `settings.plugins` entries can
    /// name it (test-only plugins).
    pub fn plugin_factory(mut self, name: &str, factory: aimarket_plugins::PluginFactory) -> Self {
        self.plugins.push((name.to_owned(), factory));
        self
    }

    /// Builds and starts the hub; panics with the startup error if it cannot start.
    pub async fn start(self) -> TestHub {
        crate::init_telemetry();
        install_crypto_provider();
        let (temp, data_dir) = match self.data_dir {
            Some(dir) => (None, dir),
            None => {
                let temp = tempfile::tempdir().expect("create a temporary data dir");
                let dir = temp.path().to_path_buf();
                (Some(temp), dir)
            }
        };
        let mut settings = self.settings;
        settings.data_dir = data_dir.clone();
        let app = Application::build_with(settings, self.plugins)
            .await
            .unwrap_or_else(|e| panic!("hub failed to start: {e}"));
        let addr = app.local_addr();
        let state = app.state();
        let handle = app.handle();
        let task = tokio::spawn(app.into_server());
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .expect("build the test HTTP client");
        TestHub {
            base_url: format!("http://{addr}"),
            addr,
            state,
            client,
            handle,
            task: Some(task),
            data_dir,
            _temp: temp,
        }
    }
}

/// A running hub. Stopped (without draining) when dropped; call [`TestHub::stop`] to stop it
/// gracefully and wait for it.
pub struct TestHub {
    /// `http://127.0.0.1:PORT`.
    pub base_url: String,
    /// The bound address.
    pub addr: SocketAddr,
    /// The hub's shared state, for assertions without a public endpoint.
    pub state: web::Data<AppState>,
    /// A client for requests the helpers below do not cover.
    pub client: reqwest::Client,
    handle: ServerHandle,
    task: Option<JoinHandle<std::io::Result<()>>>,
    data_dir: PathBuf,
    _temp: Option<TempDir>,
}

impl TestHub {
    /// A builder with test defaults.
    pub fn builder() -> TestHubBuilder {
        let mut settings = Settings::for_test(PathBuf::new());
        settings.admin_token = Some(TEST_ADMIN_TOKEN.parse::<Secret>().expect("non-empty token"));
        TestHubBuilder {
            settings,
            data_dir: None,
            plugins: ExtraPlugins::new(),
        }
    }

    /// Starts a hub with test defaults.
    pub async fn start() -> Self {
        Self::builder().start().await
    }

    /// The absolute URL of `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// The hub's data dir.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// A request builder for `path`, for cases the helpers do not cover.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, self.url(path))
    }

    /// Sends `request`; returns status, headers and the body as JSON (`Null` when empty, a
    /// JSON string holding the text when the body is not JSON).
    pub async fn send(&self, request: RequestBuilder) -> (StatusCode, HeaderMap, Value) {
        let response = request.send().await.expect("request to the test hub");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("read the response body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        (status, headers, body)
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        let (status, _, body) = self.send(self.request(Method::GET, path)).await;
        (status, body)
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        let (status, _, body) = self.send(self.request(Method::POST, path).json(body)).await;
        (status, body)
    }

    /// `POST path` with raw bytes and a content type (for malformed-input tests).
    pub async fn post_raw(
        &self,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> (StatusCode, Value) {
        let request = self
            .request(Method::POST, path)
            .header("content-type", content_type)
            .body(body);
        let (status, _, body) = self.send(request).await;
        (status, body)
    }

    /// `POST path` with a JSON body and the admin bearer token.
    pub async fn admin_post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        let request = self
            .request(Method::POST, path)
            .bearer_auth(TEST_ADMIN_TOKEN)
            .json(body);
        let (status, _, body) = self.send(request).await;
        (status, body)
    }

    /// Stops gracefully and waits for the server to finish.
    pub async fn stop(mut self) {
        self.handle.stop(true).await;
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        // Releases the search index (its writer lock), so a hub restarted on this data dir
        // can open it.
        self.state.catalog.close();
        assert!(
            self.state
                .catalog
                .wait_released(Duration::from_secs(30))
                .await,
            "the search index was not released"
        );
    }
}

impl Drop for TestHub {
    fn drop(&mut self) {
        // `stop` sends its command synchronously; the returned future only waits for the
        // acknowledgement, which a dropping test cannot await.
        drop(self.handle.stop(false));
        if let Some(task) = self.task.take() {
            task.abort();
        }
        self.state.catalog.close();
    }
}
