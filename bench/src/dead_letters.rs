//! The operators' first page of dead letters, by store: `count` dead letters parked
//! (spread over 10 tenants, 3 event types, 3 queues and a few error groups), then
//! `GET /v1/dead-letters` through the control plane, unfiltered and filtered, each
//! asked 20 times (p50 and the slowest).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use shared::config::Secret;
use shared::ports::{Attempt, DedupId, MessageId, NewParked, QueueName};
use shared::topology::{Environment, InstanceName, Topology, UseCase};
use shared::{EventEnvelope, EventType, Service, TenantId, Timestamp};
use switchyard::platform::{Component, Platform};

use crate::pipeline::Store;
use crate::stats::ms;

const TOKEN: &str = "bench-operator";
const TYPES: [&str; 3] = ["feedback.submitted", "email.requested", "analytics.events_accepted"];
const ERRORS: [&str; 4] = [
    "attempt failed: SendGrid answered 503 (after 3 attempts)",
    "attempt failed: Zendesk answered 502 for ticket 12345 (after 3 attempts)",
    "permanent failure: field `rating` is 9",
    "attempt failed: the store refused the write (after 3 attempts)",
];

fn letter(n: usize, topology: &Topology, tenants: &[TenantId]) -> NewParked {
    let tenant = tenants[n % tenants.len()];
    let event_type = TYPES[n % TYPES.len()];
    let use_case = [UseCase::Feedback, UseCase::Email, UseCase::Analytics][n % 3];
    let event = EventEnvelope::new(
        tenant,
        Service::CoreApi,
        EventType::parse(event_type).expect("type"),
        serde_json::json!({"n": n, "message": "a dead letter of the benchmark"})
            .as_object()
            .cloned()
            .unwrap_or_default(),
    );
    let at = Timestamp::from_millis(1_700_000_000_000 + i64::try_from(n).unwrap_or(0) * 100);
    let error = ERRORS[n % ERRORS.len()];
    NewParked {
        queue: QueueName::new(topology.queue(use_case).name.clone()),
        message_id: MessageId::new(format!("bench-{n}")),
        group_id: format!("{tenant}:{}", event.id),
        dedup_id: DedupId::new(event.id.to_string()),
        body: event.to_json(),
        attributes: BTreeMap::from([("event_type".to_owned(), event_type.to_owned())]),
        tenant: Some(tenant),
        event_id: Some(event.id),
        event_type: Some(event.event_type.clone()),
        error: error.to_owned(),
        attempts: (1..=3).map(|a| Attempt { at, error: format!("{error} #{a}") }).collect(),
        dead_lettered_at: at,
    }
}

pub async fn run(stores: &[Store], count: usize) -> anyhow::Result<()> {
    println!("## First page of dead letters ({count} parked)\n");
    println!("`GET /v1/dead-letters?limit=50` through the control plane, 20 times each; target < 50 ms.\n");
    println!("| store | filter | p50 | slowest |");
    println!("|---|---|---|---|");
    for &store in stores {
        let dir = tempfile::tempdir()?;
        let topology =
            Topology::new(InstanceName::parse("parked").map_err(anyhow::Error::msg)?, Environment::Production)?;
        let mut config = store.config(&topology, dir.path()).await?;
        config.admin_token = Some(Secret::new(TOKEN));
        let platform = Platform::build(config, topology.clone(), vec![Component::ControlPlane]).await?;
        let backend = platform.backends().store.clone();
        let mut tenants = Vec::new();
        for n in 0..10 {
            tenants.push(switchyard::dev::create_tenant(backend.as_ref(), &format!("Tenant {n}")).await?.id);
        }
        // Parked by several tasks at once (on SQLite they queue for its one connection).
        let started = Instant::now();
        let mut parkers = tokio::task::JoinSet::new();
        for part in 0..8 {
            let (backend, topology, tenants) = (backend.clone(), topology.clone(), tenants.clone());
            parkers.spawn(async move {
                for n in (part..count).step_by(8) {
                    backend.park(&letter(n, &topology, &tenants)).await?;
                }
                Ok::<_, shared::ports::StoreError>(())
            });
        }
        while let Some(parked) = parkers.join_next().await {
            parked?.context("park")?;
        }
        eprintln!("dead-letters: parked {count} in {:.1} s on {store:?}", started.elapsed().as_secs_f64());
        let url = format!("http://127.0.0.1:{}/v1/dead-letters", platform.console_port().unwrap_or_default());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(platform.run_until_stopped(shutdown.clone()));
        let client = reqwest::Client::new();
        let filters = [
            ("none", String::new()),
            ("tenant", format!("&tenant={}", tenants[3])),
            ("type", "&type=email.requested".to_owned()),
            ("tenant and type", format!("&tenant={}&type=email.requested", tenants[4])),
            ("queue", "&queue=analytics".to_owned()),
        ];
        for (label, filter) in &filters {
            let mut times = Vec::new();
            for _ in 0..20 {
                let started = Instant::now();
                let response = client.get(format!("{url}?limit=50{filter}")).bearer_auth(TOKEN).send().await?;
                let page: serde_json::Value = response.error_for_status()?.json().await?;
                times.push(started.elapsed());
                let listed = page["dead_letters"].as_array().map_or(0, Vec::len);
                anyhow::ensure!(listed == 50, "a full first page ({label}): got {listed}");
            }
            times.sort();
            let slowest = times.last().copied().unwrap_or(Duration::ZERO);
            println!("| {} | {label} | {} | {} |", store.label(), ms(times[times.len() / 2]), ms(slowest));
        }
        shutdown.cancel();
        task.await?.context("platform")?;
    }
    println!();
    Ok(())
}
