//! The fetcher against misbehaving servers: caps, timeouts, redirects, conditional requests.

use std::time::Duration;

use aimarket_crawler::fetch::USER_AGENT;
use aimarket_crawler::{
    CrawlError, Document, FetchOptions, Fetched, UrlError, UrlPolicy, Validators,
};

use crate::support::*;

fn opts(document: Document) -> FetchOptions {
    FetchOptions::new(document)
}

#[tokio::test]
async fn sends_identification_and_conditional_headers() {
    let p = Provider::start();
    p.json("/doc", &serde_json::json!({"ok": true}));
    let f = fetcher(fetch_config(PRIVATE_OK));
    let mut o = opts(Document::WellKnown);
    o.validators = Validators {
        etag: Some("\"v1\"".into()),
        last_modified: Some("Wed, 21 Oct 2015 07:28:00 GMT".into()),
    };
    let got = f.fetch(&p.safe("/doc"), &o).await.expect("fetch");
    assert!(matches!(got, Fetched::Body { .. }));
    let seen = p.seen();
    let h = &seen[0].headers;
    assert_eq!(h["user-agent"], USER_AGENT);
    assert!(USER_AGENT.starts_with("AIMarketHub/2.0.0 (aimarket-hub-rs "));
    assert_eq!(h["x-aimarket-crawler"], "https://crawler.example.com");
    assert_eq!(h["accept"], "application/json");
    assert_eq!(h["if-none-match"], "\"v1\"");
    assert_eq!(h["if-modified-since"], "Wed, 21 Oct 2015 07:28:00 GMT");
}

#[tokio::test]
async fn not_modified_with_etag_and_with_last_modified() {
    let p = Provider::start();
    let lm = "Wed, 21 Oct 2015 07:28:00 GMT";
    p.set(
        "/e",
        Route::Json {
            body: b"{}".to_vec(),
            etag: Some("\"abc\"".into()),
            last_modified: None,
        },
    );
    p.set(
        "/l",
        Route::Json {
            body: b"{}".to_vec(),
            etag: None,
            last_modified: Some(lm.into()),
        },
    );
    let f = fetcher(fetch_config(PRIVATE_OK));
    let first = f
        .fetch(&p.safe("/e"), &opts(Document::Manifest))
        .await
        .expect("first");
    assert_eq!(first.validators().etag.as_deref(), Some("\"abc\""));
    let mut o = opts(Document::Manifest);
    o.validators = first.validators();
    assert_eq!(
        f.fetch(&p.safe("/e"), &o).await.expect("second"),
        Fetched::NotModified
    );

    let first = f
        .fetch(&p.safe("/l"), &opts(Document::Manifest))
        .await
        .expect("first");
    assert_eq!(first.validators().last_modified.as_deref(), Some(lm));
    let mut o = opts(Document::Manifest);
    o.validators = first.validators();
    assert_eq!(
        f.fetch(&p.safe("/l"), &o).await.expect("second"),
        Fetched::NotModified
    );
    // A 304 we did not ask for is an error, not a licence to keep stale data.
    p.set(
        "/bogus",
        Route::Raw {
            status: 304,
            content_type: None,
            body: vec![],
        },
    );
    let err = f
        .fetch(&p.safe("/bogus"), &opts(Document::Manifest))
        .await
        .unwrap_err();
    assert!(matches!(err, CrawlError::Http { status: 304, .. }), "{err}");
}

#[tokio::test]
async fn html_pages_and_error_statuses() {
    let p = Provider::start();
    p.set(
        "/html",
        Route::Raw {
            status: 200,
            content_type: Some("text/html; charset=utf-8"),
            body: b"<html>Oops</html>".to_vec(),
        },
    );
    p.set(
        "/500",
        Route::Raw {
            status: 500,
            content_type: Some("text/html"),
            body: b"<html>Internal Server Error</html>".to_vec(),
        },
    );
    let f = fetcher(fetch_config(PRIVATE_OK));
    let err = f
        .fetch(&p.safe("/html"), &opts(Document::Manifest))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, CrawlError::ContentType { content_type, .. } if content_type.starts_with("text/html")),
        "{err}"
    );
    let err = f
        .fetch(&p.safe("/500"), &opts(Document::Manifest))
        .await
        .unwrap_err();
    assert!(matches!(err, CrawlError::Http { status: 500, .. }), "{err}");
    let err = f
        .fetch(&p.safe("/missing"), &opts(Document::Manifest))
        .await
        .unwrap_err();
    assert!(matches!(err, CrawlError::Http { status: 404, .. }), "{err}");
}

#[tokio::test]
async fn truncated_body_is_reported() {
    let base = raw_server(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"tools\": [",
    )
    .await;
    let url = aimarket_crawler::SafeUrl::parse(&format!("{base}/t")).expect("parses");
    let f = fetcher(fetch_config(PRIVATE_OK));
    let err = f.fetch(&url, &opts(Document::Manifest)).await.unwrap_err();
    assert_eq!(
        err,
        CrawlError::Truncated {
            expected: 1000,
            received: 11
        }
    );
}

#[tokio::test]
async fn fifty_megabytes_stop_at_the_cap() {
    let p = Provider::start();
    let total = 50 * 1024 * 1024;
    p.set(
        "/chunked",
        Route::Huge {
            total,
            declare_length: false,
        },
    );
    p.set(
        "/declared",
        Route::Huge {
            total,
            declare_length: true,
        },
    );
    let f = fetcher(fetch_config(PRIVATE_OK));
    let err = f
        .fetch(&p.safe("/chunked"), &opts(Document::Manifest))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        CrawlError::TooLarge {
            document: Document::Manifest,
            limit: 4 * 1024 * 1024
        }
    );
    // Reading stopped at the cap: the server never got to produce the whole body.
    assert!(p.streamed() < total, "streamed {} bytes", p.streamed());

    // A declared length over the cap is refused before the body is read.
    let err = f
        .fetch(&p.safe("/declared"), &opts(Document::WellKnown))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        CrawlError::TooLarge {
            document: Document::WellKnown,
            limit: 256 * 1024
        }
    );
}

#[tokio::test]
async fn trickling_body_hits_the_total_timeout() {
    let p = Provider::start();
    p.set("/slow", Route::Trickle { bytes: 60 });
    let mut config = fetch_config(PRIVATE_OK);
    config.total_timeout = Duration::from_secs(2);
    let f = fetcher(config);
    let err = f
        .fetch(&p.safe("/slow"), &opts(Document::Manifest))
        .await
        .unwrap_err();
    assert!(matches!(err, CrawlError::Timeout { .. }), "{err}");
}

#[tokio::test]
async fn redirects_are_followed_explicitly_and_bounded() {
    let p = Provider::start();
    p.json("/new", &serde_json::json!({"moved": true}));
    p.set(
        "/old",
        Route::Redirect {
            status: 301,
            location: "/new".into(),
        },
    );
    p.set(
        "/a",
        Route::Redirect {
            status: 302,
            location: p.url("/b"),
        },
    );
    p.set(
        "/b",
        Route::Redirect {
            status: 307,
            location: "/a".into(),
        },
    );
    for i in 1..=5 {
        p.set(
            &format!("/r{i}"),
            Route::Redirect {
                status: 308,
                location: format!("/r{}", i + 1),
            },
        );
    }
    p.set(
        "/nowhere",
        Route::Redirect {
            status: 303,
            location: String::new(),
        },
    );
    let f = fetcher(fetch_config(PRIVATE_OK));
    let Fetched::Body { final_url, .. } = f
        .fetch(&p.safe("/old"), &opts(Document::Manifest))
        .await
        .expect("redirect followed")
    else {
        panic!("expected a body");
    };
    assert_eq!(final_url, p.safe("/new"));

    let err = f
        .fetch(&p.safe("/a"), &opts(Document::Manifest))
        .await
        .unwrap_err();
    assert_eq!(err, CrawlError::RedirectLoop { url: p.url("/a") });

    let err = f
        .fetch(&p.safe("/r1"), &opts(Document::Manifest))
        .await
        .unwrap_err();
    assert_eq!(err, CrawlError::TooManyRedirects { limit: 3 });
    assert_eq!(p.hits("/r4"), 1, "three hops followed");
    assert_eq!(p.hits("/r5"), 0, "not a fourth");

    // An empty Location resolves to the same URL: a loop.
    let err = f
        .fetch(&p.safe("/nowhere"), &opts(Document::Manifest))
        .await
        .unwrap_err();
    assert!(matches!(err, CrawlError::RedirectLoop { .. }), "{err}");
}

#[tokio::test]
async fn redirects_to_private_addresses_are_refused() {
    let p = Provider::start();
    let port = p.base.rsplit(':').next().expect("port").to_owned();
    let targets = [
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://10.0.0.1/".to_owned(),
        format!("http://localhost:{port}/secret"),
        format!("http://0x0a.1:{port}/secret"),
        format!("http://[::ffff:127.0.0.1]:{port}/secret"),
        "file:///etc/passwd".to_owned(),
    ];
    for (i, target) in targets.iter().enumerate() {
        p.set(
            &format!("/go{i}"),
            Route::Redirect {
                status: 302,
                location: target.clone(),
            },
        );
    }
    p.json("/secret", &serde_json::json!({"secret": 1}));
    let f = fetcher(fetch_config(UrlPolicy::STRICT));
    for (i, target) in targets.iter().enumerate() {
        // The operator vouched for 127.0.0.1 (exempt), not for where it redirects.
        let mut o = opts(Document::Manifest);
        o.operator = true;
        let err = f.fetch(&p.safe(&format!("/go{i}")), &o).await.unwrap_err();
        assert!(
            matches!(err, CrawlError::UnsafeUrl { .. }),
            "{target}: {err}"
        );
    }
    assert_eq!(p.hits("/secret"), 0);
}

/// Issue #13: the operator vouched for one origin; a redirect to another port of the same
/// host is another service and faces the full range rule (and is never contacted).
#[tokio::test]
async fn operator_redirects_to_another_port_of_the_host_are_refused() {
    let p = Provider::start();
    let other = Provider::start();
    other.json("/secret", &serde_json::json!({"secret": 1}));
    p.set(
        "/go",
        Route::Redirect {
            status: 302,
            location: other.url("/secret"),
        },
    );
    p.json("/here", &serde_json::json!({"ok": 1}));
    p.set(
        "/stay",
        Route::Redirect {
            status: 302,
            location: p.url("/here"),
        },
    );
    let f = fetcher(fetch_config(UrlPolicy::STRICT));
    let mut o = opts(Document::Manifest);
    o.operator = true;
    let err = f.fetch(&p.safe("/go"), &o).await.unwrap_err();
    assert!(matches!(err, CrawlError::UnsafeUrl { .. }), "{err}");
    assert_eq!(
        other.hits("/secret"),
        0,
        "the other port must not be contacted"
    );
    // A redirect within the operator's own origin keeps the exemption.
    f.fetch(&p.safe("/stay"), &o)
        .await
        .expect("same-origin redirect");
    assert_eq!(p.hits("/here"), 1);
}

#[tokio::test]
async fn loopback_refused_without_allow_private() {
    let p = Provider::start();
    p.json("/doc", &serde_json::json!({}));
    let f = fetcher(fetch_config(UrlPolicy::STRICT));
    let err = f
        .fetch(&p.safe("/doc"), &opts(Document::WellKnown))
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            CrawlError::UnsafeUrl {
                reason: UrlError::ForbiddenAddress { .. },
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(err.code(), "unsafe_url");
    assert!(p.seen().is_empty(), "nothing may reach the server");
    // Operator URLs are exempt; so is everything with allow_private.
    let mut o = opts(Document::WellKnown);
    o.operator = true;
    f.fetch(&p.safe("/doc"), &o).await.expect("operator fetch");
    fetcher(fetch_config(PRIVATE_OK))
        .fetch(&p.safe("/doc"), &opts(Document::WellKnown))
        .await
        .expect("allow_private fetch");
    // check_url (for URLs about to be stored) resolves names and checks every address.
    let err = f
        .check_url(&aimarket_crawler::SafeUrl::parse("http://localhost./").expect("parses"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "unsafe_url");
}

#[tokio::test]
async fn host_backs_off_after_failures() {
    let p = Provider::start();
    p.set(
        "/fail",
        Route::Raw {
            status: 503,
            content_type: None,
            body: vec![],
        },
    );
    p.json("/ok", &serde_json::json!({}));
    let mut config = fetch_config(PRIVATE_OK);
    config.backoff_base = Duration::from_secs(600);
    config.backoff_max = Duration::from_secs(600);
    let f = fetcher(config);
    let err = f
        .fetch(&p.safe("/fail"), &opts(Document::Manifest))
        .await
        .unwrap_err();
    assert!(matches!(err, CrawlError::Http { status: 503, .. }), "{err}");
    let err = f
        .fetch(&p.safe("/ok"), &opts(Document::Manifest))
        .await
        .unwrap_err();
    assert!(matches!(err, CrawlError::Backoff { .. }), "{err}");
    assert_eq!(p.hits("/ok"), 0);
    // A 404 is the document's problem, not the host's: no backoff.
    let q = Provider::start();
    q.json("/ok", &serde_json::json!({}));
    let _ = f
        .fetch(&q.safe("/missing"), &opts(Document::Manifest))
        .await;
    f.fetch(&q.safe("/ok"), &opts(Document::Manifest))
        .await
        .expect("no backoff after 404");
}
