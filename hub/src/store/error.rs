//! The store's single error type.

use std::path::PathBuf;

/// Everything that can go wrong in the catalog store.
///
/// Database URLs are never echoed in messages (they may carry passwords); only the scheme is.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// `DATABASE_URL` named an engine this hub does not run on.
    #[error(
        "unsupported database URL scheme `{scheme}`: use postgres:// or postgresql://, \
         or leave DATABASE_URL unset for the embedded SQLite file"
    )]
    UnsupportedScheme {
        /// The scheme as written (text before the first `:`), or empty when there was none.
        scheme: String,
    },
    /// A `postgres://` URL that the driver could not parse.
    #[error("invalid PostgreSQL URL: {reason}")]
    InvalidDatabaseUrl {
        /// The parser's explanation (never the URL itself).
        reason: String,
    },
    /// The data directory for the SQLite file could not be created.
    #[error("cannot create data directory {}: {source}", path.display())]
    DataDir {
        /// The directory that was to hold `hub.db`.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// Embedded migrations failed to apply (or the database has migrations this build lacks).
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Any driver-level failure: connection, constraint, I/O, decoding.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A peer URL that is not an absolute `http(s)` URL with a host.
    #[error("invalid peer URL `{url}`: {reason}")]
    InvalidPeerUrl {
        /// The URL as given (it came from configuration or a crawl, not a secret).
        url: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// No peer with this id or URL.
    #[error("peer {peer} not found")]
    PeerNotFound {
        /// The id or URL that was looked up.
        peer: String,
    },
    /// No crawl run with this id.
    #[error("crawl run {0} not found")]
    RunNotFound(i64),
    /// A stored value that this build cannot interpret (e.g. an unknown state string).
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// A stable snake_case code for logs and for the HTTP error mapping.
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnsupportedScheme { .. } => "database_url_unsupported",
            Self::InvalidDatabaseUrl { .. } => "database_url_invalid",
            Self::DataDir { .. } => "data_dir_unavailable",
            Self::Migrate(_) => "database_migration_failed",
            Self::Database(_) => "database_error",
            Self::InvalidPeerUrl { .. } => "invalid_peer_url",
            Self::PeerNotFound { .. } => "peer_not_found",
            Self::RunNotFound(_) => "crawl_run_not_found",
            Self::Corrupt(_) => "database_corrupt",
        }
    }

    pub(crate) fn peer_not_found(peer: impl ToString) -> Self {
        Self::PeerNotFound {
            peer: peer.to_string(),
        }
    }
}
