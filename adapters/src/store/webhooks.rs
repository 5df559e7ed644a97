//! Inbound webhooks: the secret each source signs with, per tenant, and the webhooks
//! the webhooks worker recorded.

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use shared::config::Secret;
use shared::domain::webhooks::{ReceivedWebhook, WebhookSource};
use shared::ports::{StoreError, WebhookPage, WebhookStore};
use shared::{EventId, TenantId, Timestamp};

use super::{corrupt, db, text, SqlStore};

fn webhook_from(row: &AnyRow) -> Result<(i64, ReceivedWebhook), StoreError> {
    let webhook = ReceivedWebhook {
        event_id: EventId::parse(&text(row, "event_id")?).map_err(|e| corrupt("event id", e))?,
        source: WebhookSource::parse(&text(row, "source")?).map_err(|e| corrupt("webhook source", e))?,
        message_id: text(row, "message_id")?,
        result_key: text(row, "result_key")?,
        received_at: Timestamp::from_millis(row.try_get("received_at").map_err(db)?),
    };
    Ok((row.try_get("seq").map_err(db)?, webhook))
}

/// Inside the consumer's transaction: the webhook's row (once per event).
pub(super) async fn record(
    tx: &mut Transaction<'static, Any>,
    tenant: TenantId,
    webhook: &ReceivedWebhook,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO webhook_events (tenant_id, event_id, source, message_id, result_key, received_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(tenant.to_string())
    .bind(webhook.event_id.to_string())
    .bind(webhook.source.as_str())
    .bind(webhook.message_id.as_str())
    .bind(webhook.result_key.as_str())
    .bind(webhook.received_at.as_millis())
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    Ok(())
}

#[async_trait]
impl WebhookStore for SqlStore {
    async fn webhook_events(
        &self,
        tenant: TenantId,
        after: Option<i64>,
        limit: u32,
    ) -> Result<WebhookPage, StoreError> {
        // One more than asked for says whether there is a next page.
        let rows = sqlx::query(
            "SELECT seq, event_id, source, message_id, result_key, received_at FROM webhook_events
             WHERE tenant_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(tenant.to_string())
        .bind(after.unwrap_or(0))
        .bind(i64::from(limit) + 1)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        let mut events = rows.iter().map(webhook_from).collect::<Result<Vec<_>, _>>()?;
        let more = events.len() > limit as usize;
        events.truncate(limit as usize);
        let next = if more { events.last().map(|(seq, _)| *seq) } else { None };
        Ok(WebhookPage { events: events.into_iter().map(|(_, webhook)| webhook).collect(), next })
    }

    async fn set_webhook_secret(&self, tenant: TenantId, source: &str, secret: &Secret) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        sqlx::query("DELETE FROM webhook_secrets WHERE tenant_id = $1 AND source = $2")
            .bind(tenant.to_string())
            .bind(source)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        sqlx::query("INSERT INTO webhook_secrets (tenant_id, source, secret, created_at) VALUES ($1, $2, $3, $4)")
            .bind(tenant.to_string())
            .bind(source)
            .bind(secret.expose())
            .bind(Timestamp::now().as_millis())
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)
    }

    async fn webhook_secret(&self, tenant: TenantId, source: &str) -> Result<Option<Secret>, StoreError> {
        let row = sqlx::query("SELECT secret FROM webhook_secrets WHERE tenant_id = $1 AND source = $2")
            .bind(tenant.to_string())
            .bind(source)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.map(|r| r.try_get::<String, _>(0).map(Secret::new).map_err(db)).transpose()
    }
}
