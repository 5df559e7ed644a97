//! The outbox as the relay sees it: the claim (a lease over each tenant's oldest due
//! rows), publish marks, retries, failures, counts and the wake-up (LISTEN/NOTIFY on
//! PostgreSQL, in-process on SQLite).

use std::time::Duration;

use async_trait::async_trait;
use sqlx::{Any, Row, Transaction};

use shared::ports::{Outbox, OutboxEntry, StoreError};
use shared::{EventEnvelope, Timestamp};

use super::{append, db, in_list, text, SqlStore, OUTBOX_CHANNEL};

/// What happens to a row whose publish failed.
#[derive(Debug, Clone, Copy)]
enum FailedAttempt {
    /// Claimable again from this time.
    RetryAt(Timestamp),
    /// Kept, marked failed, no longer claimed.
    GiveUp,
}

impl SqlStore {
    /// Moves a tenant's row from status `from` to `to`; false when it was not in `from`.
    /// Outbox rows matching `condition` (a constant SQL predicate).
    async fn count_outbox(&self, condition: &'static str) -> Result<u64, StoreError> {
        let count: i64 = sqlx::query(&format!("SELECT COUNT(*) FROM outbox WHERE {condition}"))
            .fetch_one(&self.pool)
            .await
            .map_err(db)?
            .try_get(0)
            .map_err(db)?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    /// Releases a claimed row after a failed publish, counting the attempt.
    async fn record_failed_attempt(&self, seq: i64, next: FailedAttempt, error: &str) -> Result<(), StoreError> {
        let (column, at) = match next {
            FailedAttempt::RetryAt(at) => ("not_before", at),
            FailedAttempt::GiveUp => ("failed_at", Timestamp::now()),
        };
        let sql = format!(
            "UPDATE outbox SET claimed_until = NULL, {column} = $1, attempts = attempts + 1, last_error = $2
             WHERE seq = $3 AND published_at IS NULL"
        );
        sqlx::query(&sql)
            .bind(at.as_millis())
            .bind(error.chars().take(2_000).collect::<String>())
            .bind(seq)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn start_listener(&self) -> tokio::task::JoinHandle<()> {
        let signal = self.outbox_signal.clone();
        let url = self.database_url.clone();
        tokio::spawn(async move {
            loop {
                match sqlx::postgres::PgListener::connect(&url).await {
                    Ok(mut listener) => {
                        if let Err(error) = listener.listen(OUTBOX_CHANNEL).await {
                            tracing::warn!(%error, "LISTEN failed; the relay falls back to its timer");
                        } else {
                            // Rows inserted while we were not listening are picked up by this wake-up.
                            signal.notify_one();
                            loop {
                                match listener.recv().await {
                                    Ok(_) => signal.notify_one(),
                                    Err(error) => {
                                        tracing::warn!(%error, "outbox listener lost its connection");
                                        break;
                                    }
                                }
                            }
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, "could not LISTEN for outbox inserts; retrying")
                    }
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    }
}

/// Outbox rows for `envelopes`, inside `tx`, in multi-row INSERTs.
pub(super) async fn insert_outbox_rows(
    tx: &mut Transaction<'static, Any>,
    envelopes: &[EventEnvelope],
    now: i64,
) -> Result<(), StoreError> {
    let envelopes: Vec<&EventEnvelope> = envelopes.iter().collect();
    for chunk in envelopes.chunks(200) {
        let rows: Vec<usize> = (0..chunk.len()).collect();
        let sql = append::insert_outbox_sql(chunk.len());
        append::bind_outbox_rows(sqlx::query(&sql), chunk, &rows, now).execute(&mut **tx).await.map_err(db)?;
    }
    Ok(())
}

/// Pending rows of one tenant.
const PENDING: &str = "published_at IS NULL AND failed_at IS NULL";

/// The rows to claim: up to `limit`, shared evenly among the tenants with pending rows
/// (the oldest first when there are more tenants than `limit`), so one tenant's backlog
/// does not hold back another tenant's new rows. Each tenant's rows are its oldest ones
/// before its first row that is leased or waiting for a retry, so a tenant is never
/// reordered. Every step is an index probe: the tenants' heads
/// (`outbox_pending_tenant`), the first row holding a tenant back (`outbox_held`), and
/// the rows before it.
async fn fair_share(tx: &mut Transaction<'static, Any>, limit: u32, now: Timestamp) -> Result<Vec<i64>, StoreError> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let heads = sqlx::query(&format!(
        "SELECT id FROM (
             SELECT t.id, (SELECT MIN(seq) FROM outbox WHERE tenant_id = t.id AND {PENDING}) AS head
             FROM tenants t
         ) heads WHERE head IS NOT NULL ORDER BY head LIMIT $1"
    ))
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(&mut **tx)
    .await
    .map_err(db)?;
    // One statement per tenant and round: its next rows before its first held row.
    // Ordered as `outbox_pending_tenant` is, so that index serves it (not a walk of
    // every tenant's pending rows).
    let next_rows = format!(
        "SELECT seq FROM outbox
         WHERE tenant_id = $1 AND {PENDING} AND seq > $2
           AND seq < COALESCE((SELECT MIN(seq) FROM outbox
                               WHERE tenant_id = $1 AND {PENDING} AND (claimed_until IS NOT NULL OR not_before > 0)
                                 AND (not_before > $3 OR claimed_until > $3)), $4)
         ORDER BY tenant_id, seq LIMIT $5"
    );
    // (tenant, the last seq taken)
    let mut lanes: Vec<(String, i64)> =
        heads.iter().map(|row| Ok((text(row, "id")?, i64::MIN))).collect::<Result<_, StoreError>>()?;
    let mut taken = Vec::new();
    // Rounds of equal shares; a tenant that had fewer rows than its share leaves the
    // rest to the others in the next round.
    while taken.len() < limit && !lanes.is_empty() {
        let share = (limit - taken.len()).div_ceil(lanes.len()).max(1);
        let mut hungry = Vec::with_capacity(lanes.len());
        for (tenant, after) in lanes {
            let room = limit - taken.len();
            if room == 0 {
                break;
            }
            let want = share.min(room);
            let rows = sqlx::query(&next_rows)
                .bind(&tenant)
                .bind(after)
                .bind(now.as_millis())
                .bind(i64::MAX)
                .bind(i64::try_from(want).unwrap_or(i64::MAX))
                .fetch_all(&mut **tx)
                .await
                .map_err(db)?;
            let mut last = after;
            for row in &rows {
                last = row.try_get("seq").map_err(db)?;
                taken.push(last);
            }
            if rows.len() == want {
                hungry.push((tenant, last));
            }
        }
        lanes = hungry;
    }
    Ok(taken)
}

#[async_trait]
impl Outbox for SqlStore {
    async fn claim_outbox(&self, limit: u32, lease: Duration) -> Result<Vec<OutboxEntry>, StoreError> {
        let now = Timestamp::now();
        // A lost claim is a repeat of the publish, which the transport's dedup id drops.
        let mut tx = self.relaxed.begin().await.map_err(db)?;
        self.dialect.take_claim_turn(&mut tx).await?;
        let seqs = fair_share(&mut tx, limit, now).await?;
        let rows = if seqs.is_empty() {
            Vec::new()
        } else {
            // Still claimable: another process may have published or failed one since.
            // (`COALESCE(…) IS NULL` rather than the pending indexes' own predicate, so
            // the rows are found by key: a plan that reads a pending index walks every
            // pending row, and stale statistics during a drain invite it.)
            let sql = format!(
                "UPDATE outbox SET claimed_until = $1
                 WHERE seq IN ({}) AND COALESCE(published_at, failed_at) IS NULL
                   AND not_before <= $2 AND (claimed_until IS NULL OR claimed_until <= $2)
                 RETURNING seq, envelope, attempts",
                in_list(3, seqs.len())
            );
            let mut query = sqlx::query(&sql).bind(now.plus(lease).as_millis()).bind(now.as_millis());
            for seq in &seqs {
                query = query.bind(*seq);
            }
            query.fetch_all(&mut *tx).await.map_err(db)?
        };
        tx.commit().await.map_err(db)?;
        // Row by row: a row whose envelope cannot be read back is failed with the reason
        // (kept for operators) and holds back nobody, not even its own tenant.
        let mut entries = Vec::with_capacity(rows.len());
        for row in &rows {
            let seq: i64 = row.try_get("seq").map_err(db)?;
            let attempts: i64 = row.try_get("attempts").map_err(db)?;
            match EventEnvelope::from_json(&text(row, "envelope")?) {
                Ok(envelope) => {
                    entries.push(OutboxEntry { seq, envelope, attempts: u32::try_from(attempts).unwrap_or(u32::MAX) });
                }
                Err(error) => {
                    let reason = format!("the stored envelope cannot be read back: {error}");
                    tracing::error!(seq, reason = reason.as_str(), "outbox row can never be published; marked failed");
                    self.fail_outbox(seq, &reason).await?;
                }
            }
        }
        entries.sort_by_key(|e| e.seq);
        Ok(entries)
    }

    async fn mark_published(&self, seqs: &[i64]) -> Result<(), StoreError> {
        if seqs.is_empty() {
            return Ok(());
        }
        let sql = format!(
            "UPDATE outbox SET published_at = $1, claimed_until = NULL WHERE seq IN ({})",
            in_list(2, seqs.len())
        );
        let mut query = sqlx::query(&sql).bind(Timestamp::now().as_millis());
        for seq in seqs {
            query = query.bind(*seq);
        }
        query.execute(&self.relaxed).await.map_err(db)?;
        Ok(())
    }

    async fn retry_outbox(&self, seq: i64, not_before: Timestamp, error: &str) -> Result<(), StoreError> {
        self.record_failed_attempt(seq, FailedAttempt::RetryAt(not_before), error).await
    }

    async fn release_outbox(&self, seqs: &[i64]) -> Result<(), StoreError> {
        if seqs.is_empty() {
            return Ok(());
        }
        let sql = format!("UPDATE outbox SET claimed_until = NULL WHERE seq IN ({})", in_list(1, seqs.len()));
        let mut query = sqlx::query(&sql);
        for seq in seqs {
            query = query.bind(*seq);
        }
        query.execute(&self.relaxed).await.map_err(db)?;
        Ok(())
    }

    async fn fail_outbox(&self, seq: i64, error: &str) -> Result<(), StoreError> {
        self.record_failed_attempt(seq, FailedAttempt::GiveUp, error).await
    }

    async fn outbox_backlog(&self) -> Result<u64, StoreError> {
        self.count_outbox("published_at IS NULL AND failed_at IS NULL").await
    }

    async fn oldest_pending(&self) -> Result<Option<Timestamp>, StoreError> {
        // The first pending row in insertion order, through the `outbox_pending` index.
        let row = sqlx::query(
            "SELECT created_at FROM outbox WHERE published_at IS NULL AND failed_at IS NULL ORDER BY seq LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.map(|row| row.try_get::<i64, _>(0).map(Timestamp::from_millis).map_err(db)).transpose()
    }

    async fn failed_outbox(&self) -> Result<u64, StoreError> {
        self.count_outbox("failed_at IS NOT NULL AND published_at IS NULL AND discarded_at IS NULL").await
    }

    async fn wait_for_outbox(&self) {
        if self.dialect.notifies_across_processes() {
            self.listener.get_or_init(|| self.start_listener()).await;
        }
        self.outbox_signal.notified().await;
    }
}
