//! Capability index and search for the AIMarket hub, on tantivy.
//!
//! One document per capability ([`IndexedCapability`]); text fields for the capability id
//! (split into words), name, description and other text (product id, input-schema property
//! names and descriptions, peer name, categories), analyzed for English, Russian and CJK
//! ([`analysis`]); fast fields for price, routed price, p50 latency, trust, success rate and
//! source hub. Filters run inside the index scan; ranking is BM25 with field boosts, phrase,
//! prefix, synonym and typo clauses (documented in `src/query.rs`) times a quality factor
//! ([`rank`]).
//!
//! The hub owns the store and HTTP: it feeds [`Index::apply`] after each crawl (or
//! [`Index::rebuild`] when [`Index::indexed_version`] is missing or stale) and maps
//! [`Index::search`] results to the wire.
//!
//! [`synthetic`] generates deterministic catalogs for benchmarks and the relevance set.

pub mod analysis;
mod collect;
mod error;
mod filter;
mod index;
mod model;
mod query;
pub mod rank;
mod schema;
mod search;
mod synonyms;
pub mod synthetic;

pub use error::{IndexError, Result};
pub use index::Index;
pub use model::{IndexedCapability, KEY_SEPARATOR, MatchType, SearchHit, SearchPage, SearchQuery};
pub use rank::{DefaultRanker, QualitySignals, Ranker};

#[cfg(test)]
mod tests {
    /// The hub shares one `Index` across worker threads behind an `Arc`.
    #[test]
    fn index_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<crate::Index>();
    }
}
