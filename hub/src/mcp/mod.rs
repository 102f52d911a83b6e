//! MCP (Model Context Protocol) server logic: JSON-RPC 2.0 messages in, answers out. The
//! transport (Streamable HTTP at `/ai-market/mcp` and `/mcp`) lives in
//! the HTTP layer (`http::mcp`); this module never sees HTTP.
//!
//! | method | answer |
//! |---|---|
//! | `initialize` | the requested protocol version when supported ([`PROTOCOL_VERSIONS`]), else the newest; `capabilities.tools.listChanged = false`; `serverInfo`; `instructions`; a new session id |
//! | `ping` | `{}` |
//! | `tools/list` | [`tools::definitions`] |
//! | `tools/call` | [`tools::call`]; an unknown tool or non-object arguments are `-32602` |
//! | `resources/list`, `resources/templates/list`, `prompts/list` | empty lists |
//! | any notification | nothing (the transport answers 202) |
//! | anything else | `-32601` (never an HTTP error: the `mcp` client probes `server/discover` and falls back on `-32601`) |
//!
//! Sessions are stateless: `initialize` issues an `Mcp-Session-Id` so clients that keep one
//! work, but no request needs it and every request is answered on its own.

pub mod draft;
pub mod jsonrpc;
pub mod lookup;
pub mod tools;

use serde_json::{Value, json};

use crate::catalog::Catalog;
use crate::invoke::InvokeDeps;
use crate::limits::Caller;
use jsonrpc::{Body, BodyError, Message};

/// Supported protocol versions, newest first.
pub const PROTOCOL_VERSIONS: [&str; 3] = ["2025-06-18", "2025-03-26", "2024-11-05"];

/// What `initialize` tells the client about this server.
pub const INSTRUCTIONS: &str = "This server is an AIMarket hub: a federated marketplace of AI \
capabilities (translation, data, images, audio, …) offered by many providers. Use market_search \
to find capabilities for a task (it returns prices in USD per call, latency, trust and a draft \
input), market_describe for a capability's full schema, and market_invoke to call one. Free \
capabilities need no payment; priced ones are paid from a payment channel opened at this hub \
(market_invoke's result explains how when payment is missing).";

/// What the MCP server uses: the routed invoke (`market_invoke`, `market_pipeline`, and the
/// lookups of `market_describe`), the catalog (`market_search`) and two settings. Lent by
/// `AppState::mcp_deps`.
#[derive(Debug, Clone, Copy)]
pub struct McpDeps<'a> {
    /// The routed invoke and what it reads (store, plugins, metrics, public URL, …).
    pub invoke: InvokeDeps<'a>,
    /// The search index behind `market_search`.
    pub catalog: &'a Catalog,
    /// The hub's name (`serverInfo.title`).
    pub hub_name: &'a str,
    /// Demo payments are on (a 402's next steps say any `demo-` deposit is accepted).
    pub demo_payments: bool,
}

/// Who is calling, as the transport saw it.
#[derive(Debug, Clone)]
pub struct McpContext {
    /// What the caller presented (address, API key); `market_invoke` identifies it like
    /// the HTTP invoke does.
    pub caller: Caller,
    /// Request id for logs and plugins.
    pub request_id: String,
}

/// What the transport must send back.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// Only notifications or responses were posted: 202 with no body.
    Accepted,
    /// One answer (an object) or a batch answer (an array).
    Answer {
        /// The JSON-RPC answer.
        body: Value,
        /// A session id to send as `Mcp-Session-Id` (after `initialize`).
        session_id: Option<String>,
    },
    /// The body as a whole is not JSON-RPC: 400 with this error answer.
    Rejected(Value),
}

/// Handles one POSTed body.
pub async fn handle(deps: &McpDeps<'_>, body: &[u8], ctx: &McpContext) -> Reply {
    let parsed = match jsonrpc::parse(body) {
        Ok(parsed) => parsed,
        Err(BodyError { code, message }) => {
            return Reply::Rejected(jsonrpc::error(Value::Null, code, message));
        }
    };
    let mut session_id = None;
    match parsed {
        Body::Single(message) => match answer(deps, message, ctx, &mut session_id).await {
            Some(body) => Reply::Answer { body, session_id },
            None => Reply::Accepted,
        },
        Body::Batch(messages) => {
            let mut answers = Vec::with_capacity(messages.len());
            // Bounded by the batch limit; calls run in order, as a client would send them.
            for message in messages {
                if let Some(a) = answer(deps, message, ctx, &mut session_id).await {
                    answers.push(a);
                }
            }
            if answers.is_empty() {
                Reply::Accepted
            } else {
                Reply::Answer {
                    body: Value::Array(answers),
                    session_id,
                }
            }
        }
    }
}

/// The answer to one message; `None` for notifications and responses.
async fn answer(
    deps: &McpDeps<'_>,
    message: Message,
    ctx: &McpContext,
    session_id: &mut Option<String>,
) -> Option<Value> {
    match message {
        Message::Notification { method } => {
            tracing::debug!(method, "mcp notification");
            None
        }
        Message::Response => None,
        Message::Invalid { id, message } => {
            Some(jsonrpc::error(id, jsonrpc::INVALID_REQUEST, message))
        }
        Message::Request { id, method, params } => {
            Some(request(deps, id, &method, params, ctx, session_id).await)
        }
    }
}

async fn request(
    deps: &McpDeps<'_>,
    id: Value,
    method: &str,
    params: Option<Value>,
    ctx: &McpContext,
    session_id: &mut Option<String>,
) -> Value {
    let params = match jsonrpc::params_object(params) {
        Ok(params) => params,
        Err(message) => return jsonrpc::error(id, jsonrpc::INVALID_PARAMS, message),
    };
    match method {
        "initialize" => {
            let requested = params.get("protocolVersion").and_then(Value::as_str);
            let version = requested
                .filter(|v| PROTOCOL_VERSIONS.contains(v))
                .unwrap_or(PROTOCOL_VERSIONS[0]);
            *session_id = Some(uuid::Uuid::new_v4().simple().to_string());
            jsonrpc::result(
                id,
                json!({
                    "protocolVersion": version,
                    "capabilities": {"tools": {"listChanged": false}},
                    "serverInfo": {"name": "aimarket-hub", "title": deps.hub_name, "version": env!("CARGO_PKG_VERSION")},
                    "instructions": INSTRUCTIONS,
                }),
            )
        }
        "ping" => jsonrpc::result(id, json!({})),
        "tools/list" => jsonrpc::result(id, json!({"tools": tools::definitions()})),
        "tools/call" => {
            let Some(name) = params.get("name").and_then(Value::as_str) else {
                return jsonrpc::error(id, jsonrpc::INVALID_PARAMS, "`name` is required");
            };
            let arguments = match params.get("arguments") {
                None | Some(Value::Null) => serde_json::Map::new(),
                Some(Value::Object(map)) => map.clone(),
                Some(_) => {
                    return jsonrpc::error(
                        id,
                        jsonrpc::INVALID_PARAMS,
                        "`arguments` must be an object",
                    );
                }
            };
            match tools::call(deps, name, arguments, ctx).await {
                Some(result) => jsonrpc::result(id, result),
                None => {
                    jsonrpc::error(id, jsonrpc::INVALID_PARAMS, format!("Unknown tool: {name}"))
                }
            }
        }
        "resources/list" => jsonrpc::result(id, json!({"resources": []})),
        "resources/templates/list" => jsonrpc::result(id, json!({"resourceTemplates": []})),
        "prompts/list" => jsonrpc::result(id, json!({"prompts": []})),
        other => jsonrpc::error_with_data(
            id,
            jsonrpc::METHOD_NOT_FOUND,
            format!("Method not found: {other}"),
            json!({"method": other}),
        ),
    }
}

/// The v1 JSON tools list (`GET /ai-market/mcp` without `Accept: text/event-stream`).
pub fn v1_tools_list() -> Value {
    let tools: Vec<Value> = tools::definitions()
        .into_iter()
        .map(|t| json!({"name": t["name"], "description": t["description"], "inputSchema": t["inputSchema"]}))
        .collect();
    json!({"protocol": "mcp", "version": "1.0", "transport": "streamable-http", "protocol_versions": PROTOCOL_VERSIONS, "tools": tools})
}
