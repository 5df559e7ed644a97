//! The store: the source of truth (tenants, keys, domain rows) plus the outbox and inbox
//! that make event flow durable and idempotent, as one small port per domain. One
//! backend implements them all ([`StoreBackend`]); a component receives only the ports
//! it uses, by upcasting: `let outbox: Arc<dyn Outbox> = backend.clone();`.
//!
//! Contract shared by every port:
//! - Every tenant-scoped read or write takes the tenant first and never returns or
//!   changes another tenant's rows: a row of tenant A asked for as tenant B is `None` /
//!   `NotFound`, and an envelope of tenant A written as tenant B is refused
//!   ([`StoreError::WrongTenant`]) with nothing written.
//! - A write that produces an event commits the domain row and the outbox row in one
//!   transaction; when it returns `Ok`, the event is durable.
//! - Methods documented as operator-level are not tenant-scoped (the control plane,
//!   authentication, monitors).

mod access;
mod analytics;
mod emails;
mod events;
mod feedback;
mod health;
mod inbox;
mod invitations;
mod journeys;
mod operators;
mod outbox;
mod parking;
mod plans;
mod tenants;
mod webhooks;

use async_trait::async_trait;

use super::BoxError;
use crate::ids::TenantId;

pub use access::{AccessRequestStore, EventFor};
pub use analytics::AnalyticsStore;
pub use emails::{EmailStore, SendStart};
pub use events::{Appended, EventLog};
pub use feedback::FeedbackStore;
pub use health::{DeadLetterRecord, DedupId, MessageId, QueueName, WorkerHealth, WorkerReport};
pub use inbox::{Applied, ConsumerName, Effect, Effects, Inbox};
pub use invitations::InvitationStore;
pub use journeys::{EffectRecord, EventJourneys, EventRecords, Handled, OutboxTrace};
pub use operators::{AuditEntry, AuditFilter, AuditLog, NewAuditEntry, Operators};
pub use outbox::{Outbox, OutboxEntry};
pub use parking::{DeadLetterParking, ErrorGroup, ErrorGroupKey, Fingerprint, NewParked, Parked, ParkedFilter};
pub use plans::{
    redrive_dedup_id, Apply, DeadLetterPlans, FailedOutboxRow, Job, JobState, JobStep, ParkedState, Plan, PlanAction,
    PlanCounts, Selection, Tally, MAX_TALLIES,
};
pub use tenants::TenantDirectory;
pub use webhooks::{WebhookPage, WebhookStore};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("conflict: {0}")]
    Conflict(String),
    /// A tenant-scoped write was handed a row or envelope of another tenant (a bug in
    /// the caller); nothing was written.
    #[error("{what} belongs to tenant {owner}, not to tenant {tenant}")]
    WrongTenant { what: String, owner: TenantId, tenant: TenantId },
    #[error("stored data could not be read back: {0}")]
    Corrupt(String),
    #[error("the database is unavailable")]
    Unavailable(#[source] BoxError),
    #[error("database error")]
    Database(#[source] BoxError),
}

impl StoreError {
    /// Whether trying the same call again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }

    /// `Ok` when `owner` is `tenant`; the [`StoreError::WrongTenant`] refusal otherwise.
    pub fn check_tenant(what: impl FnOnce() -> String, owner: TenantId, tenant: TenantId) -> Result<(), StoreError> {
        if owner == tenant {
            Ok(())
        } else {
            Err(StoreError::WrongTenant { what: what(), owner, tenant })
        }
    }
}

/// Whether the store can serve queries at all (readiness checks).
#[async_trait]
pub trait Readiness: Send + Sync + 'static {
    /// Answers once the store can serve a query; `Unavailable` when it cannot be reached
    /// within the pool's acquire timeout.
    async fn ping(&self) -> Result<(), StoreError>;
}

/// Declares [`StoreBackend`] over `$port`s, with the impl for every type that
/// implements them all, so the list of ports is written once.
macro_rules! store_backend {
    ($($port:ident),+ $(,)?) => {
        /// Every store port, implemented by one backend. Wiring code and tests hold
        /// this; a component is handed only the ports it uses.
        pub trait StoreBackend: $($port +)+ {}

        impl<T> StoreBackend for T where T: $($port +)+ {}
    };
}

store_backend!(
    Readiness,
    TenantDirectory,
    WebhookStore,
    EventLog,
    Outbox,
    Inbox,
    FeedbackStore,
    EmailStore,
    AnalyticsStore,
    AccessRequestStore,
    InvitationStore,
    WorkerHealth,
    DeadLetterParking,
    DeadLetterPlans,
    Operators,
    AuditLog,
    EventJourneys,
);
