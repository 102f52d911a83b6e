//! Integration tests of aimarket-plugins: the registry running real plugin chains, the
//! built-ins through configuration, the webhook plugin against a real local HTTP server, and
//! the in-tree example crate loaded through `register_factory`.
#![allow(clippy::unwrap_used)]

mod builtins;
mod chain;
mod example;
mod support;
mod webhook;
