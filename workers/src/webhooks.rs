//! The webhooks worker: records each inbound webhook (`<source>.received`, from the
//! adapters topic) once — its payload as a result object at a deterministic key, then
//! its row with the inbox row in one transaction — for `GET /v1/webhooks/events`.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::json;

use shared::domain::webhooks::ReceivedWebhook;
use shared::events::WebhookReceived;
use shared::ports::{Applied, ConsumerName, Effects, Inbox, ObjectStore};
use shared::{EventEnvelope, ObjectKey};

use crate::consumer::{EventHandler, HandlerError};

/// The inbox name of this worker.
pub const CONSUMER: ConsumerName = ConsumerName::new("webhooks");

pub struct WebhookWorker {
    inbox: Arc<dyn Inbox>,
    objects: Arc<dyn ObjectStore>,
}

impl WebhookWorker {
    pub fn new(inbox: Arc<dyn Inbox>, objects: Arc<dyn ObjectStore>) -> Self {
        Self { inbox, objects }
    }

    /// `webhooks/tenant=<id>/year=…/month=…/day=…/hour=…/<event id>.json`, from the
    /// event's own time, so a redelivery writes the same key.
    pub fn result_key(envelope: &EventEnvelope) -> Result<ObjectKey, HandlerError> {
        ObjectKey::of_event("webhooks", envelope).map_err(HandlerError::permanent)
    }
}

#[async_trait]
impl EventHandler for WebhookWorker {
    type Event = WebhookReceived;

    fn name(&self) -> &str {
        CONSUMER.as_str()
    }

    async fn handle(&self, envelope: &EventEnvelope, webhook: WebhookReceived) -> Result<(), HandlerError> {
        let tenant = envelope.tenant_id;
        if self.inbox.applied(CONSUMER, tenant, envelope.id).await.map_err(HandlerError::store)? {
            return Ok(());
        }
        // The object first (idempotent by its key), then the row once, with the inbox.
        let key = Self::result_key(envelope)?;
        let result = json!({
            "event_id": envelope.id,
            "tenant_id": tenant,
            "source": webhook.source,
            "message_id": webhook.message_id,
            "received_at": envelope.occurred_at,
            "payload": webhook.payload,
        });
        let body = serde_json::to_vec_pretty(&result).map_err(HandlerError::permanent)?;
        self.objects.put(&key, body, "application/json").await.map_err(HandlerError::objects)?;
        let received = ReceivedWebhook {
            event_id: envelope.id,
            source: webhook.source,
            message_id: webhook.message_id,
            result_key: key.to_string(),
            received_at: envelope.occurred_at,
        };
        let source = received.source.clone();
        let mut effects = Effects::new();
        effects.record_webhook(tenant, received);
        if self.inbox.apply_once(CONSUMER, tenant, envelope.id, effects).await.map_err(HandlerError::store)?
            == Applied::Now
        {
            tracing::info!(tenant_id = %tenant, event_id = %envelope.id, %source, "webhook recorded");
        }
        Ok(())
    }
}
