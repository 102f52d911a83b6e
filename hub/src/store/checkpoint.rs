//! Moves SQLite's WAL checkpoints off the request path.
//!
//! With `synchronous=NORMAL` a WAL commit does not fsync; the fsync happens when the WAL is
//! copied back into the database file. SQLite's automatic checkpoint runs inside whichever
//! commit pushes the WAL past the threshold (1,000 pages by default), so one channel-funded
//! invoke in a hundred paid for a checkpoint and its fsync: that was the whole p99 of the
//! paid path. The hub raises the automatic threshold to a safety net
//! ([`SQLITE_AUTOCHECKPOINT_PAGES`]) and runs a `PASSIVE` checkpoint on its own connection
//! every [`CHECKPOINT_INTERVAL`]; `PASSIVE` never waits for, nor blocks, readers or writers.

use std::time::Duration;

use super::Store;

/// Pages (4 KiB) after which a commit checkpoints by itself: only reached when the
/// background checkpointer is not running (CLI commands) or cannot keep up.
pub(super) const SQLITE_AUTOCHECKPOINT_PAGES: u32 = 16_384;
/// How often the background checkpointer copies the WAL back into the database file.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(500);

impl Store {
    /// Runs one `PASSIVE` WAL checkpoint on SQLite; returns how many of the WAL's frames are
    /// now in the database file (0 when the WAL is empty). A no-op on PostgreSQL.
    pub async fn checkpoint(&self) -> Result<i64, super::StoreError> {
        let Store::Sqlite(db) = self else {
            return Ok(0);
        };
        // (busy, frames in the WAL, frames checkpointed)
        let (_busy, _log, done): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(db.pool())
            .await?;
        Ok(done.max(0))
    }

    /// Starts the background checkpointer on SQLite (nothing on PostgreSQL). It ends when
    /// the pool is closed.
    pub fn spawn_checkpointer(&self) -> Option<tokio::task::JoinHandle<()>> {
        let Store::Sqlite(_) = self else {
            return None;
        };
        let store = self.clone();
        Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(CHECKPOINT_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match store.checkpoint().await {
                    Ok(_) => {}
                    Err(super::StoreError::Database(sqlx::Error::PoolClosed)) => break,
                    Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed"),
                }
            }
        }))
    }
}
