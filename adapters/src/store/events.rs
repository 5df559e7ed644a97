//! The event log: tenant events and their outbox rows (appends go through the group
//! commit in `append.rs`).

use async_trait::async_trait;

use shared::ports::{Appended, EventLog, StoreError};
use shared::{EventEnvelope, EventId, TenantId};

use super::{check_envelope, corrupt, db, text, SqlStore};

#[async_trait]
impl EventLog for SqlStore {
    async fn append_event(&self, tenant: TenantId, envelope: &EventEnvelope) -> Result<Appended, StoreError> {
        check_envelope(tenant, envelope)?;
        self.appender.write(envelope.clone()).await
    }

    async fn event(&self, tenant: TenantId, id: EventId) -> Result<Option<EventEnvelope>, StoreError> {
        let row = sqlx::query("SELECT envelope FROM outbox WHERE tenant_id = $1 AND event_id = $2")
            .bind(tenant.to_string())
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.map(|row| EventEnvelope::from_json(&text(&row, "envelope")?).map_err(|e| corrupt("outbox envelope", e)))
            .transpose()
    }
}
