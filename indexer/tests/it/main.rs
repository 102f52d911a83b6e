//! Integration tests of aimarket-indexer (one binary, see the crate manifest).
#![allow(clippy::unwrap_used)]

mod lifecycle;
mod relevance;
mod search;
mod support;
