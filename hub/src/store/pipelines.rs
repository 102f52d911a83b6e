//! Pipeline runs: the stored answer (with its signed bill) of every run that started.

use serde_json::Value;

use super::{Store, StoreError, on_pool, on_pool_write};

/// Longest trace id looked up (`tr_` + 32 hex; anything longer cannot exist).
const MAX_TRACE_ID_CHARS: usize = 64;

impl Store {
    /// Stores a run's answer under its trace id (unique; a second insert fails).
    pub async fn insert_pipeline_run(
        &self,
        trace_id: &str,
        status: u16,
        answer: &Value,
        total_micros: i64,
    ) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO pipeline_runs (trace_id, status, answer, total_micros, \
             created_at) VALUES ($1, $2, $3, $4, $5)";
        let text = answer.to_string();
        let now = chrono::Utc::now().timestamp_millis();
        on_pool_write!(self, |pool| {
            sqlx::query(SQL)
                .bind(trace_id)
                .bind(i64::from(status))
                .bind(&text)
                .bind(total_micros)
                .bind(now)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// The stored `(status, answer)` of run `trace_id`.
    pub async fn get_pipeline_run(
        &self,
        trace_id: &str,
    ) -> Result<Option<(u16, Value)>, StoreError> {
        const SQL: &str = "SELECT status, answer FROM pipeline_runs WHERE trace_id = $1";
        if trace_id.is_empty() || trace_id.chars().count() > MAX_TRACE_ID_CHARS {
            return Ok(None);
        }
        let row: Option<(i64, String)> = on_pool!(self, |pool| {
            sqlx::query_as(SQL)
                .bind(trace_id)
                .fetch_optional(pool)
                .await?
        });
        Ok(row.and_then(|(status, text)| {
            let body = serde_json::from_str(&text).ok()?;
            Some((u16::try_from(status).unwrap_or(500), body))
        }))
    }
}
