//! Worker health: each process's counts and the messages workers gave up on.

use async_trait::async_trait;

use super::StoreError;
use crate::clock::Timestamp;
use crate::ids::TenantId;

/// A worker process's running counts of handled and failed messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerReport {
    pub worker: String,
    /// Which process (counts restart with it).
    pub process: String,
    pub handled: u64,
    pub failed: u64,
    pub reported_at: Timestamp,
}

/// A message a worker gave up on: its last attempt failed, so the transport moves it to
/// the dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterRecord {
    pub tenant: TenantId,
    pub queue: String,
    pub message_id: String,
    /// The event's id (the message's dedup id).
    pub event_id: String,
    pub event_type: String,
    pub error: String,
    pub recorded_at: Timestamp,
}

/// Operator-level (monitors and the control plane).
#[async_trait]
pub trait WorkerHealth: Send + Sync + 'static {
    /// Records (replaces) a worker process's counts.
    async fn report_worker(&self, report: &WorkerReport) -> Result<(), StoreError>;
    /// Every worker process's latest counts reported at or after `since`.
    async fn worker_reports(&self, since: Timestamp) -> Result<Vec<WorkerReport>, StoreError>;
    /// Records a message a worker gave up on.
    async fn record_dead_letter(&self, record: &DeadLetterRecord) -> Result<(), StoreError>;
    /// Dead letters recorded after the one numbered `after` (0: from the first) and at or
    /// after `since`, oldest first, at most `limit`, each with its number (the cursor
    /// for the next call).
    async fn dead_letters_since(
        &self,
        after: i64,
        since: Timestamp,
        limit: u32,
    ) -> Result<Vec<(i64, DeadLetterRecord)>, StoreError>;
}
