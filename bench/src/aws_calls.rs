//! AWS API calls per operation while feedback flows end to end on PostgreSQL + SNS/SQS/S3
//! (an AWS-compatible server), next to a naive flow that makes one call per message per
//! step; plus the relay's added latency (outbox commit → publish acknowledged).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde_json::json;
use sqlx::Row;
use tokio_util::sync::CancellationToken;

use adapters::aws::{self, ApiCallCounter, AwsTransport, S3ObjectStore};
use shared::config::{AwsSettings, Config, ObjectStoreConfig, Secret, StoreConfig, TransportConfig};
use shared::domain::FeedbackStatus;
use shared::topology::{Environment, InstanceName, Topology};
use shared::FeedbackId;
use switchyard::platform::{Backends, Component, Platform};

use crate::stats::{ms, summarize};

/// The steps a message takes end to end, one call each in a naive flow: SNS Publish,
/// SQS ReceiveMessage, SQS DeleteMessage, S3 PutObject.
const NAIVE_STEPS: u64 = 4;

pub async fn run(events: u64, tenants: u64, rate: u64) -> anyhow::Result<()> {
    let endpoint = std::env::var("SWITCHYARD_TEST_AWS_ENDPOINT")
        .context("set SWITCHYARD_TEST_AWS_ENDPOINT (bench/run starts moto)")?;
    let settings = AwsSettings { region: Some("us-east-1".into()), endpoint: Some(endpoint), max_attempts: 3 };
    let sdk = aws::sdk_config(&settings).await;
    let instance = format!("bench-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let topology = Topology::new(InstanceName::parse(&instance).map_err(anyhow::Error::msg)?, Environment::Production)?;
    aws::provision::apply(&sdk, &topology).await?;
    let bucket = format!("results-{instance}");
    S3ObjectStore::new(&sdk, bucket.clone()).ensure_bucket().await?;

    let database = adapters::testing::fresh_postgres_database().await?;
    let store_config = StoreConfig::Postgres {
        url: Secret::new(database.clone()),
        max_connections: 16,
        acquire_timeout: std::time::Duration::from_secs(2),
    };
    let counter = ApiCallCounter::default();
    let backends = Backends {
        store: adapters::connect_store(&store_config).await?,
        transport: Arc::new(AwsTransport::counted(&sdk, &topology, &counter)),
        objects: Arc::new(S3ObjectStore::counted(&sdk, bucket.clone(), &counter)),
        bus: None,
    };
    let config = Config::minimal(
        &topology,
        store_config,
        TransportConfig::Aws(settings.clone()),
        ObjectStoreConfig::S3 { bucket, aws: settings },
    );
    let store = backends.store.clone();
    let platform = Platform::with_backends(config, topology, backends, Component::all())?;
    let url = format!("http://127.0.0.1:{}/v1/feedback", platform.api_port().unwrap_or_default());
    let mut keys = Vec::new();
    for i in 0..tenants {
        let tenant = switchyard::dev::create_tenant(store.as_ref(), &format!("Tenant {i}")).await?;
        keys.push((tenant.id, core_api::issue_api_key(store.as_ref(), tenant.id).await?.plaintext));
    }
    let before = counter.snapshot();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(platform.run_until_stopped(shutdown.clone()));

    // Tenants submit concurrently, each one request at a time; with a rate, paced so
    // that all tenants together send `rate` requests per second.
    let pause = (rate > 0).then(|| Duration::from_secs_f64(tenants.max(1) as f64 / rate as f64));
    let client = reqwest::Client::new();
    let per_tenant = events / tenants.max(1);
    let mut senders = Vec::new();
    for (tenant, key) in keys.clone() {
        let (client, url) = (client.clone(), url.clone());
        senders.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            let mut ticker = pause.map(tokio::time::interval);
            for n in 0..per_tenant {
                if let Some(ticker) = ticker.as_mut() {
                    ticker.tick().await;
                }
                let body = json!({"rating": 4, "message": format!("benchmark {n}")});
                let response = client.post(&url).bearer_auth(&key).json(&body).send().await?;
                let accepted: serde_json::Value = response.json().await?;
                ids.push((tenant, FeedbackId::parse(accepted["id"].as_str().unwrap_or_default())?));
            }
            anyhow::Ok(ids)
        }));
    }
    let mut submitted = Vec::new();
    for sender in senders {
        submitted.extend(sender.await??);
    }
    // Wait (reading the database, not AWS) until every one is completed.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    let mut pending = submitted.clone();
    while !pending.is_empty() && tokio::time::Instant::now() < deadline {
        let mut still = Vec::new();
        for (tenant, id) in pending {
            let done = store.feedback(tenant, id).await?.is_some_and(|f| f.status == FeedbackStatus::Completed);
            if !done {
                still.push((tenant, id));
            }
        }
        pending = still;
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    shutdown.cancel();
    running.await??;

    let after = counter.snapshot();
    let mut calls: Vec<(String, u64)> = after
        .iter()
        .map(|(op, n)| (op.clone(), n - before.get(op).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect();
    calls.sort();
    let total: u64 = calls.iter().map(|(_, n)| n).sum();
    let completed = submitted.len() - pending.len();
    let naive = completed as u64 * NAIVE_STEPS;
    let transport_calls: u64 =
        calls.iter().filter(|(op, _)| !op.starts_with("s3.") && !op.starts_with("S3.")).map(|(_, n)| n).sum();

    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&database).await?;
    let rows = sqlx::query("SELECT published_at - created_at AS lag FROM outbox WHERE published_at IS NOT NULL")
        .fetch_all(&mut admin)
        .await?;
    let lags: Vec<Duration> = rows
        .iter()
        .filter_map(|r| r.try_get::<i64, _>("lag").ok())
        .map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or(0)))
        .collect();
    let lag = summarize(lags);

    let pace = if rate > 0 { format!("{rate} requests/s") } else { "as fast as the tenants can send".to_owned() };
    println!(
        "## AWS API calls for {completed} feedback events end to end ({tenants} tenants, {pace}), PostgreSQL + SNS/SQS/S3 on moto\n"
    );
    println!("| operation | calls | per event |");
    println!("|---|---|---|");
    for (operation, n) in &calls {
        println!("| {operation} | {n} | {:.3} |", *n as f64 / completed.max(1) as f64);
    }
    println!("| **total** | **{total}** | **{:.3}** |", total as f64 / completed.max(1) as f64);
    println!();
    println!("| comparison | calls | ratio |");
    println!("|---|---|---|");
    println!("| naive: one call per message per step ({NAIVE_STEPS} steps: Publish, ReceiveMessage, DeleteMessage, PutObject) | {naive} | 1.00× |");
    println!("| Switchyard, all calls | {total} | {:.2}× |", total as f64 / naive.max(1) as f64);
    println!(
        "| Switchyard, SNS+SQS only (naive: {} for 3 steps) | {transport_calls} | {:.2}× |",
        completed as u64 * 3,
        transport_calls as f64 / (completed as u64 * 3).max(1) as f64
    );
    println!();
    print_costs(&calls, completed as u64);
    println!();
    println!("Relay's added latency (outbox commit → publish acknowledged), {} events: p50 {} / p99 {} / max {} (millisecond timestamps).", lag.count, ms(lag.p50), ms(lag.p99), ms(lag.max));
    if !pending.is_empty() {
        println!("\n**{} events did not complete within 300 s.**", pending.len());
    }
    Ok(())
}

/// US East list prices in dollars per million billed requests, as published in 2026
/// (see `bench/results/latest.md` for the sources): SNS FIFO publish $0.30, SQS FIFO
/// $0.50 (every action on a queue), S3 Standard PUT/COPY/POST/LIST $5.00 and GET $0.40.
/// A request up to 64 KB of payload is one billed request; the benchmark's batches
/// stay under that.
fn price_per_million(operation: &str) -> f64 {
    let (service, action) = operation.split_once('.').unwrap_or((operation, ""));
    match service.to_ascii_lowercase().as_str() {
        "sns" => 0.30,
        "sqs" => 0.50,
        "s3" if action.starts_with("Get") || action.starts_with("Head") => 0.40,
        "s3" => 5.00,
        _ => 0.0,
    }
}

/// The AWS bill per million feedback events from the measured calls, next to the
/// naive flow's (one Publish, ReceiveMessage, DeleteMessage and PutObject each).
fn print_costs(calls: &[(String, u64)], completed: u64) {
    let per_million = |n: u64| n as f64 / completed.max(1) as f64 * 1e6;
    let cost = |op: &str, n: u64| per_million(n) * price_per_million(op) / 1e6;
    let transport: f64 =
        calls.iter().filter(|(op, _)| !op.to_ascii_lowercase().starts_with("s3.")).map(|(op, n)| cost(op, *n)).sum();
    let objects: f64 =
        calls.iter().filter(|(op, _)| op.to_ascii_lowercase().starts_with("s3.")).map(|(op, n)| cost(op, *n)).sum();
    let naive_transport = price_per_million("SNS.Publish") + 2.0 * price_per_million("SQS.ReceiveMessage");
    let naive_objects = price_per_million("S3.PutObject");
    println!("AWS cost per million feedback events, from these calls at list prices (no free tier):\n");
    println!("| part | naive flow | Switchyard | ratio |");
    println!("|---|---|---|---|");
    println!("| SNS + SQS | ${naive_transport:.2} | ${transport:.2} | {:.2}× |", transport / naive_transport);
    println!(
        "| S3 PUT (one result object per feedback, both flows) | ${naive_objects:.2} | ${objects:.2} | {:.2}× |",
        objects / naive_objects
    );
    let (naive, ours) = (naive_transport + naive_objects, transport + objects);
    println!("| **total** | **${naive:.2}** | **${ours:.2}** | **{:.2}×** |", ours / naive);
    println!(
        "| EventBridge, when every event is also forwarded to the bus ($1.00 per million events) | +$1.00 | +$1.00 | |"
    );
}
