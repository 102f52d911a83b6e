//! The real hub, in process, for the handler-level fuzz targets: `Application::build` on a
//! fresh SQLite data dir (demo payments on, so channel opens reach the ledger), and each
//! input sent through `http::app(state)` with `actix_web::test`, no sockets involved.
//!
//! The oracle is the project's standard for bad input: never a panic (libFuzzer aborts on
//! one), never a 500, and every error status carries the JSON protocol error body.

use std::cell::RefCell;

use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::{Method, Uri};
use actix_web::{test, web};
use aimarket_hub::settings::Settings;
use aimarket_hub::startup::Application;
use aimarket_hub::state::AppState;
use serde_json::Value;

struct Hub {
    system: actix_rt::SystemRunner,
    state: web::Data<AppState>,
    // Kept alive: the data dir and the application own the store and the index.
    _app: Application,
    _dir: tempfile::TempDir,
}

thread_local! {
    static HUB: RefCell<Option<Hub>> = const { RefCell::new(None) };
}

fn start() -> Hub {
    let dir = tempfile::tempdir().expect("a temp dir");
    let mut settings = Settings::for_test(dir.path());
    settings.demo_payments = true;
    let system = actix_rt::System::new();
    let app = system
        .block_on(Application::build(settings))
        .expect("the hub starts");
    Hub {
        system,
        state: app.state(),
        _app: app,
        _dir: dir,
    }
}

/// Sends one request and checks the answer. Requests that cannot be written on the wire at
/// all (an invalid URI, header name or value) are skipped: no client can send them.
pub fn check(method: &str, uri: &str, headers: &[(String, Vec<u8>)], body: Vec<u8>) {
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return;
    };
    if Uri::try_from(uri).is_err() {
        return;
    }
    let mut request = test::TestRequest::default().method(method).uri(uri);
    for (name, value) in headers {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(value),
        ) else {
            continue;
        };
        request = request.insert_header((name, value));
    }
    let request = request.set_payload(body).to_request();
    HUB.with(|cell| {
        let mut cell = cell.borrow_mut();
        let hub = cell.get_or_insert_with(start);
        let state = hub.state.clone();
        hub.system.block_on(async move {
            let svc = test::init_service(aimarket_hub::http::app(state)).await;
            let response = test::call_service(&svc, request).await;
            let status = response.status().as_u16();
            let body = test::read_body(response).await;
            assert_ne!(
                status,
                500,
                "500 for {uri}: {}",
                String::from_utf8_lossy(&body)
            );
            if status >= 400 {
                let json: Value = serde_json::from_slice(&body).unwrap_or_else(|e| {
                    panic!("{status} for {uri} without a JSON body ({e}): {body:?}")
                });
                // The MCP endpoints answer in JSON-RPC 2.0; its error object is their
                // protocol error body.
                let path = uri.split('?').next().unwrap_or_default();
                if path.ends_with("/mcp")
                    && json["jsonrpc"] == "2.0"
                    && json["error"]["code"].is_i64()
                {
                    return;
                }
                assert_eq!(json["success"], false, "{uri}: {json}");
                assert!(json["error"].is_string(), "{uri}: {json}");
                assert_eq!(json["protocol_version"], "v2", "{uri}: {json}");
            }
        });
    });
}
