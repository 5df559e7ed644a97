//! An event's records, by its id, for its journey.

use async_trait::async_trait;
use sqlx::Row;

use shared::ports::{EffectRecord, EventJourneys, EventRecords, Handled, OutboxTrace, StoreError};
use shared::{EventId, TenantId, Timestamp};

use super::parking::{parked_from, COLUMNS};
use super::{corrupt, db, text, SqlStore};

fn millis(row: &sqlx::any::AnyRow, column: &str) -> Result<Option<Timestamp>, StoreError> {
    Ok(row.try_get::<Option<i64>, _>(column).map_err(db)?.map(Timestamp::from_millis))
}

#[async_trait]
impl EventJourneys for SqlStore {
    async fn event_records(&self, id: EventId, tenant: Option<TenantId>) -> Result<Option<EventRecords>, StoreError> {
        let event = id.to_string();
        let row = sqlx::query(
            "SELECT tenant_id, envelope, created_at, published_at, attempts, last_error, failed_at, discarded_at,
                    discard_reason
             FROM outbox WHERE event_id = $1",
        )
        .bind(event.clone())
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        let Some(row) = row else { return Ok(None) };
        let owner = TenantId::parse(&text(&row, "tenant_id")?).map_err(|e| corrupt("tenant id", e))?;
        if tenant.is_some_and(|t| t != owner) {
            return Ok(None);
        }
        let attempts: i64 = row.try_get("attempts").map_err(db)?;
        let outbox = OutboxTrace {
            tenant: owner,
            envelope: text(&row, "envelope")?,
            created_at: Timestamp::from_millis(row.try_get("created_at").map_err(db)?),
            published_at: millis(&row, "published_at")?,
            attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
            last_error: row.try_get("last_error").map_err(db)?,
            failed_at: millis(&row, "failed_at")?,
            discarded_at: millis(&row, "discarded_at")?,
            discard_reason: row.try_get("discard_reason").map_err(db)?,
        };
        let idempotency_key = sqlx::query_scalar::<_, String>(
            "SELECT idempotency_key FROM idempotency_keys WHERE tenant_id = $1 AND event_id = $2",
        )
        .bind(owner.to_string())
        .bind(event.clone())
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        let handled = sqlx::query("SELECT consumer, processed_at FROM inbox WHERE event_id = $1 ORDER BY processed_at")
            .bind(event.clone())
            .fetch_all(&self.pool)
            .await
            .map_err(db)?
            .iter()
            .map(|row| {
                Ok(Handled {
                    consumer: text(row, "consumer")?,
                    at: Timestamp::from_millis(row.try_get("processed_at").map_err(db)?),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let sql = format!("SELECT {COLUMNS} FROM parked_dead_letters WHERE event_id = $1 ORDER BY seq");
        let parked = sqlx::query(&sql)
            .bind(event.clone())
            .fetch_all(&self.pool)
            .await
            .map_err(db)?
            .iter()
            .map(parked_from)
            .collect::<Result<Vec<_>, _>>()?;
        let mut effects = Vec::new();
        for (kind, sql) in [
            (
                "feedback",
                "SELECT id, status, result_key, NULL AS provider_id, NULL AS failure, updated_at FROM feedback
                 WHERE tenant_id = $1 AND event_id = $2",
            ),
            (
                "email",
                "SELECT id, status, result_key, provider_message_id AS provider_id, failure_reason AS failure,
                        updated_at FROM emails WHERE tenant_id = $1 AND event_id = $2",
            ),
            (
                "testflight_invitation",
                "SELECT id, status, result_key, tester_id AS provider_id, failure_reason AS failure, updated_at
                 FROM testflight_invitations WHERE tenant_id = $1 AND event_id = $2",
            ),
        ] {
            let rows =
                sqlx::query(sql).bind(owner.to_string()).bind(event.clone()).fetch_all(&self.pool).await.map_err(db)?;
            for row in &rows {
                effects.push(EffectRecord {
                    kind,
                    id: text(row, "id")?,
                    status: text(row, "status")?,
                    result_key: row.try_get("result_key").map_err(db)?,
                    provider_id: row.try_get("provider_id").map_err(db)?,
                    failure: row.try_get("failure").map_err(db)?,
                    updated_at: Timestamp::from_millis(row.try_get("updated_at").map_err(db)?),
                });
            }
        }
        Ok(Some(EventRecords { outbox, idempotency_key, handled, parked, effects }))
    }
}
