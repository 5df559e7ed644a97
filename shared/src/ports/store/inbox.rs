//! The inbox: which consumer applied which event, and the transaction a consumer's
//! effects join so that they commit exactly once.

use async_trait::async_trait;

use super::StoreError;
use crate::domain::analytics::StagedAnalytics;
use crate::domain::testflight::InvitationOutcome;
use crate::domain::webhooks::ReceivedWebhook;
use crate::domain::{EmailOutcome, FeedbackStatus, NewEmail};
use crate::envelope::EventEnvelope;
use crate::ids::{EmailId, EventId, FeedbackId, InvitationId, TenantId};

/// Which consumer applied an event (`feedback`, `email` …): the inbox keeps one row
/// per consumer and event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConsumerName(&'static str);

impl ConsumerName {
    pub const fn new(name: &'static str) -> Self {
        Self(name)
    }

    pub fn as_str(self) -> &'static str {
        self.0
    }
}

impl std::fmt::Display for ConsumerName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// Contract: [`Inbox::begin_once`] records `(consumer, event id)` inside a transaction
/// that the consumer's effects join; it returns `None` when that consumer already
/// committed that event. Dropping the transaction without `commit` rolls back both the
/// inbox row and the effects.
#[async_trait]
pub trait Inbox: Send + Sync + 'static {
    /// Whether `consumer` already committed `event_id` (lets a handler skip effects that
    /// have no idempotency of their own, such as a chat alert, on a redelivery).
    async fn applied(&self, consumer: ConsumerName, tenant: TenantId, event_id: EventId) -> Result<bool, StoreError>;
    async fn begin_once(
        &self,
        consumer: ConsumerName,
        tenant: TenantId,
        event_id: EventId,
    ) -> Result<Option<Box<dyn EffectTx>>, StoreError>;
}

/// A consumer's transaction: the inbox row plus the handler's effects, committed
/// together. Every effect is scoped to the tenant of the event being applied.
#[async_trait]
pub trait EffectTx: Send {
    async fn set_feedback_status(
        &mut self,
        tenant: TenantId,
        id: FeedbackId,
        status: FeedbackStatus,
        result_key: Option<&str>,
    ) -> Result<(), StoreError>;
    /// Stores emails and their events with the effect (a confirmation email is then
    /// requested exactly once per event).
    async fn submit_emails(&mut self, tenant: TenantId, emails: &[(NewEmail, EventEnvelope)])
        -> Result<(), StoreError>;
    /// Records how an invitation ended.
    async fn set_invitation_outcome(
        &mut self,
        tenant: TenantId,
        id: InvitationId,
        outcome: &InvitationOutcome,
    ) -> Result<(), StoreError>;
    /// Stages analytics events for writing (exactly once per consumed event).
    async fn stage_analytics(&mut self, tenant: TenantId, rows: &[StagedAnalytics]) -> Result<(), StoreError>;
    /// Records how a send ended.
    async fn set_email_outcome(
        &mut self,
        tenant: TenantId,
        id: EmailId,
        outcome: &EmailOutcome,
    ) -> Result<(), StoreError>;
    /// Records a received webhook (its payload is in the object `webhook.result_key`).
    async fn record_webhook(&mut self, tenant: TenantId, webhook: &ReceivedWebhook) -> Result<(), StoreError>;
    async fn commit(self: Box<Self>) -> Result<(), StoreError>;
}
