//! Integration tests of the real `aimarket-hub` binary: CLI contracts, configuration through
//! the environment, and a served hub seen from outside.

#![allow(clippy::unwrap_used)]

#[path = "../../../tests/support/chain.rs"]
#[allow(dead_code)]
mod chain;
mod crawl_cli;
mod demo;
mod escrow_crash;
mod keygen;
mod refund_crash;
mod replica;
mod serve;
mod support;
mod verify;
