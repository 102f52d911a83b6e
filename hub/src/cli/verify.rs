//! `aimarket-hub verify`: what factory operators run on their documents before a hub crawls
//! them. Detects the kind, validates the schema, checks the signature, prints one line per
//! file, and exits 0 only when every file is valid.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use aimarket_protocol::document::{DocumentKind, VerifyReport, verify_any};
use aimarket_protocol::signing::PublicKey;
use clap::Args;
use serde_json::Value;

use crate::telemetry::print_line;

/// Arguments of `verify`.
#[derive(Debug, Clone, Args)]
pub struct VerifyArgs {
    /// Verify with this base64 Ed25519 public key instead of the key each document embeds
    /// (`signature.public_key` or `signer_public_key`).
    #[arg(long, value_name = "BASE64", value_parser = parse_key)]
    pub key: Option<PublicKey>,
    /// Also print the canonical string each signature covers.
    #[arg(long)]
    pub show_canonical: bool,
    /// Documents to check; `-` reads standard input.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

fn parse_key(s: &str) -> Result<PublicKey, String> {
    PublicKey::from_b64(s.trim()).map_err(|e| e.to_string())
}

/// The outcome for one input, ready to print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileOutcome {
    /// Whether the document is valid.
    pub valid: bool,
    /// The text after `FILE: `.
    pub summary: String,
    /// The canonical string, when it could be built.
    pub canonical: Option<String>,
}

/// Checks one document's raw bytes. Never panics, whatever the bytes.
pub fn check_bytes(bytes: &[u8], key: Option<&PublicKey>) -> FileOutcome {
    let doc: Value = match serde_json::from_slice(bytes) {
        Ok(doc) => doc,
        Err(e) => {
            return FileOutcome {
                valid: false,
                summary: format!("INVALID: not JSON ({e})"),
                canonical: None,
            };
        }
    };
    let report = verify_any(&doc, key);
    FileOutcome {
        valid: report.valid,
        summary: summarise(&report),
        canonical: report.canonical.clone(),
    }
}

/// `VALID (kind, details)` or `INVALID: reason`.
fn summarise(report: &VerifyReport) -> String {
    if !report.valid {
        let reason = report.reason.as_deref().unwrap_or("invalid");
        // The signature and the schema are separate findings: say when one of them holds.
        let signature = match report.signature_valid {
            Some(true) => " (the signature itself verifies)",
            _ => "",
        };
        return match report.kind {
            Some(kind) => format!("INVALID: {kind}: {reason}{signature}"),
            None => format!("INVALID: {reason}"),
        };
    }
    let kind = report.kind.map_or("document", DocumentKind::as_str);
    let mut details = vec![kind.to_owned()];
    if !report.signed {
        details.push("unsigned".to_owned());
    }
    if let Some(version) = report.signature_version {
        details.push(format!("signature v{version}"));
    }
    if let Some(signer) = &report.signer {
        details.push(format!("signer {signer}"));
    }
    if !report.unsigned_fields.is_empty() {
        details.push(format!(
            "unsigned fields: {}",
            report.unsigned_fields.join(", ")
        ));
    }
    if !report.schema_deviations.is_empty() {
        details.push(format!(
            "schema deviations: {}",
            report.schema_deviations.join("; ")
        ));
    }
    format!("VALID ({})", details.join(", "))
}

fn read_input(path: &Path) -> std::io::Result<Vec<u8>> {
    if path.as_os_str() == "-" {
        let mut bytes = Vec::new();
        std::io::stdin().lock().read_to_end(&mut bytes)?;
        Ok(bytes)
    } else {
        std::fs::read(path)
    }
}

/// Checks every file, prints a line each, and fails if any is invalid.
pub fn run(args: &VerifyArgs) -> ExitCode {
    let mut all_valid = true;
    for path in &args.files {
        let outcome = match read_input(path) {
            Ok(bytes) => check_bytes(&bytes, args.key.as_ref()),
            Err(e) => FileOutcome {
                valid: false,
                summary: format!("INVALID: cannot read ({e})"),
                canonical: None,
            },
        };
        all_valid &= outcome.valid;
        print_line(&format!("{}: {}", path.display(), outcome.summary));
        if args.show_canonical
            && let Some(canonical) = &outcome.canonical
        {
            print_line(&format!("  canonical: {canonical}"));
        }
    }
    if all_valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A document captured from a published provider (`tests/fixtures/real`).
    fn real(name: &str) -> Value {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/real")
            .join(name);
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
    }

    #[test]
    fn real_receipts_with_float_latency_or_numeric_success_verify() {
        // aimarket-oracle-core 0.6.2: `latency_ms: 0.65`, key embedded.
        let receipt = real("lumen.invoke-paid.json")["receipt"].clone();
        assert!(receipt["latency_ms"].is_f64());
        let outcome = check_bytes(receipt.to_string().as_bytes(), None);
        assert!(outcome.valid, "{}", outcome.summary);
        assert!(
            outcome.summary.contains("schema deviations: ")
                && outcome.summary.contains("latency_ms"),
            "{}",
            outcome.summary
        );
        // HESTIA 0.1.3 host capabilities: `success: 1`, verified with the hearth's key.
        let receipt = real("hestia.invoke-host-status.json")["receipt"].clone();
        assert_eq!(receipt["success"], 1);
        let key = PublicKey::from_b64(
            real("hestia.well-known.json")["signer_public_key"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        let outcome = check_bytes(receipt.to_string().as_bytes(), Some(&key));
        assert!(outcome.valid, "{}", outcome.summary);
        assert!(
            outcome.summary.contains("schema deviations"),
            "{}",
            outcome.summary
        );
        // A tampered one still fails, and says the signature is what failed.
        let mut tampered = receipt;
        tampered["price_usd"] = serde_json::json!(0.0);
        let outcome = check_bytes(tampered.to_string().as_bytes(), Some(&key));
        assert!(!outcome.valid);
        assert!(outcome.summary.contains("signature"), "{}", outcome.summary);
    }

    #[test]
    fn garbage_is_invalid_with_a_reason() {
        for bytes in [
            &b""[..],
            b"<html>502</html>",
            b"{\"a\":",
            b"\xff\xfe",
            b"1e400",
            b"[]",
        ] {
            let outcome = check_bytes(bytes, None);
            assert!(!outcome.valid);
            assert!(
                outcome.summary.starts_with("INVALID: "),
                "{}",
                outcome.summary
            );
        }
    }

    #[test]
    fn unsigned_well_known_is_valid_and_says_so() {
        let doc = br#"{"name":"x","protocol_versions":["v2"],"manifest_url":"https://h.example/m",
                       "signer_public_key":"11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="}"#;
        let outcome = check_bytes(doc, None);
        assert!(outcome.valid, "{}", outcome.summary);
        assert_eq!(outcome.summary, "VALID (well-known, unsigned)");
    }

    #[test]
    fn unsigned_manifest_is_invalid() {
        let outcome = check_bytes(br#"{"protocol_version":"v1","tools":[]}"#, None);
        assert!(!outcome.valid);
        assert!(
            outcome.summary.starts_with("INVALID: manifest: "),
            "{}",
            outcome.summary
        );
    }
}
