//! Federation crawling inside the hub: orchestration over the `aimarket-crawler` crate and
//! the store, and its schedule.
//!
//! - [`CrawlContext`] (context): built once from the settings; [`CrawlContext::run_once`]
//!   runs one crawl and returns a [`CrawlSummary`]. Used directly by `aimarket-hub crawl`
//!   and the benchmark.
//! - run: what one run crawls and what each outcome writes (module docs there).
//! - mapping: verified tools → store rows, with the re-export rules.
//! - [`CatalogUpdate`] (changes): what a run changed in the visible catalog, published to
//!   subscribers of `AppState::subscribe_catalog`.
//! - [`scheduler`]: single flight, the startup and periodic crawls, shutdown.

mod changes;
mod context;
mod mapping;
mod run;
pub mod scheduler;
mod summary;

pub use crate::store::PeerRejections;
pub use changes::CatalogUpdate;
pub use context::CrawlContext;
pub use run::Progress;
pub use scheduler::{CrawlService, CrawlTicket, RunOutcome, spawn_scheduler, trigger};
pub use summary::{
    CrawlSummary, MAX_REJECTED_PER_PEER, MAX_REJECTED_SAMPLE, MAX_RUN_ERRORS, PeerError,
    PeerReport, ToolRejection,
};

use crate::error_code::{Code, ErrorCode};
use crate::store::StoreError;

/// Why a crawl run as a whole failed (individual peers failing is normal and is reported
/// in the [`CrawlSummary`]).
#[derive(Debug, thiserror::Error)]
pub enum CrawlRunError {
    /// The store failed under the run; what was written before stays.
    #[error("crawl aborted by a store error: {0}")]
    Store(#[from] StoreError),
    /// The HTTP client could not be built.
    #[error(transparent)]
    Setup(#[from] aimarket_crawler::CrawlError),
    /// The hub is shutting down; the run was stopped or never started.
    #[error("the crawl was stopped: the hub is shutting down")]
    Aborted,
    /// The crawl could not be coordinated with the other replicas (Redis unavailable), or
    /// another replica's run that this trigger joined did not finish.
    #[error("crawl across replicas: {0}")]
    Replica(String),
}

impl ErrorCode for CrawlRunError {
    /// A crawl run that could not run: store failures as the store reads them; a hub that is
    /// shutting down, or that cannot coordinate the crawl with the other replicas, is 503.
    fn wire_code(&self) -> Code {
        match self {
            Self::Store(e) => e.wire_code(),
            Self::Aborted | Self::Replica(_) => Code::Unavailable,
            Self::Setup(_) => Code::InternalError,
        }
    }

    fn passes_on(&self) -> Option<&dyn ErrorCode> {
        match self {
            Self::Store(e) => Some(e),
            _ => None,
        }
    }
}

/// A run's shared outcome (several triggers may wait on one run): the same report as the
/// owned error. Before issue #14 a shared transient store failure kept the driver's message
/// as its detail and had no `Retry-After`; it now reads like the owned one.
impl ErrorCode for std::sync::Arc<CrawlRunError> {
    fn wire_code(&self) -> Code {
        self.as_ref().wire_code()
    }

    fn passes_on(&self) -> Option<&dyn ErrorCode> {
        Some(self.as_ref())
    }
}
