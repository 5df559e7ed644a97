//! The embedded transport: SNS FIFO + SQS FIFO semantics on one SQLite file.
//!
//! - Topics fan out to subscribed queues whose filter policy matches; raw delivery
//!   keeps the body, otherwise it is wrapped in an SNS-style notification.
//! - Queues keep FIFO order per message group, hold a group back while one of its
//!   messages is in flight, redeliver after the visibility timeout, count receives, and
//!   move a message to the dead-letter queue on the receive after `maxReceiveCount`.
//! - Dedup ids are remembered for five minutes per topic and per queue.
//! - Everything is durable in SQLite (WAL); receivers are woken in-process through a
//!   `Notify` per queue, and otherwise sleep only until the next visibility expiry or
//!   the end of their long poll, so there is no polling delay.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};
use tokio::sync::Notify;

use shared::pattern::FilterPolicy;
use shared::ports::{
    check_batch, with_dead_letter_reason, DeadLetter, OutgoingMessage, QueueStats, Receipt, ReceiveOptions,
    ReceivedMessage, Transport, TransportError, DEAD_LETTER_REASON, MAX_BATCH,
};
use shared::topology::Topology;
use shared::{Clock, Timestamp};

/// How long a dedup id is remembered.
pub const DEDUP_WINDOW: Duration = Duration::from_secs(5 * 60);
/// SQS's longest long poll, kept so that what works here works on AWS.
pub const MAX_WAIT: Duration = Duration::from_secs(20);

#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error("could not create the directory {path} for the embedded transport")]
    Directory {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("could not open the embedded transport database")]
    Database(#[from] sqlx::Error),
}

struct Subscription {
    queue: String,
    policy: FilterPolicy,
    raw_delivery: bool,
}

struct QueueInfo {
    visibility_timeout: Duration,
    retention: Duration,
    /// `(dlq name, maxReceiveCount)` for source queues.
    dead_letter: Option<(String, u32)>,
    /// For dead-letter queues: the queue redrive returns messages to.
    redrive_to: Option<String>,
    wake: Arc<Notify>,
}

/// The embedded transport. Cheap to share behind an `Arc`.
pub struct EmbeddedTransport {
    pool: SqlitePool,
    clock: Arc<dyn Clock>,
    topics: HashMap<String, Vec<Subscription>>,
    queues: HashMap<String, QueueInfo>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    message_id TEXT NOT NULL,
    group_id TEXT NOT NULL,
    dedup_id TEXT NOT NULL,
    body TEXT NOT NULL,
    attributes TEXT NOT NULL,
    sent_at INTEGER NOT NULL,
    visible_at INTEGER NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    receipt TEXT
);
CREATE INDEX IF NOT EXISTS messages_queue ON messages (queue, seq);
CREATE INDEX IF NOT EXISTS messages_in_flight ON messages (queue, visible_at) WHERE receipt IS NOT NULL;
CREATE INDEX IF NOT EXISTS messages_receipt ON messages (receipt);
-- The retention clean-up runs on every receive: without this it scans the queue.
CREATE INDEX IF NOT EXISTS messages_sent ON messages (queue, sent_at);
CREATE TABLE IF NOT EXISTS dedup (
    scope TEXT NOT NULL,
    dedup_id TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (scope, dedup_id)
);
";

fn db(error: sqlx::Error) -> TransportError {
    TransportError::Unavailable(Box::new(error))
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

impl EmbeddedTransport {
    /// Opens (creating if needed) the transport database at `path` and provisions `topology`.
    pub async fn open(path: &Path, topology: &Topology, clock: Arc<dyn Clock>) -> Result<Self, EmbeddedError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|source| EmbeddedError::Directory { path: parent.display().to_string(), source })?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5));
        // One connection: every operation is a short transaction, and one writer avoids
        // SQLite lock contention entirely.
        let pool = SqlitePoolOptions::new().max_connections(1).connect_with(options).await?;
        sqlx::raw_sql(SCHEMA).execute(&pool).await?;

        let mut queues = HashMap::new();
        for spec in &topology.queues {
            queues.insert(
                spec.name.clone(),
                QueueInfo {
                    visibility_timeout: spec.visibility_timeout,
                    retention: spec.retention,
                    dead_letter: Some((spec.dlq_name.clone(), spec.max_receive_count)),
                    redrive_to: None,
                    wake: Arc::new(Notify::new()),
                },
            );
            queues.insert(
                spec.dlq_name.clone(),
                QueueInfo {
                    visibility_timeout: spec.visibility_timeout,
                    retention: spec.dlq_retention,
                    dead_letter: None,
                    redrive_to: Some(spec.name.clone()),
                    wake: Arc::new(Notify::new()),
                },
            );
        }
        let mut topics: HashMap<String, Vec<Subscription>> =
            topology.topics.iter().map(|t| (t.name.clone(), Vec::new())).collect();
        for sub in &topology.subscriptions {
            if let Some(list) = topics.get_mut(&sub.topic) {
                list.push(Subscription {
                    queue: sub.queue.clone(),
                    policy: sub.filter_policy.clone(),
                    raw_delivery: sub.raw_delivery,
                });
            }
        }
        Ok(Self { pool, clock, topics, queues })
    }

    fn queue(&self, name: &str) -> Result<&QueueInfo, TransportError> {
        self.queues.get(name).ok_or_else(|| TransportError::UnknownQueue(name.to_owned()))
    }

    /// Records `dedup_id` in `scope`; false when it was already seen within the window.
    async fn first_sighting(
        tx: &mut Transaction<'_, Sqlite>,
        scope: &str,
        dedup_id: &str,
        now: Timestamp,
    ) -> Result<bool, TransportError> {
        let result = sqlx::query(
            "INSERT INTO dedup (scope, dedup_id, expires_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (scope, dedup_id) DO UPDATE SET expires_at = excluded.expires_at
             WHERE dedup.expires_at <= ?4",
        )
        .bind(scope)
        .bind(dedup_id)
        .bind(now.plus(DEDUP_WINDOW).as_millis())
        .bind(now.as_millis())
        .execute(&mut **tx)
        .await
        .map_err(db)?;
        Ok(result.rows_affected() == 1)
    }

    async fn enqueue(
        tx: &mut Transaction<'_, Sqlite>,
        queue: &str,
        message: &OutgoingMessage,
        body: &str,
        now: Timestamp,
    ) -> Result<(), TransportError> {
        let attributes = serde_json::to_string(&message.attributes).unwrap_or_else(|_| "{}".into());
        sqlx::query(
            "INSERT INTO messages (queue, message_id, group_id, dedup_id, body, attributes, sent_at, visible_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
        )
        .bind(queue)
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(&message.group_id)
        .bind(&message.dedup_id)
        .bind(body)
        .bind(attributes)
        .bind(now.as_millis())
        .execute(&mut **tx)
        .await
        .map_err(db)?;
        Ok(())
    }

    /// One non-blocking receive attempt.
    async fn try_receive(
        &self,
        queue: &str,
        info: &QueueInfo,
        max: u32,
        visibility: Duration,
    ) -> Result<Vec<ReceivedMessage>, TransportError> {
        let now = self.clock.now();
        let mut tx = self.pool.begin().await.map_err(db)?;
        sqlx::query("DELETE FROM messages WHERE queue = ?1 AND sent_at < ?2")
            .bind(queue)
            .bind(now.as_millis().saturating_sub(millis(info.retention)))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        let mut delivered = Vec::new();
        let mut moved_to_dlq = false;
        while delivered.len() < max as usize {
            let wanted = i64::from(max) - i64::try_from(delivered.len()).unwrap_or(0);
            let candidates = sqlx::query(
                "SELECT seq, message_id, group_id, dedup_id, body, attributes, receive_count FROM messages
                 WHERE queue = ?1 AND visible_at <= ?2
                   AND group_id NOT IN (
                       SELECT group_id FROM messages WHERE queue = ?1 AND receipt IS NOT NULL AND visible_at > ?2
                   )
                 ORDER BY seq LIMIT ?3",
            )
            .bind(queue)
            .bind(now.as_millis())
            .bind(wanted)
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?;
            if candidates.is_empty() {
                break;
            }
            for row in &candidates {
                let seq: i64 = row.get("seq");
                let count: i64 = row.get("receive_count");
                if let Some((dlq, max_receives)) = &info.dead_letter {
                    if count >= i64::from(*max_receives) {
                        // Re-inserted so that it takes its place at the end of the DLQ.
                        sqlx::query(
                            "INSERT INTO messages (queue, message_id, group_id, dedup_id, body, attributes, sent_at, visible_at)
                             SELECT ?1, message_id, group_id, dedup_id, body, attributes, ?2, ?2 FROM messages WHERE seq = ?3",
                        )
                        .bind(dlq)
                        .bind(now.as_millis())
                        .bind(seq)
                        .execute(&mut *tx)
                        .await
                        .map_err(db)?;
                        sqlx::query("DELETE FROM messages WHERE seq = ?1")
                            .bind(seq)
                            .execute(&mut *tx)
                            .await
                            .map_err(db)?;
                        moved_to_dlq = true;
                        continue;
                    }
                }
                let receipt = uuid::Uuid::new_v4().simple().to_string();
                sqlx::query("UPDATE messages SET receive_count = receive_count + 1, visible_at = ?1, receipt = ?2 WHERE seq = ?3")
                    .bind(now.plus(visibility).as_millis())
                    .bind(&receipt)
                    .bind(seq)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                delivered.push(received_from(row, receipt, count + 1));
            }
        }
        tx.commit().await.map_err(db)?;
        if moved_to_dlq {
            if let Some((dlq, _)) = &info.dead_letter {
                tracing::warn!(queue, dlq = dlq.as_str(), "moved a message to its dead-letter queue");
                if let Some(dlq_info) = self.queues.get(dlq) {
                    dlq_info.wake.notify_waiters();
                }
            }
        }
        Ok(delivered)
    }

    /// When the earliest in-flight message of `queue` becomes visible again.
    async fn next_visible(&self, queue: &str) -> Result<Option<Timestamp>, TransportError> {
        let next: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(visible_at) FROM messages WHERE queue = ?1 AND receipt IS NOT NULL AND visible_at > ?2",
        )
        .bind(queue)
        .bind(self.clock.now().as_millis())
        .fetch_one(&self.pool)
        .await
        .map_err(db)?;
        Ok(next.map(Timestamp::from_millis))
    }
}

fn attributes_from(text: &str) -> BTreeMap<String, String> {
    serde_json::from_str(text).unwrap_or_default()
}

fn received_from(row: &SqliteRow, receipt: String, receive_count: i64) -> ReceivedMessage {
    ReceivedMessage {
        message_id: row.get("message_id"),
        receipt: Receipt(receipt),
        group_id: row.get("group_id"),
        dedup_id: row.get("dedup_id"),
        body: row.get("body"),
        attributes: attributes_from(row.get::<&str, _>("attributes")),
        receive_count: u32::try_from(receive_count).unwrap_or(u32::MAX),
    }
}

fn sns_notification(topic: &str, message: &OutgoingMessage, now: Timestamp) -> String {
    let attributes: serde_json::Map<String, Value> =
        message.attributes.iter().map(|(k, v)| (k.clone(), json!({"Type": "String", "Value": v}))).collect();
    json!({
        "Type": "Notification",
        "MessageId": uuid::Uuid::new_v4().to_string(),
        "SequenceNumber": now.as_millis().to_string(),
        "TopicArn": format!("arn:switchyard:embedded:local:{topic}"),
        "Message": message.body,
        "Timestamp": now.to_rfc3339(),
        "MessageAttributes": attributes,
    })
    .to_string()
}

#[async_trait]
impl Transport for EmbeddedTransport {
    async fn publish(
        &self,
        topic: &str,
        batch: &[OutgoingMessage],
    ) -> Result<Vec<Result<(), TransportError>>, TransportError> {
        let subscriptions = self.topics.get(topic).ok_or_else(|| TransportError::UnknownTopic(topic.to_owned()))?;
        let checks = check_batch(batch)?;
        let now = self.clock.now();
        let mut results = Vec::with_capacity(batch.len());
        let mut woken: Vec<&str> = Vec::new();
        let mut tx = self.pool.begin().await.map_err(db)?;
        for (message, check) in batch.iter().zip(checks) {
            if let Err(error) = check {
                results.push(Err(error));
                continue;
            }
            if Self::first_sighting(&mut tx, topic, &message.dedup_id, now).await? {
                for sub in subscriptions.iter().filter(|s| s.policy.matches_message(&message.attributes, &message.body))
                {
                    if !Self::first_sighting(&mut tx, &sub.queue, &message.dedup_id, now).await? {
                        continue;
                    }
                    let body =
                        if sub.raw_delivery { message.body.clone() } else { sns_notification(topic, message, now) };
                    Self::enqueue(&mut tx, &sub.queue, message, &body, now).await?;
                    woken.push(&sub.queue);
                }
            }
            results.push(Ok(()));
        }
        tx.commit().await.map_err(db)?;
        for queue in woken {
            if let Some(info) = self.queues.get(queue) {
                info.wake.notify_waiters();
            }
        }
        Ok(results)
    }

    async fn receive(&self, queue: &str, options: ReceiveOptions) -> Result<Vec<ReceivedMessage>, TransportError> {
        let info = self.queue(queue)?;
        if !(1..=10).contains(&options.max_messages) {
            return Err(TransportError::Invalid(format!(
                "max_messages must be 1 to 10 (got {})",
                options.max_messages
            )));
        }
        let wait = options.wait.min(MAX_WAIT);
        let visibility = options.visibility_timeout.unwrap_or(info.visibility_timeout);
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let woken = info.wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let messages = self.try_receive(queue, info, options.max_messages, visibility).await?;
            let now = tokio::time::Instant::now();
            if !messages.is_empty() || now >= deadline {
                return Ok(messages);
            }
            let mut until = deadline;
            if let Some(next) = self.next_visible(queue).await? {
                until = until.min(now + self.clock.now().until(next) + Duration::from_millis(1));
            }
            tokio::select! {
                () = &mut woken => {}
                () = tokio::time::sleep_until(until) => {}
            }
        }
    }

    async fn ack(&self, queue: &str, receipts: &[Receipt]) -> Result<(), TransportError> {
        let info = self.queue(queue)?;
        if receipts.len() > MAX_BATCH {
            return Err(TransportError::Invalid(format!("at most {MAX_BATCH} receipts per call")));
        }
        let mut tx = self.pool.begin().await.map_err(db)?;
        for receipt in receipts {
            sqlx::query("DELETE FROM messages WHERE queue = ?1 AND receipt = ?2")
                .bind(queue)
                .bind(&receipt.0)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        tx.commit().await.map_err(db)?;
        info.wake.notify_waiters();
        Ok(())
    }

    async fn change_visibility(&self, queue: &str, receipt: &Receipt, timeout: Duration) -> Result<(), TransportError> {
        let info = self.queue(queue)?;
        if timeout > Duration::from_secs(12 * 60 * 60) {
            return Err(TransportError::Invalid("visibility timeout is at most 12 hours".into()));
        }
        let now = self.clock.now();
        let updated =
            sqlx::query("UPDATE messages SET visible_at = ?1 WHERE queue = ?2 AND receipt = ?3 AND visible_at > ?4")
                .bind(now.plus(timeout).as_millis())
                .bind(queue)
                .bind(&receipt.0)
                .bind(now.as_millis())
                .execute(&self.pool)
                .await
                .map_err(db)?;
        if updated.rows_affected() == 0 {
            return Err(TransportError::StaleReceipt);
        }
        if timeout.is_zero() {
            info.wake.notify_waiters();
        }
        Ok(())
    }

    async fn dead_letter(&self, queue: &str, message: &ReceivedMessage, reason: &str) -> Result<(), TransportError> {
        let info = self.queue(queue)?;
        let (dlq, _) = info
            .dead_letter
            .as_ref()
            .ok_or_else(|| TransportError::Invalid(format!("`{queue}` has no dead-letter queue")))?;
        let now = self.clock.now().as_millis();
        let mut tx = self.pool.begin().await.map_err(db)?;
        let held =
            sqlx::query("SELECT body, attributes FROM messages WHERE queue = ?1 AND receipt = ?2 AND visible_at > ?3")
                .bind(queue)
                .bind(&message.receipt.0)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?
                .ok_or(TransportError::StaleReceipt)?;
        let attributes =
            with_dead_letter_reason(held.get("body"), &attributes_from(held.get::<&str, _>("attributes")), reason);
        sqlx::query(
            "INSERT INTO messages (queue, message_id, group_id, dedup_id, body, attributes, sent_at, visible_at)
             SELECT ?1, message_id, group_id, dedup_id, body, ?2, ?3, ?3 FROM messages WHERE queue = ?4 AND receipt = ?5",
        )
        .bind(dlq)
        .bind(serde_json::to_string(&attributes).unwrap_or_else(|_| "{}".into()))
        .bind(now)
        .bind(queue)
        .bind(&message.receipt.0)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        sqlx::query("DELETE FROM messages WHERE queue = ?1 AND receipt = ?2")
            .bind(queue)
            .bind(&message.receipt.0)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        info.wake.notify_waiters();
        if let Some(dlq_info) = self.queues.get(dlq) {
            dlq_info.wake.notify_waiters();
        }
        Ok(())
    }

    async fn dead_letters(&self, dlq: &str, max: u32) -> Result<Vec<DeadLetter>, TransportError> {
        self.queue(dlq)?;
        let rows = sqlx::query(
            "SELECT message_id, group_id, dedup_id, body, attributes FROM messages WHERE queue = ?1 ORDER BY seq LIMIT ?2",
        )
        .bind(dlq)
        .bind(i64::from(max))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Ok(rows
            .iter()
            .map(|row| DeadLetter {
                message_id: row.get("message_id"),
                group_id: row.get("group_id"),
                dedup_id: row.get("dedup_id"),
                body: row.get("body"),
                attributes: attributes_from(row.get::<&str, _>("attributes")),
            })
            .collect())
    }

    async fn redrive(&self, dlq: &str) -> Result<u64, TransportError> {
        let source = self
            .queue(dlq)?
            .redrive_to
            .clone()
            .ok_or_else(|| TransportError::Invalid(format!("`{dlq}` is not a dead-letter queue")))?;
        let now = self.clock.now().as_millis();
        let mut tx = self.pool.begin().await.map_err(db)?;
        // Appended in their DLQ order, so each group's messages keep their order and stay together.
        let moved = sqlx::query(
            "INSERT INTO messages (queue, message_id, group_id, dedup_id, body, attributes, sent_at, visible_at)
             SELECT ?1, message_id, group_id, dedup_id, body, json_remove(attributes, '$.' || ?4), ?2, ?2
             FROM messages WHERE queue = ?3 ORDER BY seq",
        )
        .bind(&source)
        .bind(now)
        .bind(dlq)
        .bind(DEAD_LETTER_REASON)
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected();
        sqlx::query("DELETE FROM messages WHERE queue = ?1").bind(dlq).execute(&mut *tx).await.map_err(db)?;
        tx.commit().await.map_err(db)?;
        if let Some(info) = self.queues.get(&source) {
            info.wake.notify_waiters();
        }
        Ok(moved)
    }

    async fn purge(&self, queue: &str) -> Result<u64, TransportError> {
        self.queue(queue)?;
        let deleted =
            sqlx::query("DELETE FROM messages WHERE queue = ?1").bind(queue).execute(&self.pool).await.map_err(db)?;
        Ok(deleted.rows_affected())
    }

    async fn stats(&self, queue: &str) -> Result<QueueStats, TransportError> {
        self.queue(queue)?;
        let now = self.clock.now().as_millis();
        let row = sqlx::query(
            "SELECT COALESCE(SUM(CASE WHEN visible_at <= ?2 THEN 1 ELSE 0 END), 0) AS visible,
                    COALESCE(SUM(CASE WHEN visible_at > ?2 AND receipt IS NOT NULL THEN 1 ELSE 0 END), 0) AS in_flight
             FROM messages WHERE queue = ?1",
        )
        .bind(queue)
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(db)?;
        let count = |column: &str| u64::try_from(row.get::<i64, _>(column)).unwrap_or(0);
        Ok(QueueStats { visible: count("visible"), in_flight: count("in_flight") })
    }
}
