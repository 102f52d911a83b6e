//! Federation crawler for the AIMarket Protocol v2: fetch, verify, parse. No storage.
//!
//! - [`url_safety`]: spec §7.4 — [`SafeUrl`], [`UrlPolicy`], the pinned DNS resolver.
//! - [`fetch`]: the polite, bounded HTTP client ([`Fetcher`]).
//! - [`verify`]: well-known parsing and manifest verification (signature, key, freshness).
//! - [`catalog`]: the verified result ([`VerifiedCatalog`]: a [`VerifiedPeer`] and its tools as
//!   [`Capability`] records) and the per-tool rules.
//! - [`bfs`]: the breadth-first crawl ([`Crawler`]); [`Crawler::crawl_streaming`] hands each
//!   peer over as soon as it is done, so a caller can store while the crawl goes on. A known
//!   peer checked recently costs one conditional manifest request
//!   ([`CrawlConfig::well_known_refresh`]).
//! - [`error`]: [`CrawlError`], one variant per thing that can be wrong with a peer.
//!
//! Typical use by the hub:
//! ```no_run
//! # async fn run() -> Result<(), aimarket_crawler::CrawlError> {
//! use std::{collections::HashMap, sync::Arc};
//! use aimarket_crawler::*;
//! let fetcher = Arc::new(Fetcher::new(FetchConfig {
//!     crawler_url: "https://hub.example.com".into(),
//!     ..FetchConfig::default()
//! })?);
//! let crawler = Crawler::new(fetcher, CrawlConfig::default());
//! let known: HashMap<String, KnownPeer> = HashMap::new(); // loaded from the store
//! let seeds = vec![SeedSpec::parse_operator("https://hub2.example.com")];
//! let report = crawler.crawl(seeds, &known).await;
//! for peer in &report.peers {
//!     match &peer.outcome {
//!         PeerOutcome::Updated(catalog, validators) => { /* upsert, remove unlisted */ }
//!         PeerOutcome::NotModified(validators) => { /* nothing changed: no write needed */ }
//!         PeerOutcome::Failed(e) => { /* keep catalog, last_error = e.to_string() */ }
//!     }
//! }
//! # Ok(()) }
//! ```

pub mod bfs;
pub mod catalog;
pub mod error;
pub mod fetch;
mod hosts;
pub mod url_safety;
pub mod verify;

pub use aimarket_protocol::capability::Capability;
pub use bfs::{
    CrawlConfig, CrawlEvent, CrawlReport, Crawler, DEFAULT_WELL_KNOWN_REFRESH, KnownPeer,
    KnownPeers, PeerOutcome, PeerResult, PeerValidators, SeedSpec,
};
pub use catalog::{KeySource, RejectedTool, VerifiedCatalog, VerifiedPeer};
pub use error::{CrawlError, Document};
pub use fetch::{FetchConfig, FetchOptions, Fetched, Fetcher, HeaderHook, Validators};
pub use url_safety::{SafeUrl, UrlError, UrlPolicy};
pub use verify::{VerifyOptions, WellKnown};
