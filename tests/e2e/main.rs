//! End-to-end tests: the real hub on loopback, driven over HTTP as clients drive it.
//! One binary; each area adds a module here.

#![allow(clippy::unwrap_used)]

mod chain_deposits;
mod chain_x402;
mod chain_x402_invoke;
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
mod deploy_checks;
mod escrow_channels;
mod escrow_contract;
mod faults;
mod federation;
mod federation_ops;
mod hostile;
mod invoke;
mod invoke_payments;
mod invoke_recovery;
mod limits;
mod manifest;
mod mcp;
mod observability;
mod otlp;
mod otlp_metrics;
mod outages;
mod pipelines;
mod pipelines_crash;
mod plugins_invoke;
mod rails;
mod read_your_writes;
mod real_providers;
mod replicas;
mod reputation;
mod run_cli;
mod sdk_clients;
mod search;
mod search_index;
mod search_params;
mod search_plugins;
mod smoke;
mod soak;
mod stats;
