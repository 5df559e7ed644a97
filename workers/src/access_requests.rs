//! The access-requests worker.
//!
//! - `access_request.submitted`: writes the request to
//!   `access-requests/tenant=…/…/<ticket>.json` (a deterministic key, so a redelivery
//!   rewrites the same object), alerts the admins (Discord), and emails the support
//!   address in the same transaction as its inbox row (exactly once).
//! - `access_request.approved` / `.rejected`: emails the requester, exactly once.
//!
//! The alert is the one effect that is at least once: it is skipped for an event
//! already applied, but a crash after posting it and before the inbox commit posts it
//! again on redelivery (chat webhooks have no idempotency key).

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::json;

use shared::domain::EmailAddress;
use shared::events::{AccessDecision, AccessRequestEvent, AccessRequestSubmitted};
use shared::ports::providers::{Alert, AlertSink};
use shared::ports::{Applied, ConsumerName, Effects, Inbox, ObjectStore};
use shared::{EventEnvelope, ObjectKey};

use crate::consumer::{EventHandler, HandlerError};

pub const CONSUMER: ConsumerName = ConsumerName::new("access-requests");
const BLUE: u32 = 0x3B82F6;

pub struct AccessRequestWorker {
    inbox: Arc<dyn Inbox>,
    objects: Arc<dyn ObjectStore>,
    alerts: Option<Arc<dyn AlertSink>>,
    support: Option<EmailAddress>,
    /// Where operators decide (the console's URL), for the alert's link.
    console_url: Option<String>,
}

impl AccessRequestWorker {
    pub fn new(
        inbox: Arc<dyn Inbox>,
        objects: Arc<dyn ObjectStore>,
        alerts: Option<Arc<dyn AlertSink>>,
        support: Option<EmailAddress>,
        console_url: Option<String>,
    ) -> Self {
        Self { inbox, objects, alerts, support, console_url }
    }

    async fn submitted(&self, envelope: &EventEnvelope, fields: &AccessRequestSubmitted) -> Result<(), HandlerError> {
        let tenant = envelope.tenant_id;
        if self.inbox.applied(CONSUMER, tenant, envelope.id).await.map_err(HandlerError::store)? {
            return Ok(());
        }
        let key = ObjectKey::partitioned(
            "access-requests",
            envelope.tenant_id,
            envelope.occurred_at,
            &format!("{}.json", fields.ticket_id),
        )
        .map_err(HandlerError::permanent)?;
        let record = json!({
            "ticket_id": fields.ticket_id,
            "tenant_id": envelope.tenant_id,
            "event_id": envelope.id,
            "submitted_at": envelope.occurred_at,
            "request": envelope.data,
        });
        let body = serde_json::to_vec_pretty(&record).map_err(HandlerError::permanent)?;
        self.objects.put(&key, body, "application/json").await.map_err(HandlerError::objects)?;
        let message = fields.message.as_deref().unwrap_or("(no message)");
        if let Some(sink) = &self.alerts {
            let alert = Alert {
                title: format!("New access request {}", fields.ticket_id),
                description: format!("{} asks for access for {}.", fields.requester.as_str(), fields.organization),
                fields: vec![
                    ("Organization".into(), fields.organization.as_str().to_owned()),
                    ("Requester".into(), fields.requester.as_str().to_owned()),
                    ("Message".into(), message.chars().take(1_000).collect()),
                ],
                colour: BLUE,
                url: self.console_url.as_ref().map(|u| format!("{u}/v1/access-requests/{}", fields.ticket_id)),
            };
            sink.post(&alert).await.map_err(HandlerError::provider)?;
        }
        let email = self.support.clone().map(|support| {
            let text = format!(
                "{} asks for access for {}.\n\nMessage:\n{message}\n\nApprove or reject it in the control plane.",
                fields.requester.as_str(),
                fields.organization
            );
            let subject = format!("Access request {} from {}", fields.ticket_id, fields.organization);
            crate::email::request(envelope, crate::email::plain(support, &subject, &text))
        });
        self.commit_once(envelope, email).await
    }

    async fn decided(
        &self,
        envelope: &EventEnvelope,
        fields: &AccessDecision,
        approved: bool,
    ) -> Result<(), HandlerError> {
        let (subject, text) = if approved {
            let tenant = fields.created_tenant_id.map_or_else(|| "(pending)".to_owned(), |t| t.to_string());
            (
                format!("Your access request {} was approved", fields.ticket_id),
                format!(
                    "Good news: {} now has access. Your tenant id is {tenant}; we will send your API credentials separately.",
                    fields.organization
                ),
            )
        } else {
            let reason = fields.decision_reason.as_deref();
            (
                format!("Your access request {}", fields.ticket_id),
                match reason {
                    Some(reason) => format!("We cannot give {} access at this time: {reason}", fields.organization),
                    None => format!("We cannot give {} access at this time.", fields.organization),
                },
            )
        };
        let email = crate::email::request(envelope, crate::email::plain(fields.requester.clone(), &subject, &text));
        self.commit_once(envelope, Some(email)).await
    }

    async fn commit_once(
        &self,
        envelope: &EventEnvelope,
        email: Option<(shared::domain::NewEmail, EventEnvelope)>,
    ) -> Result<(), HandlerError> {
        let tenant = envelope.tenant_id;
        let mut effects = Effects::new();
        effects.submit_emails(tenant, email.into_iter().collect());
        if self.inbox.apply_once(CONSUMER, tenant, envelope.id, effects).await.map_err(HandlerError::store)?
            == Applied::Before
        {
            return Ok(());
        }
        tracing::info!(tenant_id = %tenant, event_type = %envelope.event_type, "access request handled");
        Ok(())
    }
}

#[async_trait]
impl EventHandler for AccessRequestWorker {
    type Event = AccessRequestEvent;

    fn name(&self) -> &str {
        CONSUMER.as_str()
    }

    async fn handle(&self, envelope: &EventEnvelope, event: AccessRequestEvent) -> Result<(), HandlerError> {
        match event {
            AccessRequestEvent::Submitted(submitted) => self.submitted(envelope, &submitted).await,
            AccessRequestEvent::Approved(decision) => self.decided(envelope, &decision, true).await,
            AccessRequestEvent::Rejected(decision) => self.decided(envelope, &decision, false).await,
        }
    }
}
