//! What the store knows of one event, for its journey: the outbox row (accepted,
//! committed, published or given up on), the consumers that applied it (the inbox),
//! its dead-lettered copies (parked, redriven, purged) and the rows its effects wrote.
//! Nothing is recorded for the journey itself: every step is read from the records the
//! pipeline keeps anyway.

use async_trait::async_trait;

use super::{Parked, StoreError};
use crate::clock::Timestamp;
use crate::ids::{EventId, TenantId};

/// The event's outbox row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxTrace {
    pub tenant: TenantId,
    /// The envelope as stored (JSON).
    pub envelope: String,
    /// Accepted and committed, in one transaction.
    pub created_at: Timestamp,
    pub published_at: Option<Timestamp>,
    /// Failed publish attempts so far.
    pub attempts: u32,
    pub last_error: Option<String>,
    /// When the relay gave up on it.
    pub failed_at: Option<Timestamp>,
    pub discarded_at: Option<Timestamp>,
    pub discard_reason: Option<String>,
}

/// A consumer applied the event (its inbox row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handled {
    /// The consumer's name (an inbox `ConsumerName`): its worker's use case.
    pub consumer: String,
    pub at: Timestamp,
}

/// A row an effect of the event wrote: a feedback, an email, a TestFlight invitation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EffectRecord {
    /// `feedback`, `email` or `testflight_invitation`.
    pub kind: &'static str,
    pub id: String,
    pub status: String,
    pub result_key: Option<String>,
    /// The provider's id of what it did: a help-desk ticket, an email's message id, a
    /// beta tester.
    pub provider_id: Option<String>,
    pub failure: Option<String>,
    pub updated_at: Timestamp,
}

/// Everything the store has of one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecords {
    pub outbox: OutboxTrace,
    /// The `Idempotency-Key` it was accepted under.
    pub idempotency_key: Option<String>,
    pub handled: Vec<Handled>,
    /// Its dead-lettered copies, oldest first.
    pub parked: Vec<Parked>,
    pub effects: Vec<EffectRecord>,
}

#[async_trait]
pub trait EventJourneys: Send + Sync + 'static {
    /// The records of event `id`: of any tenant when `tenant` is `None`
    /// (operator-level), otherwise only when it is `tenant`'s (`None` for another
    /// tenant's, as for a missing one).
    async fn event_records(&self, id: EventId, tenant: Option<TenantId>) -> Result<Option<EventRecords>, StoreError>;
}
