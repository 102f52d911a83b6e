//! The MCP tools: `market_search`, `market_describe`, `market_invoke`, `market_pipeline`.
//!
//! Each call returns an MCP tool result `{content: [{type: "text", text}], structuredContent,
//! isError}`: the text is the JSON of `structuredContent`, so clients that read either see
//! the same thing. Failures of the tool itself (bad arguments, an unknown capability, a
//! provider asking for payment) are tool results with `isError: true`, never protocol errors:
//! an agent reads them and can correct itself.

use aimarket_plugins::PluginContext;
use base64::Engine as _;
use serde_json::{Map, Value, json};

use super::McpContext;
use super::McpDeps;
use super::draft::draft_input;
use super::lookup::describe;
use crate::catalog::SearchParams;
use crate::error_code::ApiError;
use crate::invoke::{BuyerHeaders, InvokeCall, InvokeRequest, InvokeResult};

/// Default number of matches of `market_search`.
pub const DEFAULT_SEARCH_LIMIT: u64 = 10;
/// Most matches of `market_search`.
pub const MAX_SEARCH_LIMIT: u64 = 50;

/// The tool list (`tools/list`, and the v1 JSON list of a plain `GET`).
pub fn definitions() -> Vec<Value> {
    vec![
        json!({
            "name": "market_search",
            "title": "Search the AI market",
            "description": "Search this hub's federated catalog of paid and free AI capabilities by intent. \
                Returns ranked matches with price (USD per call, routed through this hub), latency, trust, \
                the input schema and a draft input. Call market_invoke with a match's product_id, \
                capability_id and source_hub.",
            "inputSchema": {"type": "object", "properties": {
                "intent": {"type": "string", "description": "What you need done, in plain words, e.g. \"translate text to French\"", "maxLength": 1000},
                "budget": {"type": "number", "minimum": 0, "description": "Highest acceptable price per call in USD (routed price)"},
                "max_latency_ms": {"type": "integer", "minimum": 0, "description": "Highest acceptable median latency in milliseconds"},
                "min_trust": {"type": "number", "minimum": 0, "maximum": 1, "description": "Lowest acceptable trust score, 0 to 1"},
                "limit": {"type": "integer", "minimum": 1, "maximum": MAX_SEARCH_LIMIT, "default": DEFAULT_SEARCH_LIMIT, "description": "How many matches to return"}
            }, "required": ["intent"]},
            "annotations": {"readOnlyHint": true, "openWorldHint": true}
        }),
        json!({
            "name": "market_describe",
            "title": "Describe a capability",
            "description": "The full description of one capability: input and output schemas, price, routed \
                price, latency, trust and owning hub.",
            "inputSchema": {"type": "object", "properties": {
                "product_id": {"type": "string", "description": "Product id from market_search"},
                "capability_id": {"type": "string", "description": "Capability id from market_search"}
            }, "required": ["product_id", "capability_id"]},
            "annotations": {"readOnlyHint": true, "openWorldHint": true}
        }),
        json!({
            "name": "market_invoke",
            "title": "Invoke a capability",
            "description": "Call a capability through this hub. Free capabilities need no payment. Priced ones \
                are paid from a payment channel opened at this hub (payment_channel and \
                payment_channel_secret) or directly to the provider (x_payment). Without payment the \
                result says what to pay and how.",
            "inputSchema": {"type": "object", "properties": {
                "product_id": {"type": "string", "description": "Product id from market_search"},
                "capability_id": {"type": "string", "description": "Capability id from market_search"},
                "source_hub": {"type": "string", "description": "The owning hub (a match's source_hub); omit or \"local\" for wherever this hub finds it"},
                "input": {"type": "object", "description": "The capability's input, matching its input schema"},
                "max_price_usd": {"type": "number", "minimum": 0, "description": "Refuse the call if it would cost more than this, USD"},
                "payment_channel": {"type": "string", "description": "Channel id from POST /ai-market/v2/channel/open at this hub"},
                "payment_channel_secret": {"type": "string", "description": "The channel's secret"},
                "x_payment": {"type": "string", "description": "A payment proof for the provider (X-Payment header value)"},
                "x_payment_nonce": {"type": "string", "description": "The provider's payment nonce (X-Payment-Nonce), when paying with x_payment"}
            }, "required": ["product_id", "capability_id", "input"]},
            "annotations": {"readOnlyHint": false, "destructiveHint": false, "openWorldHint": true}
        }),
        json!({
            "name": "market_pipeline",
            "title": "Run a pipeline of capabilities",
            "description": "Run several capabilities as one DAG through this hub, paid from one channel: \
                each node names a capability and takes a literal input and/or input_from (field -> \
                \"node_id/json/pointer\" into an earlier node's result). Independent nodes run in \
                parallel; a failure skips its dependents. Returns every node's result, the final \
                result and a bill of materials signed by this hub.",
            "inputSchema": {"type": "object", "properties": {
                "nodes": {"type": "array", "maxItems": crate::pipelines::spec::MAX_NODES, "items": {"type": "object", "properties": {
                    "id": {"type": "string"},
                    "product_id": {"type": "string"},
                    "capability_id": {"type": "string"},
                    "source_hub": {"type": "string"},
                    "input": {"type": "object"},
                    "input_from": {"type": "object", "additionalProperties": {"type": "string"}},
                    "depends_on": {"type": "array", "items": {"type": "string"}}
                }, "required": ["id", "capability_id"]}},
                "max_total_usd": {"type": "number", "minimum": 0, "description": "Refuse (or stop) rather than spend more than this, USD"},
                "payment_channel": {"type": "string", "description": "Channel id from POST /ai-market/v2/channel/open at this hub"},
                "payment_channel_secret": {"type": "string", "description": "The channel's secret"}
            }, "required": ["nodes"]},
            "annotations": {"readOnlyHint": false, "destructiveHint": false, "openWorldHint": true}
        }),
    ]
}

/// A tool result.
pub fn tool_result(structured: Value, is_error: bool) -> Value {
    let text = serde_json::to_string_pretty(&structured).unwrap_or_default();
    json!({"content": [{"type": "text", "text": text}], "structuredContent": structured, "isError": is_error})
}

/// A failed tool call, with the hub's error body as its content.
fn failed(error: &ApiError) -> Value {
    let mut body = error.body();
    body["status"] = json!(error.status());
    tool_result(body, true)
}

/// Runs tool `name`; `None` when there is no such tool.
pub async fn call(
    deps: &McpDeps<'_>,
    name: &str,
    args: Map<String, Value>,
    ctx: &McpContext,
) -> Option<Value> {
    Some(match name {
        "market_search" => search(deps, &args, ctx)
            .await
            .unwrap_or_else(|e| failed(&e)),
        "market_describe" => describe_tool(deps, &args)
            .await
            .unwrap_or_else(|e| failed(&e)),
        "market_invoke" => invoke(deps, args, ctx).await.unwrap_or_else(|e| failed(&e)),
        "market_pipeline" => pipeline(deps, args, ctx)
            .await
            .unwrap_or_else(|e| failed(&e)),
        _ => return None,
    })
}

fn string_arg<'a>(args: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, ApiError> {
    match args.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(ApiError::bad_request(format!("`{key}` must be a string"))),
    }
}

fn required<'a>(args: &'a Map<String, Value>, key: &str) -> Result<&'a str, ApiError> {
    string_arg(args, key)?.ok_or_else(|| ApiError::bad_request(format!("`{key}` is required")))
}

/// A number argument as the search query string spells it (validated by the search parser).
fn number_arg(args: &Map<String, Value>, key: &str) -> Result<Option<String>, ApiError> {
    match args.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(ApiError::bad_request(format!("`{key}` must be a number"))),
    }
}

async fn search(
    deps: &McpDeps<'_>,
    args: &Map<String, Value>,
    ctx: &McpContext,
) -> Result<Value, ApiError> {
    let intent = required(args, "intent")?;
    let limit = match args.get("limit") {
        None | Some(Value::Null) => DEFAULT_SEARCH_LIMIT,
        Some(v) => v
            .as_u64()
            .filter(|n| (1..=MAX_SEARCH_LIMIT).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "`limit` must be an integer from 1 to {MAX_SEARCH_LIMIT}"
                ))
            })?,
    };
    // The HTTP endpoint's parser validates every parameter, so both paths accept the same.
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    query
        .append_pair("intent", intent)
        .append_pair("limit", &limit.to_string());
    for key in ["budget", "max_latency_ms", "min_trust"] {
        if let Some(value) = number_arg(args, key)? {
            query.append_pair(key, &value);
        }
    }
    let params = SearchParams::parse(&query.finish(), deps.invoke.public_url.as_str())?;
    let mut plugin_ctx =
        PluginContext::new(ctx.request_id.clone(), deps.invoke.public_url.as_str());
    let searching = std::time::Instant::now();
    let outcome = deps
        .catalog
        .search(&params, deps.invoke.plugins, &mut plugin_ctx)
        .await?;
    deps.invoke
        .metrics
        .observe_search(&outcome, searching.elapsed());
    let mut body = serde_json::to_value(&outcome).map_err(ApiError::internal)?;
    if let Some(matches) = body.get_mut("matches").and_then(Value::as_array_mut) {
        for m in matches {
            let draft = draft_input(m.get("input_schema").unwrap_or(&Value::Null), intent);
            m["draft_input"] = draft;
        }
    }
    body["intent"] = Value::from(intent);
    body["how_to_invoke"] = Value::from(
        "Call market_invoke with a match's product_id, capability_id, source_hub and an input that \
         satisfies its input_schema (draft_input is a starting point).",
    );
    Ok(tool_result(body, false))
}

async fn describe_tool(deps: &McpDeps<'_>, args: &Map<String, Value>) -> Result<Value, ApiError> {
    let product_id = required(args, "product_id")?;
    let capability_id = required(args, "capability_id")?;
    let offers = describe(&deps.invoke, product_id, capability_id, None).await?;
    let tools: Vec<Value> = offers.into_iter().map(|o| o.tool).collect();
    let body = json!({"capability": tools[0], "offers": tools, "protocol_version": "v2"});
    Ok(tool_result(body, false))
}

async fn invoke(
    deps: &McpDeps<'_>,
    args: Map<String, Value>,
    ctx: &McpContext,
) -> Result<Value, ApiError> {
    let channel_id = string_arg(&args, "payment_channel")?.map(str::to_owned);
    let headers = BuyerHeaders {
        channel_secret: string_arg(&args, "payment_channel_secret")?.map(str::to_owned),
        x_payment: string_arg(&args, "x_payment")?.map(str::to_owned),
        x_payment_nonce: string_arg(&args, "x_payment_nonce")?.map(str::to_owned),
        request_id: Some(ctx.request_id.clone()),
        channel_id,
        ..BuyerHeaders::default()
    };
    let mut body = Map::new();
    for key in [
        "product_id",
        "capability_id",
        "source_hub",
        "input",
        "max_price_usd",
    ] {
        if let Some(v) = args.get(key) {
            body.insert(key.to_owned(), v.clone());
        }
    }
    let request = InvokeRequest::from_value(Value::Object(body), deps.invoke.invoker.own_origin())?;
    let (product_id, capability_id) = (request.product_id.clone(), request.capability_id.clone());
    let source_hub = request.source_hub.clone();
    // Identified and limited like the HTTP invoke: a channel counts only when it verifies.
    let call = InvokeCall::new(request, headers, ctx.caller.clone());
    let result = crate::invoke::invoke(&deps.invoke, call).await;
    if result.status == 402 {
        return Ok(payment_required(
            deps,
            &result,
            product_id.as_deref().unwrap_or_default(),
            &capability_id,
            source_hub.as_deref(),
        )
        .await);
    }
    let answer = result.json();
    let ok = (200..300).contains(&result.status)
        && answer.get("success").and_then(Value::as_bool) != Some(false);
    let mut structured = match answer {
        Value::Object(map) => Value::Object(map),
        other => {
            json!({"success": false, "error": "provider_error", "detail": "the answer is not a JSON object", "body": other})
        }
    };
    if !ok {
        structured["status"] = json!(result.status);
    }
    Ok(tool_result(structured, !ok))
}

/// Runs a pipeline through the same service as `POST /ai-market/v2/pipelines`.
async fn pipeline(
    deps: &McpDeps<'_>,
    args: Map<String, Value>,
    ctx: &McpContext,
) -> Result<Value, ApiError> {
    let headers = BuyerHeaders {
        channel_id: string_arg(&args, "payment_channel")?.map(str::to_owned),
        channel_secret: string_arg(&args, "payment_channel_secret")?.map(str::to_owned),
        request_id: Some(ctx.request_id.clone()),
        ..BuyerHeaders::default()
    };
    let mut body = Map::new();
    for key in ["nodes", "max_total_usd"] {
        if let Some(v) = args.get(key) {
            body.insert(key.to_owned(), v.clone());
        }
    }
    let buyer = crate::pipelines::Buyer {
        headers,
        caller: ctx.caller.clone(),
    };
    let answer = crate::pipelines::run_pipeline(
        &deps.invoke,
        &Value::Object(body),
        buyer,
        crate::pipelines::Version::V2,
    )
    .await?;
    let ok = answer.body["success"] == Value::Bool(true);
    Ok(tool_result(answer.body, !ok))
}

/// A 402 as a tool result, this hub's way to pay first: `hub_payment` (the option every
/// invoke 402 carries), a `detail` that starts with it, and `next_steps` that open a channel
/// here; then why the call was refused (`reason`) and what the provider itself asked
/// (`payment_requirements`), which pays the provider, not this hub.
async fn payment_required(
    deps: &McpDeps<'_>,
    result: &InvokeResult,
    product_id: &str,
    capability_id: &str,
    source_hub: Option<&str>,
) -> Value {
    let answer = result.json();
    let hub_payment = result
        .header(crate::invoke::hub_payment::names::HUB_PAYMENT)
        .and_then(|v| serde_json::from_str::<Value>(v).ok());
    let routed = match hub_payment.as_ref().and_then(|o| o["needed"].as_f64()) {
        Some(needed) => Some(needed),
        None => describe(&deps.invoke, product_id, capability_id, source_hub)
            .await
            .ok()
            .and_then(|offers| offers.first().map(|o| o.effective.routed_price_usd)),
    };
    let provider_needed = answer.get("needed").and_then(Value::as_f64);
    let price = routed.or(provider_needed).unwrap_or(0.0);
    // A deposit that covers this call a hundred times, at least one dollar.
    let deposit = (price * 100.0).max(1.0);
    let open_url = deps.invoke.public_url.join("/ai-market/v2/channel/open");
    let tx_hint = if deps.demo_payments {
        "demo payments are on at this hub: any tx_hash starting with `demo-` is accepted"
    } else {
        "tx_hash is the on-chain transaction that paid the deposit to this hub's payment address"
    };
    let x402 = result.header("payment-required").and_then(|b64| {
        base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .ok()
            .and_then(|raw| serde_json::from_slice::<Value>(&raw).ok())
    });
    let x_payment_required = result
        .header("x-payment-required")
        .map(|v| serde_json::from_str::<Value>(v).unwrap_or_else(|_| Value::from(v)));
    // Only the ways that can succeed for this capability (the invoke named them).
    let ways: Vec<&str> = result
        .header(crate::invoke::relay::PAYMENT_WAYS_HEADER)
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|w| !w.is_empty())
                .collect()
        })
        .unwrap_or_else(|| vec!["hub_channel", "seller_direct"]);
    let mut next_steps = Vec::new();
    if ways.contains(&"hub_channel") {
        next_steps.extend([
            format!("Open a payment channel at this hub: POST {open_url} with JSON body {{\"deposit_usd\": {deposit}, \"tx_hash\": \"<deposit transaction hash>\"}} ({tx_hint})."),
            "The answer holds channel.channel_id and channel.channel_secret.".to_owned(),
            "Call market_invoke again with the same arguments plus payment_channel = channel_id and payment_channel_secret = channel_secret; each call is debited the routed price.".to_owned(),
        ]);
    }
    if ways.contains(&"seller_direct") {
        next_steps.push("Pay the provider directly as its challenge (payment_requirements) asks, and call market_invoke again with the proof as x_payment (with x_payment_nonce when the challenge gave one); this hub forwards it.".to_owned());
    }
    if next_steps.is_empty() {
        next_steps.push("This hub cannot pay this provider on your behalf and the provider offers no payment that can be sent through the hub: call the provider directly.".to_owned());
    }
    let said = answer
        .get("detail")
        .and_then(Value::as_str)
        .unwrap_or("payment required");
    let detail = if ways.contains(&"hub_channel") {
        format!(
            "Pay this hub {price} USD per call: open a channel at {open_url}, then call again \
             with payment_channel and payment_channel_secret. The answer said: {said}"
        )
    } else if ways.contains(&"seller_direct") {
        format!(
            "This hub cannot pay this provider for you: pay the provider as its challenge \
             asks and call again with the proof as x_payment. The answer said: {said}"
        )
    } else {
        format!(
            "This hub cannot pay this provider for you and the provider offers no payment that \
             can be sent through the hub. The answer said: {said}"
        )
    };
    let structured = json!({
        "success": false,
        "error": answer.get("error").and_then(Value::as_str).unwrap_or("payment_required"),
        "reason": answer.get("reason").cloned(),
        "status": 402,
        "detail": detail,
        "needed": price,
        "routed_price_usd": routed,
        "hub_payment": hub_payment,
        "provider_needed": provider_needed,
        "payment_requirements": {
            "x_payment_required": x_payment_required,
            "payment_required_x402": x402,
            "x_payment_nonce": result.header("x-payment-nonce"),
            "body": answer,
        },
        "payment_ways": ways,
        "next_steps": next_steps,
        "open_channel": ways.contains(&"hub_channel").then(|| json!({
            "method": "POST",
            "url": open_url,
            "body": {"deposit_usd": deposit, "tx_hash": "<deposit transaction hash>"},
        })),
        "protocol_version": "v2",
    });
    tool_result(structured, true)
}
