//! aimarket-hub: an AIMarket Protocol v2 federation hub.
//!
//! The binary is a thin shell over this library ([`cli`]); everything is reachable from tests.
//! [`startup::Application`] is the composition root, [`settings::Settings`] the one typed
//! configuration, [`state::AppState`] what handlers share, [`error_code`] the one table of
//! wire codes and their statuses that every area's error reports through, and [`http`] the
//! actix layer (its [`http::error`] only turns those errors into responses).

pub mod catalog;
pub mod cli;
pub mod crawl;
pub mod demo;
pub mod error_code;
pub mod federation;
pub mod http;
pub mod invoke;
pub mod limits;
pub mod mcp;
pub mod metrics;
pub mod payments;
pub mod pipelines;
pub mod replica;
pub mod reputation;
pub mod settings;
pub mod startup;
pub mod state;
pub mod stats;
pub mod store;
pub mod telemetry;
#[cfg(test)]
mod testing;
