//! Operators' plans over parked dead letters and the redrive jobs that carry them out.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value as Json};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use shared::ports::{
    Apply, DeadLetterPlans, FailedOutboxRow, Fingerprint, Job, JobState, JobStep, Parked, ParkedFilter, ParkedState,
    Plan, PlanAction, PlanCounts, QueueName, Selection, StoreError, Tally, MAX_TALLIES,
};
use shared::{EventType, JobId, PlanId, TenantId, Timestamp};

use super::parking::{bind_all, narrowed, parked_from, COLUMNS};
use super::{corrupt, db, in_list, text, SqlStore};

/// The most purged dead letters (and expired plans) one sweep deletes.
const SWEEP_BATCH: i64 = 1_000;

const JOB_COLUMNS: &str = "id, plan_id, action, state, total, done, skipped, cursor_seq, rate_per_minute, error,
                           created_at, updated_at, finished_at";

fn count(row: &AnyRow, column: &str) -> Result<u64, StoreError> {
    let n: i64 = row.try_get(column).map_err(db)?;
    Ok(u64::try_from(n).unwrap_or(0))
}

fn job_from(row: &AnyRow) -> Result<Job, StoreError> {
    let millis = |column: &str| -> Result<Timestamp, StoreError> {
        Ok(Timestamp::from_millis(row.try_get(column).map_err(db)?))
    };
    let rate: i64 = row.try_get("rate_per_minute").map_err(db)?;
    Ok(Job {
        id: JobId::parse(&text(row, "id")?).map_err(|e| corrupt("job id", e))?,
        plan: PlanId::parse(&text(row, "plan_id")?).map_err(|e| corrupt("plan id", e))?,
        action: PlanAction::parse(&text(row, "action")?).ok_or_else(|| corrupt("job action", "unknown"))?,
        state: JobState::parse(&text(row, "state")?).ok_or_else(|| corrupt("job state", "unknown"))?,
        total: count(row, "total")?,
        done: count(row, "done")?,
        skipped: count(row, "skipped")?,
        cursor: row.try_get("cursor_seq").map_err(db)?,
        rate_per_minute: u32::try_from(rate).unwrap_or(u32::MAX),
        error: row.try_get("error").map_err(db)?,
        created_at: millis("created_at")?,
        updated_at: millis("updated_at")?,
        finished_at: row.try_get::<Option<i64>, _>("finished_at").map_err(db)?.map(Timestamp::from_millis),
    })
}

fn selection_json(selection: &Selection) -> Json {
    match selection {
        Selection::Ids(ids) => json!({ "ids": ids }),
        Selection::FailedOutbox { tenant } => json!({ "failed_outbox": { "tenant": tenant.map(|t| t.to_string()) } }),
        Selection::Filter(f) => json!({ "filter": {
            "queue": f.queue.as_ref().map(QueueName::as_str),
            "tenant": f.tenant.map(|t| t.to_string()),
            "type": f.event_type.as_ref().map(EventType::as_str),
            "error": f.error_group.as_ref().map(Fingerprint::as_str),
            "from": f.from.map(Timestamp::as_millis),
            "to": f.to.map(Timestamp::as_millis),
            "state": f.state.as_str(),
        }}),
    }
}

fn selection_from(value: &Json) -> Result<Selection, StoreError> {
    let bad = |what: &str| corrupt("plan selection", what);
    if let Some(ids) = value.get("ids").and_then(Json::as_array) {
        return Ok(Selection::Ids(ids.iter().filter_map(Json::as_i64).collect()));
    }
    if let Some(outbox) = value.get("failed_outbox") {
        let tenant = outbox.get("tenant").and_then(Json::as_str).map(TenantId::parse).transpose();
        return Ok(Selection::FailedOutbox { tenant: tenant.map_err(|e| corrupt("plan tenant", e))? });
    }
    let f = value.get("filter").ok_or_else(|| bad("neither ids nor a filter"))?;
    let string = |name: &str| f.get(name).and_then(Json::as_str);
    let millis = |name: &str| f.get(name).and_then(Json::as_i64).map(Timestamp::from_millis);
    Ok(Selection::Filter(ParkedFilter {
        queue: string("queue").map(|q| QueueName::new(q.to_owned())),
        tenant: string("tenant").map(TenantId::parse).transpose().map_err(|e| corrupt("plan tenant", e))?,
        event_type: string("type").map(EventType::parse).transpose().map_err(|e| corrupt("plan type", e))?,
        error_group: string("error").map(Fingerprint::parse).transpose().map_err(|e| corrupt("plan group", e))?,
        from: millis("from"),
        to: millis("to"),
        state: string("state").and_then(ParkedState::parse).unwrap_or_default(),
    }))
}

fn tallies_json(tallies: &[Tally]) -> Json {
    tallies.iter().map(|t| json!([t.key, t.count])).collect()
}

fn tallies_from(value: Option<&Json>) -> Vec<Tally> {
    value
        .and_then(Json::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|item| {
                    Some(Tally { key: item.get(0)?.as_str()?.to_owned(), count: item.get(1)?.as_u64()? })
                })
                .collect()
        })
        .unwrap_or_default()
}

fn plan_from(row: &AnyRow) -> Result<Plan, StoreError> {
    let selection: Json = serde_json::from_str(&text(row, "selection")?).map_err(|e| corrupt("plan selection", e))?;
    let counts: Json = serde_json::from_str(&text(row, "counts")?).map_err(|e| corrupt("plan counts", e))?;
    let optional_millis = |column: &str| -> Result<Option<Timestamp>, StoreError> {
        Ok(row.try_get::<Option<i64>, _>(column).map_err(db)?.map(Timestamp::from_millis))
    };
    Ok(Plan {
        id: PlanId::parse(&text(row, "id")?).map_err(|e| corrupt("plan id", e))?,
        action: PlanAction::parse(&text(row, "action")?).ok_or_else(|| corrupt("plan action", "unknown"))?,
        selection: selection_from(&selection)?,
        counts: PlanCounts {
            total: counts.get("total").and_then(Json::as_u64).unwrap_or(0),
            queues: tallies_from(counts.get("queues")),
            tenants: tallies_from(counts.get("tenants")),
            groups: tallies_from(counts.get("groups")),
            group_count: counts.get("group_count").and_then(Json::as_u64).unwrap_or(0),
        },
        created_at: Timestamp::from_millis(row.try_get("created_at").map_err(db)?),
        expires_at: Timestamp::from_millis(row.try_get("expires_at").map_err(db)?),
        confirmed_at: optional_millis("confirmed_at")?,
        job: row
            .try_get::<Option<String>, _>("job_id")
            .map_err(db)?
            .map(|j| JobId::parse(&j))
            .transpose()
            .map_err(|e| corrupt("job id", e))?,
    })
}

/// The largest values of `column` among the plan's rows of `table`, with their counts.
async fn tally(
    tx: &mut Transaction<'static, Any>,
    plan: &str,
    table: &str,
    column: &str,
) -> Result<Vec<Tally>, StoreError> {
    let sql = format!(
        "SELECT p.{column} AS k, COUNT(*) AS n FROM operator_plan_items i
         JOIN {table} p ON p.seq = i.seq
         WHERE i.plan_id = $1 AND p.{column} IS NOT NULL
         GROUP BY p.{column} ORDER BY n DESC, k LIMIT $2"
    );
    let rows = sqlx::query(&sql)
        .bind(plan.to_owned())
        .bind(i64::try_from(MAX_TALLIES).unwrap_or(20))
        .fetch_all(&mut **tx)
        .await
        .map_err(db)?;
    rows.iter().map(|row| Ok(Tally { key: text(row, "k")?, count: count(row, "n")? })).collect()
}

/// Marks plan `id` confirmed at `now` inside `tx`, if it may be: it exists, is
/// `action`'s, unconfirmed and unexpired. Two confirmations racing: one wins.
async fn confirm(
    tx: &mut Transaction<'static, Any>,
    id: PlanId,
    action: impl Fn(PlanAction) -> bool,
    now: Timestamp,
) -> Result<Plan, StoreError> {
    let row = sqlx::query("SELECT * FROM operator_plans WHERE id = $1")
        .bind(id.to_string())
        .fetch_optional(&mut **tx)
        .await
        .map_err(db)?
        .ok_or_else(|| StoreError::NotFound(format!("plan {id}")))?;
    let plan = plan_from(&row)?;
    if let Some(at) = plan.confirmed_at {
        let job = plan.job.map(|j| format!(" (job {j})")).unwrap_or_default();
        return Err(StoreError::Conflict(format!("plan {id} was confirmed at {}{job}", at.to_rfc3339())));
    }
    if plan.expires_at <= now {
        return Err(StoreError::Conflict(format!(
            "plan {id} expired at {}; make a new one",
            plan.expires_at.to_rfc3339()
        )));
    }
    if !action(plan.action) {
        return Err(StoreError::Conflict(format!("plan {id} is a {} plan", plan.action.as_str())));
    }
    let updated = sqlx::query("UPDATE operator_plans SET confirmed_at = $1 WHERE id = $2 AND confirmed_at IS NULL")
        .bind(now.as_millis())
        .bind(id.to_string())
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    if updated.rows_affected() == 0 {
        return Err(StoreError::Conflict(format!("plan {id} was confirmed meanwhile")));
    }
    Ok(plan)
}

/// The outbox rows an operator may retry or discard.
const FAILED_ROW: &str = "failed_at IS NOT NULL AND published_at IS NULL AND discarded_at IS NULL";

/// Records as plan `plan`'s the rows among `ids` of `table` (`parked_dead_letters`,
/// those in `state`; or `outbox`, those failed).
async fn freeze_ids(
    tx: &mut Transaction<'static, Any>,
    plan: &str,
    table: &str,
    state: Option<&str>,
    ids: &[i64],
) -> Result<(), StoreError> {
    if ids.is_empty() {
        return Ok(());
    }
    let (condition, first) = match state {
        Some(_) => ("state = $2".to_owned(), 3),
        None => (FAILED_ROW.to_owned(), 2),
    };
    let sql = format!(
        "INSERT INTO operator_plan_items (plan_id, seq) SELECT $1, seq FROM {table} WHERE {condition} AND seq IN ({})",
        in_list(first, ids.len())
    );
    let mut query = sqlx::query(&sql).bind(plan.to_owned());
    if let Some(state) = state {
        query = query.bind(state.to_owned());
    }
    for seq in ids {
        query = query.bind(*seq);
    }
    query.execute(&mut **tx).await.map_err(db)?;
    Ok(())
}

/// Records the parked dead letters in `state` that `selection` names as plan `plan`'s.
async fn freeze_parked(
    tx: &mut Transaction<'static, Any>,
    plan: &str,
    state: ParkedState,
    selection: &Selection,
) -> Result<(), StoreError> {
    match selection {
        Selection::Ids(ids) => freeze_ids(tx, plan, "parked_dead_letters", Some(state.as_str()), ids).await,
        Selection::Filter(filter) => {
            let filter = ParkedFilter { state, ..filter.clone() };
            let (clause, values) = narrowed(&filter, 2);
            let sql = format!(
                "INSERT INTO operator_plan_items (plan_id, seq) SELECT $1, seq FROM parked_dead_letters WHERE {clause}"
            );
            bind_all(sqlx::query(&sql).bind(plan.to_owned()), values).execute(&mut **tx).await.map_err(db)?;
            Ok(())
        }
        Selection::FailedOutbox { .. } => {
            Err(StoreError::Conflict("a plan over dead letters selects dead letters, not outbox rows".into()))
        }
    }
}

/// Records the failed outbox rows that `selection` names as plan `plan`'s.
async fn freeze_failed_rows(
    tx: &mut Transaction<'static, Any>,
    plan: &str,
    selection: &Selection,
) -> Result<(), StoreError> {
    match selection {
        Selection::Ids(ids) => freeze_ids(tx, plan, "outbox", None, ids).await,
        Selection::FailedOutbox { tenant } => {
            let sql = format!(
                "INSERT INTO operator_plan_items (plan_id, seq)
                 SELECT $1, seq FROM outbox WHERE {FAILED_ROW} AND ($2 IS NULL OR tenant_id = $2)"
            );
            let query = sqlx::query(&sql).bind(plan.to_owned()).bind(tenant.map(|t| t.to_string()));
            query.execute(&mut **tx).await.map_err(db)?;
            Ok(())
        }
        Selection::Filter(_) => {
            Err(StoreError::Conflict("a plan over failed outbox rows selects rows, not dead letters".into()))
        }
    }
}

impl SqlStore {
    async fn job_row(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM operator_jobs WHERE id = $1");
        let row = sqlx::query(&sql).bind(id.to_string()).fetch_optional(&self.pool).await.map_err(db)?;
        row.as_ref().map(job_from).transpose()
    }
}

fn lease_end(now: Timestamp, lease: Duration) -> i64 {
    now.plus(lease).as_millis()
}

#[async_trait]
impl DeadLetterPlans for SqlStore {
    async fn make_plan(
        &self,
        action: PlanAction,
        selection: &Selection,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> Result<Plan, StoreError> {
        let id = PlanId::new();
        let plan = id.to_string();
        let mut tx = self.pool.begin().await.map_err(db)?;
        let counts = match action.selects() {
            Some(state) => {
                freeze_parked(&mut tx, &plan, state, selection).await?;
                let totals = sqlx::query(
                    "SELECT COUNT(*) AS n, COUNT(DISTINCT p.group_id) AS groups FROM operator_plan_items i
                     JOIN parked_dead_letters p ON p.seq = i.seq WHERE i.plan_id = $1",
                )
                .bind(plan.clone())
                .fetch_one(&mut *tx)
                .await
                .map_err(db)?;
                PlanCounts {
                    total: count(&totals, "n")?,
                    group_count: count(&totals, "groups")?,
                    queues: tally(&mut tx, &plan, "parked_dead_letters", "queue").await?,
                    tenants: tally(&mut tx, &plan, "parked_dead_letters", "tenant_id").await?,
                    groups: tally(&mut tx, &plan, "parked_dead_letters", "group_id").await?,
                }
            }
            None => {
                freeze_failed_rows(&mut tx, &plan, selection).await?;
                let totals = sqlx::query("SELECT COUNT(*) AS n FROM operator_plan_items WHERE plan_id = $1")
                    .bind(plan.clone())
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(db)?;
                PlanCounts {
                    total: count(&totals, "n")?,
                    tenants: tally(&mut tx, &plan, "outbox", "tenant_id").await?,
                    ..PlanCounts::default()
                }
            }
        };
        let counts_json = json!({
            "total": counts.total,
            "group_count": counts.group_count,
            "queues": tallies_json(&counts.queues),
            "tenants": tallies_json(&counts.tenants),
            "groups": tallies_json(&counts.groups),
        });
        sqlx::query(
            "INSERT INTO operator_plans (id, action, selection, counts, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(plan.clone())
        .bind(action.as_str())
        .bind(selection_json(selection).to_string())
        .bind(counts_json.to_string())
        .bind(now.as_millis())
        .bind(expires_at.as_millis())
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(Plan {
            id,
            action,
            selection: selection.clone(),
            counts,
            created_at: now,
            expires_at,
            confirmed_at: None,
            job: None,
        })
    }

    async fn plan(&self, id: PlanId) -> Result<Option<Plan>, StoreError> {
        let row = sqlx::query("SELECT * FROM operator_plans WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.as_ref().map(plan_from).transpose()
    }

    async fn apply_plan(&self, id: PlanId, now: Timestamp, apply: &Apply) -> Result<u64, StoreError> {
        if let Some(reason) = &apply.reason {
            if reason.trim().is_empty() {
                return Err(StoreError::Conflict("a discard needs a reason".into()));
            }
        }
        let mut tx = self.pool.begin().await.map_err(db)?;
        let plan = confirm(&mut tx, id, |a| a != PlanAction::Redrive, now).await?;
        let frozen = "seq IN (SELECT seq FROM operator_plan_items WHERE plan_id = $1)";
        let purge = format!("UPDATE parked_dead_letters SET state = $2, purged_at = $3 WHERE {frozen} AND state = $4");
        let restore = format!(
            "UPDATE parked_dead_letters SET state = $2, purged_at = NULL WHERE {frozen} AND state = $3 AND purged_at >= $4"
        );
        let retry = format!(
            "UPDATE outbox SET failed_at = NULL, attempts = 0, not_before = 0, claimed_until = NULL
             WHERE {frozen} AND {FAILED_ROW}"
        );
        let discard =
            format!("UPDATE outbox SET discarded_at = $2, discard_reason = $3 WHERE {frozen} AND {FAILED_ROW}");
        let query = match plan.action {
            PlanAction::Purge => sqlx::query(&purge)
                .bind(id.to_string())
                .bind(ParkedState::Purged.as_str())
                .bind(now.as_millis())
                .bind(ParkedState::Parked.as_str()),
            PlanAction::Restore => sqlx::query(&restore)
                .bind(id.to_string())
                .bind(ParkedState::Parked.as_str())
                .bind(ParkedState::Purged.as_str())
                .bind(apply.restorable_since.as_millis()),
            PlanAction::RetryOutbox => sqlx::query(&retry).bind(id.to_string()),
            PlanAction::DiscardOutbox => {
                let reason =
                    apply.reason.clone().ok_or_else(|| StoreError::Conflict("a discard needs a reason".into()))?;
                sqlx::query(&discard).bind(id.to_string()).bind(now.as_millis()).bind(reason)
            }
            PlanAction::Redrive => return Err(StoreError::Conflict(format!("plan {id} is a redrive"))),
        };
        let moved = query.execute(&mut *tx).await.map_err(db)?.rows_affected();
        sqlx::query("DELETE FROM operator_plan_items WHERE plan_id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        if plan.action == PlanAction::RetryOutbox && moved > 0 {
            self.writer.outbox_committed();
        }
        Ok(moved)
    }

    async fn failed_rows(
        &self,
        tenant: Option<TenantId>,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<FailedOutboxRow>, StoreError> {
        let by_tenant = if tenant.is_some() { "AND tenant_id = $3" } else { "" };
        let sql = format!(
            "SELECT seq, event_id, tenant_id, envelope, last_error, attempts, created_at, failed_at FROM outbox
             WHERE {FAILED_ROW} AND seq < $1 {by_tenant} ORDER BY seq DESC LIMIT $2"
        );
        let mut query = sqlx::query(&sql).bind(before.unwrap_or(i64::MAX)).bind(i64::from(limit));
        if let Some(tenant) = tenant {
            query = query.bind(tenant.to_string());
        }
        let rows = query.fetch_all(&self.pool).await.map_err(db)?;
        rows.iter()
            .map(|row| {
                let envelope = text(row, "envelope")?;
                let attempts: i64 = row.try_get("attempts").map_err(db)?;
                Ok(FailedOutboxRow {
                    seq: row.try_get("seq").map_err(db)?,
                    event_id: text(row, "event_id")?,
                    tenant: TenantId::parse(&text(row, "tenant_id")?).map_err(|e| corrupt("tenant id", e))?,
                    event_type: shared::EventEnvelope::from_json(&envelope).ok().map(|e| e.event_type),
                    envelope,
                    error: row.try_get("last_error").map_err(db)?,
                    attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                    created_at: Timestamp::from_millis(row.try_get("created_at").map_err(db)?),
                    failed_at: Timestamp::from_millis(row.try_get("failed_at").map_err(db)?),
                })
            })
            .collect()
    }

    async fn start_job(&self, plan: PlanId, rate_per_minute: u32, now: Timestamp) -> Result<Job, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        let confirmed = confirm(&mut tx, plan, |a| a == PlanAction::Redrive, now).await?;
        let job = JobId::new();
        sqlx::query(
            "INSERT INTO operator_jobs (id, plan_id, action, state, total, done, skipped, cursor_seq, rate_per_minute,
                 lease_until, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, 0, 0, 0, $6, 0, $7, $7)",
        )
        .bind(job.to_string())
        .bind(plan.to_string())
        .bind(confirmed.action.as_str())
        .bind(JobState::Running.as_str())
        .bind(i64::try_from(confirmed.counts.total).unwrap_or(i64::MAX))
        .bind(i64::from(rate_per_minute))
        .bind(now.as_millis())
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        sqlx::query("UPDATE operator_plans SET job_id = $1 WHERE id = $2")
            .bind(job.to_string())
            .bind(plan.to_string())
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        self.job_row(job).await?.ok_or_else(|| StoreError::NotFound(format!("job {job}")))
    }

    async fn job(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        self.job_row(id).await
    }

    async fn cancel_job(&self, id: JobId, now: Timestamp) -> Result<Option<Job>, StoreError> {
        sqlx::query(
            "UPDATE operator_jobs SET state = $1, finished_at = $2, updated_at = $2, lease_until = 0
             WHERE id = $3 AND state = $4",
        )
        .bind(JobState::Cancelled.as_str())
        .bind(now.as_millis())
        .bind(id.to_string())
        .bind(JobState::Running.as_str())
        .execute(&self.pool)
        .await
        .map_err(db)?;
        self.job_row(id).await
    }

    async fn claim_job(&self, owner: &str, now: Timestamp, lease: Duration) -> Result<Option<Job>, StoreError> {
        // The outer condition repeats the inner one: on PostgreSQL a claimer that waited
        // for another's row lock re-checks it against the row as the other left it.
        let free = "state = $4 AND (lease_until <= $3 OR lease_owner = $1)";
        let sql = format!(
            "UPDATE operator_jobs SET lease_owner = $1, lease_until = $2, updated_at = $3
             WHERE id = (SELECT id FROM operator_jobs WHERE {free} ORDER BY created_at, id LIMIT 1 {})
               AND {free}
             RETURNING {JOB_COLUMNS}",
            self.dialect.skip_locked()
        );
        let row = sqlx::query(&sql)
            .bind(owner.to_owned())
            .bind(lease_end(now, lease))
            .bind(now.as_millis())
            .bind(JobState::Running.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.as_ref().map(job_from).transpose()
    }

    async fn job_batch(&self, job: &Job, limit: u32) -> Result<Vec<Parked>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM parked_dead_letters WHERE seq IN (
                 SELECT seq FROM operator_plan_items WHERE plan_id = $1 AND seq > $2 ORDER BY seq LIMIT $3)
             ORDER BY seq"
        );
        let rows = sqlx::query(&sql)
            .bind(job.plan.to_string())
            .bind(job.cursor)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter().map(parked_from).collect()
    }

    async fn job_step(
        &self,
        id: JobId,
        owner: &str,
        step: &JobStep,
        now: Timestamp,
        lease: Duration,
    ) -> Result<Job, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        if !step.redriven.is_empty() {
            let sql = format!(
                "UPDATE parked_dead_letters SET state = $1, redriven_by = $2, purged_at = NULL WHERE seq IN ({})",
                in_list(3, step.redriven.len())
            );
            let mut query = sqlx::query(&sql).bind(ParkedState::Redriven.as_str()).bind(id.to_string());
            for seq in &step.redriven {
                query = query.bind(*seq);
            }
            query.execute(&mut *tx).await.map_err(db)?;
        }
        let sql = format!(
            "UPDATE operator_jobs SET done = done + $1, skipped = skipped + $2, cursor_seq = $3, lease_until = $4,
                 updated_at = $5
             WHERE id = $6 AND lease_owner = $7
             RETURNING {JOB_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(i64::try_from(step.redriven.len()).unwrap_or(i64::MAX))
            .bind(i64::try_from(step.skipped).unwrap_or(i64::MAX))
            .bind(step.cursor)
            .bind(lease_end(now, lease))
            .bind(now.as_millis())
            .bind(id.to_string())
            .bind(owner.to_owned())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?
            .ok_or_else(|| StoreError::Conflict(format!("job {id} is no longer held by {owner}")))?;
        let job = job_from(&row)?;
        tx.commit().await.map_err(db)?;
        Ok(job)
    }

    async fn finish_job(
        &self,
        id: JobId,
        owner: &str,
        state: JobState,
        error: Option<&str>,
        now: Timestamp,
    ) -> Result<Job, StoreError> {
        let sql = format!(
            "UPDATE operator_jobs SET state = $1, error = $2, finished_at = $3, updated_at = $3, lease_until = 0
             WHERE id = $4 AND lease_owner = $5 AND state = $6
             RETURNING {JOB_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(state.as_str())
            .bind(error.map(str::to_owned))
            .bind(now.as_millis())
            .bind(id.to_string())
            .bind(owner.to_owned())
            .bind(JobState::Running.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        match row {
            Some(row) => job_from(&row),
            // Cancelled meanwhile: it stays as the operator left it.
            None => match self.job_row(id).await? {
                Some(job) if job.state == JobState::Cancelled => Ok(job),
                Some(_) => Err(StoreError::Conflict(format!("job {id} is no longer held by {owner}"))),
                None => Err(StoreError::NotFound(format!("job {id}"))),
            },
        }
    }

    async fn sweep(&self, purged_before: Timestamp, now: Timestamp) -> Result<u64, StoreError> {
        let deleted = sqlx::query(
            "DELETE FROM parked_dead_letters WHERE seq IN (
                 SELECT seq FROM parked_dead_letters WHERE state = $1 AND purged_at < $2 LIMIT $3)",
        )
        .bind(ParkedState::Purged.as_str())
        .bind(purged_before.as_millis())
        .bind(SWEEP_BATCH)
        .execute(&self.pool)
        .await
        .map_err(db)?
        .rows_affected();
        let mut tx = self.pool.begin().await.map_err(db)?;
        let expired = "SELECT id FROM operator_plans WHERE confirmed_at IS NULL AND expires_at < $1 LIMIT $2";
        sqlx::query(&format!("DELETE FROM operator_plan_items WHERE plan_id IN ({expired})"))
            .bind(now.as_millis())
            .bind(SWEEP_BATCH)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        sqlx::query(&format!("DELETE FROM operator_plans WHERE id IN ({expired})"))
            .bind(now.as_millis())
            .bind(SWEEP_BATCH)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::{selection_from, selection_json};
    use shared::ports::{Fingerprint, ParkedFilter, ParkedState, QueueName, Selection};
    use shared::{TenantId, Timestamp};

    #[test]
    fn a_selection_reads_back_as_it_was_written() {
        let filter = ParkedFilter {
            queue: Some(QueueName::new("feedback.fifo")),
            tenant: Some(TenantId::new()),
            event_type: Some(shared::EventType::parse("feedback.submitted").expect("type")),
            error_group: Some(Fingerprint::parse("0123456789abcdef").expect("fingerprint")),
            from: Some(Timestamp::from_millis(5)),
            to: Some(Timestamp::from_millis(9)),
            state: ParkedState::Purged,
        };
        for selection in
            [Selection::Ids(vec![3, 1, 2]), Selection::Filter(filter), Selection::Filter(Default::default())]
        {
            assert_eq!(selection_from(&selection_json(&selection)).expect("read back"), selection);
        }
    }
}
