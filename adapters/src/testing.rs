//! Helpers for test suites in this and other crates: fresh, isolated databases.

use sqlx::{Connection, PgConnection};

/// The PostgreSQL server tests use: `SWITCHYARD_TEST_DATABASE_URL`, else the local
/// server on 127.0.0.1:5432.
pub fn test_server_url() -> String {
    std::env::var("SWITCHYARD_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Creates an empty database named `switchyard_test_<random>` on the test server and
/// returns its URL. The test script drops leftovers of earlier runs.
pub async fn fresh_postgres_database() -> Result<String, sqlx::Error> {
    let server = test_server_url();
    let name = format!("switchyard_test_{}", uuid::Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(&server).await?;
    sqlx::raw_sql(&format!("CREATE DATABASE {name}")).execute(&mut admin).await?;
    admin.close().await?;
    let (base, query) = match server.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (server.as_str(), String::new()),
    };
    let base = base.rsplit_once('/').map_or(base, |(head, _)| head);
    Ok(format!("{base}/{name}{query}"))
}
