//! The consumer runtime: long-polls a queue, runs a handler per message, and acks,
//! backs off or lets the transport dead-letter.
//!
//! Ordering: messages of one group are handled one after another, in order, even when
//! they arrive in one batch; different groups run concurrently up to `concurrency`.
//! When a message fails, the rest of its group in the batch is released at once
//! (visibility 0) while the failed message backs off, so the group resumes in order
//! after the backoff. After `maxReceiveCount` receives the transport moves a message
//! to the dead-letter queue.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::{self, StreamExt};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use shared::ports::{
    BoxError, DeadLetterRecord, Receipt, ReceiveOptions, ReceivedMessage, Store, Transport, TransportError,
};
use shared::topology::MAX_RECEIVE_COUNT;
use shared::{TenantId, Timestamp};

/// Why a handler did not finish a message.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Try again after a backoff (provider down, throttled, store unavailable).
    #[error("transient failure: {0}")]
    Transient(#[source] BoxError),
    /// Retrying cannot help (the message is malformed); it goes to the dead-letter
    /// queue after its remaining receives, without waiting for backoffs.
    #[error("permanent failure: {0}")]
    Permanent(#[source] BoxError),
}

impl HandlerError {
    pub fn transient(error: impl Into<BoxError>) -> Self {
        HandlerError::Transient(error.into())
    }

    pub fn permanent(error: impl Into<BoxError>) -> Self {
        HandlerError::Permanent(error.into())
    }

    /// Transient when `retryable`, else permanent.
    pub fn classify(retryable: bool, error: impl Into<BoxError>) -> Self {
        if retryable {
            Self::transient(error)
        } else {
            Self::permanent(error)
        }
    }

    pub fn store(error: shared::ports::StoreError) -> Self {
        Self::classify(error.is_retryable(), error)
    }

    pub fn provider(error: shared::ports::providers::ProviderError) -> Self {
        Self::classify(error.is_retryable(), error)
    }

    pub fn objects(error: shared::ports::ObjectStoreError) -> Self {
        Self::classify(error.is_retryable(), error)
    }
}

/// Handles one message. Must be idempotent: the transport may deliver a message more
/// than once (use `Store::begin_once`).
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    /// A short name for logs and the inbox (`feedback`).
    fn name(&self) -> &str;
    async fn handle(&self, message: &ReceivedMessage) -> Result<(), HandlerError>;
}

#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    pub queue: String,
    /// Message groups handled at once.
    pub concurrency: usize,
    /// Long-poll wait per receive.
    pub wait: Duration,
    /// First backoff after a transient failure; doubles per receive.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// The visibility timeout to receive with (the queue's own when `None`). When set,
    /// a batch whose handling outlasts a third of it has its visibility extended by a
    /// heartbeat, so a long handler never sees its message redelivered meanwhile.
    pub visibility_timeout: Option<Duration>,
}

impl ConsumerConfig {
    pub fn new(queue: impl Into<String>) -> Self {
        Self {
            queue: queue.into(),
            concurrency: 8,
            wait: Duration::from_secs(20),
            base_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(5 * 60),
            visibility_timeout: None,
        }
    }
}

pub struct Consumer {
    transport: Arc<dyn Transport>,
    handler: Arc<dyn Handler>,
    config: ConsumerConfig,
    stats: Arc<ConsumerStats>,
    /// Where messages given up on are recorded (for tenants' alerts), when set.
    dead_letters: Option<Arc<dyn Store>>,
}

/// Running counts of a consumer's handler results (for failure-rate alerts).
#[derive(Debug, Default)]
pub struct ConsumerStats {
    pub handled: AtomicU64,
    pub failed: AtomicU64,
}

enum Outcome {
    Done(Receipt),
    Failed { receipt: Receipt, delay: Duration },
    Released(Receipt),
}

impl Consumer {
    pub fn new(transport: Arc<dyn Transport>, handler: Arc<dyn Handler>, config: ConsumerConfig) -> Self {
        Self { transport, handler, config, stats: Arc::default(), dead_letters: None }
    }

    /// Also records in `store` each message whose last attempt failed (the transport
    /// moves it to the dead-letter queue), with its tenant (the message group).
    #[must_use]
    pub fn recording_dead_letters(mut self, store: Arc<dyn Store>) -> Self {
        self.dead_letters = Some(store);
        self
    }

    async fn record_dead_letter(&self, message: &ReceivedMessage, error: &HandlerError) {
        let Some(store) = &self.dead_letters else { return };
        if message.receive_count < MAX_RECEIVE_COUNT {
            return;
        }
        let Ok(tenant) = TenantId::parse(&message.group_id) else { return };
        let record = DeadLetterRecord {
            tenant,
            queue: self.config.queue.clone(),
            message_id: message.message_id.clone(),
            event_id: message.dedup_id.clone(),
            event_type: message.attributes.get("event_type").cloned().unwrap_or_default(),
            error: error.to_string(),
            recorded_at: Timestamp::now(),
        };
        if let Err(error) = store.record_dead_letter(&record).await {
            tracing::warn!(%error, queue = self.config.queue.as_str(), "could not record a dead letter");
        }
    }

    /// The handler's running counts.
    pub fn stats(&self) -> Arc<ConsumerStats> {
        self.stats.clone()
    }

    fn backoff(&self, receive_count: u32) -> Duration {
        let factor = 2u32.saturating_pow(receive_count.saturating_sub(1).min(16));
        self.config.base_backoff.saturating_mul(factor).min(self.config.max_backoff)
    }

    /// Handles one group's messages in order; stops at the first failure.
    async fn handle_group(&self, messages: Vec<ReceivedMessage>) -> Vec<Outcome> {
        let mut outcomes = Vec::with_capacity(messages.len());
        let mut failed = false;
        for message in messages {
            if failed {
                outcomes.push(Outcome::Released(message.receipt));
                continue;
            }
            let span = tracing::info_span!(
                "process message",
                worker = self.handler.name(),
                queue = self.config.queue.as_str(),
                message_id = message.message_id.as_str(),
                receive_count = message.receive_count,
            );
            if let Some(traceparent) = message.attributes.get("traceparent") {
                shared::telemetry::continue_trace(&span, traceparent);
            }
            match self.handler.handle(&message).instrument(span).await {
                Ok(()) => {
                    self.stats.handled.fetch_add(1, Ordering::Relaxed);
                    outcomes.push(Outcome::Done(message.receipt));
                }
                Err(error) => {
                    self.stats.failed.fetch_add(1, Ordering::Relaxed);
                    failed = true;
                    let delay = match &error {
                        HandlerError::Transient(_) => self.backoff(message.receive_count),
                        HandlerError::Permanent(_) => Duration::ZERO,
                    };
                    tracing::warn!(
                        worker = self.handler.name(),
                        queue = self.config.queue.as_str(),
                        message_id = message.message_id.as_str(),
                        group = message.group_id.as_str(),
                        receive_count = message.receive_count,
                        retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                        error = %error,
                        "handler failed"
                    );
                    self.record_dead_letter(&message, &error).await;
                    outcomes.push(Outcome::Failed { receipt: message.receipt, delay });
                }
            }
        }
        outcomes
    }

    /// Receives one batch (waiting up to `wait`) and handles it. Returns how many
    /// messages were received.
    pub async fn run_once(&self, wait: Duration) -> Result<usize, TransportError> {
        let messages = self.transport.receive(&self.config.queue, self.receive_options(wait)).await?;
        self.handle_batch(messages).await
    }

    fn receive_options(&self, wait: Duration) -> ReceiveOptions {
        ReceiveOptions { max_messages: 10, wait, visibility_timeout: self.config.visibility_timeout }
    }

    async fn handle_batch(&self, messages: Vec<ReceivedMessage>) -> Result<usize, TransportError> {
        let received = messages.len();
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
        let receipts: Vec<Receipt> = groups.iter().flatten().map(|m| m.receipt.clone()).collect();
        let work = stream::iter(groups)
            .map(|group| self.handle_group(group))
            .buffer_unordered(self.config.concurrency.max(1))
            .flat_map(stream::iter)
            .collect::<Vec<Outcome>>();
        let outcomes = match self.config.visibility_timeout {
            Some(visibility) => {
                tokio::select! {
                    outcomes = work => outcomes,
                    never = self.heartbeat(&receipts, visibility) => match never {},
                }
            }
            None => work.await,
        };
        let mut done = Vec::new();
        for outcome in outcomes {
            match outcome {
                Outcome::Done(receipt) => done.push(receipt),
                Outcome::Failed { receipt, delay } => self.set_visibility(&receipt, delay).await,
                Outcome::Released(receipt) => self.set_visibility(&receipt, Duration::ZERO).await,
            }
        }
        for chunk in done.chunks(10) {
            self.transport.ack(&self.config.queue, chunk).await?;
        }
        Ok(received)
    }

    /// Extends the batch's visibility every third of the timeout, for as long as it runs.
    async fn heartbeat(&self, receipts: &[Receipt], visibility: Duration) -> std::convert::Infallible {
        let interval = (visibility / 3).max(Duration::from_millis(200));
        loop {
            tokio::time::sleep(interval).await;
            for receipt in receipts {
                if let Err(error) = self.transport.change_visibility(&self.config.queue, receipt, visibility).await {
                    tracing::debug!(queue = self.config.queue.as_str(), %error, "visibility heartbeat failed");
                }
            }
        }
    }

    async fn set_visibility(&self, receipt: &Receipt, delay: Duration) {
        if let Err(error) = self.transport.change_visibility(&self.config.queue, receipt, delay).await {
            // The message becomes visible at its normal timeout instead.
            tracing::warn!(queue = self.config.queue.as_str(), %error, "could not change visibility");
        }
    }

    /// Runs until `shutdown` is cancelled. A cancellation interrupts only the wait for
    /// messages; a batch in hand is always finished.
    pub async fn run(self, shutdown: CancellationToken) {
        tracing::info!(worker = self.handler.name(), queue = self.config.queue.as_str(), "consumer started");
        loop {
            let received = tokio::select! {
                () = shutdown.cancelled() => break,
                received = self.transport.receive(&self.config.queue, self.receive_options(self.config.wait)) => received,
            };
            if let Err(error) = match received {
                Ok(messages) => self.handle_batch(messages).await,
                Err(error) => Err(error),
            } {
                tracing::error!(queue = self.config.queue.as_str(), %error, "receive or ack failed");
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
        tracing::info!(worker = self.handler.name(), queue = self.config.queue.as_str(), "consumer stopped");
    }
}
