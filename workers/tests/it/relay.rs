use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use shared::topology::UseCase;
use shared::EventEnvelope;
use workers::{OutboxRelay, RelayConfig};

use crate::helpers::{Env, Faults, FaultyTransport};

fn fast() -> RelayConfig {
    RelayConfig { base_backoff: Duration::from_millis(100), ..RelayConfig::default() }
}

fn bodies(messages: &[shared::ports::ReceivedMessage]) -> Vec<EventEnvelope> {
    messages.iter().map(|m| EventEnvelope::from_json(&m.body).expect("envelope")).collect()
}

#[tokio::test]
async fn publishes_in_batches_of_ten_in_order_and_marks_rows_published() {
    let env = Env::new().await;
    let tenant = env.tenant("Acme").await;
    let mut sent = Vec::new();
    for n in 0..25 {
        sent.push(env.append(tenant, "feedback.x", n).await.id);
    }
    let transport = Arc::new(FaultyTransport::new(env.embedded.clone(), Faults::default()));
    let relay = OutboxRelay::new(env.store.clone(), transport.clone(), env.topology.clone(), fast());
    let outcome = relay.run_once().await.expect("round");
    assert_eq!(outcome.published, 25);
    assert_eq!(*transport.batch_sizes.lock().expect("lock"), vec![10, 10, 5]);
    assert_eq!(env.store.outbox_backlog().await.expect("backlog"), 0);
    let received = env.drain(&env.queue(UseCase::Feedback), Duration::from_millis(100)).await;
    assert_eq!(bodies(&received).iter().map(|e| e.id).collect::<Vec<_>>(), sent);
    let first = &received[0];
    assert_eq!(first.group_id, tenant.to_string());
    assert_eq!(first.attributes.get("event_type").map(String::as_str), Some("feedback.x"));
    assert_eq!(first.attributes.get("tenant_id"), Some(&tenant.to_string()));
    assert_eq!(relay.run_once().await.expect("round").published, 0, "nothing is published twice");
}

#[tokio::test]
async fn an_outage_is_retried_with_backoff_and_nothing_is_lost() {
    let env = Env::new().await;
    let tenant = env.tenant("Acme").await;
    let sent: Vec<_> = futures_ids(&env, tenant, 3).await;
    let transport =
        Arc::new(FaultyTransport::new(env.embedded.clone(), Faults { failing_calls: 1, ..Faults::default() }));
    let relay = OutboxRelay::new(env.store.clone(), transport, env.topology.clone(), fast());
    let outcome = relay.run_once().await.expect("round");
    assert_eq!((outcome.published, outcome.retried), (0, 3));
    assert_eq!(env.store.outbox_backlog().await.expect("backlog"), 3, "failed rows stay in the outbox");
    assert_eq!(relay.run_once().await.expect("round").published, 0, "not before the backoff");
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(relay.run_once().await.expect("round").published, 3);
    let received = env.drain(&env.queue(UseCase::Feedback), Duration::from_millis(100)).await;
    assert_eq!(bodies(&received).iter().map(|e| e.id).collect::<Vec<_>>(), sent);
}

async fn futures_ids(env: &Env, tenant: shared::TenantId, n: u64) -> Vec<shared::EventId> {
    let mut ids = Vec::new();
    for i in 0..n {
        ids.push(env.append(tenant, "feedback.x", i).await.id);
    }
    ids
}

#[tokio::test]
async fn a_failed_entry_holds_back_only_its_own_tenant() {
    let env = Env::new().await;
    let acme = env.tenant("Acme").await;
    let globex = env.tenant("Globex").await;
    let a1 = env.append(acme, "feedback.x", 1).await;
    let g1 = env.append(globex, "feedback.x", 1).await;
    let a2 = env.append(acme, "feedback.x", 2).await;
    let g2 = env.append(globex, "feedback.x", 2).await;
    let faults = Faults { failing_entries: [a1.id.to_string()].into_iter().collect(), ..Faults::default() };
    let transport = Arc::new(FaultyTransport::new(env.embedded.clone(), faults));
    let relay = OutboxRelay::new(env.store.clone(), transport.clone(), env.topology.clone(), fast());
    let outcome = relay.run_once().await.expect("round");
    assert_eq!((outcome.published, outcome.retried), (2, 2));
    let queue = env.queue(UseCase::Feedback);
    let first = bodies(&env.drain(&queue, Duration::from_millis(100)).await);
    assert_eq!(first.iter().map(|e| e.id).collect::<Vec<_>>(), vec![g1.id, g2.id], "the other tenant flows");

    transport.faults.lock().expect("lock").failing_entries.clear();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let mut later = Vec::new();
    for _ in 0..5 {
        relay.run_once().await.expect("round");
        later.extend(bodies(&env.drain(&queue, Duration::from_millis(50)).await));
        if later.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert_eq!(
        later.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![a1.id, a2.id],
        "the failed tenant resumes in order"
    );
}

#[tokio::test]
async fn an_insert_wakes_the_relay_without_waiting_for_its_timer() {
    let env = Env::new().await;
    let tenant = env.tenant("Acme").await;
    let config = RelayConfig { idle_wake: Duration::from_secs(3600), ..fast() };
    let relay = OutboxRelay::new(env.store.clone(), env.embedded.clone(), env.topology.clone(), config);
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(relay.run(shutdown.clone()));
    tokio::time::sleep(Duration::from_millis(200)).await; // the relay is idle now
    let sent = env.append(tenant, "feedback.x", 1).await;
    let received = shared::testkit::within(Duration::from_secs(5), "the woken relay's publish", async {
        loop {
            let got = env.drain(&env.queue(UseCase::Feedback), Duration::from_secs(1)).await;
            if !got.is_empty() {
                return got;
            }
        }
    })
    .await;
    assert_eq!(bodies(&received)[0].id, sent.id);
    shutdown.cancel();
    shared::testkit::within(Duration::from_secs(5), "the relay to stop", running).await.expect("join");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_publish_everything_once_and_keep_each_tenant_in_order() {
    let env = Env::new().await;
    let mut expected: HashMap<String, Vec<shared::EventId>> = HashMap::new();
    let mut tenants = Vec::new();
    for i in 0..5 {
        tenants.push(env.tenant(&format!("Tenant {i}")).await);
    }
    for n in 0..20 {
        for tenant in &tenants {
            let e = env.append(*tenant, "feedback.x", n).await;
            expected.entry(tenant.to_string()).or_default().push(e.id);
        }
    }
    let shutdown = CancellationToken::new();
    let config = RelayConfig { claim_limit: 7, ..fast() };
    let mut running = Vec::new();
    for _ in 0..2 {
        let relay = OutboxRelay::new(env.store.clone(), env.embedded.clone(), env.topology.clone(), config.clone());
        running.push(tokio::spawn(relay.run(shutdown.clone())));
    }
    let mut got: HashMap<String, Vec<shared::EventId>> = HashMap::new();
    let mut total = 0;
    shared::testkit::within(Duration::from_secs(20), "100 events", async {
        while total < 100 {
            for message in env.drain(&env.queue(UseCase::Feedback), Duration::from_millis(500)).await {
                got.entry(message.group_id.clone())
                    .or_default()
                    .push(EventEnvelope::from_json(&message.body).expect("body").id);
                total += 1;
            }
        }
    })
    .await;
    shutdown.cancel();
    for task in running {
        task.await.expect("join");
    }
    assert_eq!(got, expected);
    assert_eq!(env.store.outbox_backlog().await.expect("backlog"), 0);
}

#[tokio::test]
async fn a_row_that_never_publishes_is_given_up_on_and_stops_blocking_its_tenant() {
    let env = Env::new().await;
    let acme = env.tenant("Acme").await;
    let poison = env.append(acme, "feedback.x", 1).await;
    let next = env.append(acme, "feedback.x", 2).await;
    let faults = Faults { failing_entries: [poison.id.to_string()].into_iter().collect(), ..Faults::default() };
    let transport = Arc::new(FaultyTransport::new(env.embedded.clone(), faults));
    let config = RelayConfig { base_backoff: Duration::from_millis(1), max_attempts: 3, ..RelayConfig::default() };
    let relay = OutboxRelay::new(env.store.clone(), transport, env.topology.clone(), config);
    let queue = env.queue(UseCase::Feedback);
    let mut published = Vec::new();
    for _ in 0..10 {
        relay.run_once().await.expect("round");
        published.extend(bodies(&env.drain(&queue, Duration::from_millis(20)).await));
        if !published.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(published.iter().map(|e| e.id).collect::<Vec<_>>(), vec![next.id]);
    assert_eq!(env.store.outbox_backlog().await.expect("backlog"), 0, "the poison row is failed, not pending");
}

/// Records what was put; fails while `failing` is set.
#[derive(Default)]
struct RecordingBus {
    put: std::sync::Mutex<Vec<shared::ports::BusEvent>>,
    failing: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl shared::ports::EventBus for RecordingBus {
    async fn put_events(
        &self,
        events: &[shared::ports::BusEvent],
    ) -> Result<Vec<Result<(), shared::ports::TransportError>>, shared::ports::TransportError> {
        if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(shared::ports::TransportError::Unavailable("bus down".into()));
        }
        self.put.lock().expect("lock").extend(events.iter().cloned());
        Ok(events.iter().map(|_| Ok(())).collect())
    }

    async fn rule_patterns(&self) -> Result<Vec<shared::pattern::EventPattern>, shared::ports::TransportError> {
        Ok(vec![shared::pattern::EventPattern::parse(&serde_json::json!({"detail-type": [{"prefix": "order."}]}))
            .expect("pattern")])
    }
}

#[tokio::test]
async fn matching_forwarding_puts_only_events_some_rule_wants_on_the_bus() {
    let env = Env::new().await;
    let acme = env.tenant("Acme").await;
    let order = env.append(acme, "order.placed", 1).await;
    env.append(acme, "feedback.x", 2).await;
    let bus = Arc::new(RecordingBus::default());
    let relay = OutboxRelay::new(env.store.clone(), env.embedded.clone(), env.topology.clone(), fast())
        .with_bus(bus.clone(), workers::BusForwarding::Matching);
    assert_eq!(relay.run_once().await.expect("round").published, 2);
    let put = bus.put.lock().expect("lock").clone();
    assert_eq!(put.len(), 1, "only the order event matches a rule");
    assert_eq!((put[0].source.as_str(), put[0].detail_type.as_str()), ("core-api", "order.placed"));
    assert_eq!(EventEnvelope::from_json(&put[0].detail).expect("detail is the envelope").id, order.id);
}

#[tokio::test]
async fn all_forwarding_puts_everything_and_a_bus_outage_keeps_rows_for_a_retry() {
    let env = Env::new().await;
    let acme = env.tenant("Acme").await;
    env.append(acme, "order.placed", 1).await;
    env.append(acme, "feedback.x", 2).await;
    let bus = Arc::new(RecordingBus::default());
    bus.failing.store(true, std::sync::atomic::Ordering::SeqCst);
    let relay = OutboxRelay::new(env.store.clone(), env.embedded.clone(), env.topology.clone(), fast())
        .with_bus(bus.clone(), workers::BusForwarding::All);
    assert_eq!(relay.run_once().await.expect("round").published, 0);
    assert_eq!(env.store.outbox_backlog().await.expect("backlog"), 2, "not published until the bus has them");
    bus.failing.store(false, std::sync::atomic::Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(150)).await;
    let mut published = 0;
    for _ in 0..5 {
        published += relay.run_once().await.expect("round").published;
        if published == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert_eq!(published, 2);
    assert_eq!(bus.put.lock().expect("lock").len(), 2);
    let delivered = env.drain(&env.queue(UseCase::Feedback), Duration::from_millis(100)).await;
    assert_eq!(delivered.len(), 1, "the topic's copy was delivered once (the retry's copy was a duplicate)");
}

#[tokio::test]
async fn a_row_the_transport_refuses_for_good_is_failed_at_once_and_holds_back_no_one() {
    let env = Env::new().await;
    let (acme, globex) = (env.tenant("Acme").await, env.tenant("Globex").await);
    let refused = env.append(acme, "feedback.x", 1).await;
    let next = env.append(acme, "feedback.x", 2).await;
    let other = env.append(globex, "feedback.x", 3).await;
    let faults = Faults { refused_entries: [refused.id.to_string()].into_iter().collect(), ..Faults::default() };
    let transport = Arc::new(FaultyTransport::new(env.embedded.clone(), faults));
    let config = RelayConfig { base_backoff: Duration::from_secs(60), ..RelayConfig::default() };
    let relay = OutboxRelay::new(env.store.clone(), transport.clone(), env.topology.clone(), config);
    relay.run_once().await.expect("first round");
    relay.run_once().await.expect("second round");
    let queue = env.queue(UseCase::Feedback);
    let mut published: Vec<_> =
        bodies(&env.drain(&queue, Duration::from_millis(20)).await).iter().map(|e| e.id).collect();
    published.sort();
    let mut expected = vec![next.id, other.id];
    expected.sort();
    assert_eq!(published, expected, "no backoff, no 25 attempts: the tenant's next row and the other tenant's go out");
    assert_eq!(env.store.outbox_backlog().await.expect("backlog"), 0, "the refused row is failed, not pending");
    assert_eq!(transport.batch_sizes.lock().expect("lock").len(), 2, "one attempt for the refused row");
}
