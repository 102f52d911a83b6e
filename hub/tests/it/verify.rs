//! `aimarket-hub verify` against the protocol vectors, tampered copies and garbage.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::{Value, json};

use crate::support::{VECTOR_KEY, hub, run, stderr, stdout, vectors_dir};

/// The signed vectors plus the (unsigned) well-known.
fn vector_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(vectors_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_str().unwrap().ends_with("-signed.json"))
        .collect();
    files.sort();
    assert_eq!(
        files.len(),
        4,
        "expected four signed vectors, found {files:?}"
    );
    files.push(vectors_dir().join("well-known.json"));
    files
}

fn load(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn write_json(dir: &Path, name: &str, doc: &Value) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_vec_pretty(doc).unwrap()).unwrap();
    path
}

fn args_for<'a>(files: &'a [PathBuf], extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["verify"];
    args.extend_from_slice(extra);
    args.extend(files.iter().map(|p| p.to_str().unwrap()));
    args
}

#[test]
fn every_vector_is_valid_with_the_test_key() {
    let files = vector_files();
    let output = run(&args_for(&files, &["--key", VECTOR_KEY]));
    let out = stdout(&output);
    assert!(
        output.status.success(),
        "stdout:\n{out}\nstderr:\n{}",
        stderr(&output)
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), files.len(), "{out}");
    for (line, file) in lines.iter().zip(&files) {
        assert!(
            line.starts_with(&format!("{}: VALID (", file.display())),
            "{line}"
        );
    }
    assert!(
        out.contains("receipt-v2-signed.json: VALID (receipt, signature v2"),
        "{out}"
    );
    assert!(
        out.contains("well-known.json: VALID (well-known, unsigned)"),
        "{out}"
    );
}

#[test]
fn receipts_without_an_embedded_key_need_one() {
    let receipt = vectors_dir().join("receipt-signed.json");
    let output = run(&["verify", receipt.to_str().unwrap()]);
    assert!(!output.status.success());
    assert!(
        stdout(&output).contains("INVALID: receipt: no key"),
        "{}",
        stdout(&output)
    );
}

#[test]
fn tampered_copies_fail_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let v = vectors_dir();
    let mut manifest = load(&v.join("manifest-signed.json"));
    manifest["tools"][0]["price_per_call_usd"] = json!(0.0);
    let mut receipt = load(&v.join("receipt-signed.json"));
    receipt["price_usd"] = json!(0.41);
    let mut receipt_v2 = load(&v.join("receipt-v2-signed.json"));
    receipt_v2["verify_score"] = json!(0.99);
    let mut announce = load(&v.join("federation-announce-signed.json"));
    announce["capabilities_count"] = json!(6);
    let mut success_flipped = load(&v.join("receipt-signed.json"));
    success_flipped["success"] = json!(false);

    let files = [
        write_json(dir.path(), "manifest.json", &manifest),
        write_json(dir.path(), "receipt.json", &receipt),
        write_json(dir.path(), "receipt-v2.json", &receipt_v2),
        write_json(dir.path(), "announce.json", &announce),
        write_json(dir.path(), "success.json", &success_flipped),
    ];
    for file in &files {
        let output = run(&["verify", "--key", VECTOR_KEY, file.to_str().unwrap()]);
        let out = stdout(&output);
        assert!(!output.status.success(), "{out}");
        assert!(out.contains(": INVALID: "), "{out}");
        assert!(out.contains("signature does not verify"), "{out}");
    }
}

#[test]
fn wrong_key_is_invalid() {
    let other = aimarket_protocol::signing::KeyPair::generate()
        .public_key()
        .to_b64();
    let manifest = vectors_dir().join("manifest-signed.json");
    let output = run(&["verify", "--key", &other, manifest.to_str().unwrap()]);
    assert!(!output.status.success());
    assert!(stdout(&output).contains("INVALID"), "{}", stdout(&output));
}

#[test]
fn v1_signed_receipt_with_v2_fields_lists_what_is_unsigned() {
    let dir = tempfile::tempdir().unwrap();
    let mut receipt = load(&vectors_dir().join("receipt-signed.json"));
    receipt["type"] = json!("rejection");
    receipt["refunded"] = json!(true);
    let file = write_json(dir.path(), "mixed.json", &receipt);
    let output = run(&["verify", "--key", VECTOR_KEY, file.to_str().unwrap()]);
    let out = stdout(&output);
    assert!(output.status.success(), "{out}");
    assert!(out.contains("VALID (receipt, signature v1"), "{out}");
    assert!(
        out.contains("unsigned fields: ") && out.contains("type") && out.contains("refunded"),
        "{out}"
    );
}

#[test]
fn garbage_is_invalid_and_fails_the_run_without_hiding_valid_files() {
    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("error.html");
    std::fs::write(&html, "<html><body>502 Bad Gateway</body></html>").unwrap();
    let truncated = dir.path().join("truncated.json");
    std::fs::write(&truncated, "{\"tools\": [").unwrap();
    let missing = dir.path().join("missing.json");
    let good = vectors_dir().join("manifest-signed.json");
    let files = [good, html, truncated, missing];
    let output = run(&args_for(&files, &["--key", VECTOR_KEY]));
    let out = stdout(&output);
    assert!(!output.status.success());
    assert_eq!(output.status.code(), Some(1));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert!(lines[0].contains(": VALID ("), "{out}");
    assert!(lines[1].contains("INVALID: not JSON"), "{out}");
    assert!(lines[2].contains("INVALID: not JSON"), "{out}");
    assert!(lines[3].contains("INVALID: cannot read"), "{out}");
    assert!(!stderr(&output).contains("panicked"), "{}", stderr(&output));
}

#[test]
fn stdin_and_show_canonical() {
    let announce = std::fs::read(vectors_dir().join("federation-announce-signed.json")).unwrap();
    let mut child = hub()
        .args(["verify", "--key", VECTOR_KEY, "--show-canonical", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&announce).unwrap();
    let output = child.wait_with_output().unwrap();
    let out = stdout(&output);
    assert!(output.status.success(), "{out}{}", stderr(&output));
    assert!(out.starts_with("-: VALID (announce"), "{out}");
    assert!(
        out.contains("  canonical: hub_url:https://test-hub.example.com|well_known_url:"),
        "{out}"
    );
}

#[test]
fn a_malformed_key_is_a_usage_error() {
    let manifest = vectors_dir().join("manifest-signed.json");
    let output = run(&["verify", "--key", "not-base64!", manifest.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("--key"), "{}", stderr(&output));
}
