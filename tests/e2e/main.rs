//! End-to-end tests: the real hub on loopback, driven over HTTP as clients drive it.
//! One binary; each area adds a module here.

#![allow(clippy::unwrap_used)]

mod channels;
mod clients;
mod console;
mod console_browser;
mod crawl;
mod crawl_admin;
mod crawl_bad;
mod crawl_reasons;
mod demo;
mod demo_v1;
mod federation;
mod federation_ops;
mod invoke;
mod invoke_payments;
mod invoke_recovery;
mod limits;
mod manifest;
mod mcp;
mod plugins_invoke;
mod rails;
mod read_your_writes;
mod real_providers;
mod replicas;
mod reputation;
mod sdk_clients;
mod search;
mod search_index;
mod search_params;
mod search_plugins;
mod smoke;
mod stats;
