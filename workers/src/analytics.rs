//! The analytics worker: stages each accepted chunk of events exactly once (inbox), and
//! a writer that turns staged events into gzip NDJSON objects under
//! `analytics/tenant=…/year=…/month=…/day=…/hour=…/<object id>.ndjson.gz`.
//!
//! An object is written per tenant and hour once that hour holds `batch_events` staged
//! events or its oldest one waited `batch_age`. Staged events are durable in the store,
//! so a crash loses nothing: a writer that dies after writing an object but before
//! recording it leaves its rows claimed until the lease lapses, and the next writer
//! writes them again — a duplicate row, found by its `event_id` and visible in the
//! reconciliation counts (`rows_in_objects` above `written`).

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use flate2::write::GzEncoder;
use flate2::Compression;
use serde_json::json;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use shared::config::AnalyticsConfig;
use shared::domain::analytics::{hour_of, AnalyticsChunk, StagedAnalytics};
use shared::events::AnalyticsEventsAccepted;
use shared::ports::{AnalyticsStore, Applied, ConsumerName, Effects, Inbox, ObjectStore, StoreError};
use shared::{EventEnvelope, ObjectKey, Timestamp};

use crate::consumer::{EventHandler, HandlerError};

pub const CONSUMER: ConsumerName = ConsumerName::new("analytics");
/// How long a writer owns the rows it claimed.
const WRITE_LEASE: Duration = Duration::from_secs(120);
/// Attempts to write one chunk before leaving it to the lease.
const WRITE_ATTEMPTS: u32 = 4;

/// Stages the events of `analytics.events_accepted` messages.
pub struct AnalyticsWorker {
    inbox: Arc<dyn Inbox>,
    staged: Arc<Notify>,
}

impl AnalyticsWorker {
    /// `staged` is notified after each commit, so the writer can check for full batches.
    pub fn new(inbox: Arc<dyn Inbox>, staged: Arc<Notify>) -> Self {
        Self { inbox, staged }
    }

    fn rows(envelope: &EventEnvelope, accepted: AnalyticsEventsAccepted) -> Vec<StagedAnalytics> {
        let hour = hour_of(envelope.occurred_at);
        let batch_id = accepted.batch_id;
        accepted
            .events
            .into_iter()
            .map(|event| {
                let line = json!({
                    "event_id": event.id,
                    "tenant_id": envelope.tenant_id,
                    "batch_id": batch_id,
                    "name": event.name,
                    "timestamp": event.timestamp,
                    "user_id": event.user_id,
                    "properties": event.properties,
                    "received_at": envelope.occurred_at,
                });
                StagedAnalytics { event_id: event.id, batch_id, hour, line: line.to_string() }
            })
            .collect()
    }
}

#[async_trait]
impl EventHandler for AnalyticsWorker {
    type Event = AnalyticsEventsAccepted;

    fn name(&self) -> &str {
        CONSUMER.as_str()
    }

    async fn handle(&self, envelope: &EventEnvelope, accepted: AnalyticsEventsAccepted) -> Result<(), HandlerError> {
        let rows = Self::rows(envelope, accepted);
        let tenant = envelope.tenant_id;
        let events = rows.len();
        let mut effects = Effects::new();
        effects.stage_analytics(tenant, rows);
        if self.inbox.apply_once(CONSUMER, tenant, envelope.id, effects).await.map_err(HandlerError::store)?
            == Applied::Now
        {
            tracing::debug!(tenant_id = %tenant, events, "analytics events staged");
            self.staged.notify_one();
        }
        Ok(())
    }
}

/// Writes staged analytics events as objects.
pub struct AnalyticsWriter {
    analytics: Arc<dyn AnalyticsStore>,
    objects: Arc<dyn ObjectStore>,
    config: AnalyticsConfig,
    staged: Arc<Notify>,
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("could not write the object")]
    Object(#[source] shared::ports::ObjectStoreError),
    #[error("could not compress the rows")]
    Compress(#[source] std::io::Error),
    #[error("invalid object key")]
    Key(#[source] shared::object_key::ObjectKeyError),
}

impl AnalyticsWriter {
    pub fn new(
        analytics: Arc<dyn AnalyticsStore>,
        objects: Arc<dyn ObjectStore>,
        config: AnalyticsConfig,
        staged: Arc<Notify>,
    ) -> Self {
        Self { analytics, objects, config, staged }
    }

    /// Writes every partition that is due; returns how many objects were written.
    pub async fn write_due(&self) -> Result<usize, WriteError> {
        let mut written = 0;
        loop {
            let staged_before = Timestamp::from_millis(
                Timestamp::now().as_millis() - i64::try_from(self.config.batch_age.as_millis()).unwrap_or(i64::MAX),
            );
            let Some(chunk) =
                self.analytics.claim_analytics(self.config.batch_events, staged_before, WRITE_LEASE).await?
            else {
                return Ok(written);
            };
            self.write_with_retries(&chunk).await?;
            written += 1;
        }
    }

    /// Writes a claimed chunk, retrying a failed write a few times while the claim holds;
    /// after that the claim lapses and a later pass writes the rows.
    async fn write_with_retries(&self, chunk: &AnalyticsChunk) -> Result<(), WriteError> {
        let mut delay = Duration::from_millis(100);
        for _ in 1..WRITE_ATTEMPTS {
            match self.write(chunk).await {
                Ok(()) => return Ok(()),
                Err(error) => {
                    tracing::warn!(tenant_id = %chunk.tenant, error = %error, "analytics object not written; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
            }
        }
        self.write(chunk).await
    }

    async fn write(&self, chunk: &AnalyticsChunk) -> Result<(), WriteError> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
        for line in &chunk.lines {
            encoder.write_all(line.as_bytes()).map_err(WriteError::Compress)?;
            encoder.write_all(b"\n").map_err(WriteError::Compress)?;
        }
        let body = encoder.finish().map_err(WriteError::Compress)?;
        let name = format!("{}.ndjson.gz", uuid::Uuid::now_v7().simple());
        let key = ObjectKey::partitioned("analytics", chunk.tenant, chunk.hour, &name).map_err(WriteError::Key)?;
        self.objects.put(&key, body, "application/gzip").await.map_err(WriteError::Object)?;
        self.analytics.record_analytics_object(chunk, key.as_str()).await?;
        tracing::info!(tenant_id = %chunk.tenant, rows = chunk.lines.len(), key = %key, "analytics object written");
        Ok(())
    }

    /// Writes due partitions whenever events are staged and at least every quarter of
    /// `batch_age`, until `shutdown`. Staged events are durable, so stopping loses none.
    pub async fn run(self, shutdown: CancellationToken) {
        let tick = (self.config.batch_age / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
        loop {
            if let Err(error) = self.write_due().await {
                tracing::warn!(error = %error, cause = ?std::error::Error::source(&error), "writing analytics objects failed; retrying");
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.staged.notified() => {}
                () = tokio::time::sleep(tick) => {}
            }
        }
    }
}
