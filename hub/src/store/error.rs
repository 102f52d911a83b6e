//! The store's single error type.

use std::path::PathBuf;

use crate::error_code::{ApiError, Code, ErrorCode};

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

    /// True when the database is going away or not there yet (a pool timeout, a dropped
    /// connection, PostgreSQL shutting down or starting up): retrying shortly may succeed,
    /// and the query itself is not at fault.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Database(e) if classify(e) == DbFailure::Transient)
    }

    pub(crate) fn peer_not_found(peer: impl ToString) -> Self {
        Self::PeerNotFound {
            peer: peer.to_string(),
        }
    }
}

/// What a driver failure means for the caller; the store's reading of `sqlx::Error`, so no
/// layer above it matches driver errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DbFailure {
    /// The database is going away or not there yet; retry shortly.
    Transient,
    /// PostgreSQL refused text it cannot store: the value came from the request.
    UnstorableText,
    /// Anything else: a bug or a corrupt database.
    Other,
}

/// SQLSTATEs that mean the server is going away or not there yet, not that the query is
/// wrong: class 08 (connection exception) and 57P01-57P03 (admin shutdown, crash shutdown,
/// cannot connect now).
fn is_outage_sqlstate(code: &str) -> bool {
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03")
}

/// Classifies a driver failure.
pub(crate) fn classify(error: &sqlx::Error) -> DbFailure {
    match error {
        // A database going away mid-query (PostgreSQL stopping or restarting) answers with
        // SQLSTATE 57P01-57P03 ("terminating connection due to administrator command", "the
        // database system is starting up") or a class 08 connection exception: the same
        // transient outage as a pool timeout (issue #13: these were 500s).
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
            DbFailure::Transient
        }
        sqlx::Error::Database(db) => match db.code().as_deref() {
            Some(code) if is_outage_sqlstate(code) => DbFailure::Transient,
            // A NUL byte (22021) or an untranslatable character (22P05) can only come from
            // the request, whichever handler forgot to screen it.
            Some("22021" | "22P05") => DbFailure::UnstorableText,
            _ => DbFailure::Other,
        },
        _ => DbFailure::Other,
    }
}

/// The wire code of a driver failure: 503 when transient, 400 for text PostgreSQL cannot
/// store, else a 500.
fn database_code(error: &sqlx::Error) -> Code {
    match classify(error) {
        DbFailure::Transient => Code::Unavailable,
        DbFailure::UnstorableText => Code::BadRequest,
        DbFailure::Other => Code::InternalError,
    }
}

/// The detail of a driver failure the client may see (never the driver's message).
fn database_detail(error: &sqlx::Error) -> String {
    match classify(error) {
        DbFailure::Transient => "the database is not answering; retry shortly".to_owned(),
        DbFailure::UnstorableText => {
            "the request contains text the database cannot store (e.g. a NUL byte)".to_owned()
        }
        DbFailure::Other => "internal error".to_owned(),
    }
}

/// `Retry-After: 5` on a transient driver failure, the cause logged as a warning.
fn decorate_database(error: &sqlx::Error, api: ApiError) -> ApiError {
    if classify(error) == DbFailure::Transient {
        tracing::warn!(error = %error, "database unavailable");
        return api.with_retry_after(5);
    }
    api
}

impl ErrorCode for StoreError {
    /// An unknown peer is 404, a malformed peer URL 400, a database that does not answer
    /// 503 (transient); anything else is a 500 with the cause logged.
    fn wire_code(&self) -> Code {
        match self {
            Self::PeerNotFound { .. } => Code::PeerNotFound,
            Self::InvalidPeerUrl { .. } => Code::BadRequest,
            Self::Database(e) => database_code(e),
            _ => Code::InternalError,
        }
    }

    fn detail(&self) -> String {
        match self {
            Self::Database(e) => database_detail(e),
            other => other.to_string(),
        }
    }

    fn decorate(&self, api: ApiError) -> ApiError {
        match self {
            Self::Database(e) => decorate_database(e, api),
            _ => api,
        }
    }
}
