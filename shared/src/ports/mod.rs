//! The ports: what the platform needs from the outside world, with the contract each
//! backend must honour written on the trait. Every backend runs the same conformance
//! suite (`testkit`, behind the `testkit` feature).

pub mod bus;
pub mod object_store;
pub mod providers;
pub mod store;
pub mod transport;

pub use bus::{BusEvent, EventBus};
pub use object_store::{ObjectStore, ObjectStoreError};
pub use store::{
    redrive_dedup_id, AccessRequestStore, AnalyticsStore, Appended, Applied, Apply, AuditEntry, AuditFilter, AuditLog,
    ConsumerName, DeadLetterParking, DeadLetterPlans, DeadLetterRecord, DedupId, Effect, EffectRecord, Effects,
    EmailStore, ErrorGroup, ErrorGroupKey, EventJourneys, EventLog, EventRecords, FailedOutboxRow, FeedbackStore,
    Fingerprint, Handled, Inbox, InvitationStore, Job, JobState, JobStep, MessageId, NewAuditEntry, NewParked,
    Operators, Outbox, OutboxEntry, OutboxTrace, Parked, ParkedFilter, ParkedState, Plan, PlanAction, PlanCounts,
    QueueName, Readiness, Selection, SendStart, StoreBackend, StoreError, Tally, TenantDirectory, WebhookPage,
    WebhookStore, WorkerHealth, WorkerReport, MAX_TALLIES,
};
pub use transport::{
    attempts_in, check_batch, dead_letter_attributes, fairness_lane, Attempt, DeadLetter, Failure, OutgoingMessage,
    QueueStats, Receipt, ReceiveOptions, ReceivedMessage, Transport, TransportError, DEAD_LETTER_ATTEMPTS,
    DEAD_LETTER_REASON, MAX_BATCH, MAX_MESSAGE_BYTES,
};

/// A boxed error for the `source` of adapter errors.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;
