//! In-process tests of the actix layer: the same `app()` the server runs, driven through
//! `actix_web::test` without sockets.

#![allow(clippy::unwrap_used)]

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{App, HttpResponse, test, web};
use aimarket_protocol::schema::{SchemaKind, validate};
use aimarket_protocol::signing::{KeyPair, PublicKey, verify_document};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{app, error};
use crate::settings::Settings;
use crate::state::{AppState, Components};

/// A state over a fresh SQLite store; the returned dir must outlive the state.
async fn state_with(settings: Settings) -> (web::Data<AppState>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::store::Store::connect(None, dir.path())
        .await
        .unwrap();
    let public_url = "http://hub.test:9083";
    let crawl = crate::crawl::CrawlContext::new(store.clone(), &settings, public_url).unwrap();
    let signing_key = KeyPair::generate();
    let catalog = crate::catalog::tests::in_memory(&store, &signing_key, public_url);
    let state = web::Data::new(AppState::new(Components {
        ledger: crate::payments::Ledger::from_settings(store.clone(), &settings).unwrap(),
        settings,
        public_url: public_url.parse().unwrap(),
        signing_key,
        store,
        crawl: crate::crawl::CrawlService::new(crawl),
        catalog_version: 0,
        catalog,
        plugins: std::sync::Arc::new(aimarket_plugins::Registry::empty()),
        shared: crate::replica::SharedState::disabled(),
    }));
    (state, dir)
}

async fn state() -> (web::Data<AppState>, tempfile::TempDir) {
    state_with(Settings::for_test("/nonexistent")).await
}

/// Asserts the protocol error shape and returns the body.
fn assert_error_body(body: &Value, code: &str) {
    assert_eq!(body["success"], false, "{body}");
    assert_eq!(body["error"], code, "{body}");
    assert_eq!(body["protocol_version"], "v2", "{body}");
    assert!(
        body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{body}"
    );
}

#[actix_web::test]
async fn health_reports_service_facts() {
    let (state, _dir) = state().await;
    let svc = test::init_service(app(state)).await;
    let req = test::TestRequest::get()
        .uri("/ai-market/v2/health")
        .to_request();
    let body: Value = test::call_and_read_body_json(&svc, req).await;
    assert_eq!(body["status"], "ok");
    assert_eq!(body["service"], "aimarket-hub");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(body["database_backend"], "sqlite");
    assert!(body["uptime_seconds"].is_u64());
    assert_eq!(body["protocol_version"], "v2");
}

/// Issue #14: a background record batch that fails is counted, in health and in /metrics
/// (`reason="write_failed"`, apart from the queue-full drops).
#[actix_web::test]
async fn failed_record_batches_show_in_health_and_metrics() {
    let (state, _dir) = state().await;
    // A receipt without a nonce fails its whole batch.
    state.invoker.queue_record(
        &state.ledger,
        crate::invoke::record::Write::Receipt(json!({"no": "nonce"})),
    );
    let mut waited = 0;
    while state.invoker.dropped_records().write_failed == 0 && waited < 100 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        waited += 1;
    }
    let svc = test::init_service(app(state)).await;
    let req = test::TestRequest::get()
        .uri("/ai-market/v2/health")
        .to_request();
    let body: Value = test::call_and_read_body_json(&svc, req).await;
    assert_eq!(
        body["invoke_records_dropped"],
        json!({"queue_full": 0, "write_failed": 1}),
        "{body}"
    );
    let req = test::TestRequest::get().uri("/metrics").to_request();
    let text = String::from_utf8(test::call_and_read_body(&svc, req).await.to_vec()).unwrap();
    for line in [
        "aimarket_invoke_records_dropped_total{reason=\"queue_full\"} 0",
        "aimarket_invoke_records_dropped_total{reason=\"write_failed\"} 1",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing");
    }
}

#[actix_web::test]
async fn unknown_path_and_wrong_method_use_the_protocol_body() {
    let (state, _dir) = state().await;
    let svc = test::init_service(app(state)).await;
    let res = test::call_service(&svc, test::TestRequest::get().uri("/nope").to_request()).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_error_body(&test::read_body_json(res).await, "not_found");

    let req = test::TestRequest::delete()
        .uri("/.well-known/ai-market.json")
        .to_request();
    let res = test::call_service(&svc, req).await;
    assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_error_body(&test::read_body_json(res).await, "method_not_allowed");
}

#[actix_web::test]
async fn well_known_is_signed_schema_valid_and_complete() {
    let mut settings = Settings::for_test("/nonexistent");
    settings.seeds = vec!["https://seed.example".parse().unwrap()];
    settings.routing_fee_bps = 250;
    let (state, _dir) = state_with(settings).await;
    let svc = test::init_service(app(state.clone())).await;
    let req = test::TestRequest::get()
        .uri("/.well-known/ai-market.json")
        .to_request();
    let res = test::call_service(&svc, req).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.headers().get(header::CACHE_CONTROL).unwrap(),
        "public, max-age=60"
    );
    let doc: Value = test::read_body_json(res).await;

    validate(SchemaKind::WellKnown, &doc).unwrap();
    let key = PublicKey::from_b64(doc["signer_public_key"].as_str().unwrap()).unwrap();
    assert_eq!(key, state.signing_key.public_key());
    verify_document(&doc, &key).unwrap();

    assert_eq!(doc["protocol_versions"], json!(["v1", "v2", "mcp"]));
    assert_eq!(doc["mcp_endpoint"], "http://hub.test:9083/ai-market/mcp");
    assert_eq!(
        doc["manifest_url"],
        "http://hub.test:9083/ai-market/v2/manifest"
    );
    assert_eq!(doc["supported_chains"], json!(["base"]));
    assert_eq!(doc["supported_tokens"], json!(["USDC", "USDT"]));
    assert_eq!(doc["federation"]["routing_fee_bps"], 250);
    assert_eq!(doc["federation"]["crawl_interval_s"], 3600);
    assert_eq!(doc["federation"]["min_trust_score"], 0.3);
    assert_eq!(
        doc["federation"]["seed_list"],
        json!(["https://seed.example/"])
    );
    assert_eq!(doc["peers"], json!([]));
    for count in [
        "products_count",
        "capabilities_count",
        "federated_capabilities_count",
    ] {
        assert_eq!(doc[count], 0, "{count}");
    }

    // Tampering with any signed byte breaks the signature.
    let mut tampered = doc.clone();
    tampered["federation"]["routing_fee_bps"] = json!(0);
    assert!(verify_document(&tampered, &key).is_err());
}

#[actix_web::test]
async fn well_known_etag_answers_304_and_follows_catalog_changes() {
    let (state, _dir) = state().await;
    let svc = test::init_service(app(state.clone())).await;
    let get = || test::TestRequest::get().uri("/.well-known/ai-market.json");
    let res = test::call_service(&svc, get().to_request()).await;
    let etag = res
        .headers()
        .get(header::ETAG)
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");

    for presented in [
        etag.clone(),
        format!("W/{etag}"),
        format!("\"other\", {etag}"),
        "*".into(),
    ] {
        let req = get()
            .insert_header((header::IF_NONE_MATCH, presented.as_str()))
            .to_request();
        let res = test::call_service(&svc, req).await;
        assert_eq!(res.status(), StatusCode::NOT_MODIFIED, "{presented}");
        assert_eq!(
            res.headers().get(header::ETAG).unwrap().to_str().unwrap(),
            etag
        );
        assert!(test::read_body(res).await.is_empty());
    }
    let stale = get()
        .insert_header((header::IF_NONE_MATCH, "\"stale\""))
        .to_request();
    assert_eq!(
        test::call_service(&svc, stale).await.status(),
        StatusCode::OK
    );

    // Same generation: the cached bytes are served again.
    let again = test::call_service(&svc, get().to_request()).await;
    assert_eq!(
        again.headers().get(header::ETAG).unwrap().to_str().unwrap(),
        etag
    );

    // A catalog change makes the next request render for the new generation.
    state.catalog_changed();
    let res = test::call_service(&svc, get().to_request()).await;
    assert_eq!(res.status(), StatusCode::OK);
    let rendered = super::well_known::rendered(&state).await.unwrap();
    assert_eq!(rendered.generation, state.catalog_generation());
}

#[derive(Debug, Deserialize)]
struct EchoQuery {
    #[allow(dead_code)]
    limit: u32,
}

/// An app with the hub's extractor configuration and JSON/query endpoints, to exercise the
/// error handlers before the real JSON endpoints exist.
fn extractor_app() -> App<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new()
        .configure(error::configure_extractors)
        .route(
            "/json",
            web::post().to(|body: web::Json<Value>| async move { HttpResponse::Ok().json(body.0) }),
        )
        .route(
            "/query",
            web::get().to(|_q: web::Query<EchoQuery>| async { HttpResponse::Ok().finish() }),
        )
        .route(
            "/path/{n}",
            web::get().to(|_n: web::Path<u32>| async { HttpResponse::Ok().finish() }),
        )
}

#[actix_web::test]
async fn bad_input_is_a_4xx_in_the_protocol_shape_never_a_500() {
    let svc = test::init_service(extractor_app()).await;
    let cases = [
        (
            test::TestRequest::post()
                .uri("/json")
                .insert_header(("content-type", "application/json"))
                .set_payload("{bad"),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            test::TestRequest::post()
                .uri("/json")
                .insert_header(("content-type", "application/json"))
                .set_payload(""),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            test::TestRequest::post()
                .uri("/json")
                .insert_header(("content-type", "text/plain"))
                .set_payload("{}"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            test::TestRequest::post()
                .uri("/json")
                .insert_header(("content-type", "application/json"))
                .set_payload(format!("\"{}\"", "x".repeat(error::DEFAULT_JSON_LIMIT + 1))),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
        (
            test::TestRequest::get().uri("/query?limit=-3"),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            test::TestRequest::get().uri("/query"),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            test::TestRequest::get().uri("/path/abc"),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
    ];
    for (req, status, code) in cases {
        let res = test::call_service(&svc, req.to_request()).await;
        assert_eq!(res.status(), status, "{code}");
        assert_error_body(&test::read_body_json(res).await, code);
    }
    let ok = test::TestRequest::post()
        .uri("/json")
        .set_json(json!({"a": 1}))
        .to_request();
    assert_eq!(test::call_service(&svc, ok).await.status(), StatusCode::OK);
}
