//! `aimarket-hub crawl`: the real binary crawling a signed loopback provider into the store
//! of a data dir, printing its report; an unchanged second crawl is all 304s; a seed pinned
//! to the wrong key is reported as a rejection with its reason.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use aimarket_protocol::signing::{KeyPair, sign_manifest};
use serde_json::json;

use crate::support::{run, stderr, stdout};

/// A provider on loopback serving a signed two-tool catalog (with ETags), in its own
/// thread; stopped when dropped.
struct Provider {
    url: String,
    key: KeyPair,
    requests: Arc<AtomicUsize>,
    handle: ServerHandle,
}

impl Drop for Provider {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
    }
}

fn provider() -> Provider {
    let key = KeyPair::generate();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let well_known = json!({
        "name": "CLI test provider",
        "protocol_versions": ["v1", "v2"],
        "manifest_url": format!("{url}/ai-market/manifest"),
        "signer_public_key": key.public_key().to_b64(),
    });
    let tools: Vec<_> = ["translate@v1", "summarise@v1"]
        .iter()
        .map(|cid| {
            json!({"name": format!("prod.{cid}"), "product_id": "prod", "capability_id": cid,
                "description": "d", "input_schema": {"type": "object"}, "price_per_call_usd": 0.1})
        })
        .collect();
    let mut manifest = json!({"protocol_version": "v2",
        "generated_at": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "tools": tools, "by_hub": {}});
    sign_manifest(&mut manifest, &key).unwrap();
    let documents = Arc::new((well_known.to_string(), manifest.to_string()));
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&requests);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let server = HttpServer::new(move || {
                let documents = Arc::clone(&documents);
                let counter = Arc::clone(&counter);
                App::new().default_service(web::to(move |req: HttpRequest| {
                    let documents = Arc::clone(&documents);
                    counter.fetch_add(1, Ordering::SeqCst);
                    async move {
                        let (body, etag) = match req.path() {
                            // Stands in for a serving hub that already shows every version.
                            "/ai-market/v2/search" | "/ai-market/v2/manifest" => {
                                return HttpResponse::Ok()
                                    .insert_header(("X-AIMarket-Catalog-Version", "1000"))
                                    .json(json!({}));
                            }
                            "/.well-known/ai-market.json" => (documents.0.clone(), "\"wk\""),
                            "/ai-market/manifest" => (documents.1.clone(), "\"m\""),
                            _ => return HttpResponse::NotFound().finish(),
                        };
                        let matches = req
                            .headers()
                            .get("if-none-match")
                            .is_some_and(|v| v == etag);
                        if matches {
                            return HttpResponse::NotModified().finish();
                        }
                        HttpResponse::Ok()
                            .insert_header(("ETag", etag))
                            .content_type("application/json")
                            .body(body)
                    }
                }))
            })
            .workers(1)
            .disable_signals()
            .listen(listener)
            .unwrap()
            .run();
            tx.send(server.handle()).unwrap();
            let _ = server.await;
        });
    });
    let handle = rx.recv_timeout(Duration::from_secs(30)).unwrap();
    Provider {
        url,
        key,
        requests,
        handle,
    }
}

#[test]
fn crawl_once_stores_the_catalog_and_reports() {
    let p = provider();
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let args = ["crawl", "--once", "--seed", &p.url, "--data-dir", data_dir];

    let first = run(&args);
    assert!(first.status.success(), "{}", stderr(&first));
    let report = stdout(&first);
    assert!(
        report.contains("1 peers reached, 2 capabilities indexed from 1 updated peers"),
        "{report}"
    );
    assert!(
        report.contains(&format!("peer {}: updated, 2 capabilities", p.url)),
        "{report}"
    );
    assert!(dir.path().join("hub.db").is_file());
    assert_eq!(p.requests.load(Ordering::SeqCst), 2);

    // Unchanged: conditional requests answered 304, reported as such.
    let second = run(&args);
    assert!(second.status.success(), "{}", stderr(&second));
    let report = stdout(&second);
    assert!(report.contains("0 capabilities indexed"), "{report}");
    assert!(report.contains("1 not modified (304)"), "{report}");

    // A seed pinned to another key: rejected, with the reason.
    let other = KeyPair::generate().public_key().to_b64();
    assert_ne!(other, p.key.public_key().to_b64());
    let pinned = format!("{}={other}", p.url);
    let third = run(&["crawl", "--once", "--seed", &pinned, "--data-dir", data_dir]);
    assert!(third.status.success(), "{}", stderr(&third));
    let report = stdout(&third);
    assert!(report.contains("1 rejected"), "{report}");
    assert!(report.contains("signer key mismatch"), "{report}");
}

#[test]
fn crawl_waits_for_a_serving_hub_to_show_its_writes() {
    let p = provider();
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let args = [
        "crawl",
        "--once",
        "--seed",
        &p.url,
        "--data-dir",
        data_dir,
        "--wait-for-hub",
        &p.url,
    ];
    let out = run(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let report = stdout(&out);
    assert!(report.contains("catalog version "), "{report}");
    assert!(
        report.contains(&format!("searchable and published at {}", p.url)),
        "{report}"
    );
    let out = run(&[
        "crawl",
        "--once",
        "--data-dir",
        data_dir,
        "--wait-for-hub",
        "ftp://x",
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("http(s)"), "{}", stderr(&out));
}

#[test]
fn crawl_refuses_bad_settings() {
    let out = run(&["crawl", "--once", "--seed", "ftp://nope"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("ftp"), "{}", stderr(&out));
}

#[test]
fn crawl_repeats_until_ctrl_c() {
    use std::io::{BufRead as _, BufReader};
    use std::process::Stdio;

    let p = provider();
    let dir = tempfile::tempdir().unwrap();
    let mut child = crate::support::hub()
        .args(["crawl", "--seed", &p.url, "--data-dir"])
        .arg(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let mut lines = Vec::new();
    let waited = loop {
        match rx.recv_timeout(crate::support::WAIT) {
            Ok(line) if line.starts_with("next crawl in ") => break true,
            Ok(line) => lines.push(line),
            Err(_) => break false,
        }
    };
    if !waited {
        let _ = child.kill();
        let _ = child.wait();
        panic!("no 'next crawl in' line; output: {lines:?}");
    }
    assert!(
        lines.iter().any(|l| l.contains("2 capabilities indexed")),
        "{lines:?}"
    );
    let interrupted = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    let deadline = std::time::Instant::now() + crate::support::WAIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("crawl kept running after Ctrl-C");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
}
