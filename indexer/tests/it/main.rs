//! Integration tests of aimarket-indexer (one binary, see the crate manifest).
#![allow(clippy::unwrap_used)]

mod filters;
mod lifecycle;
mod ranking;
mod relevance;
mod support;
