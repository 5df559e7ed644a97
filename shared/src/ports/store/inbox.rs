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

/// What applying an event came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// This call recorded the event and committed its effects.
    Now,
    /// The consumer had already applied the event: nothing was written.
    Before,
}

/// Contract: [`Inbox::apply_once`] records `(consumer, event id)` and commits the
/// effects with it, in one transaction, unless that consumer already applied that
/// event ([`Applied::Before`], nothing written). When an effect fails (a row of another
/// tenant, a constraint), nothing is written, the inbox row included, and the error is
/// returned. Concurrent calls for one event: exactly one answers [`Applied::Now`].
#[async_trait]
pub trait Inbox: Send + Sync + 'static {
    /// Whether `consumer` already committed `event_id` (lets a handler skip effects that
    /// have no idempotency of their own, such as a chat alert, on a redelivery).
    async fn applied(&self, consumer: ConsumerName, tenant: TenantId, event_id: EventId) -> Result<bool, StoreError>;
    async fn apply_once(
        &self,
        consumer: ConsumerName,
        tenant: TenantId,
        event_id: EventId,
        effects: Effects,
    ) -> Result<Applied, StoreError>;
}

/// One write of a consumer's effects. Every effect names the tenant it is scoped to
/// (that of the event being applied); a row of another tenant is not found.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    FeedbackStatus {
        tenant: TenantId,
        id: FeedbackId,
        status: FeedbackStatus,
        result_key: Option<String>,
    },
    /// Emails and their events (a confirmation email is then requested exactly once
    /// per event).
    SubmitEmails {
        tenant: TenantId,
        emails: Vec<(NewEmail, EventEnvelope)>,
    },
    /// How an invitation ended.
    InvitationOutcome {
        tenant: TenantId,
        id: InvitationId,
        outcome: InvitationOutcome,
    },
    /// Analytics events staged for writing (exactly once per consumed event).
    StageAnalytics {
        tenant: TenantId,
        rows: Vec<StagedAnalytics>,
    },
    /// How a send ended.
    EmailOutcome {
        tenant: TenantId,
        id: EmailId,
        outcome: EmailOutcome,
    },
    /// A received webhook (its payload is in the object `webhook.result_key`).
    RecordWebhook {
        tenant: TenantId,
        webhook: ReceivedWebhook,
    },
}

/// A consumer's effects, gathered by its handler and written by
/// [`Inbox::apply_once`] together with the inbox row.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Effects(Vec<Effect>);

impl Effects {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn set_feedback_status(
        &mut self,
        tenant: TenantId,
        id: FeedbackId,
        status: FeedbackStatus,
        result_key: Option<&str>,
    ) {
        self.0.push(Effect::FeedbackStatus { tenant, id, status, result_key: result_key.map(str::to_owned) });
    }

    pub fn submit_emails(&mut self, tenant: TenantId, emails: Vec<(NewEmail, EventEnvelope)>) {
        if !emails.is_empty() {
            self.0.push(Effect::SubmitEmails { tenant, emails });
        }
    }

    pub fn set_invitation_outcome(&mut self, tenant: TenantId, id: InvitationId, outcome: InvitationOutcome) {
        self.0.push(Effect::InvitationOutcome { tenant, id, outcome });
    }

    pub fn stage_analytics(&mut self, tenant: TenantId, rows: Vec<StagedAnalytics>) {
        self.0.push(Effect::StageAnalytics { tenant, rows });
    }

    pub fn set_email_outcome(&mut self, tenant: TenantId, id: EmailId, outcome: EmailOutcome) {
        self.0.push(Effect::EmailOutcome { tenant, id, outcome });
    }

    pub fn record_webhook(&mut self, tenant: TenantId, webhook: ReceivedWebhook) {
        self.0.push(Effect::RecordWebhook { tenant, webhook });
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Effect> {
        self.0.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
