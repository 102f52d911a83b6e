//! `aimarket-hub keygen`: create a signing key file and print its public key.

use std::path::PathBuf;
use std::process::ExitCode;

use aimarket_protocol::signing::KeyPair;
use clap::Args;

use crate::telemetry::print_line;

/// Arguments of `keygen`.
#[derive(Debug, Clone, Args)]
pub struct KeygenArgs {
    /// Where to write the 32-byte seed (mode 0600). The default is where `serve` looks with
    /// the default data dir.
    #[arg(long, value_name = "PATH", default_value = "./data/hub_signing_key")]
    pub out: PathBuf,
    /// Replace an existing key file (the old key is lost).
    #[arg(long)]
    pub force: bool,
}

/// Writes the key and prints the base64 public key on stdout (the path goes to stderr, so
/// `KEY=$(aimarket-hub keygen)` works).
pub fn run(args: &KeygenArgs) -> ExitCode {
    match write_key(args) {
        Ok(key) => {
            eprintln!("wrote signing key to {}", args.out.display());
            print_line(&key.public_key().to_b64());
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn write_key(args: &KeygenArgs) -> Result<KeyPair, String> {
    let exists = || std::fs::symlink_metadata(&args.out).is_ok();
    let refuse = || {
        format!(
            "{} already exists; pass --force to replace it (the old key is lost)",
            args.out.display()
        )
    };
    if args.force {
        let key = KeyPair::generate();
        key.save(&args.out).map_err(|e| e.to_string())?;
        return Ok(key);
    }
    if exists() {
        return Err(refuse());
    }
    // `load_or_create` creates with O_EXCL, so a file appearing between the check above and
    // here is loaded rather than overwritten; report that as a refusal too.
    match KeyPair::load_or_create(&args.out) {
        Ok((key, true)) => Ok(key),
        Ok((_, false)) => Err(refuse()),
        Err(e) => Err(e.to_string()),
    }
}
