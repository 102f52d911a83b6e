//! How the store reads driver failures ([`StoreError::is_transient`] and the wire code
//! each becomes), on a real PostgreSQL: the classification lives here so no layer above the
//! store matches `sqlx::Error`.

use crate::error_code::{ApiError, Code};
use crate::store::StoreError;

/// A one-connection pool on the test PostgreSQL; `None` (skipped, said so) when it is
/// unreachable and `CI` is not set, a failure when it is.
async fn test_pool() -> Option<sqlx::PgPool> {
    let url = std::env::var("AIMARKET_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    match sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(std::time::Duration::from_secs(5))
        .connect(&url)
        .await
    {
        Ok(pool) => Some(pool),
        Err(e) if std::env::var_os("CI").is_none() => {
            eprintln!("SKIP: PostgreSQL error-mapping test, {url} unreachable: {e}");
            None
        }
        Err(e) => panic!("PostgreSQL at {url} unreachable and CI is set: {e}"),
    }
}

/// A NUL byte reaching PostgreSQL is the request's fault: 400, never a 500.
#[tokio::test]
async fn text_postgres_cannot_store_is_a_bad_request() {
    let Some(pool) = test_pool().await else {
        return;
    };
    let error = sqlx::query("SELECT $1::text")
        .bind("ch_\u{0}x")
        .execute(&pool)
        .await
        .expect_err("PostgreSQL refuses a NUL byte in text");
    let error = StoreError::Database(error);
    assert!(!error.is_transient());
    let api = ApiError::from(error);
    assert_eq!((api.status(), api.code()), (400, Code::BadRequest));
}

/// Issue #13: a PostgreSQL restart terminates open connections (SQLSTATE 57P01); the
/// query that was running is 503 `unavailable`, never a 500.
#[tokio::test]
async fn a_terminated_postgres_connection_is_unavailable() {
    let Some(pool) = test_pool().await else {
        return;
    };
    let error = sqlx::query("SELECT pg_terminate_backend(pg_backend_pid())")
        .execute(&pool)
        .await
        .expect_err("a backend terminating itself fails the query");
    let error = StoreError::Database(error);
    assert!(error.is_transient(), "{error}");
    let api = ApiError::from(error);
    assert_eq!(
        (api.status(), api.code()),
        (503, Code::Unavailable),
        "{api:?}"
    );
    assert_eq!(api.retry_after(), Some(5));
}

#[test]
fn a_pool_timeout_is_transient() {
    assert!(StoreError::Database(sqlx::Error::PoolTimedOut).is_transient());
    assert!(!StoreError::RunNotFound(1).is_transient());
}
