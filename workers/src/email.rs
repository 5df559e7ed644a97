//! The email worker: sends each `email.requested` once, within rate limits per tenant
//! and per provider, and records the outcome.
//!
//! `sending` is recorded before the provider is called. A delivery that finds an
//! earlier attempt interrupted mid-call (its process died) sends again by default
//! (`EmailDelivery::AtLeastOnce`: nothing is lost, and a rare duplicate carries the
//! same event id in the provider's records, as every send does), or, set to
//! `AtMostOnce`, records the email failed ("outcome unknown") instead. Throttling and
//! outages put the email back for a retry with backoff; a permanent rejection (4xx)
//! fails it with the provider's reason and is not retried. An email whose message is
//! dead-lettered shows `failed` with the reason until a redrive sends it. Each outcome also lands as a delivery record under
//! `email/tenant=…/year=…/month=…/day=…/hour=…/<event id>.json`.

use std::num::NonZeroU32;
use std::sync::Arc;

use async_trait::async_trait;
use governor::Quota;
use serde_json::json;

use shared::config::EmailDelivery;
use shared::domain::{EmailAddress, EmailOutcome, EmailStatus, NewEmail};
use shared::events::{EmailContent, EmailRequested, Payload};
use shared::limits::{Share, SharedLimiter, TenantRates};
use shared::ports::providers::{Email, EmailBody, EmailSender, ProviderError};
use shared::ports::{ConsumerName, Effects, EmailStore, Inbox, ObjectStore, SendStart};
use shared::{EmailId, EventEnvelope, ObjectKey};

use crate::consumer::{EventHandler, HandlerError};

pub const CONSUMER: ConsumerName = ConsumerName::new("email");

/// Sends per second per tenant (by plan), and to the provider in all.
pub struct EmailLimits {
    pub tenants: TenantRates,
    pub provider: NonZeroU32,
}

pub struct EmailWorker {
    emails: Arc<dyn EmailStore>,
    inbox: Arc<dyn Inbox>,
    objects: Arc<dyn ObjectStore>,
    sender: Arc<dyn EmailSender>,
    from: EmailAddress,
    per_tenant: TenantRates,
    /// The provider's limit for the whole deployment (this process's share).
    provider: SharedLimiter,
    delivery: EmailDelivery,
}

/// A plain-text email's payload (a new email id; no campaign).
pub fn plain(to: EmailAddress, subject: &str, text: &str) -> EmailRequested {
    EmailRequested {
        email_id: EmailId::new(),
        to,
        subject: subject.to_owned(),
        content: EmailContent { text: Some(text.to_owned()), ..EmailContent::default() },
        campaign_id: None,
        feedback_id: None,
    }
}

/// An email the platform itself sends because of `cause` (a confirmation, a
/// notification): the row and its `email.requested` event for `Effects::submit_emails`,
/// under the cause's tenant and trace.
pub fn request(cause: &EventEnvelope, email: EmailRequested) -> (NewEmail, EventEnvelope) {
    let row = NewEmail {
        id: email.email_id,
        campaign_id: email.campaign_id,
        to: email.to.clone(),
        subject: email.subject.clone(),
    };
    let mut event = email.into_envelope(cause.tenant_id);
    event.trace_context = cause.trace_context.clone();
    (row, event)
}

impl EmailWorker {
    pub fn new(
        emails: Arc<dyn EmailStore>,
        inbox: Arc<dyn Inbox>,
        objects: Arc<dyn ObjectStore>,
        sender: Arc<dyn EmailSender>,
        from: EmailAddress,
        limits: EmailLimits,
    ) -> Self {
        Self {
            emails,
            inbox,
            objects,
            sender,
            from,
            per_tenant: limits.tenants,
            provider: SharedLimiter::new(Quota::per_second(limits.provider), Share::alone()),
            delivery: EmailDelivery::default(),
        }
    }

    /// Takes this process's share of the provider's and the tenants' limits, as the
    /// live email worker processes divide them.
    #[must_use]
    pub fn sharing(mut self, share: &Share) -> Self {
        self.provider = self.provider.sharing(share);
        self.per_tenant = self.per_tenant.sharing(share);
        self
    }

    /// What to do with a send an earlier attempt left interrupted (at least once by default).
    #[must_use]
    pub fn with_delivery(mut self, delivery: EmailDelivery) -> Self {
        self.delivery = delivery;
        self
    }

    fn email(&self, envelope: &EventEnvelope, requested: EmailRequested) -> Email {
        let EmailContent { text, html, template_id, variables } = requested.content;
        let body = match template_id {
            Some(id) => EmailBody::Template { id, variables: variables.unwrap_or_default() },
            None => EmailBody::Content { text, html },
        };
        Email {
            to: requested.to,
            from: self.from.clone(),
            subject: requested.subject,
            body,
            reference: envelope.id.to_string(),
        }
    }

    fn record_key(envelope: &EventEnvelope) -> Result<ObjectKey, HandlerError> {
        ObjectKey::of_event("email", envelope).map_err(HandlerError::permanent)
    }

    /// Records the outcome with the inbox row first, so that once the provider has
    /// answered no retry calls it again, then writes the delivery record.
    async fn record(
        &self,
        envelope: &EventEnvelope,
        id: EmailId,
        mut outcome: EmailOutcome,
    ) -> Result<(), HandlerError> {
        let key = Self::record_key(envelope)?;
        outcome.result_key = Some(key.to_string());
        let tenant = envelope.tenant_id;
        let mut effects = Effects::new();
        effects.set_email_outcome(tenant, id, outcome.clone());
        self.inbox.apply_once(CONSUMER, tenant, envelope.id, effects).await.map_err(HandlerError::store)?;
        self.write_record(envelope, id, &outcome).await?;
        tracing::info!(tenant_id = %tenant, email_id = %id, status = outcome.status.as_str(), "email recorded");
        Ok(())
    }

    /// The delivery record under `email/tenant=…/…/<event id>.json` (a deterministic
    /// key: writing it again is harmless).
    async fn write_record(
        &self,
        envelope: &EventEnvelope,
        id: EmailId,
        outcome: &EmailOutcome,
    ) -> Result<(), HandlerError> {
        let record = json!({
            "event_id": envelope.id,
            "tenant_id": envelope.tenant_id,
            "email_id": id,
            "status": outcome.status,
            "provider": outcome.provider,
            "provider_message_id": outcome.provider_message_id,
            "failure_reason": outcome.failure_reason,
        });
        let body = serde_json::to_vec_pretty(&record).map_err(HandlerError::permanent)?;
        self.objects.put(&Self::record_key(envelope)?, body, "application/json").await.map_err(HandlerError::objects)
    }

    /// A delivery of an email that already ended: its record may not have been written
    /// (the object store failed after the outcome was stored), so it is written again
    /// from the stored row.
    async fn finish_record(&self, envelope: &EventEnvelope, id: EmailId) -> Result<(), HandlerError> {
        let Some(row) = self.emails.email(envelope.tenant_id, id).await.map_err(HandlerError::store)? else {
            return Ok(());
        };
        let outcome = EmailOutcome {
            status: row.status,
            provider: row.provider.unwrap_or_else(|| "unknown".to_owned()),
            provider_message_id: row.provider_message_id,
            failure_reason: row.failure_reason,
            result_key: row.result_key,
        };
        self.write_record(envelope, id, &outcome).await
    }
}

#[async_trait]
impl EventHandler for EmailWorker {
    type Event = EmailRequested;

    fn name(&self) -> &str {
        CONSUMER.as_str()
    }

    async fn handle(&self, envelope: &EventEnvelope, requested: EmailRequested) -> Result<(), HandlerError> {
        let (tenant, id) = (envelope.tenant_id, requested.email_id);
        let email = self.email(envelope, requested);
        match self.emails.start_email_send(tenant, id).await.map_err(HandlerError::store)? {
            SendStart::Started => {}
            SendStart::Finished => return self.finish_record(envelope, id).await,
            SendStart::Missing => return Err(HandlerError::permanent(format!("no email {id} for tenant {tenant}"))),
            SendStart::Interrupted if self.delivery == EmailDelivery::AtLeastOnce => {
                tracing::warn!(
                    tenant_id = %tenant,
                    email_id = %id,
                    reference = email.reference.as_str(),
                    "an earlier attempt was interrupted while calling the provider; sending again"
                );
            }
            SendStart::Interrupted => {
                let outcome = EmailOutcome {
                    status: EmailStatus::Failed,
                    provider: "unknown".to_owned(),
                    provider_message_id: None,
                    failure_reason: Some(
                        "an earlier attempt was interrupted while calling the provider; not sent again (at-most-once delivery)"
                            .into(),
                    ),
                    result_key: None,
                };
                return self.record(envelope, id, outcome).await;
            }
        }
        self.per_tenant.until_ready(tenant).await;
        self.provider.until_ready().await;
        match self.sender.send(&email).await {
            Ok(receipt) => {
                let outcome = EmailOutcome {
                    status: EmailStatus::Sent,
                    provider: receipt.provider.to_owned(),
                    provider_message_id: receipt.message_id,
                    failure_reason: None,
                    result_key: None,
                };
                self.record(envelope, id, outcome).await
            }
            Err(error) if error.is_retryable() => {
                self.emails.retry_email_send(tenant, id).await.map_err(HandlerError::store)?;
                Err(HandlerError::transient(error))
            }
            Err(error) => {
                let provider = match &error {
                    ProviderError::Rejected { provider, .. }
                    | ProviderError::RateLimited { provider, .. }
                    | ProviderError::Unavailable { provider, .. } => (*provider).to_owned(),
                };
                let outcome = EmailOutcome {
                    status: EmailStatus::Failed,
                    provider,
                    provider_message_id: None,
                    failure_reason: Some(error.to_string()),
                    result_key: None,
                };
                self.record(envelope, id, outcome).await
            }
        }
    }

    async fn dead_lettered(&self, envelope: &EventEnvelope, requested: EmailRequested, reason: &str) {
        let id = requested.email_id;
        if let Err(error) = self.emails.mark_email_dead_lettered(envelope.tenant_id, id, reason).await {
            tracing::warn!(%error, tenant_id = %envelope.tenant_id, email_id = %id, "could not mark a dead-lettered email failed");
        }
    }
}
