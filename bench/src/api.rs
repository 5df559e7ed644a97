//! `POST /v1/events` on PostgreSQL next to pgbench's single-row INSERT.

use std::process::Command;
use std::sync::Arc;

use anyhow::{bail, Context};
use serde_json::json;

use shared::config::{Secret, StoreConfig};
use shared::ports::StoreBackend;

/// The INSERT the API's outbox write performs, on an identical table, for pgbench.
const PGBENCH_SCRIPT: &str = "INSERT INTO bench_outbox (event_id, tenant_id, envelope, created_at) \
VALUES (gen_random_uuid()::text, 'ten_bench', repeat('x', 420), 0);\n";

pub async fn run(connections: usize, seconds: u64) -> anyhow::Result<()> {
    let url = adapters::testing::fresh_postgres_database().await.context("creating a benchmark database")?;
    let store: Arc<dyn StoreBackend> = adapters::connect_store(&StoreConfig::Postgres {
        url: Secret::new(url.clone()),
        max_connections: u32::try_from(connections).unwrap_or(64),
        acquire_timeout: std::time::Duration::from_secs(2),
    })
    .await?;

    // pgbench first, on a copy of the outbox table.
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&url).await?;
    sqlx::raw_sql("CREATE TABLE bench_outbox (LIKE outbox INCLUDING ALL)").execute(&mut admin).await?;
    let script = tempfile::NamedTempFile::new()?;
    std::fs::write(script.path(), PGBENCH_SCRIPT)?;
    let output = Command::new("pgbench")
        .args(["-n", "-c", &connections.to_string(), "-j", "2", "-T", &seconds.to_string(), "-f"])
        .arg(script.path())
        .arg(&url)
        .output()
        .context("running pgbench (install postgresql-client / postgresql-contrib)")?;
    let report = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!("pgbench failed: {}{}", report, String::from_utf8_lossy(&output.stderr));
    }
    let pgbench_tps: f64 = report
        .lines()
        .find_map(|line| line.strip_prefix("tps = ").and_then(|rest| rest.split_whitespace().next()))
        .and_then(|n| n.parse().ok())
        .context("reading pgbench's tps")?;

    // Then the API, on its own listener, with the same number of connections.
    let tenant = switchyard::dev::create_tenant(store.as_ref(), "Bench").await?;
    let key = core_api::issue_api_key(store.as_ref(), tenant.id).await?.plaintext;
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let server = core_api::server(
        listener,
        core_api::ApiState::new(store.clone(), &unthrottled(), &shared::limits::Share::alone()),
    )?;
    let handle = server.handle();
    let server_task = tokio::spawn(server);

    // wrk drives the API the way pgbench drives PostgreSQL: a C client, 2 threads.
    let body = json!({"type": "order.placed", "data": {"order_id": 42, "items": [{"sku": "A-1", "qty": 2}], "note": "x".repeat(200)}});
    let script = tempfile::NamedTempFile::new()?;
    std::fs::write(
        script.path(),
        format!(
            "wrk.method = \"POST\"\nwrk.body = {body}\nwrk.headers[\"Content-Type\"] = \"application/json\"\nwrk.headers[\"Authorization\"] = \"Bearer {key}\"\n",
            body = lua_string(&body.to_string()),
        ),
    )?;
    let url = format!("http://127.0.0.1:{port}/v1/events");
    let wrk = |duration: u64| {
        let script = script.path().to_path_buf();
        let url = url.clone();
        tokio::task::spawn_blocking(move || {
            Command::new("wrk")
                .args(["-t", "2", "-c", &connections.to_string(), "-d", &format!("{duration}s"), "--latency", "-s"])
                .arg(script)
                .arg(url)
                .output()
        })
    };
    wrk(2).await?.context("running wrk (apt-get install wrk)")?;
    let output = wrk(seconds).await?.context("running wrk")?;
    let report = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        bail!("wrk failed: {report}{}", String::from_utf8_lossy(&output.stderr));
    }
    handle.stop(true).await;
    server_task.await??;

    let api_rps: f64 = report
        .lines()
        .find_map(|line| line.trim().strip_prefix("Requests/sec:"))
        .and_then(|n| n.trim().parse().ok())
        .context("reading wrk's Requests/sec")?;
    let percentile = |label: &str| {
        report.lines().find_map(|line| line.trim().strip_prefix(label).map(|v| v.trim().to_owned())).unwrap_or_default()
    };
    let errors = report
        .lines()
        .find_map(|line| line.trim().strip_prefix("Non-2xx or 3xx responses:"))
        .map(|n| n.trim().to_owned())
        .unwrap_or_else(|| "0".into());
    // Counted on the benchmark's own connection: the pool's connections were opened on
    // the stopped server's worker runtimes and are gone with them.
    let accepted: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE published_at IS NULL")
        .fetch_one(&mut admin)
        .await
        .context("counting the outbox")?;
    println!("## POST /v1/events on PostgreSQL, {connections} connections, {seconds} s\n");
    println!("| measure | value |");
    println!("|---|---|");
    println!("| pgbench single-row INSERT (outbox table), {connections} clients, 2 threads | {pgbench_tps:.0} tps |");
    println!("| API (wrk, {connections} connections, 2 threads) | {api_rps:.0} requests/s ({errors} non-2xx) |");
    println!("| API p50 / p99 | {} / {} |", percentile("50%"), percentile("99%"));
    println!("| events in the outbox after both wrk runs | {accepted} |");
    println!("| **API / pgbench** | **{:.2}×** |", api_rps / pgbench_tps);
    Ok(())
}

/// A Lua string literal.
fn lua_string(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Limits so high they never throttle: the benchmark measures the API with its rate
/// check in the path, not the limit.
pub(crate) fn unthrottled() -> shared::config::Plans {
    shared::config::Plans::single(shared::config::PlanLimits {
        api_per_second: 1_000_000,
        email_per_second: 1_000_000,
        testflight_per_hour: 1_000_000,
    })
}
