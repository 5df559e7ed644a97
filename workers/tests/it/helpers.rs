//! A SQLite store and an embedded transport in a temp dir, plus transports that fail
//! on purpose.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Map};

use adapters::embedded::EmbeddedTransport;
use adapters::SqlStore;
use shared::config::StoreConfig;
use shared::domain::{Tenant, TenantName};
use shared::ports::providers::{Alert, AlertSink, ProviderError};
use shared::ports::{
    DeadLetter, Failure, OutgoingMessage, QueueStats, Receipt, ReceiveOptions, ReceivedMessage, StoreBackend,
    Transport, TransportError,
};
use shared::topology::{Environment, InstanceName, Topology, UseCase};
use shared::{EventEnvelope, EventType, Service, SystemClock, TenantId, Timestamp};

pub struct Env {
    pub store: Arc<dyn StoreBackend>,
    pub embedded: Arc<EmbeddedTransport>,
    pub topology: Topology,
    pub dir: tempfile::TempDir,
}

impl Env {
    pub async fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqlStore::connect(&StoreConfig::Sqlite { path: dir.path().join("store.db") }).await.expect("store");
        store.migrate().await.expect("migrate");
        let topology =
            Topology::new(InstanceName::parse("w").expect("name"), Environment::Production).expect("topology");
        let embedded = EmbeddedTransport::open(&dir.path().join("transport.db"), &topology, Arc::new(SystemClock))
            .await
            .expect("transport");
        Self { store: Arc::new(store), embedded: Arc::new(embedded), topology, dir }
    }

    /// A monitor of this environment posting to `sink`, repeats folded over 5 minutes.
    pub fn monitor(&self, sink: Arc<dyn AlertSink>) -> workers::alerts::Monitor {
        let alerter = workers::alerts::Alerter::new(sink, Duration::from_secs(300));
        workers::alerts::Monitor::new(
            self.embedded.clone(),
            workers::alerts::MonitorPorts::of(&self.store),
            self.topology.clone(),
            alerter,
        )
    }

    pub fn queue(&self, use_case: UseCase) -> String {
        self.topology.queue(use_case).name.clone()
    }

    pub fn topic(&self) -> String {
        self.topology.topic(Service::CoreApi).name.clone()
    }

    pub async fn tenant(&self, name: &str) -> TenantId {
        let tenant =
            Tenant { id: TenantId::new(), name: TenantName::parse(name).expect("name"), created_at: Timestamp::now() };
        self.store.create_tenant(&tenant).await.expect("tenant");
        tenant.id
    }

    /// Appends a tenant event of `event_type` (`feedback.x` reaches the feedback queue).
    pub async fn append(&self, tenant: TenantId, event_type: &str, n: u64) -> EventEnvelope {
        let data: Map<_, _> = json!({"n": n}).as_object().cloned().unwrap_or_default();
        let envelope = EventEnvelope::new(tenant, Service::CoreApi, EventType::parse(event_type).expect("type"), data);
        self.store.append_event(envelope.tenant_id, &envelope).await.expect("append");
        envelope
    }

    /// Receives and acks everything on `queue` until a receive waits `wait` in vain.
    pub async fn drain(&self, queue: &str, wait: Duration) -> Vec<ReceivedMessage> {
        let mut all = Vec::new();
        loop {
            let options = ReceiveOptions { max_messages: 10, wait, visibility_timeout: None };
            let batch = self.embedded.receive(queue, options).await.expect("receive");
            if batch.is_empty() {
                return all;
            }
            let receipts: Vec<Receipt> = batch.iter().map(|m| m.receipt.clone()).collect();
            self.embedded.ack(queue, &receipts).await.expect("ack");
            all.extend(batch);
        }
    }
}

/// How a [`FaultyTransport`] misbehaves.
#[derive(Default)]
pub struct Faults {
    /// Whole publish calls to fail before succeeding.
    pub failing_calls: usize,
    /// Dedup ids (event ids) whose entries fail, every time, as an outage would.
    pub failing_entries: HashSet<String>,
    /// Dedup ids whose entries the transport refuses for good (too large, invalid).
    pub refused_entries: HashSet<String>,
    /// Moves to a dead-letter queue fail as in an outage.
    pub dead_letters_unavailable: bool,
}

/// Wraps the embedded transport, recording publish batch sizes and injecting faults.
pub struct FaultyTransport {
    pub inner: Arc<EmbeddedTransport>,
    pub faults: Mutex<Faults>,
    pub batch_sizes: Mutex<Vec<usize>>,
    /// Calls to receive that returned messages, and calls to ack.
    pub receives: std::sync::atomic::AtomicUsize,
    pub acks: std::sync::atomic::AtomicUsize,
}

impl FaultyTransport {
    pub fn new(inner: Arc<EmbeddedTransport>, faults: Faults) -> Self {
        Self {
            inner,
            faults: Mutex::new(faults),
            batch_sizes: Mutex::new(Vec::new()),
            receives: Default::default(),
            acks: Default::default(),
        }
    }
}

#[async_trait]
impl Transport for FaultyTransport {
    async fn publish(
        &self,
        topic: &str,
        batch: &[OutgoingMessage],
    ) -> Result<Vec<Result<(), TransportError>>, TransportError> {
        self.batch_sizes.lock().expect("lock").push(batch.len());
        let (failing, refused): (HashSet<String>, HashSet<String>) = {
            let mut faults = self.faults.lock().expect("lock");
            if faults.failing_calls > 0 {
                faults.failing_calls -= 1;
                return Err(TransportError::Unavailable("injected outage".into()));
            }
            (faults.failing_entries.clone(), faults.refused_entries.clone())
        };
        // Like every transport, a rejected entry rejects its group's later entries too.
        let mut rejected_groups = HashSet::new();
        let (bad, good): (Vec<usize>, Vec<usize>) = (0..batch.len()).partition(|i| {
            let reject = failing.contains(&batch[*i].dedup_id)
                || refused.contains(&batch[*i].dedup_id)
                || rejected_groups.contains(&batch[*i].group_id);
            if reject {
                rejected_groups.insert(batch[*i].group_id.clone());
            }
            reject
        });
        let good_messages: Vec<OutgoingMessage> = good.iter().map(|i| batch[*i].clone()).collect();
        let mut results: Vec<Result<(), TransportError>> = (0..batch.len()).map(|_| Ok(())).collect();
        if !good_messages.is_empty() {
            for (i, result) in good.iter().zip(self.inner.publish(topic, &good_messages).await?) {
                results[*i] = result;
            }
        }
        for i in bad {
            let id = &batch[i].dedup_id;
            results[i] = Err(if refused.contains(id) {
                TransportError::Invalid("injected refusal".into())
            } else if failing.contains(id) {
                TransportError::Unavailable("injected entry failure".into())
            } else {
                TransportError::Invalid(format!(
                    "an earlier message of group `{}` in this batch was rejected",
                    batch[i].group_id
                ))
            });
        }
        Ok(results)
    }

    async fn send(
        &self,
        queue: &str,
        batch: &[OutgoingMessage],
    ) -> Result<Vec<Result<(), TransportError>>, TransportError> {
        self.inner.send(queue, batch).await
    }

    async fn receive(&self, queue: &str, options: ReceiveOptions) -> Result<Vec<ReceivedMessage>, TransportError> {
        let messages = self.inner.receive(queue, options).await?;
        if !messages.is_empty() {
            self.receives.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        Ok(messages)
    }

    async fn ack(&self, queue: &str, receipts: &[Receipt]) -> Result<(), TransportError> {
        self.acks.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.ack(queue, receipts).await
    }

    async fn change_visibility(&self, queue: &str, receipt: &Receipt, timeout: Duration) -> Result<(), TransportError> {
        self.inner.change_visibility(queue, receipt, timeout).await
    }

    async fn dead_letter(
        &self,
        queue: &str,
        message: &ReceivedMessage,
        failure: &Failure,
    ) -> Result<(), TransportError> {
        if self.faults.lock().expect("lock").dead_letters_unavailable {
            return Err(TransportError::Unavailable("injected outage".into()));
        }
        self.inner.dead_letter(queue, message, failure).await
    }

    async fn dead_letters(&self, dlq: &str, max: u32) -> Result<Vec<DeadLetter>, TransportError> {
        self.inner.dead_letters(dlq, max).await
    }

    async fn redrive(&self, dlq: &str) -> Result<u64, TransportError> {
        self.inner.redrive(dlq).await
    }

    async fn purge(&self, queue: &str) -> Result<u64, TransportError> {
        self.inner.purge(queue).await
    }

    async fn stats(&self, queue: &str) -> Result<QueueStats, TransportError> {
        self.inner.stats(queue).await
    }
}

/// A delivery of `envelope`, as the transport would hand it to a handler.
pub fn delivery(envelope: &EventEnvelope, count: u32) -> ReceivedMessage {
    ReceivedMessage {
        message_id: format!("m{count}"),
        receipt: Receipt(format!("r{count}")),
        group_id: envelope.group_id(),
        dedup_id: envelope.id.to_string(),
        body: envelope.to_json(),
        attributes: std::collections::BTreeMap::new(),
        receive_count: count,
        sent_at: Timestamp::now(),
    }
}

/// An alert sink that records what it posted and fails the first `failures` posts
/// (`usize::MAX`: always).
#[derive(Default)]
pub struct AlertRecorder {
    pub posted: Mutex<Vec<Alert>>,
    pub failures: std::sync::atomic::AtomicUsize,
}

impl AlertRecorder {
    pub fn failing(failures: usize) -> Self {
        Self { posted: Mutex::default(), failures: failures.into() }
    }
}

#[async_trait]
impl AlertSink for AlertRecorder {
    async fn post(&self, alert: &Alert) -> Result<(), ProviderError> {
        use std::sync::atomic::Ordering;
        let left = self.failures.load(Ordering::SeqCst);
        if left > 0 {
            if left != usize::MAX {
                self.failures.fetch_sub(1, Ordering::SeqCst);
            }
            return Err(ProviderError::Unavailable { provider: "recorder", detail: "injected outage".into() });
        }
        self.posted.lock().expect("lock").push(alert.clone());
        Ok(())
    }
}

/// Publishes `envelope` to the core-api topic, runs `handler` on `use_case`'s queue
/// until the message has been received four times, and checks that it reached the
/// dead-letter queue after three and that the monitor alerts the operators about it.
pub async fn assert_dead_lettered_and_alerted(
    env: &Env,
    use_case: UseCase,
    handler: Arc<dyn workers::Handler>,
    envelope: &EventEnvelope,
) {
    use workers::{Consumer, ConsumerConfig};

    env.embedded.publish(&env.topic(), &[workers::relay::outgoing(envelope)]).await.expect("publish");
    let config = ConsumerConfig { base_backoff: Duration::from_millis(10), ..ConsumerConfig::new(env.queue(use_case)) };
    let consumer = Consumer::new(env.embedded.clone(), handler, config);
    for _ in 0..4 {
        consumer.run_once(Duration::from_millis(300)).await.expect("run");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let dlq = env.topology.queue(use_case).dlq_name.clone();
    let dead = env.embedded.dead_letters(&dlq, 10).await.expect("dlq");
    assert_eq!(dead.len(), 1, "dead-lettered after 3 receives");
    assert_eq!(dead[0].dedup_id, envelope.id.to_string());
    let operators = Arc::new(AlertRecorder::default());
    let mut monitor = env.monitor(operators.clone());
    monitor.check(tokio::time::Instant::now()).await;
    let titles: Vec<String> = operators.posted.lock().expect("lock").iter().map(|a| a.title.clone()).collect();
    assert_eq!(titles, [format!("Dead letters in {dlq}")]);
}

/// Counts puts and fails the first `fail_first` of them.
pub struct CountingObjects {
    pub inner: adapters::object_store::FilesystemObjectStore,
    pub puts: std::sync::atomic::AtomicUsize,
    pub fail_first: usize,
}

#[async_trait]
impl shared::ports::ObjectStore for CountingObjects {
    async fn put(
        &self,
        key: &shared::ObjectKey,
        body: Vec<u8>,
        content_type: &str,
    ) -> Result<(), shared::ports::ObjectStoreError> {
        if self.puts.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < self.fail_first {
            return Err(shared::ports::ObjectStoreError::Unavailable("injected".into()));
        }
        self.inner.put(key, body, content_type).await
    }

    async fn get(&self, key: &shared::ObjectKey) -> Result<Option<Vec<u8>>, shared::ports::ObjectStoreError> {
        self.inner.get(key).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<shared::ObjectKey>, shared::ports::ObjectStoreError> {
        self.inner.list(prefix).await
    }
}
