//! Emails: requested by tenants (one, or a campaign) and by workers (confirmations),
//! sent once through the provider.

use async_trait::async_trait;

use super::StoreError;
use crate::domain::{EmailRecord, NewEmail};
use crate::envelope::EventEnvelope;
use crate::ids::{EmailId, TenantId};

/// What [`EmailStore::start_email_send`] found.
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

/// The outcome of a send is recorded through the inbox transaction
/// ([`super::Effects::set_email_outcome`]).
#[async_trait]
pub trait EmailStore: Send + Sync + 'static {
    /// Stores emails (status `accepted`) with their `email.requested` events, all in one
    /// transaction (a campaign is all or nothing).
    async fn submit_emails(&self, tenant: TenantId, emails: &[(NewEmail, EventEnvelope)]) -> Result<(), StoreError>;
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
}
