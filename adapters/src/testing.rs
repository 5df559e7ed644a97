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

/// The AWS-compatible test server's endpoint (`SWITCHYARD_TEST_AWS_ENDPOINT`, which
/// scripts/test sets when it starts moto).
pub fn aws_test_endpoint() -> String {
    std::env::var("SWITCHYARD_TEST_AWS_ENDPOINT").unwrap_or_else(|_| {
        panic!("SWITCHYARD_TEST_AWS_ENDPOINT is not set: run scripts/test (it starts moto) or point it at a running moto_server")
    })
}

/// An SDK configuration for the test server: its endpoint, us-east-1, dummy
/// credentials, and two attempts per call so an operation it lacks fails quickly.
pub async fn aws_test_config() -> aws_config::SdkConfig {
    let settings = shared::config::AwsSettings {
        region: Some("us-east-1".into()),
        endpoint: Some(aws_test_endpoint()),
        max_attempts: 2,
    };
    crate::aws::loader(&settings)
        .credentials_provider(aws_sdk_sqs::config::Credentials::new("testing", "testing", None, None, "tests"))
        .load()
        .await
}

/// Creates `topology` on the test server and returns a transport for it. The server
/// forgets a dedup id once its message left the queue, so redrive waits for no window.
pub async fn aws_test_transport(topology: &shared::topology::Topology) -> crate::aws::AwsTransport {
    let config = aws_test_config().await;
    crate::aws::provision::apply(&config, topology).await.expect("apply the topology on the test server");
    crate::aws::AwsTransport::new(&config, topology).with_dedup_window(std::time::Duration::ZERO)
}
