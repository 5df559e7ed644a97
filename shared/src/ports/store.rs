//! The store port: the source of truth (tenants, keys, domain rows) plus the outbox
//! and inbox that make event flow durable and idempotent.

use std::time::Duration;

use async_trait::async_trait;

use super::BoxError;
use crate::clock::Timestamp;
use crate::domain::access::{AccessRequest, AccessRequestStatus, Decision, NewAccessRequest, Submitted, TicketId};
use crate::domain::analytics::{AnalyticsBatch, AnalyticsChunk, AnalyticsCounts, NewAnalyticsBatch, StagedAnalytics};
use crate::domain::testflight::{InvitationOutcome, InvitationRecord, NewInvitation};
use crate::domain::{
    ApiKeyRecord, EmailAddress, EmailOutcome, EmailRecord, Feedback, FeedbackStatus, NewEmail, NewFeedback, Tenant,
    TenantSettings,
};
use crate::envelope::EventEnvelope;
use crate::ids::{AnalyticsBatchId, ApiKeyId, EmailId, EventId, FeedbackId, InvitationId, TenantId};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("conflict: {0}")]
    Conflict(String),
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
}

/// What [`Store::append_event`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// The event and its outbox row were committed.
    Created,
    /// The tenant already used this idempotency key: nothing was written; this is the
    /// event id the key was first used for.
    Existing(EventId),
}

/// What [`Store::start_email_send`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendStart {
    /// The email moved from `accepted` to `sending`: the caller may call the provider.
    Started,
    /// An earlier attempt got as far as calling the provider and did not record the
    /// outcome (a crash): sending again could deliver twice.
    Interrupted,
    /// Already sent or failed.
    Finished,
    /// No such email for this tenant.
    Missing,
}

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

/// One outbox row claimed by a relay.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEntry {
    /// Insertion order; the relay publishes each tenant's rows in this order.
    pub seq: i64,
    pub envelope: EventEnvelope,
    /// How many publish attempts failed before this claim.
    pub attempts: u32,
}

/// The store.
///
/// Contract:
/// - Every tenant-scoped read or write takes the tenant first and never returns another
///   tenant's rows: a row of tenant A asked for as tenant B is `None` / `NotFound`.
/// - Writes that produce an event ([`Store::append_event`], [`Store::submit_feedback`])
///   commit the domain row and the outbox row in one transaction; when they return
///   `Ok`, the event is durable.
/// - An idempotency key is unique per tenant: concurrent appends with one key commit
///   exactly one event; the others get [`Appended::Existing`] with its id.
/// - [`Store::claim_outbox`] hands each pending row to one claimer at a time, even
///   across processes; a claim lapses after its lease, so a crashed relay's rows are
///   claimed again. Rows of one tenant are returned in `seq` order, and a tenant whose
///   earlier row is claimed by someone else or waiting for a retry is skipped entirely,
///   so one tenant's events are never published out of order.
/// - [`Store::begin_once`] records `(consumer, event id)` in the inbox inside a
///   transaction that the consumer's effects join; it returns `None` when that consumer
///   already committed that event. Dropping the transaction without `commit` rolls
///   back both the inbox row and the effects.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Answers once the store can serve a query (readiness checks); `Unavailable` when
    /// it cannot be reached within the pool's acquire timeout.
    async fn ping(&self) -> Result<(), StoreError>;

    // ---- tenants and keys (operator-level) ----
    async fn create_tenant(&self, tenant: &Tenant) -> Result<(), StoreError>;
    async fn tenant(&self, id: TenantId) -> Result<Option<Tenant>, StoreError>;
    async fn list_tenants(&self) -> Result<Vec<Tenant>, StoreError>;
    /// `None` when there is no such tenant.
    async fn tenant_settings(&self, id: TenantId) -> Result<Option<TenantSettings>, StoreError>;
    /// Replaces a tenant's settings; `NotFound` when there is no such tenant.
    async fn set_tenant_settings(&self, id: TenantId, settings: &TenantSettings) -> Result<(), StoreError>;
    /// Fails with `NotFound` when the key's tenant does not exist.
    async fn create_api_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError>;
    /// Looks a key up by its public id (authentication; operator-level by nature).
    async fn api_key(&self, id: ApiKeyId) -> Result<Option<ApiKeyRecord>, StoreError>;

    // ---- writes that emit events ----
    /// The tenant's event `id` as it was stored (for comparing a retried request).
    async fn event(&self, tenant: TenantId, id: EventId) -> Result<Option<EventEnvelope>, StoreError>;
    /// Stores a tenant event in the outbox, honouring `envelope.idempotency_key`.
    async fn append_event(&self, envelope: &EventEnvelope) -> Result<Appended, StoreError>;
    /// Stores feedback (status `accepted`) and its `feedback.submitted` event.
    async fn submit_feedback(&self, feedback: &NewFeedback, envelope: &EventEnvelope) -> Result<(), StoreError>;
    async fn feedback(&self, tenant: TenantId, id: FeedbackId) -> Result<Option<Feedback>, StoreError>;
    /// Moves feedback from `accepted` to `processing`; no-op in any later status.
    async fn mark_feedback_processing(&self, tenant: TenantId, id: FeedbackId) -> Result<(), StoreError>;
    /// Moves feedback from `accepted` or `processing` to `failed` (its last delivery
    /// failed and it went to the dead-letter queue); a redrive may still complete it.
    async fn mark_feedback_failed(&self, tenant: TenantId, id: FeedbackId) -> Result<(), StoreError>;

    /// Stores emails (status `accepted`) with their `email.requested` events, all in one
    /// transaction (a campaign is all or nothing).
    async fn submit_emails(&self, emails: &[(NewEmail, EventEnvelope)]) -> Result<(), StoreError>;
    async fn email(&self, tenant: TenantId, id: EmailId) -> Result<Option<EmailRecord>, StoreError>;
    /// Records that a send is about to happen (`accepted` → `sending`).
    async fn start_email_send(&self, tenant: TenantId, id: EmailId) -> Result<SendStart, StoreError>;
    /// Undoes `start_email_send` after a provider answered that nothing was sent
    /// (throttled, unavailable), so a later delivery may send.
    async fn retry_email_send(&self, tenant: TenantId, id: EmailId) -> Result<(), StoreError>;
    /// Shows an email the worker gave up on (moved to its dead-letter queue) as
    /// `failed` with `reason`, unless it already ended. A later `start_email_send` (the
    /// message redriven) starts it again.
    async fn mark_email_dead_lettered(&self, tenant: TenantId, id: EmailId, reason: &str) -> Result<(), StoreError>;

    /// Stores an analytics batch (its events travel in `envelopes`, one per chunk) with
    /// those envelopes' outbox rows, in one transaction.
    async fn submit_analytics(
        &self,
        tenant: TenantId,
        batch: &NewAnalyticsBatch,
        envelopes: &[EventEnvelope],
    ) -> Result<(), StoreError>;
    async fn analytics_batch(
        &self,
        tenant: TenantId,
        id: AnalyticsBatchId,
    ) -> Result<Option<AnalyticsBatch>, StoreError>;
    /// Accepted, staged and written analytics events of a tenant (reconciliation).
    async fn analytics_counts(&self, tenant: TenantId) -> Result<AnalyticsCounts, StoreError>;
    /// Claims up to `max_rows` staged analytics rows of one tenant and hour partition
    /// that is due: it holds at least `max_rows` unclaimed rows, or its oldest unclaimed
    /// row was staged at or before `staged_before`. `None` when nothing is due. The
    /// claim lapses after `lease` (a writer that crashed is replaced; its rows may then
    /// be written twice, each row carrying its event id).
    async fn claim_analytics(
        &self,
        max_rows: u32,
        staged_before: Timestamp,
        lease: Duration,
    ) -> Result<Option<AnalyticsChunk>, StoreError>;
    /// Records that `chunk` was written to the object `key`: its rows leave staging and
    /// count as written, and the object counts its rows for reconciliation.
    async fn record_analytics_object(&self, chunk: &AnalyticsChunk, key: &str) -> Result<(), StoreError>;

    /// Stores an access request under the next ticket id, with the event `event` makes
    /// from it, in one transaction — unless the requester already has a pending request
    /// with this tenant, which is returned instead (nothing written).
    async fn submit_access_request(
        &self,
        tenant: TenantId,
        request: &NewAccessRequest,
        event: &(dyn for<'r> Fn(&'r AccessRequest) -> EventEnvelope + Send + Sync),
    ) -> Result<Submitted, StoreError>;
    /// A requester's requests with `tenant`, newest first.
    async fn access_requests_of(
        &self,
        tenant: TenantId,
        requester: &EmailAddress,
    ) -> Result<Vec<AccessRequest>, StoreError>;
    /// Operator-level: one request by ticket.
    async fn access_request(&self, ticket: TicketId) -> Result<Option<AccessRequest>, StoreError>;
    /// Operator-level: requests in `status` (all when `None`), oldest first.
    async fn list_access_requests(&self, status: Option<AccessRequestStatus>)
        -> Result<Vec<AccessRequest>, StoreError>;
    /// Operator-level: decides a pending request with the event `event` makes from the
    /// decided request, in one transaction; an approval creates the tenant named after
    /// the organization in that same transaction. `Conflict` when it is not pending.
    async fn decide_access_request(
        &self,
        ticket: TicketId,
        decision: &Decision,
        event: &(dyn for<'r> Fn(&'r AccessRequest) -> EventEnvelope + Send + Sync),
    ) -> Result<AccessRequest, StoreError>;
    /// Operator-level: pending requests created at or before `created_before` and not
    /// reminded about since `reminded_before`; marks them reminded now, so each is
    /// returned once per period even with several monitors.
    async fn due_access_reminders(
        &self,
        created_before: Timestamp,
        reminded_before: Timestamp,
    ) -> Result<Vec<AccessRequest>, StoreError>;

    /// Stores a TestFlight invitation (status `accepted`) and its event.
    async fn submit_invitation(
        &self,
        tenant: TenantId,
        invitation: &NewInvitation,
        envelope: &EventEnvelope,
    ) -> Result<(), StoreError>;
    async fn invitation(&self, tenant: TenantId, id: InvitationId) -> Result<Option<InvitationRecord>, StoreError>;
    /// Shows an invitation the worker gave up on as `failed` with `reason`, unless it
    /// already ended; a redriven message can still complete it.
    async fn mark_invitation_dead_lettered(
        &self,
        tenant: TenantId,
        id: InvitationId,
        reason: &str,
    ) -> Result<(), StoreError>;

    /// Sets (or replaces) the secret webhooks from `source` are signed with for `tenant`.
    async fn set_webhook_secret(&self, tenant: TenantId, source: &str, secret: &str) -> Result<(), StoreError>;
    async fn webhook_secret(&self, tenant: TenantId, source: &str) -> Result<Option<String>, StoreError>;

    // ---- outbox (the relay) ----
    async fn claim_outbox(&self, limit: u32, lease: Duration) -> Result<Vec<OutboxEntry>, StoreError>;
    async fn mark_published(&self, seqs: &[i64]) -> Result<(), StoreError>;
    /// Releases a claimed row for another attempt no earlier than `not_before`.
    async fn retry_outbox(&self, seq: i64, not_before: Timestamp, error: &str) -> Result<(), StoreError>;
    /// Releases claimed rows untouched (no attempt counted), for rows that waited on an
    /// earlier row of their tenant.
    async fn release_outbox(&self, seqs: &[i64]) -> Result<(), StoreError>;
    /// Gives up on a claimed row: it stays in the outbox for operators, is no longer
    /// claimed, and no longer holds back its tenant's later rows.
    async fn fail_outbox(&self, seq: i64, error: &str) -> Result<(), StoreError>;
    /// Rows not yet published (failed rows excluded).
    async fn outbox_backlog(&self) -> Result<u64, StoreError>;
    /// Rows given up on (`fail_outbox`, or unreadable when claimed), for alerts.
    async fn failed_outbox(&self) -> Result<u64, StoreError>;
    /// Resolves when rows may have been added since the previous call returned. It is
    /// level-triggered (a notification that arrives while nobody waits is kept), so a
    /// relay that checks, finds nothing and then waits never misses an insert. Callers
    /// bound it with a timeout as a safety net.
    async fn wait_for_outbox(&self);

    // ---- worker health (operator-level) ----
    /// Records (replaces) a worker process's counts.
    async fn report_worker(&self, report: &WorkerReport) -> Result<(), StoreError>;
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
    /// Every worker process's latest counts reported at or after `since`.
    async fn worker_reports(&self, since: Timestamp) -> Result<Vec<WorkerReport>, StoreError>;

    // ---- inbox (consumers) ----
    /// Whether `consumer` already committed `event_id` (lets a handler skip effects that
    /// have no idempotency of their own, such as a chat alert, on a redelivery).
    async fn applied(&self, consumer: &str, tenant: TenantId, event_id: EventId) -> Result<bool, StoreError>;
    async fn begin_once(
        &self,
        consumer: &str,
        tenant: TenantId,
        event_id: EventId,
    ) -> Result<Option<Box<dyn EffectTx>>, StoreError>;
}

/// A consumer's transaction: the inbox row plus the handler's effects, committed together.
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
    async fn submit_emails(&mut self, emails: &[(NewEmail, EventEnvelope)]) -> Result<(), StoreError>;
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
    async fn commit(self: Box<Self>) -> Result<(), StoreError>;
}
