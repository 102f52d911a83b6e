//! `aimarket-hub` binary: parses the command line and hands over to the library.

use std::process::ExitCode;

use clap::Parser as _;

/// jemalloc, not the system allocator, for Rust and (unprefixed) for SQLite's C code: under
/// steady load glibc kept a 64 MiB arena per SQLite worker thread that grew with each
/// connection's caches and never shrank (the soak in BENCHMARKS.md); jemalloc shares its
/// arenas and hands unused pages back on a decay timer.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    aimarket_hub::cli::run(aimarket_hub::cli::Cli::parse())
}
