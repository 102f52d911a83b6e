//! A fresh PostgreSQL schema per test, for running the hub on PostgreSQL
//! (`AIMARKET_TEST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/test`).

use std::str::FromStr;
use std::time::Duration;

use sqlx::Connection as _;
use sqlx::postgres::{PgConnectOptions, PgConnection};

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Creates a new schema `e2e_<prefix>_<unique>` (dropping leftovers of earlier runs with the
/// same prefix) and returns a `DATABASE_URL` whose connections use it as `search_path`.
///
/// `None` (after printing SKIP) when PostgreSQL is unreachable, unless `CI` is set, in which
/// case it panics.
pub async fn fresh_schema_url(prefix: &str) -> Option<String> {
    let url = std::env::var("AIMARKET_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_URL.into());
    let options = PgConnectOptions::from_str(&url).expect("AIMARKET_TEST_POSTGRES_URL parses");
    let connect =
        tokio::time::timeout(Duration::from_secs(5), PgConnection::connect_with(&options));
    let mut conn = match connect.await {
        Ok(Ok(conn)) => conn,
        failure => {
            let reason = match failure {
                Ok(Err(e)) => e.to_string(),
                _ => "connection timed out".to_owned(),
            };
            assert!(
                std::env::var_os("CI").is_none(),
                "PostgreSQL at {url} is unreachable in CI: {reason}"
            );
            println!("SKIP: PostgreSQL at {url} is unreachable ({reason})");
            return None;
        }
    };
    let stale: Vec<String> =
        sqlx::query_scalar("SELECT nspname::text FROM pg_namespace WHERE nspname LIKE $1")
            .bind(format!("e2e_{prefix}_%"))
            .fetch_all(&mut conn)
            .await
            .expect("list old test schemas");
    for schema in stale {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
        )))
        .execute(&mut conn)
        .await
        .expect("drop an old test schema");
    }
    let unique = format!(
        "{}_{}",
        std::process::id(),
        chrono::Utc::now().timestamp_micros()
    );
    let schema = format!("e2e_{prefix}_{unique}");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA \"{schema}\"")))
        .execute(&mut conn)
        .await
        .expect("create the test schema");
    let separator = if url.contains('?') { '&' } else { '?' };
    Some(format!("{url}{separator}options[search_path]={schema}"))
}
