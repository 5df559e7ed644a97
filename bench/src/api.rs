//! `POST /v1/events` on PostgreSQL next to pgbench's single-row INSERT.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use shared::config::{Secret, StoreConfig};
use shared::ports::Store;

use crate::stats::{ms, summarize};

/// The INSERT the API's outbox write performs, on an identical table, for pgbench.
const PGBENCH_SCRIPT: &str =
    "INSERT INTO bench_outbox (event_id, tenant_id, envelope, created_at) \
VALUES (gen_random_uuid()::text, 'ten_bench', repeat('x', 420), 0);\n";

pub async fn run(connections: usize, seconds: u64) -> anyhow::Result<()> {
    let url = adapters::testing::fresh_postgres_database()
        .await
        .context("creating a benchmark database")?;
    let store: Arc<dyn Store> = adapters::connect_store(&StoreConfig::Postgres {
        url: Secret::new(url.clone()),
        max_connections: u32::try_from(connections).unwrap_or(64),
    })
    .await?;

    // pgbench first, on a copy of the outbox table.
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&url).await?;
    sqlx::raw_sql("CREATE TABLE bench_outbox (LIKE outbox INCLUDING ALL)")
        .execute(&mut admin)
        .await?;
    let script = tempfile::NamedTempFile::new()?;
    std::fs::write(script.path(), PGBENCH_SCRIPT)?;
    let output = Command::new("pgbench")
        .args([
            "-n",
            "-c",
            &connections.to_string(),
            "-j",
            "2",
            "-T",
            &seconds.to_string(),
            "-f",
        ])
        .arg(script.path())
        .arg(&url)
        .output()
        .context("running pgbench (install postgresql-client / postgresql-contrib)")?;
    let report = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "pgbench failed: {}{}",
            report,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let pgbench_tps: f64 = report
        .lines()
        .find_map(|line| {
            line.strip_prefix("tps = ")
                .and_then(|rest| rest.split_whitespace().next())
        })
        .and_then(|n| n.parse().ok())
        .context("reading pgbench's tps")?;

    // Then the API, on its own listener, with the same number of connections.
    let tenant = switchyard::dev::create_tenant(store.as_ref(), "Bench").await?;
    let key = core_api::issue_api_key(store.as_ref(), tenant.id)
        .await?
        .plaintext;
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let server = core_api::server(listener, core_api::ApiState::new(store.clone()))?;
    let handle = server.handle();
    let server_task = tokio::spawn(server);

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .build()?;
    let url = format!("http://127.0.0.1:{port}/v1/events");
    let body = json!({"type": "order.placed", "data": {"order_id": 42, "items": [{"sku": "A-1", "qty": 2}], "note": "x".repeat(200)}});
    let stop = CancellationToken::new();
    let warmup = Duration::from_secs(2);
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..connections {
        let (client, url, key, body, stop) = (
            client.clone(),
            url.clone(),
            key.clone(),
            body.clone(),
            stop.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut errors = 0usize;
            while !stop.is_cancelled() {
                let sent = Instant::now();
                let response = client.post(&url).bearer_auth(&key).json(&body).send().await;
                let ok = matches!(&response, Ok(r) if r.status().as_u16() == 202);
                if sent.duration_since(started) >= warmup {
                    if ok {
                        samples.push(sent.elapsed());
                    } else {
                        errors += 1;
                    }
                }
            }
            (samples, errors)
        }));
    }
    tokio::time::sleep(warmup + Duration::from_secs(seconds)).await;
    stop.cancel();
    let mut samples = Vec::new();
    let mut errors = 0;
    for worker in workers {
        let (mine, failed) = worker.await?;
        samples.extend(mine);
        errors += failed;
    }
    handle.stop(true).await;
    server_task.await??;

    let summary = summarize(samples);
    let api_rps = summary.count as f64 / seconds as f64;
    println!("## POST /v1/events on PostgreSQL, {connections} connections, {seconds} s\n");
    println!("| measure | value |");
    println!("|---|---|");
    println!("| pgbench single-row INSERT (outbox table), {connections} clients | {pgbench_tps:.0} tps |");
    println!(
        "| API accepted | {api_rps:.0} requests/s ({} requests, {errors} errors) |",
        summary.count
    );
    println!(
        "| API p50 / p99 / max | {} / {} / {} |",
        ms(summary.p50),
        ms(summary.p99),
        ms(summary.max)
    );
    println!("| **API / pgbench** | **{:.2}×** |", api_rps / pgbench_tps);
    Ok(())
}
