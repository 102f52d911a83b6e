//! Every public endpoint through the real handlers (search, invoke, channels, MCP, announce,
//! receipts, reputation, pricing, discover, …): a route from a fixed list with a fuzzed path
//! tail, method, query string, headers (payment headers among them) and body.
#![no_main]

#[path = "../common/app.rs"]
mod app;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

const ROUTES: &[&str] = &[
    "/ai-market/v2/health",
    "/ai-market/v2/search",
    "/ai-market/v2/manifest",
    "/ai-market/manifest",
    "/ai-market/v2/plugins",
    "/ai-market/v2/p/",
    "/metrics",
    "/.well-known/ai-market.json",
    "/ai-market/v2/federation/crawl",
    "/ai-market/v2/federation/peers",
    "/ai-market/v2/federation/announce",
    "/ai-market/v2/federation/peers/approve",
    "/ai-market/v2/federation/peers/repin",
    "/ai-market/v2/federation/seeds",
    "/ai-market/v2/federation/inbound",
    "/ai-market/v2/reputation/events",
    "/ai-market/v2/reputation/",
    "/ai-market/v2/stats/live",
    "/ai-market/v2/verification/",
    "/ai-market/v2/invoke",
    "/ai-market/v2/channel/open",
    "/ai-market/v2/channel/close",
    "/ai-market/v2/channel/",
    "/ai-market/channel/open",
    "/ai-market/channel/close",
    "/ai-market/receipt/",
    "/ai-market/v2/receipts/verify",
    "/ai-market/mcp",
    "/mcp",
    "/ai-market/discover",
    "/ai-market/pricing/",
];

const METHODS: &[&str] = &["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"];

const HEADERS: &[&str] = &[
    "content-type",
    "accept",
    "accept-encoding",
    "authorization",
    "x-payment-channel",
    "x-payment-channel-secret",
    "x-payment",
    "payment-signature",
    "x-payment-nonce",
    "x-payment-secret",
    "idempotency-key",
    "traceparent",
    "x-request-id",
    "x-api-key",
    "x-aimarket-crawler",
    "if-none-match",
    "mcp-session-id",
    "mcp-protocol-version",
    "content-encoding",
    "x-forwarded-for",
];

#[derive(Debug, Arbitrary)]
struct Request {
    route: u8,
    method: u8,
    tail: String,
    query: String,
    headers: Vec<(u8, Vec<u8>)>,
    body: Vec<u8>,
}

fuzz_target!(|r: Request| {
    let route = ROUTES[usize::from(r.route) % ROUTES.len()];
    let method = METHODS[usize::from(r.method) % METHODS.len()];
    // Percent-encode the fuzzed parts byte by byte where a client would have to.
    let encode = |s: &str| -> String {
        s.bytes()
            .map(|b| match b {
                b'a'..=b'z'
                | b'A'..=b'Z'
                | b'0'..=b'9'
                | b'-'
                | b'_'
                | b'.'
                | b'='
                | b'&'
                | b'+'
                | b'/' => char::from(b).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    let mut uri = format!("{route}{}", encode(&r.tail));
    if !r.query.is_empty() {
        uri.push('?');
        uri.push_str(&encode(&r.query));
    }
    let headers: Vec<(String, Vec<u8>)> = r
        .headers
        .into_iter()
        .take(16)
        .map(|(i, v)| (HEADERS[usize::from(i) % HEADERS.len()].to_owned(), v))
        .collect();
    app::check(method, &uri, &headers, r.body);
});
