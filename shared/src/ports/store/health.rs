//! Worker health: each process's counts and the messages workers gave up on.

use async_trait::async_trait;

use super::StoreError;
use crate::clock::Timestamp;
use crate::envelope::EventType;
use crate::ids::TenantId;

/// A worker process's running counts of handled and failed messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerReport {
    pub worker: String,
    /// Which process (counts restart with it).
    pub process: String,
    pub handled: u64,
    pub failed: u64,
    /// The longest a message the process received since its previous report had waited
    /// in the queue; `None` when it received none.
    pub longest_wait: Option<std::time::Duration>,
    pub reported_at: Timestamp,
}

/// A message a worker gave up on: its last attempt failed, so the transport moves it to
/// the dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterRecord {
    pub tenant: TenantId,
    pub queue: QueueName,
    /// The transport's id of the message.
    pub message_id: MessageId,
    /// The message's dedup id: the event's id, for the platform's events.
    pub dedup_id: DedupId,
    /// The `event_type` attribute, when the message had a valid one.
    pub event_type: Option<EventType>,
    /// Why the worker gave up.
    pub error: String,
    pub recorded_at: Timestamp,
}

/// A newtype over a `String` that names one thing, with `new`, `as_str` and `Display`.
macro_rules! text_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            pub fn new(text: impl Into<String>) -> Self {
                Self(text.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

text_newtype!(
    /// A queue's name (`acme-feedback.fifo`).
    QueueName
);
text_newtype!(
    /// A message's dedup id (FIFO queues drop a second message with the same one within
    /// five minutes); the relay uses the event id.
    DedupId
);
text_newtype!(
    /// The transport's id of one received message.
    MessageId
);

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
