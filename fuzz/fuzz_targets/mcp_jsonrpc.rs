//! MCP JSON-RPC bodies (`POST /ai-market/mcp`): single messages and batches, then the
//! `params` of each request as the tool handlers read them.
#![no_main]

use aimarket_hub::mcp::jsonrpc::{self, Body, Message};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(body) = jsonrpc::parse(data) else {
        return;
    };
    let messages: Vec<Message> = match body {
        Body::Single(m) => vec![m],
        Body::Batch(ms) => {
            assert!(ms.len() <= jsonrpc::MAX_BATCH);
            ms
        }
    };
    for message in messages {
        let _ = format!("{message:?}");
        if let Message::Request { params, .. } = message {
            let _ = jsonrpc::params_object(params);
        }
    }
});
