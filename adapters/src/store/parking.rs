//! Parked dead letters: one row per message drained from a dead-letter queue.

use std::collections::BTreeMap;

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::Row;

use shared::ports::{
    Attempt, DeadLetterParking, DedupId, ErrorGroup, ErrorGroupKey, Fingerprint, MessageId, NewParked, Parked,
    ParkedFilter, ParkedState, QueueName, StoreError,
};
use shared::{EventId, EventType, JobId, TenantId, Timestamp};

use super::{corrupt, db, text, SqlStore};

pub(super) const COLUMNS: &str = "seq, queue, message_id, group_id, dedup_id, body, attributes, tenant_id, event_id,
                       event_type, error, error_pattern, fingerprint, attempts, dead_lettered_at, parked_at, state,
                       purged_at, redriven_by";

/// The longest error kept per dead letter.
const MAX_ERROR_CHARS: usize = 2_000;

pub(super) fn parked_from(row: &AnyRow) -> Result<Parked, StoreError> {
    let optional = |column: &str| -> Result<Option<String>, StoreError> { row.try_get(column).map_err(db) };
    let attributes: BTreeMap<String, String> =
        serde_json::from_str(&text(row, "attributes")?).map_err(|e| corrupt("dead letter attributes", e))?;
    let attempts: Vec<Attempt> =
        serde_json::from_str(&text(row, "attempts")?).map_err(|e| corrupt("dead letter attempts", e))?;
    let fingerprint = Fingerprint::parse(&text(row, "fingerprint")?).map_err(|e| corrupt("fingerprint", e))?;
    Ok(Parked {
        id: row.try_get("seq").map_err(db)?,
        message: NewParked {
            queue: QueueName::new(text(row, "queue")?),
            message_id: MessageId::new(text(row, "message_id")?),
            group_id: text(row, "group_id")?,
            dedup_id: DedupId::new(text(row, "dedup_id")?),
            body: text(row, "body")?,
            attributes,
            tenant: optional("tenant_id")?
                .map(|t| TenantId::parse(&t))
                .transpose()
                .map_err(|e| corrupt("tenant id", e))?,
            event_id: optional("event_id")?
                .map(|e| EventId::parse(&e))
                .transpose()
                .map_err(|e| corrupt("event id", e))?,
            event_type: optional("event_type")?
                .map(|t| EventType::parse(&t))
                .transpose()
                .map_err(|e| corrupt("event type", e))?,
            error: text(row, "error")?,
            attempts,
            dead_lettered_at: Timestamp::from_millis(row.try_get("dead_lettered_at").map_err(db)?),
        },
        error_group: ErrorGroupKey { fingerprint, pattern: text(row, "error_pattern")? },
        parked_at: Timestamp::from_millis(row.try_get("parked_at").map_err(db)?),
        state: ParkedState::parse(&text(row, "state")?).ok_or_else(|| corrupt("dead letter state", "unknown"))?,
        purged_at: row.try_get::<Option<i64>, _>("purged_at").map_err(db)?.map(Timestamp::from_millis),
        redriven_by: optional("redriven_by")?
            .map(|j| JobId::parse(&j))
            .transpose()
            .map_err(|e| corrupt("job id", e))?,
    })
}

/// The WHERE clause of `filter` over parked rows, its parameters numbered from
/// `$first`, and the values to bind in order.
pub(super) fn narrowed(filter: &ParkedFilter, first: usize) -> (String, Vec<Value>) {
    let mut clauses = vec![format!("state = ${first}")];
    let mut values = vec![Value::Text(filter.state.as_str().to_owned())];
    let mut add = |clause: &str, value: Value| {
        values.push(value);
        clauses.push(format!("{clause} ${}", first + values.len() - 1));
    };
    if let Some(queue) = &filter.queue {
        add("queue =", Value::Text(queue.to_string()));
    }
    if let Some(tenant) = filter.tenant {
        add("tenant_id =", Value::Text(tenant.to_string()));
    }
    if let Some(event_type) = &filter.event_type {
        add("event_type =", Value::Text(event_type.as_str().to_owned()));
    }
    if let Some(group) = &filter.error_group {
        add("fingerprint =", Value::Text(group.to_string()));
    }
    if let Some(from) = filter.from {
        add("dead_lettered_at >=", Value::Int(from.as_millis()));
    }
    if let Some(to) = filter.to {
        add("dead_lettered_at <", Value::Int(to.as_millis()));
    }
    (clauses.join(" AND "), values)
}

/// A bound parameter of a filter.
pub(super) enum Value {
    Text(String),
    Int(i64),
}

pub(super) fn bind_all<'q>(mut query: super::AnyQuery<'q>, values: Vec<Value>) -> super::AnyQuery<'q> {
    for value in values {
        query = match value {
            Value::Text(text) => query.bind(text),
            Value::Int(n) => query.bind(n),
        };
    }
    query
}

#[async_trait]
impl DeadLetterParking for SqlStore {
    async fn park(&self, message: &NewParked) -> Result<bool, StoreError> {
        let group = ErrorGroupKey::of(&message.error);
        let attributes = serde_json::to_string(&message.attributes).map_err(|e| corrupt("attributes", e))?;
        let attempts = serde_json::to_string(&message.attempts).map_err(|e| corrupt("attempts", e))?;
        let inserted = sqlx::query(
            "INSERT INTO parked_dead_letters (queue, message_id, group_id, dedup_id, body, attributes, tenant_id,
                 event_id, event_type, error, error_pattern, fingerprint, attempts, dead_lettered_at, parked_at, state)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
             ON CONFLICT (queue, message_id) DO NOTHING",
        )
        .bind(message.queue.as_str())
        .bind(message.message_id.as_str())
        .bind(message.group_id.as_str())
        .bind(message.dedup_id.as_str())
        .bind(message.body.as_str())
        .bind(attributes)
        .bind(message.tenant.map(|t| t.to_string()))
        .bind(message.event_id.map(|e| e.to_string()))
        .bind(message.event_type.as_ref().map(|t| t.as_str().to_owned()))
        .bind(message.error.chars().take(MAX_ERROR_CHARS).collect::<String>())
        .bind(group.pattern)
        .bind(group.fingerprint.to_string())
        .bind(attempts)
        .bind(message.dead_lettered_at.as_millis())
        .bind(Timestamp::now().as_millis())
        .bind(ParkedState::Parked.as_str())
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(inserted.rows_affected() == 1)
    }

    async fn parked(&self, filter: &ParkedFilter, before: Option<i64>, limit: u32) -> Result<Vec<Parked>, StoreError> {
        let (clause, values) = narrowed(filter, 3);
        // Ordered as the indexes are (state, <filter>, seq), so a page is a walk of the
        // index from `before` down.
        let sql =
            format!("SELECT {COLUMNS} FROM parked_dead_letters WHERE seq < $1 AND {clause} ORDER BY seq DESC LIMIT $2");
        let query = sqlx::query(&sql).bind(before.unwrap_or(i64::MAX)).bind(i64::from(limit));
        let rows = bind_all(query, values).fetch_all(&self.pool).await.map_err(db)?;
        rows.iter().map(parked_from).collect()
    }

    async fn parked_message(&self, id: i64) -> Result<Option<Parked>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM parked_dead_letters WHERE seq = $1");
        let row = sqlx::query(&sql).bind(id).fetch_optional(&self.pool).await.map_err(db)?;
        row.as_ref().map(parked_from).transpose()
    }

    async fn parked_groups(&self, filter: &ParkedFilter, limit: u32) -> Result<Vec<ErrorGroup>, StoreError> {
        let (clause, values) = narrowed(filter, 2);
        let sql = format!(
            "SELECT g.fingerprint, g.error_pattern, g.n, g.first_at, g.last_at, p.error
             FROM (SELECT fingerprint, error_pattern, COUNT(*) AS n, MIN(dead_lettered_at) AS first_at,
                          MAX(dead_lettered_at) AS last_at, MAX(seq) AS newest
                   FROM parked_dead_letters WHERE {clause}
                   GROUP BY fingerprint, error_pattern) g
             JOIN parked_dead_letters p ON p.seq = g.newest
             ORDER BY g.n DESC, g.newest DESC LIMIT $1"
        );
        let rows =
            bind_all(sqlx::query(&sql).bind(i64::from(limit)), values).fetch_all(&self.pool).await.map_err(db)?;
        rows.iter()
            .map(|row| {
                let count: i64 = row.try_get("n").map_err(db)?;
                Ok(ErrorGroup {
                    key: ErrorGroupKey {
                        fingerprint: Fingerprint::parse(&text(row, "fingerprint")?)
                            .map_err(|e| corrupt("fingerprint", e))?,
                        pattern: text(row, "error_pattern")?,
                    },
                    count: u64::try_from(count).unwrap_or(0),
                    example: text(row, "error")?,
                    first_at: Timestamp::from_millis(row.try_get("first_at").map_err(db)?),
                    last_at: Timestamp::from_millis(row.try_get("last_at").map_err(db)?),
                })
            })
            .collect()
    }

    async fn parked_count(&self, queue: &QueueName) -> Result<u64, StoreError> {
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM parked_dead_letters WHERE state = $1 AND queue = $2")
            .bind(ParkedState::Parked.as_str())
            .bind(queue.as_str())
            .fetch_one(&self.pool)
            .await
            .map_err(db)?;
        Ok(u64::try_from(count).unwrap_or(0))
    }
}
