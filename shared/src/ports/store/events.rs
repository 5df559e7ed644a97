//! The event log: tenant events written through the API (`POST /v1/events`, inbound
//! webhooks), each with its outbox row.

use async_trait::async_trait;

use super::StoreError;
use crate::envelope::EventEnvelope;
use crate::ids::{EventId, TenantId};

/// What [`EventLog::append_event`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// The event and its outbox row were committed.
    Created,
    /// The tenant already used this idempotency key: nothing was written; this is the
    /// event id the key was first used for.
    Existing(EventId),
}

/// Contract:
/// - An idempotency key is unique per tenant: concurrent appends with one key commit
///   exactly one event; the others get [`Appended::Existing`] with its id.
/// - Concurrent appends may share a transaction (group commit); one that fails does not
///   fail its neighbours.
#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// Stores `tenant`'s event in the outbox, honouring `envelope.idempotency_key`.
    async fn append_event(&self, tenant: TenantId, envelope: &EventEnvelope) -> Result<Appended, StoreError>;
    /// The tenant's event `id` as it was stored (for comparing a retried request).
    async fn event(&self, tenant: TenantId, id: EventId) -> Result<Option<EventEnvelope>, StoreError>;
}
