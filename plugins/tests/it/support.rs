//! Fixtures, configurable test plugins and a tiny HTTP/1.1 server on 127.0.0.1.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aimarket_plugins::{
    Candidate, CapabilityRef, Decision, HookError, HookResult, Hooks, InvokeOutcomeView,
    InvokeView, Plugin, PluginContext, Provider, SearchQueryView, UpstreamPayment, async_trait,
};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub fn ctx() -> PluginContext {
    PluginContext::new("req-test", "https://hub.test").with_client_id("client-1")
}

pub fn query(intent: &str) -> SearchQueryView {
    SearchQueryView {
        intent: intent.into(),
        limit: 20,
        ..SearchQueryView::default()
    }
}

pub fn candidate(key: &str, origin: &str, capability_id: &str, bm25: f32) -> Candidate {
    Candidate {
        key: key.into(),
        product_id: format!("prod-{key}").into(),
        capability_id: capability_id.into(),
        origin: origin.into(),
        source_hub_name: "Test hub".into(),
        via: None,
        bm25,
        score: f64::from(bm25),
        price_usd: 0.01,
        routed_price_usd: 0.0101,
        p50_latency_ms: 100,
        trust_score: 0.5,
        success_rate: 0.9,
        tool: Arc::new(json!({"name": capability_id})),
    }
}

pub fn keys(list: &[Candidate]) -> Vec<&str> {
    list.iter().map(|c| &*c.key).collect()
}

pub fn provider(origin: &str, price_usd: f64, routed_price_usd: f64) -> Provider {
    Provider {
        origin: origin.into(),
        via: None,
        peer_url: origin.into(),
        price_usd,
        routed_price_usd,
        p50_latency_ms: 100,
        trust_score: 0.5,
        success_rate: 0.9,
        target_url: format!("{origin}/ai-market/v2/invoke").into(),
    }
}

pub fn origins(list: &[Provider]) -> Vec<&str> {
    list.iter().map(|p| &*p.origin).collect()
}

pub fn capability(capability_id: &str) -> CapabilityRef {
    CapabilityRef {
        product_id: "prod-1".into(),
        capability_id: capability_id.into(),
        source_hub: None,
    }
}

pub fn invoke(capability_id: &str, provider: Provider, input: Value) -> InvokeView {
    InvokeView {
        product_id: "prod-1".into(),
        capability_id: capability_id.into(),
        source_hub: None,
        input: Arc::new(input),
        max_price_usd: None,
        provider,
        attempt: 0,
        upstream_payment: UpstreamPayment::None,
    }
}

pub fn ok_outcome() -> InvokeOutcomeView {
    InvokeOutcomeView::new(200, json!({"success": true, "result": {}}), 12)
}

/// What a [`TestPlugin`] does in every budgeted hook.
#[derive(Debug, Clone, Copy)]
pub enum Behaviour {
    /// rank/route: reverse the list; invoke hooks: allow.
    Reverse,
    /// Sleep (an async sleep), then clear the list / block: the result must never be seen.
    Sleep(Duration),
    /// Return an error.
    Fail,
    /// Panic.
    Panic,
    /// Invoke hooks block with this category; rank/route do nothing.
    Block(&'static str),
    /// Do nothing, allow.
    Allow,
}

/// A plugin whose hooks all follow one [`Behaviour`], counting its calls.
pub struct TestPlugin {
    name: String,
    behaviour: Behaviour,
    pub calls: AtomicU64,
    pub startups: AtomicU64,
    pub shutdowns: AtomicU64,
}

impl TestPlugin {
    pub fn new(name: &str, behaviour: Behaviour) -> Arc<Self> {
        Arc::new(Self {
            name: name.into(),
            behaviour,
            calls: AtomicU64::new(0),
            startups: AtomicU64::new(0),
            shutdowns: AtomicU64::new(0),
        })
    }

    async fn list<T>(&self, list: &mut Vec<T>) -> HookResult {
        self.calls.fetch_add(1, Ordering::SeqCst);
        match self.behaviour {
            Behaviour::Reverse => list.reverse(),
            Behaviour::Sleep(d) => {
                tokio::time::sleep(d).await;
                list.clear();
            }
            Behaviour::Fail => return Err(HookError::new("deliberate failure")),
            Behaviour::Panic => panic!("deliberate panic in {}", self.name),
            Behaviour::Block(_) | Behaviour::Allow => {}
        }
        Ok(())
    }

    async fn decide(&self) -> HookResult<Decision> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        match self.behaviour {
            Behaviour::Sleep(d) => {
                tokio::time::sleep(d).await;
                Ok(Decision::block("late", "too late to matter"))
            }
            Behaviour::Fail => Err(HookError::new("deliberate failure")),
            Behaviour::Panic => panic!("deliberate panic in {}", self.name),
            Behaviour::Block(category) => Ok(Decision::block(category, "test block")),
            Behaviour::Reverse | Behaviour::Allow => Ok(Decision::Allow),
        }
    }
}

#[async_trait]
impl Plugin for TestPlugin {
    fn name(&self) -> &str {
        &self.name
    }

    fn hooks(&self) -> Hooks {
        Hooks::ALL
    }

    async fn rank(
        &self,
        _ctx: &mut PluginContext,
        _query: &SearchQueryView,
        candidates: &mut Vec<Candidate>,
    ) -> HookResult {
        self.list(candidates).await
    }

    async fn route(
        &self,
        _ctx: &mut PluginContext,
        _capability: &CapabilityRef,
        providers: &mut Vec<Provider>,
    ) -> HookResult {
        self.list(providers).await
    }

    async fn before_invoke(
        &self,
        _ctx: &mut PluginContext,
        _req: &InvokeView,
    ) -> HookResult<Decision> {
        self.decide().await
    }

    async fn after_invoke(
        &self,
        _ctx: &mut PluginContext,
        _req: &InvokeView,
        _resp: &InvokeOutcomeView,
    ) -> HookResult<Decision> {
        self.decide().await
    }

    async fn startup(&self) -> HookResult {
        self.startups.fetch_add(1, Ordering::SeqCst);
        match self.behaviour {
            Behaviour::Fail => Err(HookError::new("cannot start")),
            _ => Ok(()),
        }
    }

    async fn shutdown(&self) {
        self.shutdowns.fetch_add(1, Ordering::SeqCst);
    }
}

/// One request the test server received.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The server's answer to one request.
pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub delay: Duration,
}

impl Reply {
    pub fn json(body: Value) -> Self {
        Self {
            status: 200,
            body,
            delay: Duration::ZERO,
        }
    }
}

type Handler = Arc<dyn Fn(&Value) -> Reply + Send + Sync>;

/// A real HTTP/1.1 server on 127.0.0.1 answering JSON POSTs, one request per connection.
pub struct TestServer {
    pub url: String,
    pub received: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

const MAX_CONNECTIONS: usize = 256;
const MAX_REQUEST_BYTES: usize = 1 << 20;

impl TestServer {
    pub async fn start(handler: impl Fn(&Value) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let received = Arc::new(Mutex::new(Vec::new()));
        let handler: Handler = Arc::new(handler);
        let log = Arc::clone(&received);
        let task = tokio::spawn(async move {
            for _ in 0..MAX_CONNECTIONS {
                let Ok((socket, _)) = listener.accept().await else {
                    return;
                };
                let (handler, log) = (Arc::clone(&handler), Arc::clone(&log));
                tokio::spawn(async move {
                    let _ = serve_one(socket, handler, log).await;
                });
            }
        });
        Self {
            url,
            received,
            task,
        }
    }

    pub fn requests(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

async fn serve_one(
    mut socket: TcpStream,
    handler: Handler,
    log: Arc<Mutex<Vec<Received>>>,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > MAX_REQUEST_BYTES {
            return Ok(());
        }
        let n = socket.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let headers: Vec<(String, String)> = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
        .min(MAX_REQUEST_BYTES);
    while buf.len() < head_end + length {
        let n = socket.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body: Value =
        serde_json::from_slice(&buf[head_end..head_end + length]).unwrap_or(Value::Null);
    let reply = handler(&body);
    log.lock().unwrap().push(Received { headers, body });
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let payload = reply.body.to_string();
    let response = format!(
        "HTTP/1.1 {} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{}",
        reply.status,
        payload.len(),
        payload
    );
    socket.write_all(response.as_bytes()).await?;
    socket.shutdown().await
}
