//! The operator console over plain HTTP (issue #15): served by the hub at `/` with its
//! assets, under a CSP that forbids inline scripts and other origins, while `/ai-market/*`
//! answers as before. (Driving it in a browser is not covered here.)

use aimarket_e2e::TestHub;
use reqwest::{Method, StatusCode};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_is_served_with_a_strict_csp_and_the_api_is_untouched() {
    let hub = TestHub::start().await;
    for (path, kind) in [
        ("/", "text/html"),
        ("/console/console.js", "text/javascript"),
        ("/console/console.css", "text/css"),
    ] {
        let response = hub.request(Method::GET, path).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let headers = response.headers();
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(csp.starts_with("default-src 'self'"), "{path}: {csp}");
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
        let content_type = headers["content-type"].to_str().unwrap();
        assert!(content_type.starts_with(kind), "{path}: {content_type}");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert!(response.headers().get("set-cookie").is_none());
    }
    let page = hub.request(Method::GET, "/").send().await.unwrap();
    let page = page.text().await.unwrap();
    assert!(page.contains("/console/console.js") && !page.contains("<script>"));
    // The console is read-only: nothing but GET.
    let response = hub.request(Method::POST, "/").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    let (status, body) = hub.get("/ai-market/v2/health").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = hub.get("/console/other.js").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}
