//! How fast the pipeline drains a backlog, by its size: N feedback are stored with
//! their outbox rows first (as a burst the API accepted would leave them), then the relay
//! and the feedback worker start, and the run ends when every one is completed or at
//! the time limit. A pipeline whose cost per message does not grow with the backlog
//! drains 50,000 as fast per second as 5,000.

use std::time::{Duration, Instant};

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::layer::SubscriberExt;

use shared::domain::{FeedbackMessage, NewFeedback};
use shared::events::{FeedbackSubmitted, Payload};
use shared::ports::StoreBackend;
use shared::topology::{Environment, InstanceName, Topology, UseCase};
use shared::FeedbackId;
use switchyard::platform::{Component, Platform};

use crate::e2e::{CompletionRecorder, Completions};
use crate::pipeline::Store;

/// One run's outcome.
struct Drained {
    backlog: usize,
    completed: usize,
    elapsed: Duration,
}

impl Drained {
    fn per_second(&self) -> f64 {
        self.completed as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

async fn preload(store: &dyn StoreBackend, tenant: shared::TenantId, backlog: usize) -> anyhow::Result<()> {
    for n in 0..backlog {
        let feedback = NewFeedback {
            id: FeedbackId::new(),
            rating: None,
            message: FeedbackMessage::parse(&format!("backlog feedback {n}")).map_err(anyhow::Error::msg)?,
            contact_email: None,
            metadata: Default::default(),
        };
        let envelope = FeedbackSubmitted {
            feedback_id: feedback.id,
            rating: None,
            message: feedback.message.clone(),
            contact_email: None,
            metadata: Default::default(),
        }
        .into_envelope(tenant);
        store.submit_feedback(tenant, &feedback, &envelope).await?;
    }
    Ok(())
}

async fn drain(store: Store, backlog: usize, limit: Duration, completions: &Completions) -> anyhow::Result<Drained> {
    if let Ok(mut done) = completions.lock() {
        done.clear();
    }
    let dir = tempfile::tempdir()?;
    let topology = Topology::new(InstanceName::parse("drain").map_err(anyhow::Error::msg)?, Environment::Production)?;
    let config = store.config(&topology, dir.path()).await?;
    let platform =
        Platform::build(config, topology, vec![Component::Relay, Component::Worker(UseCase::Feedback)]).await?;
    let store = platform.backends().store.clone();
    let tenant = switchyard::dev::create_tenant(store.as_ref(), "Backlog").await?;
    preload(store.as_ref(), tenant.id, backlog).await?;

    let shutdown = CancellationToken::new();
    let started = Instant::now();
    let running = tokio::spawn(platform.run_until_stopped(shutdown.clone()));
    let completed = loop {
        let done = completions.lock().map(|c| c.len()).unwrap_or(0);
        if done >= backlog || started.elapsed() >= limit {
            break done;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let elapsed = started.elapsed();
    shutdown.cancel();
    running.await?.context("platform")?;
    Ok(Drained { backlog, completed, elapsed })
}

pub async fn run(stores: &[Store], backlogs: &[usize], limit_seconds: u64) -> anyhow::Result<()> {
    let completions: Completions = Default::default();
    let subscriber = tracing_subscriber::registry()
        .with(CompletionRecorder(completions.clone()))
        .with(tracing_subscriber::filter::LevelFilter::INFO);
    tracing::subscriber::set_global_default(subscriber)?;

    let limit = Duration::from_secs(limit_seconds);
    for &store in stores {
        let mut runs = Vec::new();
        for &backlog in backlogs {
            runs.push(drain(store, backlog, limit, &completions).await?);
        }
        println!("## Draining a backlog of feedback on the {} (relay + feedback worker, one tenant)\n", store.label());
        println!("| backlog | completed | time | completions/s |");
        println!("|---|---|---|---|");
        for run in &runs {
            let time = if run.completed < run.backlog {
                format!("stopped at {:.0} s", run.elapsed.as_secs_f64())
            } else {
                format!("{:.1} s", run.elapsed.as_secs_f64())
            };
            println!("| {} | {} | {time} | {:.0} |", run.backlog, run.completed, run.per_second());
        }
        if let (Some(small), Some(large)) = (runs.first(), runs.last()) {
            if runs.len() > 1 {
                println!(
                    "| **drain rate {}/{} (target ≥ 0.85)** | | | **{:.2}×** |",
                    large.backlog,
                    small.backlog,
                    large.per_second() / small.per_second().max(1e-9)
                );
            }
        }
        println!();
    }
    Ok(())
}
