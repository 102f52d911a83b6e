//! The crate's error type.

use std::path::PathBuf;

/// Everything the index can fail with. User query text never produces an error.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// tantivy failed (I/O, corrupt segment, lock held by another process …).
    #[error("search index: {0}")]
    Tantivy(#[from] tantivy::TantivyError),
    /// The index directory could not be opened.
    #[error("search index directory: {0}")]
    Directory(#[from] tantivy::directory::error::OpenDirectoryError),
    /// File-system error on the index directory.
    #[error("search index directory {path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A capability could not be serialised for storage.
    #[error("serialising a capability for the index: {0}")]
    Serialize(#[from] serde_json::Error),
    /// A stored document could not be read back (index written by other code).
    #[error("stored search document is unreadable: {0}")]
    Stored(String),
    /// Recovery would have deleted a directory that does not look like an index.
    #[error("refusing to wipe {0}: it contains subdirectories, so it is not an index directory")]
    NotAnIndexDirectory(PathBuf),
}

/// Result alias of this crate.
pub type Result<T, E = IndexError> = std::result::Result<T, E>;

pub(crate) fn io_error(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> IndexError + '_ {
    move |source| IndexError::Io {
        path: path.to_path_buf(),
        source,
    }
}
