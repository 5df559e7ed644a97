//! The tenant directory: tenants, their settings and API keys.

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::Row;

use shared::domain::{ApiKeyRecord, PlanName, SettingsChange, Tenant, TenantName, TenantSettings};
use shared::ports::{StoreError, TenantDirectory};
use shared::{ApiKeyId, TenantId, Timestamp};

use super::{corrupt, db, text, SqlStore};

fn settings_from(row: &AnyRow) -> Result<TenantSettings, StoreError> {
    Ok(TenantSettings {
        plan: PlanName::parse(&text(row, "plan")?).map_err(|e| corrupt("plan", e))?,
        alert_webhook_url: row.try_get("alert_webhook_url").map_err(db)?,
    })
}

fn tenant_from(row: &AnyRow) -> Result<Tenant, StoreError> {
    Ok(Tenant {
        id: TenantId::parse(&text(row, "id")?).map_err(|e| corrupt("tenant id", e))?,
        name: TenantName::parse(&text(row, "name")?).map_err(|e| corrupt("tenant name", e))?,
        created_at: Timestamp::from_millis(row.try_get("created_at").map_err(db)?),
    })
}

#[async_trait]
impl TenantDirectory for SqlStore {
    async fn create_tenant(&self, tenant: &Tenant) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3)")
            .bind(tenant.id.to_string())
            .bind(tenant.name.as_str())
            .bind(tenant.created_at.as_millis())
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn tenant(&self, id: TenantId) -> Result<Option<Tenant>, StoreError> {
        let row = sqlx::query("SELECT id, name, created_at FROM tenants WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.as_ref().map(tenant_from).transpose()
    }

    async fn list_tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        let rows = sqlx::query("SELECT id, name, created_at FROM tenants ORDER BY id")
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter().map(tenant_from).collect()
    }

    async fn tenant_settings(&self, id: TenantId) -> Result<Option<TenantSettings>, StoreError> {
        let row = sqlx::query("SELECT plan, alert_webhook_url FROM tenants WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.as_ref().map(settings_from).transpose()
    }

    async fn set_tenant_settings(&self, id: TenantId, settings: &TenantSettings) -> Result<(), StoreError> {
        let updated = sqlx::query("UPDATE tenants SET plan = $1, alert_webhook_url = $2 WHERE id = $3")
            .bind(settings.plan.as_str())
            .bind(settings.alert_webhook_url.clone())
            .bind(id.to_string())
            .execute(&self.pool)
            .await
            .map_err(db)?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("tenant {id}")));
        }
        Ok(())
    }

    async fn change_tenant_settings(
        &self,
        id: TenantId,
        change: &SettingsChange,
    ) -> Result<TenantSettings, StoreError> {
        let row = sqlx::query(
            "UPDATE tenants
             SET plan = COALESCE($1, plan),
                 alert_webhook_url = CASE WHEN $2 = 1 THEN $3 ELSE alert_webhook_url END
             WHERE id = $4
             RETURNING plan, alert_webhook_url",
        )
        .bind(change.plan.as_ref().map(|p| p.as_str().to_owned()))
        .bind(i64::from(change.alert_webhook_url.is_some()))
        .bind(change.alert_webhook_url.clone().flatten())
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        let row = row.ok_or_else(|| StoreError::NotFound(format!("tenant {id}")))?;
        settings_from(&row)
    }

    async fn create_api_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError> {
        let inserted = sqlx::query(
            "INSERT INTO api_keys (id, tenant_id, secret_hash, created_at, revoked_at)
             SELECT $1, $2, $3, $4, $5 WHERE EXISTS (SELECT 1 FROM tenants WHERE id = $2)",
        )
        .bind(key.id.to_string())
        .bind(key.tenant_id.to_string())
        .bind(key.secret_hash.as_str())
        .bind(key.created_at.as_millis())
        .bind(key.revoked_at.map(Timestamp::as_millis))
        .execute(&self.pool)
        .await
        .map_err(db)?;
        if inserted.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("tenant {}", key.tenant_id)));
        }
        Ok(())
    }

    async fn api_key(&self, id: ApiKeyId) -> Result<Option<ApiKeyRecord>, StoreError> {
        let row = sqlx::query("SELECT id, tenant_id, secret_hash, created_at, revoked_at FROM api_keys WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        let Some(row) = row else { return Ok(None) };
        let revoked: Option<i64> = row.try_get("revoked_at").map_err(db)?;
        Ok(Some(ApiKeyRecord {
            id: ApiKeyId::parse(&text(&row, "id")?).map_err(|e| corrupt("key id", e))?,
            tenant_id: TenantId::parse(&text(&row, "tenant_id")?).map_err(|e| corrupt("tenant id", e))?,
            secret_hash: text(&row, "secret_hash")?,
            created_at: Timestamp::from_millis(row.try_get("created_at").map_err(db)?),
            revoked_at: revoked.map(Timestamp::from_millis),
        }))
    }
}
