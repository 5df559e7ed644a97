//! The tenant directory: tenants, their settings and API keys.

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::Row;

use shared::domain::{ApiKeyRecord, PlanName, SettingsChange, Tenant, TenantName, TenantSettings, TenantSummary};
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
            "INSERT INTO api_keys (id, tenant_id, secret_hash, created_at, revoked_at, expires_at, last_used_at)
             SELECT $1, $2, $3, $4, $5, $6, $7 WHERE EXISTS (SELECT 1 FROM tenants WHERE id = $2)",
        )
        .bind(key.id.to_string())
        .bind(key.tenant_id.to_string())
        .bind(key.secret_hash.as_str())
        .bind(key.created_at.as_millis())
        .bind(key.revoked_at.map(Timestamp::as_millis))
        .bind(key.expires_at.map(Timestamp::as_millis))
        .bind(key.last_used_at.map(Timestamp::as_millis))
        .execute(&self.pool)
        .await
        .map_err(db)?;
        if inserted.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("tenant {}", key.tenant_id)));
        }
        Ok(())
    }

    async fn api_key(&self, id: ApiKeyId) -> Result<Option<ApiKeyRecord>, StoreError> {
        let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = $1");
        let row = sqlx::query(&sql).bind(id.to_string()).fetch_optional(&self.pool).await.map_err(db)?;
        row.as_ref().map(key_from).transpose()
    }

    async fn tenant_page(
        &self,
        search: Option<&str>,
        after: Option<TenantId>,
        limit: u32,
        now: Timestamp,
    ) -> Result<Vec<TenantSummary>, StoreError> {
        // A substring of the name, any case; `%`, `_` and `\` in it match themselves.
        let pattern = search.map(|s| {
            let escaped = s.to_lowercase().replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
            format!("%{escaped}%")
        });
        let rows = sqlx::query(
            "SELECT t.id, t.name, t.created_at, t.plan,
                    (SELECT COUNT(*) FROM api_keys k WHERE k.tenant_id = t.id AND k.revoked_at IS NULL
                        AND (k.expires_at IS NULL OR k.expires_at > $4)) AS active_keys
             FROM tenants t
             WHERE t.id > $1 AND ($2 IS NULL OR LOWER(t.name) LIKE $2 ESCAPE '\\')
             ORDER BY t.id LIMIT $3",
        )
        .bind(after.map_or_else(String::new, |t| t.to_string()))
        .bind(pattern)
        .bind(i64::from(limit))
        .bind(now.as_millis())
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|row| {
                let keys: i64 = row.try_get("active_keys").map_err(db)?;
                Ok(TenantSummary {
                    tenant: tenant_from(row)?,
                    plan: PlanName::parse(&text(row, "plan")?).map_err(|e| corrupt("plan", e))?,
                    active_keys: u64::try_from(keys).unwrap_or(0),
                })
            })
            .collect()
    }

    async fn api_keys(&self, tenant: TenantId) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE tenant_id = $1 ORDER BY created_at DESC, id DESC");
        let rows = sqlx::query(&sql).bind(tenant.to_string()).fetch_all(&self.pool).await.map_err(db)?;
        rows.iter().map(key_from).collect()
    }

    async fn revoke_api_key(&self, tenant: TenantId, id: ApiKeyId, now: Timestamp) -> Result<bool, StoreError> {
        let revoked =
            sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE tenant_id = $2 AND id = $3 AND revoked_at IS NULL")
                .bind(now.as_millis())
                .bind(tenant.to_string())
                .bind(id.to_string())
                .execute(&self.pool)
                .await
                .map_err(db)?;
        Ok(revoked.rows_affected() == 1)
    }

    async fn record_key_use(&self, uses: &[(ApiKeyId, Timestamp)]) -> Result<(), StoreError> {
        if uses.is_empty() {
            return Ok(());
        }
        let values: Vec<String> = (0..uses.len()).map(|i| format!("(${}, ${})", i * 2 + 1, i * 2 + 2)).collect();
        let sql = format!(
            "WITH v (id, used_at) AS (VALUES {})
             UPDATE api_keys SET last_used_at = v.used_at FROM v
             WHERE api_keys.id = v.id AND (api_keys.last_used_at IS NULL OR api_keys.last_used_at < v.used_at)",
            values.join(", ")
        );
        let mut query = sqlx::query(&sql);
        for (id, at) in uses {
            query = query.bind(id.to_string()).bind(at.as_millis());
        }
        query.execute(&self.pool).await.map_err(db)?;
        Ok(())
    }

    async fn keys_revoked_since(&self, since: Timestamp) -> Result<Vec<ApiKeyId>, StoreError> {
        let rows = sqlx::query("SELECT id FROM api_keys WHERE revoked_at >= $1")
            .bind(since.as_millis())
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter().map(|row| ApiKeyId::parse(&text(row, "id")?).map_err(|e| corrupt("key id", e))).collect()
    }
}

const KEY_COLUMNS: &str = "id, tenant_id, secret_hash, created_at, revoked_at, expires_at, last_used_at";

fn key_from(row: &AnyRow) -> Result<ApiKeyRecord, StoreError> {
    let millis = |column: &str| -> Result<Option<Timestamp>, StoreError> {
        Ok(row.try_get::<Option<i64>, _>(column).map_err(db)?.map(Timestamp::from_millis))
    };
    Ok(ApiKeyRecord {
        id: ApiKeyId::parse(&text(row, "id")?).map_err(|e| corrupt("key id", e))?,
        tenant_id: TenantId::parse(&text(row, "tenant_id")?).map_err(|e| corrupt("tenant id", e))?,
        secret_hash: text(row, "secret_hash")?,
        created_at: Timestamp::from_millis(row.try_get("created_at").map_err(db)?),
        revoked_at: millis("revoked_at")?,
        expires_at: millis("expires_at")?,
        last_used_at: millis("last_used_at")?,
    })
}
