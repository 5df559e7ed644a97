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
use serde_json::{json, Value};

use shared::domain::access::TicketId;
use shared::domain::EmailAddress;
use shared::envelope::event_types::{ACCESS_REQUEST_APPROVED, ACCESS_REQUEST_REJECTED, ACCESS_REQUEST_SUBMITTED};
use shared::ports::providers::{Alert, AlertSink};
use shared::ports::{Inbox, ObjectStore, ReceivedMessage};
use shared::{EventEnvelope, ObjectKey};

use crate::consumer::{Handler, HandlerError};

pub const CONSUMER: &str = "access-requests";
const BLUE: u32 = 0x3B82F6;

pub struct AccessRequestWorker {
    inbox: Arc<dyn Inbox>,
    objects: Arc<dyn ObjectStore>,
    alerts: Option<Arc<dyn AlertSink>>,
    support: Option<EmailAddress>,
    /// Where operators decide (the console's URL), for the alert's link.
    console_url: Option<String>,
}

/// The fields every access-request event carries.
struct Fields {
    ticket: TicketId,
    requester: EmailAddress,
    organization: String,
}

fn fields(envelope: &EventEnvelope) -> Result<Fields, HandlerError> {
    let text = |field: &str| envelope.data.get(field).and_then(Value::as_str);
    let ticket = text("ticket_id")
        .and_then(|t| TicketId::parse(t).ok())
        .ok_or_else(|| HandlerError::permanent(format!("{} without a valid data.ticket_id", envelope.event_type)))?;
    let requester = text("requester")
        .and_then(|r| EmailAddress::parse(r).ok())
        .ok_or_else(|| HandlerError::permanent(format!("{} without a valid data.requester", envelope.event_type)))?;
    Ok(Fields { ticket, requester, organization: text("organization").unwrap_or_default().to_owned() })
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

    async fn submitted(&self, envelope: &EventEnvelope, fields: &Fields) -> Result<(), HandlerError> {
        let tenant = envelope.tenant_id;
        if self.inbox.applied(CONSUMER, tenant, envelope.id).await.map_err(HandlerError::store)? {
            return Ok(());
        }
        let key = ObjectKey::partitioned(
            "access-requests",
            envelope.tenant_id,
            envelope.occurred_at,
            &format!("{}.json", fields.ticket),
        )
        .map_err(HandlerError::permanent)?;
        let record = json!({
            "ticket_id": fields.ticket,
            "tenant_id": envelope.tenant_id,
            "event_id": envelope.id,
            "submitted_at": envelope.occurred_at,
            "request": envelope.data,
        });
        let body = serde_json::to_vec_pretty(&record).map_err(HandlerError::permanent)?;
        self.objects.put(&key, body, "application/json").await.map_err(HandlerError::objects)?;
        let message = envelope.data.get("message").and_then(Value::as_str).unwrap_or("(no message)");
        if let Some(sink) = &self.alerts {
            let alert = Alert {
                title: format!("New access request {}", fields.ticket),
                description: format!("{} asks for access for {}.", fields.requester.as_str(), fields.organization),
                fields: vec![
                    ("Organization".into(), fields.organization.clone()),
                    ("Requester".into(), fields.requester.as_str().to_owned()),
                    ("Message".into(), message.chars().take(1_000).collect()),
                ],
                colour: BLUE,
                url: self.console_url.as_ref().map(|u| format!("{u}/v1/access-requests/{}", fields.ticket)),
            };
            sink.post(&alert).await.map_err(HandlerError::provider)?;
        }
        let email = self.support.clone().and_then(|support| {
            crate::email::request(
                envelope,
                support,
                &format!("Access request {} from {}", fields.ticket, fields.organization),
                &format!(
                    "{} asks for access for {}.\n\nMessage:\n{message}\n\nApprove or reject it in the control plane.",
                    fields.requester.as_str(),
                    fields.organization
                ),
            )
        });
        self.commit_once(envelope, email).await
    }

    async fn decided(&self, envelope: &EventEnvelope, fields: &Fields) -> Result<(), HandlerError> {
        let (subject, text) = if envelope.event_type.as_str() == ACCESS_REQUEST_APPROVED {
            let tenant = envelope.data.get("created_tenant_id").and_then(Value::as_str).unwrap_or("(pending)");
            (
                format!("Your access request {} was approved", fields.ticket),
                format!(
                    "Good news: {} now has access. Your tenant id is {tenant}; we will send your API credentials separately.",
                    fields.organization
                ),
            )
        } else {
            let reason = envelope.data.get("decision_reason").and_then(Value::as_str);
            (
                format!("Your access request {}", fields.ticket),
                match reason {
                    Some(reason) => format!("We cannot give {} access at this time: {reason}", fields.organization),
                    None => format!("We cannot give {} access at this time.", fields.organization),
                },
            )
        };
        let email = crate::email::request(envelope, fields.requester.clone(), &subject, &text);
        self.commit_once(envelope, email).await
    }

    async fn commit_once(
        &self,
        envelope: &EventEnvelope,
        email: Option<(shared::domain::NewEmail, EventEnvelope)>,
    ) -> Result<(), HandlerError> {
        let tenant = envelope.tenant_id;
        let Some(mut tx) = self.inbox.begin_once(CONSUMER, tenant, envelope.id).await.map_err(HandlerError::store)?
        else {
            return Ok(());
        };
        if let Some(email) = email {
            tx.submit_emails(tenant, &[email]).await.map_err(HandlerError::store)?;
        }
        tx.commit().await.map_err(HandlerError::store)?;
        tracing::info!(tenant_id = %tenant, event_type = %envelope.event_type, "access request handled");
        Ok(())
    }
}

#[async_trait]
impl Handler for AccessRequestWorker {
    fn name(&self) -> &str {
        CONSUMER
    }

    async fn handle(&self, message: &ReceivedMessage) -> Result<(), HandlerError> {
        let envelope = EventEnvelope::from_json(&message.body).map_err(HandlerError::permanent)?;
        match envelope.event_type.as_str() {
            ACCESS_REQUEST_SUBMITTED => self.submitted(&envelope, &fields(&envelope)?).await,
            ACCESS_REQUEST_APPROVED | ACCESS_REQUEST_REJECTED => self.decided(&envelope, &fields(&envelope)?).await,
            _ => Ok(()),
        }
    }
}
