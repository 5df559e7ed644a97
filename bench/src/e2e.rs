//! Feedback end to end on the embedded engine: 202 → status completed, at a steady rate.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context as LayerContext, SubscriberExt};
use tracing_subscriber::Layer;

use shared::config::{Config, ObjectStoreConfig, StoreConfig, TransportConfig};
use shared::topology::{Environment, InstanceName, Topology};
use switchyard::platform::{Component, Platform};

use crate::stats::{ms, summarize};

pub(crate) type Completions = Arc<Mutex<HashMap<String, Instant>>>;

/// Records when the feedback worker logs "feedback completed" (right after its commit).
pub(crate) struct CompletionRecorder(pub(crate) Completions);

#[derive(Default)]
struct CompletionVisitor {
    message: Option<String>,
    feedback_id: Option<String>,
}

impl Visit for CompletionVisitor {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "message" => self.message = Some(format!("{value:?}")),
            "feedback_id" => self.feedback_id = Some(format!("{value:?}")),
            _ => {}
        }
    }
}

impl<S: tracing::Subscriber> Layer<S> for CompletionRecorder {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: LayerContext<'_, S>) {
        let mut visitor = CompletionVisitor::default();
        event.record(&mut visitor);
        if let (Some(message), Some(id)) = (visitor.message, visitor.feedback_id) {
            if message == "feedback completed" {
                if let Ok(mut done) = self.0.lock() {
                    done.insert(id, Instant::now());
                }
            }
        }
    }
}

pub async fn run(rate: u64, seconds: u64) -> anyhow::Result<()> {
    let completions: Completions = Arc::default();
    let subscriber = tracing_subscriber::registry()
        .with(CompletionRecorder(completions.clone()))
        .with(tracing_subscriber::filter::LevelFilter::INFO);
    tracing::subscriber::set_global_default(subscriber)?;

    let dir = tempfile::tempdir()?;
    let topology = Topology::new(InstanceName::parse("bench").map_err(anyhow::Error::msg)?, Environment::Production)?;
    let config = Config::minimal(
        &topology,
        StoreConfig::Sqlite { path: dir.path().join("switchyard.db") },
        TransportConfig::Embedded { path: dir.path().join("transport.db") },
        ObjectStoreConfig::Filesystem { root: dir.path().join("objects") },
    );
    let platform = Platform::build(config, topology, Component::all()).await?;
    let store = platform.backends().store.clone();
    let tenant = switchyard::dev::create_tenant(store.as_ref(), "Bench").await?;
    let key = core_api::issue_api_key(store.as_ref(), tenant.id).await?.plaintext;
    let url = format!("http://127.0.0.1:{}/v1/feedback", platform.api_port().unwrap_or_default());
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(platform.run_until_stopped(shutdown.clone()));

    let client = reqwest::Client::new();
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let total = rate * seconds;
    let mut sends = Vec::new();
    for n in 0..total {
        ticker.tick().await;
        let (client, url, key) = (client.clone(), url.clone(), key.clone());
        sends.push(tokio::spawn(async move {
            let body = json!({"rating": 5, "message": format!("benchmark feedback {n}")});
            let response = client.post(&url).bearer_auth(&key).json(&body).send().await.ok()?;
            let accepted_at = Instant::now();
            if response.status().as_u16() != 202 {
                return None;
            }
            let body: serde_json::Value = response.json().await.ok()?;
            Some((body["id"].as_str()?.to_owned(), accepted_at))
        }));
    }
    let mut accepted = Vec::new();
    for send in sends {
        if let Some(found) = send.await? {
            accepted.push(found);
        }
    }
    // Let the tail finish.
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let done = completions.lock().map(|c| c.len()).unwrap_or(0);
        if done >= accepted.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.cancel();
    running.await?.context("platform")?;

    let done = completions.lock().map(|c| c.clone()).unwrap_or_default();
    let latencies: Vec<Duration> = accepted
        .iter()
        .filter_map(|(id, at)| done.get(id).map(|finished| finished.saturating_duration_since(*at)))
        .collect();
    let summary = summarize(latencies);
    println!("## Feedback end to end on the embedded engine, {rate} requests/s for {seconds} s\n");
    println!("| measure | value |");
    println!("|---|---|");
    println!("| sent / accepted / completed | {total} / {} / {} |", accepted.len(), summary.count);
    println!("| 202 → completed p50 / p99 / max | {} / {} / {} |", ms(summary.p50), ms(summary.p99), ms(summary.max));
    println!("| **p99 / 50 ms target** | **{:.2}×** |", summary.p99.as_secs_f64() * 1000.0 / 50.0);
    Ok(())
}
