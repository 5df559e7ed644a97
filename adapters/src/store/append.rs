//! Group commit for `append_event` (through [`super::group`]): concurrent appends are
//! coalesced into one transaction (one multi-row INSERT into the outbox, one commit,
//! one wake-up), which is what lets the API keep up with a plain single-row INSERT
//! benchmark. Idempotency keys are unique per tenant across and within batches.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use sqlx::{Any, AnyPool, Row, Transaction};
use tokio::sync::{mpsc, Notify};

use shared::ports::{Appended, StoreError};
use shared::{EventEnvelope, EventId, Timestamp};

use super::group::BatchWrite;
use super::{corrupt, db, OUTBOX_CHANNEL};

/// The most appends one transaction carries.
const MAX_BATCH: usize = 64;

/// What a write needs: the pool, the dialect and the relays' wake-ups.
#[derive(Clone)]
pub(crate) struct Writer {
    pub pool: AnyPool,
    /// Relays in this process.
    pub outbox_signal: Arc<Notify>,
    /// PostgreSQL: asks the notifier task for a NOTIFY (relays in other processes).
    pub remote_wake: Option<mpsc::Sender<()>>,
}

impl Writer {
    /// Tells relays that outbox rows were committed. The NOTIFY is sent after the
    /// commit by one task that coalesces bursts, so commits never queue behind
    /// PostgreSQL's notification lock.
    pub fn outbox_committed(&self) {
        self.outbox_signal.notify_one();
        if let Some(wake) = &self.remote_wake {
            // A full channel means a NOTIFY is already pending: nothing is lost.
            let _ = wake.try_send(());
        }
    }

    /// Commits a transaction that inserted outbox rows and wakes relays.
    pub async fn commit_with_outbox(&self, tx: Transaction<'static, Any>) -> Result<(), StoreError> {
        tx.commit().await.map_err(db)?;
        self.outbox_committed();
        Ok(())
    }

    /// Starts the task that turns wake-up requests into NOTIFYs; it stops when every
    /// `Writer` is gone.
    pub fn start_notifier(pool: AnyPool) -> mpsc::Sender<()> {
        let (sender, mut requests) = mpsc::channel::<()>(1);
        tokio::spawn(async move {
            while requests.recv().await.is_some() {
                if let Err(error) = sqlx::query("SELECT pg_notify($1, '')").bind(OUTBOX_CHANNEL).execute(&pool).await {
                    tracing::warn!(%error, "could not NOTIFY relays; they fall back to their timer");
                }
            }
        });
        sender
    }

    async fn existing_event(&self, envelope: &EventEnvelope, key: &str) -> Result<EventId, StoreError> {
        let existing: String =
            sqlx::query("SELECT event_id FROM idempotency_keys WHERE tenant_id = $1 AND idempotency_key = $2")
                .bind(envelope.tenant_id.to_string())
                .bind(key)
                .fetch_one(&self.pool)
                .await
                .map_err(db)?
                .try_get(0)
                .map_err(db)?;
        EventId::parse(&existing).map_err(|e| corrupt("event id", e))
    }

    /// Appends a batch in one transaction; answers per envelope, in order.
    async fn append_batch(&self, batch: &[&EventEnvelope]) -> Result<Vec<Appended>, StoreError> {
        let now = Timestamp::now().as_millis();
        // The first request with a (tenant, key) leads; later ones in the batch follow it.
        let mut leader: HashMap<(String, &str), usize> = HashMap::new();
        let mut follows: Vec<Option<usize>> = vec![None; batch.len()];
        for (i, envelope) in batch.iter().enumerate() {
            if let Some(key) = envelope.idempotency_key.as_deref() {
                match leader.get(&(envelope.tenant_id.to_string(), key)) {
                    Some(&first) => follows[i] = Some(first),
                    None => {
                        leader.insert((envelope.tenant_id.to_string(), key), i);
                    }
                }
            }
        }
        // Keys are inserted in a fixed order so that concurrent batches never deadlock.
        let mut keyed: Vec<(&(String, &str), &usize)> = leader.iter().collect();
        keyed.sort();

        if keyed.is_empty() {
            // Nothing to check: one statement, committed on its own.
            let all: Vec<usize> = (0..batch.len()).collect();
            let sql = insert_outbox_sql(all.len());
            bind_outbox_rows(sqlx::query(&sql), batch, &all, now).execute(&self.pool).await.map_err(db)?;
            self.outbox_committed();
            return Ok(vec![Appended::Created; batch.len()]);
        }
        let mut tx = self.pool.begin().await.map_err(db)?;
        let mut claimed: HashSet<usize> = HashSet::new();
        if !keyed.is_empty() {
            let values: Vec<String> = (0..keyed.len())
                .map(|r| format!("(${}, ${}, ${}, ${})", r * 4 + 1, r * 4 + 2, r * 4 + 3, r * 4 + 4))
                .collect();
            let sql = format!(
                "INSERT INTO idempotency_keys (tenant_id, idempotency_key, event_id, created_at) VALUES {}
                 ON CONFLICT DO NOTHING RETURNING tenant_id, idempotency_key",
                values.join(", ")
            );
            let mut query = sqlx::query(&sql);
            for ((tenant, key), &i) in &keyed {
                query = query.bind(tenant.clone()).bind(key.to_string()).bind(batch[i].id.to_string()).bind(now);
            }
            for row in query.fetch_all(&mut *tx).await.map_err(db)? {
                let tenant: String = row.try_get(0).map_err(db)?;
                let key: String = row.try_get(1).map_err(db)?;
                if let Some(&i) = leader.get(&(tenant, key.as_str())) {
                    claimed.insert(i);
                }
            }
        }
        let creates: Vec<usize> = (0..batch.len())
            .filter(|&i| follows[i].is_none() && (batch[i].idempotency_key.is_none() || claimed.contains(&i)))
            .collect();
        if creates.is_empty() {
            tx.commit().await.map_err(db)?;
        } else {
            let sql = insert_outbox_sql(creates.len());
            bind_outbox_rows(sqlx::query(&sql), batch, &creates, now).execute(&mut *tx).await.map_err(db)?;
            self.commit_with_outbox(tx).await?;
        }

        let mut answers: Vec<Option<Appended>> = vec![None; batch.len()];
        for &i in &creates {
            answers[i] = Some(Appended::Created);
        }
        for (&(_, key), &i) in &leader {
            if answers[i].is_none() {
                answers[i] = Some(Appended::Existing(self.existing_event(batch[i], key).await?));
            }
        }
        for i in 0..batch.len() {
            if let Some(first) = follows[i] {
                answers[i] = Some(match answers[first] {
                    Some(Appended::Existing(id)) => Appended::Existing(id),
                    _ => Appended::Existing(batch[first].id),
                });
            }
        }
        Ok(answers.into_iter().map(|a| a.unwrap_or(Appended::Created)).collect())
    }
}

/// The multi-row INSERT for `rows` outbox rows.
pub(crate) fn insert_outbox_sql(rows: usize) -> String {
    let values: Vec<String> =
        (0..rows).map(|r| format!("(${}, ${}, ${}, ${})", r * 4 + 1, r * 4 + 2, r * 4 + 3, r * 4 + 4)).collect();
    format!("INSERT INTO outbox (event_id, tenant_id, envelope, created_at) VALUES {}", values.join(", "))
}

/// Binds `batch[i]` for each `i` in `rows` to [`insert_outbox_sql`]'s query.
pub(crate) fn bind_outbox_rows<'q>(
    mut query: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>>,
    batch: &[&EventEnvelope],
    rows: &[usize],
    now: i64,
) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>> {
    for &i in rows {
        let envelope = batch[i];
        query =
            query.bind(envelope.id.to_string()).bind(envelope.tenant_id.to_string()).bind(envelope.to_json()).bind(now);
    }
    query
}

#[async_trait]
impl BatchWrite for Writer {
    type Item = EventEnvelope;
    type Answer = Appended;
    const MAX_BATCH: usize = MAX_BATCH;

    async fn write(&self, batch: &[&EventEnvelope]) -> Result<Vec<Appended>, StoreError> {
        self.append_batch(batch).await
    }
}
