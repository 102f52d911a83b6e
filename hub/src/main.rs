//! `aimarket-hub` binary: parses the command line and hands over to the library.

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    aimarket_hub::cli::run(aimarket_hub::cli::Cli::parse())
}
