//! Worker health: per-process counts and the dead-letter records.

use async_trait::async_trait;
use sqlx::Row;

use shared::ports::{DeadLetterRecord, DedupId, MessageId, QueueName, StoreError, WorkerHealth, WorkerReport};
use shared::{EventType, TenantId, Timestamp};

use super::{corrupt, db, text, SqlStore};

#[async_trait]
impl WorkerHealth for SqlStore {
    async fn report_worker(&self, report: &WorkerReport) -> Result<(), StoreError> {
        let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        sqlx::query(
            "INSERT INTO worker_stats (worker, process, handled, failed, longest_wait_ms, reported_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (worker, process) DO UPDATE
             SET handled = excluded.handled, failed = excluded.failed, longest_wait_ms = excluded.longest_wait_ms,
                 reported_at = excluded.reported_at",
        )
        .bind(report.worker.as_str())
        .bind(report.process.as_str())
        .bind(count(report.handled))
        .bind(count(report.failed))
        .bind(report.longest_wait.map(|wait| i64::try_from(wait.as_millis()).unwrap_or(i64::MAX)))
        .bind(report.reported_at.as_millis())
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn worker_reports(&self, since: Timestamp) -> Result<Vec<WorkerReport>, StoreError> {
        let rows = sqlx::query(
            "SELECT worker, process, handled, failed, longest_wait_ms, reported_at FROM worker_stats
             WHERE reported_at >= $1 ORDER BY worker, process",
        )
        .bind(since.as_millis())
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|row| {
                let count = |column: &str| -> Result<u64, StoreError> {
                    let value: i64 = row.try_get(column).map_err(db)?;
                    Ok(u64::try_from(value).unwrap_or(0))
                };
                Ok(WorkerReport {
                    worker: text(row, "worker")?,
                    process: text(row, "process")?,
                    handled: count("handled")?,
                    failed: count("failed")?,
                    longest_wait: row
                        .try_get::<Option<i64>, _>("longest_wait_ms")
                        .map_err(db)?
                        .map(|ms| std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0))),
                    reported_at: Timestamp::from_millis(row.try_get("reported_at").map_err(db)?),
                })
            })
            .collect()
    }

    async fn record_dead_letter(&self, record: &DeadLetterRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO dead_letters (tenant_id, queue, message_id, event_id, event_type, error, recorded_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(record.tenant.to_string())
        .bind(record.queue.as_str())
        .bind(record.message_id.as_str())
        .bind(record.dedup_id.as_str())
        .bind(record.event_type.as_ref().map_or("", EventType::as_str))
        .bind(record.error.chars().take(2_000).collect::<String>())
        .bind(record.recorded_at.as_millis())
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn dead_letters_since(
        &self,
        after: i64,
        since: Timestamp,
        limit: u32,
    ) -> Result<Vec<(i64, DeadLetterRecord)>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, tenant_id, queue, message_id, event_id, event_type, error, recorded_at FROM dead_letters
             WHERE seq > $1 AND recorded_at >= $2 ORDER BY seq LIMIT $3",
        )
        .bind(after)
        .bind(since.as_millis())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|row| {
                let record = DeadLetterRecord {
                    tenant: TenantId::parse(&text(row, "tenant_id")?).map_err(|e| corrupt("tenant id", e))?,
                    queue: QueueName::new(text(row, "queue")?),
                    message_id: MessageId::new(text(row, "message_id")?),
                    dedup_id: DedupId::new(text(row, "event_id")?),
                    // Written empty when the message had none.
                    event_type: EventType::parse(&text(row, "event_type")?).ok(),
                    error: text(row, "error")?,
                    recorded_at: Timestamp::from_millis(row.try_get("recorded_at").map_err(db)?),
                };
                Ok((row.try_get("seq").map_err(db)?, record))
            })
            .collect()
    }
}
