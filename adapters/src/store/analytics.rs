//! Analytics rows: accepted batches, staged events and written objects.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::{Any, AnyPool, Row, Transaction};

use shared::domain::analytics::{AnalyticsBatch, AnalyticsChunk, AnalyticsCounts, NewAnalyticsBatch, StagedAnalytics};
use shared::ports::{AnalyticsStore, StoreError};
use shared::{AnalyticsBatchId, EventEnvelope, TenantId, Timestamp};

use super::outbox::insert_outbox_rows;
use super::{check_envelope, corrupt, db, in_list, lease_claim_sql, text, Dialect, SqlStore};

pub(super) async fn insert_batch(
    tx: &mut Transaction<'static, Any>,
    tenant: TenantId,
    batch: &NewAnalyticsBatch,
    envelopes: &[EventEnvelope],
) -> Result<(), StoreError> {
    let now = Timestamp::now().as_millis();
    sqlx::query(
        "INSERT INTO analytics_batches (tenant_id, id, event_count, written_count, created_at, updated_at)
         VALUES ($1, $2, $3, 0, $4, $4)",
    )
    .bind(tenant.to_string())
    .bind(batch.id.to_string())
    .bind(i64::from(batch.event_count))
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    insert_outbox_rows(tx, envelopes, now).await
}

fn count(row: &AnyRow, column: &str) -> Result<u64, StoreError> {
    // SUM over no rows is NULL.
    let value: Option<i64> = row.try_get(column).map_err(db)?;
    Ok(u64::try_from(value.unwrap_or(0)).unwrap_or(0))
}

pub(super) async fn batch(
    pool: &AnyPool,
    tenant: TenantId,
    id: AnalyticsBatchId,
) -> Result<Option<AnalyticsBatch>, StoreError> {
    let row = sqlx::query(
        "SELECT tenant_id, id, event_count, written_count, created_at, updated_at
         FROM analytics_batches WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tenant.to_string())
    .bind(id.to_string())
    .fetch_optional(pool)
    .await
    .map_err(db)?;
    let Some(row) = row else { return Ok(None) };
    let number = |column: &str| -> Result<u32, StoreError> {
        let value: i64 = row.try_get(column).map_err(db)?;
        u32::try_from(value).map_err(|e| corrupt(column, e))
    };
    Ok(Some(AnalyticsBatch {
        id: AnalyticsBatchId::parse(&text(&row, "id")?).map_err(|e| corrupt("batch id", e))?,
        tenant_id: TenantId::parse(&text(&row, "tenant_id")?).map_err(|e| corrupt("tenant id", e))?,
        event_count: number("event_count")?,
        written_count: number("written_count")?,
        created_at: Timestamp::from_millis(row.try_get("created_at").map_err(db)?),
        updated_at: Timestamp::from_millis(row.try_get("updated_at").map_err(db)?),
    }))
}

pub(super) async fn counts(pool: &AnyPool, tenant: TenantId) -> Result<AnalyticsCounts, StoreError> {
    let row = sqlx::query(
        "SELECT
            (SELECT SUM(event_count) FROM analytics_batches WHERE tenant_id = $1) AS accepted,
            (SELECT SUM(written_count) FROM analytics_batches WHERE tenant_id = $1) AS written,
            (SELECT COUNT(*) FROM analytics_staged WHERE tenant_id = $1) AS staged,
            (SELECT SUM(row_count) FROM analytics_objects WHERE tenant_id = $1) AS rows_in_objects",
    )
    .bind(tenant.to_string())
    .fetch_one(pool)
    .await
    .map_err(db)?;
    Ok(AnalyticsCounts {
        accepted: count(&row, "accepted")?,
        staged: count(&row, "staged")?,
        written: count(&row, "written")?,
        rows_in_objects: count(&row, "rows_in_objects")?,
    })
}

pub(super) async fn stage(
    tx: &mut Transaction<'static, Any>,
    tenant: TenantId,
    rows: &[StagedAnalytics],
) -> Result<(), StoreError> {
    let now = Timestamp::now().as_millis();
    for row in rows {
        sqlx::query(
            "INSERT INTO analytics_staged (tenant_id, batch_id, event_id, hour_start, line, staged_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(tenant.to_string())
        .bind(row.batch_id.to_string())
        .bind(row.event_id.to_string())
        .bind(row.hour.as_millis())
        .bind(row.line.as_str())
        .bind(now)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    }
    Ok(())
}

pub(super) async fn claim(
    pool: &AnyPool,
    dialect: Dialect,
    max_rows: u32,
    staged_before: Timestamp,
    lease: Duration,
) -> Result<Option<AnalyticsChunk>, StoreError> {
    let now = Timestamp::now();
    let due = sqlx::query(
        "SELECT tenant_id, hour_start FROM analytics_staged
         WHERE claimed_until IS NULL OR claimed_until <= $1
         GROUP BY tenant_id, hour_start
         HAVING COUNT(*) >= $2 OR MIN(staged_at) <= $3
         ORDER BY MIN(seq)
         LIMIT 1",
    )
    .bind(now.as_millis())
    .bind(i64::from(max_rows))
    .bind(staged_before.as_millis())
    .fetch_optional(pool)
    .await
    .map_err(db)?;
    let Some(due) = due else { return Ok(None) };
    let tenant = text(&due, "tenant_id")?;
    let hour: i64 = due.try_get("hour_start").map_err(db)?;
    let sql = lease_claim_sql(
        dialect,
        "analytics_staged",
        "SELECT seq FROM analytics_staged
         WHERE tenant_id = $2 AND hour_start = $3 AND (claimed_until IS NULL OR claimed_until <= $4)
         ORDER BY seq LIMIT $5",
        "seq, line",
    );
    let rows = sqlx::query(&sql)
        .bind(now.plus(lease).as_millis())
        .bind(tenant.as_str())
        .bind(hour)
        .bind(now.as_millis())
        .bind(i64::from(max_rows))
        .fetch_all(pool)
        .await
        .map_err(db)?;
    if rows.is_empty() {
        // Another writer took them between the two statements.
        return Ok(None);
    }
    let mut claimed = rows
        .iter()
        .map(|row| Ok((row.try_get::<i64, _>("seq").map_err(db)?, text(row, "line")?)))
        .collect::<Result<Vec<_>, StoreError>>()?;
    claimed.sort_by_key(|(seq, _)| *seq);
    let (rows, lines) = claimed.into_iter().unzip();
    Ok(Some(AnalyticsChunk {
        tenant: TenantId::parse(&tenant).map_err(|e| corrupt("tenant id", e))?,
        hour: Timestamp::from_millis(hour),
        rows,
        lines,
    }))
}

pub(super) async fn record_object(pool: &AnyPool, chunk: &AnalyticsChunk, key: &str) -> Result<(), StoreError> {
    if chunk.rows.is_empty() {
        return Ok(());
    }
    let now = Timestamp::now().as_millis();
    let tenant = chunk.tenant.to_string();
    let mut tx = pool.begin().await.map_err(db)?;
    let sql = format!(
        "DELETE FROM analytics_staged WHERE tenant_id = $1 AND seq IN ({}) RETURNING batch_id",
        in_list(2, chunk.rows.len())
    );
    let mut query = sqlx::query(&sql).bind(tenant.as_str());
    for seq in &chunk.rows {
        query = query.bind(*seq);
    }
    // Rows another writer already recorded are gone: only the rest count as newly written.
    let mut per_batch: BTreeMap<String, i64> = BTreeMap::new();
    for row in query.fetch_all(&mut *tx).await.map_err(db)? {
        *per_batch.entry(text(&row, "batch_id")?).or_default() += 1;
    }
    for (batch, written) in per_batch {
        sqlx::query(
            "UPDATE analytics_batches SET written_count = written_count + $1, updated_at = $2
             WHERE tenant_id = $3 AND id = $4",
        )
        .bind(written)
        .bind(now)
        .bind(tenant.as_str())
        .bind(batch)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    }
    sqlx::query(
        "INSERT INTO analytics_objects (tenant_id, object_key, row_count, written_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT DO NOTHING",
    )
    .bind(tenant.as_str())
    .bind(key)
    .bind(i64::try_from(chunk.rows.len()).unwrap_or(i64::MAX))
    .bind(now)
    .execute(&mut *tx)
    .await
    .map_err(db)?;
    tx.commit().await.map_err(db)
}

#[async_trait]
impl AnalyticsStore for SqlStore {
    async fn submit_analytics(
        &self,
        tenant: TenantId,
        batch: &NewAnalyticsBatch,
        envelopes: &[EventEnvelope],
    ) -> Result<(), StoreError> {
        for envelope in envelopes {
            check_envelope(tenant, envelope)?;
        }
        let mut tx = self.pool.begin().await.map_err(db)?;
        insert_batch(&mut tx, tenant, batch, envelopes).await?;
        self.writer.commit_with_outbox(tx).await
    }

    async fn analytics_batch(
        &self,
        tenant: TenantId,
        id: AnalyticsBatchId,
    ) -> Result<Option<AnalyticsBatch>, StoreError> {
        batch(&self.pool, tenant, id).await
    }

    async fn analytics_counts(&self, tenant: TenantId) -> Result<AnalyticsCounts, StoreError> {
        counts(&self.pool, tenant).await
    }

    async fn claim_analytics(
        &self,
        max_rows: u32,
        staged_before: Timestamp,
        lease: Duration,
    ) -> Result<Option<AnalyticsChunk>, StoreError> {
        claim(&self.pool, self.dialect, max_rows, staged_before, lease).await
    }

    async fn record_analytics_object(&self, chunk: &AnalyticsChunk, key: &str) -> Result<(), StoreError> {
        record_object(&self.pool, chunk, key).await
    }
}
