//! Inbound webhooks: the secret each source signs with, per tenant.

use async_trait::async_trait;
use sqlx::Row;

use shared::config::Secret;
use shared::ports::{StoreError, WebhookStore};
use shared::{TenantId, Timestamp};

use super::{db, SqlStore};

#[async_trait]
impl WebhookStore for SqlStore {
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
