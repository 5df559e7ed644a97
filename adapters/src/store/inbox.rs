//! The inbox, consumers' effects and status transitions, written through a group
//! commit ([`super::group`]): what many handlers finish at about the same time is one
//! transaction with one multi-row inbox INSERT, instead of a transaction each. That is
//! most of the store's work behind the API, and on SQLite every statement is a turn at
//! its one connection.

use std::collections::HashSet;

use async_trait::async_trait;
use sqlx::{Any, AnyConnection, AnyPool, Row, Transaction};

use shared::ports::{Applied, ConsumerName, Effect, Effects, Inbox, StoreError};
use shared::{EventId, TenantId, Timestamp};

use super::group::{BatchWrite, GroupCommit};
use super::{analytics, append, db, emails, testflight, update_owned, webhooks, SqlStore, Table};

/// A write through the group commit.
pub(super) enum Job {
    /// A consumer's effects, applied once per `(consumer, event)`.
    Once { consumer: ConsumerName, tenant: TenantId, event_id: EventId, effects: Effects },
    /// A row of `table` moved from status `from` to `to`, when it is in `from`.
    Transition { table: Table, tenant: TenantId, id: String, from: &'static str, to: &'static str },
}

/// What a [`Job`] came to.
pub(super) enum Done {
    Once(Applied),
    /// Whether the row was in `from` (and so moved).
    Moved(bool),
}

/// The group commit's writer of [`Job`]s.
pub(super) struct EffectWriter {
    pub pool: AnyPool,
    pub writer: append::Writer,
}

/// The most jobs one transaction carries.
const MAX_JOBS: usize = 32;

#[async_trait]
impl BatchWrite for EffectWriter {
    type Item = Job;
    type Answer = Done;
    const MAX_BATCH: usize = MAX_JOBS;

    async fn write(&self, batch: &[&Job]) -> Result<Vec<Done>, StoreError> {
        if let [Job::Transition { table, tenant, id, from, to }] = batch {
            // Alone, a transition is one statement committed on its own.
            let mut connection = self.pool.acquire().await.map_err(db)?;
            let mut moved = move_all(&mut connection, batch).await?;
            return Ok(vec![Done::Moved(moved.remove(&(table.name(), *from, *to, tenant.to_string(), id.clone())))]);
        }
        let mut tx = self.pool.begin().await.map_err(db)?;
        let mut moved = move_all(&mut tx, batch).await?;
        let mut first = record_inbox(&mut tx, batch).await?;
        let mut wrote_outbox = false;
        let mut statuses: Vec<&Effect> = Vec::new();
        let mut answers = Vec::with_capacity(batch.len());
        for job in batch {
            answers.push(match job {
                Job::Transition { table, tenant, id, from, to } => {
                    Done::Moved(moved.remove(&(table.name(), *from, *to, tenant.to_string(), id.clone())))
                }
                Job::Once { consumer, event_id, effects, .. } => {
                    if !first.remove(&(consumer.as_str(), event_id.to_string())) {
                        Done::Once(Applied::Before)
                    } else {
                        for effect in effects.iter() {
                            match effect {
                                Effect::FeedbackStatus { .. } => statuses.push(effect),
                                _ => wrote_outbox |= apply(&mut tx, effect).await?,
                            }
                        }
                        Done::Once(Applied::Now)
                    }
                }
            });
        }
        // Nothing else writes the feedback table, so its updates can follow the rest.
        set_feedback_statuses(&mut tx, &statuses).await?;
        if wrote_outbox {
            self.writer.commit_with_outbox(tx).await?;
        } else {
            tx.commit().await.map_err(db)?;
        }
        Ok(answers)
    }
}

/// A kind of transition: the table, from which status, to which.
type Kind = (Table, &'static str, &'static str);

/// Which row moved in which transition: (table, from, to, tenant, id).
type Moved = HashSet<(&'static str, &'static str, &'static str, String, String)>;

/// The batch's transitions, one statement per kind (table, from, to) rather than one
/// per row; the rows that moved. Two transitions of one row in a batch: the first
/// moves it.
async fn move_all(connection: &mut AnyConnection, batch: &[&Job]) -> Result<Moved, StoreError> {
    let mut kinds: Vec<(Kind, Vec<(TenantId, &str)>)> = Vec::new();
    for job in batch {
        if let Job::Transition { table, tenant, id, from, to } = job {
            let kind = (*table, *from, *to);
            match kinds.iter_mut().find(|(k, _)| *k == kind) {
                Some((_, rows)) => rows.push((*tenant, id)),
                None => kinds.push((kind, vec![(*tenant, id)])),
            }
        }
    }
    let mut moved = Moved::new();
    for ((table, from, to), rows) in kinds {
        let values: Vec<String> = (0..rows.len()).map(|r| format!("(${}, ${})", r * 2 + 4, r * 2 + 5)).collect();
        let sql = format!(
            "UPDATE {} SET status = $1, updated_at = $2
             WHERE status = $3 AND (tenant_id, id) IN (VALUES {})
             RETURNING tenant_id, id",
            table.name(),
            values.join(", ")
        );
        let mut query = sqlx::query(&sql).bind(to).bind(Timestamp::now().as_millis()).bind(from);
        for (tenant, id) in &rows {
            query = query.bind(tenant.to_string()).bind(id.to_string());
        }
        for row in query.fetch_all(&mut *connection).await.map_err(db)? {
            let (tenant, id): (String, String) = (row.try_get(0).map_err(db)?, row.try_get(1).map_err(db)?);
            moved.insert((table.name(), from, to, tenant, id));
        }
    }
    Ok(moved)
}

/// Inserts the inbox rows of the batch's `Once` jobs in one statement; the
/// `(consumer, event id)` pairs this transaction recorded (those not applied before).
async fn record_inbox(
    tx: &mut Transaction<'static, Any>,
    batch: &[&Job],
) -> Result<HashSet<(&'static str, String)>, StoreError> {
    let rows: Vec<(ConsumerName, TenantId, EventId)> = batch
        .iter()
        .filter_map(|job| match job {
            Job::Once { consumer, tenant, event_id, .. } => Some((*consumer, *tenant, *event_id)),
            Job::Transition { .. } => None,
        })
        .collect();
    if rows.is_empty() {
        return Ok(HashSet::new());
    }
    let values: Vec<String> =
        (0..rows.len()).map(|r| format!("(${}, ${}, ${}, ${})", r * 4 + 1, r * 4 + 2, r * 4 + 3, r * 4 + 4)).collect();
    let sql = format!(
        "INSERT INTO inbox (consumer, event_id, tenant_id, processed_at) VALUES {}
         ON CONFLICT DO NOTHING RETURNING consumer, event_id",
        values.join(", ")
    );
    let now = Timestamp::now().as_millis();
    let mut query = sqlx::query(&sql);
    for (consumer, tenant, event_id) in &rows {
        query = query.bind(consumer.as_str()).bind(event_id.to_string()).bind(tenant.to_string()).bind(now);
    }
    let mut recorded = HashSet::new();
    for row in query.fetch_all(&mut **tx).await.map_err(db)? {
        let consumer: String = row.try_get(0).map_err(db)?;
        let event_id: String = row.try_get(1).map_err(db)?;
        // Names come from the batch's own consumers, so one always matches.
        if let Some((name, _, _)) = rows.iter().find(|(c, _, _)| c.as_str() == consumer) {
            recorded.insert((name.as_str(), event_id));
        }
    }
    Ok(recorded)
}

/// The batch's feedback status updates: one statement for them all, unless a row
/// appears twice (then one each, in order). A row that is not there fails the batch,
/// whose one-by-one retry then fails only the job it belongs to.
async fn set_feedback_statuses(tx: &mut Transaction<'static, Any>, effects: &[&Effect]) -> Result<(), StoreError> {
    let rows: Vec<(TenantId, String, &str, Option<&str>)> = effects
        .iter()
        .filter_map(|effect| match effect {
            Effect::FeedbackStatus { tenant, id, status, result_key } => {
                Some((*tenant, id.to_string(), status.as_str(), result_key.as_deref()))
            }
            _ => None,
        })
        .collect();
    let distinct: HashSet<(TenantId, &str)> = rows.iter().map(|(tenant, id, _, _)| (*tenant, id.as_str())).collect();
    if rows.len() < 2 || distinct.len() < rows.len() {
        for effect in effects {
            apply(tx, effect).await?;
        }
        return Ok(());
    }
    let values: Vec<String> =
        (0..rows.len()).map(|r| format!("(${}, ${}, ${}, ${})", r * 4 + 2, r * 4 + 3, r * 4 + 4, r * 4 + 5)).collect();
    let sql = format!(
        "WITH v (tenant_id, id, status, result_key) AS (VALUES {})
         UPDATE feedback SET status = v.status, result_key = COALESCE(v.result_key, feedback.result_key),
                updated_at = $1
         FROM v WHERE feedback.tenant_id = v.tenant_id AND feedback.id = v.id
         RETURNING feedback.tenant_id, feedback.id",
        values.join(", ")
    );
    let mut query = sqlx::query(&sql).bind(Timestamp::now().as_millis());
    for (tenant, id, status, result_key) in &rows {
        query = query.bind(tenant.to_string()).bind(id.clone()).bind(*status).bind(result_key.map(str::to_owned));
    }
    let updated = query.fetch_all(&mut **tx).await.map_err(db)?;
    if updated.len() < rows.len() {
        let found: HashSet<(String, String)> = updated
            .iter()
            .map(|row| Ok((row.try_get(0).map_err(db)?, row.try_get(1).map_err(db)?)))
            .collect::<Result<_, StoreError>>()?;
        if let Some((tenant, id, _, _)) =
            rows.iter().find(|(tenant, id, _, _)| !found.contains(&(tenant.to_string(), id.clone())))
        {
            return Err(StoreError::NotFound(format!("feedback {id} of tenant {tenant}")));
        }
    }
    Ok(())
}

/// Applies one effect inside `tx`; whether it wrote outbox rows (relays need waking).
async fn apply(tx: &mut Transaction<'static, Any>, effect: &Effect) -> Result<bool, StoreError> {
    match effect {
        Effect::FeedbackStatus { tenant, id, status, result_key } => {
            let query = sqlx::query(
                "UPDATE feedback SET status = $1, result_key = COALESCE($2, result_key), updated_at = $3
                 WHERE tenant_id = $4 AND id = $5",
            )
            .bind(status.as_str())
            .bind(result_key.clone())
            .bind(Timestamp::now().as_millis());
            update_owned(&mut **tx, query, *tenant, &id.to_string(), "feedback").await?;
        }
        Effect::EmailOutcome { tenant, id, outcome } => {
            let query = sqlx::query(
                "UPDATE emails SET status = $1, provider = $2, provider_message_id = $3, failure_reason = $4,
                        result_key = $5, updated_at = $6
                 WHERE tenant_id = $7 AND id = $8",
            )
            .bind(outcome.status.as_str())
            .bind(outcome.provider.as_str())
            .bind(outcome.provider_message_id.clone())
            .bind(outcome.failure_reason.clone())
            .bind(outcome.result_key.clone())
            .bind(Timestamp::now().as_millis());
            update_owned(&mut **tx, query, *tenant, &id.to_string(), "email").await?;
        }
        Effect::InvitationOutcome { tenant, id, outcome } => testflight::set_outcome(tx, *tenant, *id, outcome).await?,
        Effect::StageAnalytics { tenant, rows } => analytics::stage(tx, *tenant, rows).await?,
        Effect::SubmitEmails { tenant, emails } => {
            emails::insert_emails(tx, *tenant, emails).await?;
            return Ok(!emails.is_empty());
        }
        Effect::RecordWebhook { tenant, webhook } => webhooks::record(tx, *tenant, webhook).await?,
    }
    Ok(false)
}

#[async_trait]
impl Inbox for SqlStore {
    async fn applied(&self, consumer: ConsumerName, tenant: TenantId, event_id: EventId) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT 1 FROM inbox WHERE consumer = $1 AND event_id = $2 AND tenant_id = $3")
            .bind(consumer.as_str())
            .bind(event_id.to_string())
            .bind(tenant.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        Ok(row.is_some())
    }

    async fn apply_once(
        &self,
        consumer: ConsumerName,
        tenant: TenantId,
        event_id: EventId,
        effects: Effects,
    ) -> Result<Applied, StoreError> {
        match self.effects.write(Job::Once { consumer, tenant, event_id, effects }).await? {
            Done::Once(applied) => Ok(applied),
            Done::Moved(_) => Err(StoreError::Unavailable("the store's writer answered another job".into())),
        }
    }
}

impl SqlStore {
    /// Moves a tenant's row from status `from` to `to`; false when it was not in `from`.
    pub(super) async fn transition(
        &self,
        table: Table,
        tenant: TenantId,
        id: &str,
        from: &'static str,
        to: &'static str,
    ) -> Result<bool, StoreError> {
        move_through(&self.effects, Job::Transition { table, tenant, id: id.to_owned(), from, to }).await
    }

    /// [`Self::transition`] for a mark that a redelivery sets again, committed through
    /// the relaxed pool (see [`SqlStore::relaxed`]).
    pub(super) async fn mark(
        &self,
        table: Table,
        tenant: TenantId,
        id: &str,
        from: &'static str,
        to: &'static str,
    ) -> Result<bool, StoreError> {
        move_through(&self.marks, Job::Transition { table, tenant, id: id.to_owned(), from, to }).await
    }
}

/// Writes a transition through `commit`; whether the row moved.
async fn move_through(commit: &GroupCommit<EffectWriter>, transition: Job) -> Result<bool, StoreError> {
    match commit.write(transition).await? {
        Done::Moved(moved) => Ok(moved),
        Done::Once(_) => Err(StoreError::Unavailable("the store's writer answered another job".into())),
    }
}
