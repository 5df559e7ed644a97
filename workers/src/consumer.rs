//! The consumer runtime: long-polls a queue, runs a handler per message, and acks,
//! retries or dead-letters.
//!
//! Design:
//! - **Leases.** Messages are received with a short visibility timeout (the lease,
//!   30 s by default) and, while their group is being handled, a heartbeat extends it
//!   every third of the lease. A process that dies stops the heartbeat, so its
//!   messages are handed out again within one lease, whatever visibility timeout the
//!   queue itself declares.
//! - **Ordering.** The messages of one group are handled one after another, in order,
//!   even when they arrive in one batch; different groups run concurrently up to
//!   `concurrency`. The runtime receives full batches (up to 10) while it holds fewer
//!   than `concurrency + 10` messages; groups beyond `concurrency` wait for a slot,
//!   their messages kept by their heartbeat.
//! - **Acks are batched across groups**: handled messages are deleted in calls of up
//!   to ten, gathered for a few milliseconds, so a batch of ten one-message groups
//!   costs one delete, not ten.
//! - **Attempts are counted here, not by receipts.** When a handler fails, its message
//!   is retried in this process after a backoff, while the rest of its group stays
//!   received and invisible behind it: held-back messages are never released, so they
//!   are never received for nothing (on SQS FIFO every receive counts toward the
//!   queue's `maxReceiveCount`). After its handler failed `max_attempts` (3) times, the
//!   message is moved to the dead-letter queue (`Transport::dead_letter`, with the
//!   reason) and the rest of the group goes on. A message that can never succeed
//!   (`HandlerError::Permanent`: it cannot be decoded, it is invalid) is dead-lettered
//!   at once. The queue's own `maxReceiveCount` (3) stays as the safety net for a
//!   message whose handler keeps killing its process.
//! - **Outages are not the message's fault.** `HandlerError::Unavailable` (the store,
//!   the object store or the transport did not answer) spends no attempt: the message is
//!   kept and retried with a backoff capped at `max_outage_backoff`, the operators are
//!   alerted while it lasts, and only after `outage_grace` (an hour by default) do its
//!   failures count as attempts again. Groups waiting for a dependency hold their
//!   slots, so receiving pauses by itself once every slot waits.
//! - **Shutdown** stops receiving and lets the groups in hand finish; a group waiting
//!   out a backoff is given back to the queue instead (its messages become visible).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::{self, StreamExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use shared::events::{Decode, PayloadError};
use shared::ports::providers::{Alert, AlertSink};
use shared::ports::{
    Attempt, BoxError, DeadLetterRecord, DedupId, Failure, MessageId, QueueName, Receipt, ReceiveOptions,
    ReceivedMessage, Transport, TransportError, WorkerHealth,
};
use shared::topology::MAX_RECEIVE_COUNT;
use shared::{EventEnvelope, EventType, TenantId, Timestamp};

use crate::alerts::Alerter;

/// Why a handler did not finish a message.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// A dependency of the platform (store, object store, transport) is unavailable.
    /// Not the message's fault: retried without spending an attempt, for up to the
    /// consumer's `outage_grace`.
    #[error("a dependency is unavailable: {0}")]
    Unavailable(#[source] BoxError),
    /// This attempt failed (a provider down or throttling, the store refusing what it
    /// was given): retried after a backoff, dead-lettered after the last attempt.
    #[error("attempt failed: {0}")]
    Transient(#[source] BoxError),
    /// Retrying cannot help (the message cannot be decoded or is invalid): it goes to
    /// the dead-letter queue at once, with this as the reason.
    #[error("permanent failure: {0}")]
    Permanent(#[source] BoxError),
}

impl HandlerError {
    pub fn unavailable(error: impl Into<BoxError>) -> Self {
        HandlerError::Unavailable(error.into())
    }

    pub fn transient(error: impl Into<BoxError>) -> Self {
        HandlerError::Transient(error.into())
    }

    pub fn permanent(error: impl Into<BoxError>) -> Self {
        HandlerError::Permanent(error.into())
    }

    /// A platform dependency's error: unavailable when it may answer later, else an
    /// attempt that failed (a constraint violation, bytes the store refuses).
    fn dependency(retryable: bool, error: impl Into<BoxError>) -> Self {
        if retryable {
            Self::unavailable(error)
        } else {
            Self::transient(error)
        }
    }

    pub fn store(error: shared::ports::StoreError) -> Self {
        Self::dependency(error.is_retryable(), error)
    }

    pub fn objects(error: shared::ports::ObjectStoreError) -> Self {
        Self::dependency(error.is_retryable(), error)
    }

    pub fn transport(error: TransportError) -> Self {
        Self::dependency(error.is_retryable(), error)
    }

    /// A third party's error: throttling and outages are failed attempts (the
    /// provider, not the platform, is down); a rejection is permanent.
    pub fn provider(error: shared::ports::providers::ProviderError) -> Self {
        if error.is_retryable() {
            Self::transient(error)
        } else {
            Self::permanent(error)
        }
    }
}

/// Handles one message. Must be idempotent: the transport may deliver a message more
/// than once (use `Store::begin_once`).
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    /// A short name for logs and the inbox (`feedback`).
    fn name(&self) -> &str;
    async fn handle(&self, message: &ReceivedMessage) -> Result<(), HandlerError>;

    /// Called once when the consumer gives up on `message`, just before it moves to
    /// the dead-letter queue, so the worker can record it as failed with `reason`.
    /// Best effort: errors are the worker's to log.
    async fn dead_lettered(&self, message: &ReceivedMessage, reason: &str) {
        let _ = (message, reason);
    }
}

/// A worker's handler for the events of its queue: the envelope arrives already read
/// and its payload decoded, as `Self::Event` (every `EventHandler` is a [`Handler`]).
#[async_trait]
pub trait EventHandler: Send + Sync + 'static {
    type Event: Decode;

    /// A short name for logs and the inbox (`feedback`).
    fn name(&self) -> &str;

    async fn handle(&self, envelope: &EventEnvelope, event: Self::Event) -> Result<(), HandlerError>;

    /// Called once when the consumer gives up on the message, just before it moves to
    /// the dead-letter queue, so the worker can record it as failed with `reason`.
    /// Best effort: errors are the worker's to log.
    async fn dead_lettered(&self, envelope: &EventEnvelope, event: Self::Event, reason: &str) {
        let _ = (envelope, event, reason);
    }
}

/// Every [`EventHandler`] is a consumer's [`Handler`]: this is the one place where a
/// message is read as an envelope and its type and payload are checked. A message that
/// is not an envelope, or whose payload does not read back, is permanent (dead-lettered
/// at once with the reason); an event of another type is not this worker's and is
/// acknowledged untouched.
#[async_trait]
impl<H: EventHandler> Handler for H {
    fn name(&self) -> &str {
        EventHandler::name(self)
    }

    async fn handle(&self, message: &ReceivedMessage) -> Result<(), HandlerError> {
        match read_event::<H::Event>(message)? {
            Some((envelope, event)) => EventHandler::handle(self, &envelope, event).await,
            None => Ok(()),
        }
    }

    async fn dead_lettered(&self, message: &ReceivedMessage, reason: &str) {
        if let Ok(Some((envelope, event))) = read_event::<H::Event>(message) {
            EventHandler::dead_lettered(self, &envelope, event, reason).await;
        }
    }
}

/// The envelope of `message` and its payload as `E`; `None` for an event of a type `E`
/// is not carried by.
fn read_event<E: Decode>(message: &ReceivedMessage) -> Result<Option<(EventEnvelope, E)>, HandlerError> {
    let envelope = EventEnvelope::from_json(&message.body).map_err(HandlerError::permanent)?;
    match E::decode(&envelope) {
        Ok(event) => Ok(Some((envelope, event))),
        Err(PayloadError::WrongType { found, expected }) => {
            tracing::debug!(event_type = %found, expected, "not for this worker; skipped");
            Ok(None)
        }
        Err(error) => Err(HandlerError::permanent(error)),
    }
}

#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    pub queue: QueueName,
    /// Message groups handled at once.
    pub concurrency: usize,
    /// Long-poll wait per receive.
    pub wait: Duration,
    /// The backoff after a failed attempt; doubles per attempt up to `max_backoff`.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// Handler runs that fail before the message is dead-lettered.
    pub max_attempts: u32,
    /// The visibility timeout messages are received with; a heartbeat extends it
    /// every third while their group is handled, so a dead process's messages come
    /// back within one lease.
    pub lease: Duration,
    /// How long an outage of a platform dependency keeps a message without spending
    /// its attempts.
    pub outage_grace: Duration,
    /// The longest wait between tries while a dependency is unavailable.
    pub max_outage_backoff: Duration,
}

/// The default lease: a dead consumer's messages are retried within this.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);
/// The default outage grace.
pub const DEFAULT_OUTAGE_GRACE: Duration = Duration::from_secs(60 * 60);

impl ConsumerConfig {
    pub fn new(queue: impl Into<String>) -> Self {
        Self {
            queue: QueueName::new(queue),
            concurrency: 8,
            wait: Duration::from_secs(20),
            base_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(5 * 60),
            max_attempts: MAX_RECEIVE_COUNT,
            lease: DEFAULT_LEASE,
            outage_grace: DEFAULT_OUTAGE_GRACE,
            max_outage_backoff: Duration::from_secs(5),
        }
    }
}

pub struct Consumer {
    transport: Arc<dyn Transport>,
    handler: Arc<dyn Handler>,
    config: ConsumerConfig,
    stats: Arc<ConsumerStats>,
    /// Where messages given up on are recorded (for tenants' alerts), when set.
    dead_letters: Option<Arc<dyn WorkerHealth>>,
    /// Where outages are reported while they last, when set.
    alerter: Option<tokio::sync::Mutex<Alerter>>,
    acks: Acks,
}

/// Running counts of a consumer's handler results (for failure-rate alerts).
#[derive(Debug, Default)]
pub struct ConsumerStats {
    pub handled: AtomicU64,
    /// Failed handler runs, whatever the cause.
    pub failed: AtomicU64,
    /// Messages moved to the dead-letter queue.
    pub dead_lettered: AtomicU64,
    /// Handler runs that found a platform dependency unavailable.
    pub unavailable: AtomicU64,
    /// The longest a message received since the last report had waited in the queue
    /// (milliseconds): SQS reports its oldest message's age only to CloudWatch, so the
    /// control plane derives it from this. Taken (reset) by each report.
    pub longest_wait_ms: AtomicU64,
}

impl ConsumerStats {
    /// Notes how long each of `messages` waited in the queue before it was received.
    pub fn received(&self, messages: &[shared::ports::ReceivedMessage]) {
        let now = shared::Timestamp::now();
        if let Some(longest) = messages.iter().map(|m| m.sent_at.until(now)).max() {
            let ms = u64::try_from(longest.as_millis()).unwrap_or(u64::MAX);
            self.longest_wait_ms.fetch_max(ms, Ordering::Relaxed);
        }
    }
}

/// The receipts of a group's messages not yet acked or dead-lettered.
struct Held(Mutex<Vec<Receipt>>);

impl Held {
    fn receipts(&self) -> Vec<Receipt> {
        self.0.lock().map(|h| h.clone()).unwrap_or_default()
    }

    fn release(&self, receipt: &Receipt) {
        if let Ok(mut held) = self.0.lock() {
            held.retain(|r| r != receipt);
        }
    }
}

/// A group's handled messages, handed to the consumer's acks before any wait and at
/// the end of the group.
struct Done<'a> {
    held: &'a Held,
    receipts: Vec<Receipt>,
}

impl Done<'_> {
    fn ack(&mut self, consumer: &Consumer) {
        for receipt in &self.receipts {
            self.held.release(receipt);
        }
        consumer.acks.push(std::mem::take(&mut self.receipts));
    }
}

/// Handled messages of every group, deleted in batches of up to ten: what groups hand
/// over within a few milliseconds of each other goes out in one call. A message
/// handed over keeps at least two thirds of its lease (the heartbeat extends it every
/// third), far longer than it waits here.
#[derive(Default)]
struct Acks {
    pending: Mutex<Vec<Receipt>>,
    pushed: tokio::sync::Notify,
    /// Groups being handled now.
    running: AtomicU64,
}

/// How long the ack batcher waits for more groups to finish before it deletes, while
/// other groups are running (alone, a group's messages are deleted at once).
const ACK_GATHER: Duration = Duration::from_millis(5);
/// The long poll while groups are running.
const BUSY_WAIT: Duration = Duration::from_secs(1);

impl Acks {
    fn push(&self, receipts: Vec<Receipt>) {
        if receipts.is_empty() {
            return;
        }
        if let Ok(mut pending) = self.pending.lock() {
            pending.extend(receipts);
        }
        self.pushed.notify_one();
    }

    async fn flush(&self, consumer: &Consumer) {
        let receipts = self.pending.lock().map(|mut p| std::mem::take(&mut *p)).unwrap_or_default();
        for chunk in receipts.chunks(10) {
            if let Err(error) = consumer.transport.ack(consumer.queue(), chunk).await {
                // Redelivered after the lease; the handlers are idempotent.
                tracing::warn!(%error, queue = consumer.queue(), "could not ack handled messages");
            }
        }
    }

    /// Deletes what groups hand over until `stop`, then what is left.
    async fn run(&self, consumer: &Consumer, stop: CancellationToken) {
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                () = self.pushed.notified() => {}
            }
            if self.running.load(Ordering::Relaxed) > 0 {
                tokio::time::sleep(ACK_GATHER).await;
            }
            self.flush(consumer).await;
        }
        self.flush(consumer).await;
    }
}

/// What became of one message.
enum Settled {
    Done,
    DeadLettered,
    /// Given back to the queue (shutdown, or the transport could not take it to the
    /// dead-letter queue): the rest of its group must stay behind it.
    Returned,
}

/// What to do after a failed handler run.
enum Next {
    Retry { wait: Duration },
    DeadLetter,
}

impl Consumer {
    pub fn new(transport: Arc<dyn Transport>, handler: Arc<dyn Handler>, config: ConsumerConfig) -> Self {
        Self {
            transport,
            handler,
            config,
            stats: Arc::default(),
            dead_letters: None,
            alerter: None,
            acks: Acks::default(),
        }
    }

    /// Also records in `store` each message it dead-letters, with its tenant (the
    /// message group), for the tenants' own alerts.
    #[must_use]
    pub fn recording_dead_letters(mut self, health: Arc<dyn WorkerHealth>) -> Self {
        self.dead_letters = Some(health);
        self
    }

    /// Alerts `sink` while a dependency is unavailable (one alert, then a summary, per
    /// ten minutes).
    #[must_use]
    pub fn alerting(mut self, sink: Arc<dyn AlertSink>) -> Self {
        self.alerter = Some(tokio::sync::Mutex::new(Alerter::new(sink, Duration::from_secs(600))));
        self
    }

    /// The handler's running counts.
    pub fn stats(&self) -> Arc<ConsumerStats> {
        self.stats.clone()
    }

    fn queue(&self) -> &str {
        self.config.queue.as_str()
    }

    fn backoff(&self, failures: u32) -> Duration {
        let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(16));
        self.config.base_backoff.saturating_mul(factor).min(self.config.max_backoff)
    }

    async fn record_dead_letter(&self, message: &ReceivedMessage, reason: &str) {
        let Some(store) = &self.dead_letters else { return };
        // The tenant leads the group id (`<tenant>:<ordering key>`).
        let Ok(tenant) = TenantId::parse(shared::ports::fairness_lane(&message.group_id)) else { return };
        let record = DeadLetterRecord {
            tenant,
            queue: self.config.queue.clone(),
            message_id: MessageId::new(message.message_id.clone()),
            dedup_id: DedupId::new(message.dedup_id.clone()),
            event_type: message.attributes.get("event_type").and_then(|t| EventType::parse(t).ok()),
            error: reason.to_owned(),
            recorded_at: Timestamp::now(),
        };
        if let Err(error) = store.record_dead_letter(&record).await {
            tracing::warn!(%error, queue = self.queue(), "could not record a dead letter");
        }
    }

    async fn alert_outage(&self, error: &HandlerError, since: Instant) {
        let Some(alerter) = &self.alerter else { return };
        let alert = Alert {
            title: format!("{} is waiting for a dependency", self.handler.name()),
            description: format!(
                "Messages of {} are kept, without spending their attempts, until it answers: {error}",
                self.queue()
            ),
            fields: vec![
                ("queue".into(), self.config.queue.to_string()),
                ("for".into(), format!("{} s", since.elapsed().as_secs())),
            ],
            colour: 0xE6_7E_22,
            url: None,
        };
        alerter.lock().await.raise(&format!("outage:{}", self.queue()), alert, Instant::now()).await;
    }

    /// Runs the handler on `message` until it succeeds, is dead-lettered, or must be
    /// given back. Before any wait it acks what its group finished (`done`).
    async fn settle(&self, message: &ReceivedMessage, shutdown: &CancellationToken, done: &mut Done<'_>) -> Settled {
        let mut attempts = 0u32;
        // Each failed run that counted as an attempt, carried to the dead-letter queue.
        let mut failed_runs: Vec<Attempt> = Vec::new();
        let mut outage: Option<(Instant, u32)> = None;
        loop {
            let span = tracing::info_span!(
                "process message",
                worker = self.handler.name(),
                queue = self.queue(),
                message_id = message.message_id.as_str(),
                group = message.group_id.as_str(),
                attempt = attempts + 1,
            );
            if let Some(traceparent) = message.attributes.get("traceparent") {
                shared::telemetry::continue_trace(&span, traceparent);
            }
            let error = match self.handler.handle(message).instrument(span).await {
                Ok(()) => {
                    self.stats.handled.fetch_add(1, Ordering::Relaxed);
                    return Settled::Done;
                }
                Err(error) => error,
            };
            self.stats.failed.fetch_add(1, Ordering::Relaxed);
            let next = match &error {
                HandlerError::Unavailable(_)
                    if outage.is_none_or(|(since, _)| since.elapsed() < self.config.outage_grace) =>
                {
                    self.stats.unavailable.fetch_add(1, Ordering::Relaxed);
                    let (since, tries) = outage.get_or_insert((Instant::now(), 0));
                    *tries += 1;
                    let since = *since;
                    let wait = self.backoff(*tries).min(self.config.max_outage_backoff);
                    self.alert_outage(&error, since).await;
                    Next::Retry { wait }
                }
                HandlerError::Unavailable(_) | HandlerError::Transient(_) => {
                    attempts += 1;
                    failed_runs.push(Attempt { at: Timestamp::now(), error: error.to_string() });
                    if attempts >= self.config.max_attempts {
                        Next::DeadLetter
                    } else {
                        Next::Retry { wait: self.backoff(attempts) }
                    }
                }
                HandlerError::Permanent(_) => {
                    attempts += 1;
                    failed_runs.push(Attempt { at: Timestamp::now(), error: error.to_string() });
                    Next::DeadLetter
                }
            };
            match next {
                Next::Retry { wait } => {
                    tracing::warn!(
                        worker = self.handler.name(),
                        queue = self.queue(),
                        message_id = message.message_id.as_str(),
                        group = message.group_id.as_str(),
                        attempts,
                        retry_in_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                        error = %error,
                        "handler failed; retrying"
                    );
                    done.ack(self);
                    tokio::select! {
                        () = shutdown.cancelled() => return Settled::Returned,
                        () = tokio::time::sleep(wait) => {}
                    }
                }
                Next::DeadLetter => {
                    let reason = format!("{error} (after {attempts} attempt{})", if attempts == 1 { "" } else { "s" });
                    let failure = Failure { reason, attempts: std::mem::take(&mut failed_runs) };
                    return self.dead_letter(message, &failure).await;
                }
            }
        }
    }

    async fn dead_letter(&self, message: &ReceivedMessage, failure: &Failure) -> Settled {
        let reason = failure.reason.as_str();
        for wait in [Duration::ZERO, Duration::from_millis(500), Duration::from_secs(2)] {
            tokio::time::sleep(wait).await;
            match self.transport.dead_letter(self.queue(), message, failure).await {
                Ok(()) => {
                    tracing::warn!(
                        worker = self.handler.name(),
                        queue = self.queue(),
                        message_id = message.message_id.as_str(),
                        group = message.group_id.as_str(),
                        reason,
                        "gave up on a message: moved it to the dead-letter queue"
                    );
                    self.stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
                    // Reported once it is really there: a message the transport could
                    // not move comes back, and may still succeed.
                    self.handler.dead_lettered(message, reason).await;
                    self.record_dead_letter(message, reason).await;
                    return Settled::DeadLettered;
                }
                Err(error) if error.is_retryable() => {
                    tracing::warn!(%error, queue = self.queue(), "could not move a message to its dead-letter queue yet");
                }
                Err(error) => {
                    tracing::error!(%error, queue = self.queue(), "could not move a message to its dead-letter queue");
                    break;
                }
            }
        }
        // Its lease runs out and the queue's own receive limit takes it there.
        Settled::Returned
    }

    /// Handles one group's messages in order, holding every one of them (heartbeat)
    /// until it is acked, dead-lettered or given back. With `slots`, it first waits for
    /// one of them (its messages held meanwhile).
    async fn handle_group(
        &self,
        messages: Vec<ReceivedMessage>,
        shutdown: &CancellationToken,
        slots: Option<Arc<tokio::sync::Semaphore>>,
    ) {
        let held = Held(Mutex::new(messages.iter().map(|m| m.receipt.clone()).collect()));
        let work = async {
            let _slot = match slots {
                Some(slots) => match slots.acquire_owned().await {
                    Ok(slot) => Some(slot),
                    Err(_) => return,
                },
                None => None,
            };
            self.acks.running.fetch_add(1, Ordering::Relaxed);
            let mut done = Done { held: &held, receipts: Vec::new() };
            for message in &messages {
                match self.settle(message, shutdown, &mut done).await {
                    Settled::Done => done.receipts.push(message.receipt.clone()),
                    Settled::DeadLettered => held.release(&message.receipt),
                    Settled::Returned => break,
                }
            }
            self.acks.running.fetch_sub(1, Ordering::Relaxed);
            done.ack(self);
            // What could not be handled goes back to the queue, still in order.
            for receipt in held.receipts() {
                let _ = self.transport.change_visibility(self.queue(), &receipt, Duration::ZERO).await;
            }
        };
        tokio::select! {
            () = work => {}
            never = self.heartbeat(&held) => match never {},
        }
    }

    /// Extends the lease of every held message every third of the lease.
    async fn heartbeat(&self, held: &Held) -> std::convert::Infallible {
        let interval = (self.config.lease / 3).max(Duration::from_millis(100));
        loop {
            tokio::time::sleep(interval).await;
            for receipt in &held.receipts() {
                if let Err(error) = self.transport.change_visibility(self.queue(), receipt, self.config.lease).await {
                    tracing::warn!(queue = self.queue(), %error, "could not extend a message's lease");
                }
            }
        }
    }

    fn receive_options(&self, max: usize, wait: Duration) -> ReceiveOptions {
        ReceiveOptions {
            max_messages: u32::try_from(max.clamp(1, 10)).unwrap_or(10),
            wait,
            visibility_timeout: Some(self.config.lease),
        }
    }

    /// Splits a batch into its groups, each in receive order.
    fn groups(messages: Vec<ReceivedMessage>) -> Vec<Vec<ReceivedMessage>> {
        let mut groups: Vec<Vec<ReceivedMessage>> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        for message in messages {
            match index.get(&message.group_id) {
                Some(&i) => groups[i].push(message),
                None => {
                    index.insert(message.group_id.clone(), groups.len());
                    groups.push(vec![message]);
                }
            }
        }
        groups
    }

    /// Receives one batch (waiting up to `wait`) and handles it to the end, retries
    /// included. Returns how many messages were received.
    pub async fn run_once(&self, wait: Duration) -> Result<usize, TransportError> {
        let messages = self.transport.receive(self.queue(), self.receive_options(10, wait)).await?;
        self.stats.received(&messages);
        let received = messages.len();
        let shutdown = CancellationToken::new();
        stream::iter(Self::groups(messages))
            .for_each_concurrent(self.config.concurrency.max(1), |group| self.handle_group(group, &shutdown, None))
            .await;
        self.acks.flush(self).await;
        Ok(received)
    }

    /// Runs until `shutdown` is cancelled. A cancellation interrupts the wait for
    /// messages and any backoff; a handler that is running is always finished.
    ///
    /// Receives full batches while it holds fewer than `concurrency + 10` messages;
    /// `concurrency` groups run at once and the others wait for a slot, their messages
    /// kept by their heartbeat.
    pub async fn run(self, shutdown: CancellationToken) {
        tracing::info!(worker = self.handler.name(), queue = self.queue(), "consumer started");
        let this = Arc::new(self);
        let concurrency = this.config.concurrency.max(1);
        let slots = Arc::new(tokio::sync::Semaphore::new(concurrency));
        let holding = Arc::new(tokio::sync::Semaphore::new(concurrency + 10));
        let acks_stop = CancellationToken::new();
        let acker = {
            let (consumer, stop) = (this.clone(), acks_stop.clone());
            tokio::spawn(async move { consumer.acks.run(&consumer, stop).await })
        };
        let mut groups = tokio::task::JoinSet::new();
        loop {
            while groups.try_join_next().is_some() {}
            let first = tokio::select! {
                () = shutdown.cancelled() => break,
                permit = holding.clone().acquire_owned() => match permit { Ok(p) => p, Err(_) => break },
            };
            let mut permits = vec![first];
            while permits.len() < 10 {
                match holding.clone().try_acquire_owned() {
                    Ok(permit) => permits.push(permit),
                    Err(_) => break,
                }
            }
            // A full long poll only when idle: while groups run, their deletes free their
            // next messages, and a poll that began before a delete may not see them until
            // it ends (the AWS test server works that way), so it is kept short.
            let wait = if groups.is_empty() { this.config.wait } else { this.config.wait.min(BUSY_WAIT) };
            let received = tokio::select! {
                () = shutdown.cancelled() => break,
                received = this.transport.receive(this.queue(), this.receive_options(permits.len(), wait)) => received,
            };
            match received {
                Ok(messages) => {
                    this.stats.received(&messages);
                    for group in Self::groups(messages) {
                        let held: Vec<_> = permits.drain(..group.len().min(permits.len())).collect();
                        let (consumer, shutdown, slots) = (this.clone(), shutdown.clone(), slots.clone());
                        groups.spawn(async move {
                            consumer.handle_group(group, &shutdown, Some(slots)).await;
                            drop(held);
                        });
                    }
                }
                Err(error) => {
                    tracing::error!(queue = this.queue(), %error, "receive failed");
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
        while groups.join_next().await.is_some() {}
        acks_stop.cancel();
        let _ = acker.await;
        tracing::info!(worker = this.handler.name(), queue = this.queue(), "consumer stopped");
    }
}
