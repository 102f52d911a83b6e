//! A provider that misbehaves on purpose at the TCP level, where an HTTP framework cannot:
//! connection resets, bodies cut short, trickled and endless answers, and answers that come
//! after the hub gave up. Raw tokio sockets on loopback; the path of the request picks the
//! fault (see [`Fault`]), so one server serves every fault at once.
//!
//! Every loop is bounded in count and time: a connection reads at most 1 MiB of request and
//! writes at most [`HUGE_BYTES`], trickles at most [`TRICKLE_BYTES`] bytes, and stops at the
//! first write error (the hub hung up).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aimarket_protocol::capability::Capability;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Size of the endless answer: 50 MB.
pub const HUGE_BYTES: usize = 50 * 1024 * 1024;
/// Bytes a trickling answer sends at most (one a second).
pub const TRICKLE_BYTES: usize = 60;
/// How long the late provider waits before its (too late) 200.
pub const LATE_BY: Duration = Duration::from_secs(3);

/// One way to misbehave, chosen by the request path `/invoke/<name>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// A correct, unsigned 200 answer (the control).
    Ok,
    /// Reads the request, then resets the connection (RST) without a byte.
    ResetAfterRequest,
    /// Sends the status line, headers and 100 of 1,000 promised bytes, then resets.
    ResetMidBody,
    /// Headers, then one body byte a second.
    Trickle,
    /// 200 with a 50 MB body and no `Content-Length`.
    Huge,
    /// 200 with a body that is not JSON.
    InvalidJson,
    /// 503 with a JSON error.
    Status5xx,
    /// 402 although the hub paid.
    PaymentRequired,
    /// 200 with an `X-Provider-Signature` that does not verify.
    BadSignature,
    /// Never answers within the hub's timeout, then answers 200.
    Late,
}

impl Fault {
    /// Every fault (the control first).
    pub const ALL: [Fault; 10] = [
        Fault::Ok,
        Fault::ResetAfterRequest,
        Fault::ResetMidBody,
        Fault::Trickle,
        Fault::Huge,
        Fault::InvalidJson,
        Fault::Status5xx,
        Fault::PaymentRequired,
        Fault::BadSignature,
        Fault::Late,
    ];

    /// The path segment naming it.
    pub fn name(self) -> &'static str {
        match self {
            Fault::Ok => "ok",
            Fault::ResetAfterRequest => "reset-after-request",
            Fault::ResetMidBody => "reset-mid-body",
            Fault::Trickle => "trickle",
            Fault::Huge => "huge",
            Fault::InvalidJson => "invalid-json",
            Fault::Status5xx => "status-5xx",
            Fault::PaymentRequired => "payment-required",
            Fault::BadSignature => "bad-signature",
            Fault::Late => "late",
        }
    }

    fn from_path(path: &str) -> Fault {
        let name = path.rsplit('/').next().unwrap_or_default();
        Fault::ALL
            .into_iter()
            .find(|f| f.name() == name)
            .unwrap_or(Fault::Ok)
    }
}

/// The running fake. Its accept loop stops when it is dropped.
pub struct FaultyProvider {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// Connections accepted so far.
    pub connections: Arc<AtomicUsize>,
    accept: JoinHandle<()>,
}

impl Drop for FaultyProvider {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl FaultyProvider {
    /// Binds a free loopback port and serves.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = connections.clone();
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(serve(stream));
            }
        });
        Self {
            url,
            connections,
            accept,
        }
    }

    /// A priced capability whose endpoint is this fake with `fault`, as a crawl would store
    /// it. `provider_pubkey` is a key the fake never signs with, so any signature fails.
    pub fn capability(&self, fault: Fault, price_usd: f64) -> Capability {
        let cid = format!("{}@v1", fault.name());
        let invoke_url = format!("{}/invoke/{}", self.url, fault.name());
        let key = aimarket_protocol::signing::KeyPair::from_seed(&[42; 32]);
        let schema = json!({"type": "object"});
        let tool = json!({
            "name": format!("faulty.{cid}"),
            "product_id": "faulty",
            "capability_id": cid,
            "description": format!("a provider that fails with {}", fault.name()),
            "input_schema": schema,
            "price_per_call_usd": price_usd,
            "invoke_url": invoke_url,
            "provider_pubkey": key.public_key().to_b64(),
        });
        Capability {
            origin: self.url.clone(),
            via: None,
            product_id: "faulty".into(),
            capability_id: cid.clone(),
            name: format!("faulty.{cid}"),
            description: format!("a provider that fails with {}", fault.name()),
            input_schema: schema.to_string(),
            output_schema: None,
            price_usd,
            p50_latency_ms: Some(10),
            success_rate: Some(0.99),
            invoke_url: Some(invoke_url),
            tool_json: tool.to_string(),
        }
    }
}

/// Reads one request (head and `Content-Length` body, at most 1 MiB) and returns its path.
async fn read_request(stream: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if buf.len() > 1 << 20 {
            return None;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0)
        .min(1 << 20);
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let path = head.split_whitespace().nth(1)?.to_owned();
    Some(path)
}

fn answer(status: &str, extra: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{extra}connection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

const OK_BODY: &str = r#"{"success": true, "result": {"ok": true}}"#;

async fn serve(mut stream: TcpStream) {
    let Some(path) = read_request(&mut stream).await else {
        return;
    };
    let fault = Fault::from_path(&path);
    match fault {
        Fault::Ok => {
            let _ = stream.write_all(&answer("200 OK", "", OK_BODY)).await;
        }
        Fault::ResetAfterRequest => {
            let _ = stream.set_zero_linger();
        }
        Fault::ResetMidBody => {
            let head =
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n";
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(&[b' '; 100]).await;
            let _ = stream.flush().await;
            let _ = stream.set_zero_linger();
        }
        Fault::Trickle => {
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {TRICKLE_BYTES}\r\n\r\n"
            );
            if stream.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            for _ in 0..TRICKLE_BYTES {
                if stream.write_all(b" ").await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        Fault::Huge => {
            let head =
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n";
            if stream.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let block = vec![b' '; 64 * 1024];
            for _ in 0..HUGE_BYTES / block.len() {
                if stream.write_all(&block).await.is_err() {
                    return;
                }
            }
        }
        Fault::InvalidJson => {
            let _ = stream.write_all(&answer("200 OK", "", "{not json")).await;
        }
        Fault::Status5xx => {
            let body = r#"{"error": "overloaded"}"#;
            let _ = stream
                .write_all(&answer("503 Service Unavailable", "", body))
                .await;
        }
        Fault::PaymentRequired => {
            let body = r#"{"error": "payment_required", "needed": {"amount_usd": 0.1}}"#;
            let extra = "x-payment-required: {\"amount_usd\": 0.1}\r\n";
            let _ = stream
                .write_all(&answer("402 Payment Required", extra, body))
                .await;
        }
        Fault::BadSignature => {
            let sig = "x-provider-signature: AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n";
            let _ = stream.write_all(&answer("200 OK", sig, OK_BODY)).await;
        }
        Fault::Late => {
            tokio::time::sleep(LATE_BY).await;
            let _ = stream.write_all(&answer("200 OK", "", OK_BODY)).await;
        }
    }
}
