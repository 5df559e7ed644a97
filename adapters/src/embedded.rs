//! The embedded transport: SNS FIFO + SQS FIFO semantics on one SQLite file.
//!
//! - Topics fan out to subscribed queues whose filter policy matches; raw delivery
//!   keeps the body, otherwise it is wrapped in an SNS-style notification.
//! - Queues keep FIFO order per message group, hold a group back while one of its
//!   messages is in flight, redeliver after the visibility timeout, count receives, and
//!   move a message to the dead-letter queue on the receive after `maxReceiveCount`.
//! - Groups share a queue fairly by lane (the group id up to its first `:`, the tenant
//!   in Switchyard): a lane's backlog does not hold back another lane's new messages.
//! - Every step of a message's life is an index probe, so the cost per message does not
//!   grow with the backlog (see `SCHEMA` and the query-plan test).
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
    check_batch, fairness_lane, with_dead_letter_reason, DeadLetter, OutgoingMessage, QueueStats, Receipt,
    ReceiveOptions, ReceivedMessage, Transport, TransportError, DEAD_LETTER_REASON, MAX_BATCH,
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

/// The layout this code writes, kept in `PRAGMA user_version`. Layout 1 (no version
/// set) had no `groups`, `lanes` or `clocks` and no `messages.turn`; opening it upgrades
/// it in place, keeping every message.
const LAYOUT: i64 = 2;

/// How a queue is laid out, so that every step of a message's life is an index probe
/// whatever the backlog:
///
/// - `messages` holds every queued message; `seq` is the publish order.
/// - `groups` holds one row per message group with messages queued: its head (oldest
///   message) and, while any of its messages is in flight, until when. A receive takes
///   the groups that are not busy in `head_turn` order, then each group's messages in
///   `seq` order, so a group held back by a message in flight costs nothing.
/// - `lanes` and `clocks` make that order fair (start-time fair queuing): a message
///   takes the turn after the later of its lane's last turn and the queue's clock (the
///   latest turn received), so a lane that sends 50,000 messages at once queues them
///   behind each other, and a message of another lane sent meanwhile is next in line.
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
    receipt TEXT,
    turn INTEGER NOT NULL DEFAULT 0
);
-- Listing and purging a queue in publish order.
CREATE INDEX IF NOT EXISTS messages_queue ON messages (queue, seq);
-- A group's messages in order.
CREATE INDEX IF NOT EXISTS messages_group ON messages (queue, group_id, seq);
-- Until when a group is held: its latest in-flight visibility.
CREATE INDEX IF NOT EXISTS messages_held ON messages (queue, group_id, visible_at) WHERE receipt IS NOT NULL;
-- Ack, visibility change and dead-lettering by receipt.
CREATE INDEX IF NOT EXISTS messages_by_receipt ON messages (queue, receipt) WHERE receipt IS NOT NULL;
-- The retention clean-up that runs on every receive.
CREATE INDEX IF NOT EXISTS messages_sent ON messages (queue, sent_at);
CREATE TABLE IF NOT EXISTS groups (
    queue TEXT NOT NULL,
    group_id TEXT NOT NULL,
    head_seq INTEGER NOT NULL,
    head_turn INTEGER NOT NULL,
    busy_until INTEGER,
    PRIMARY KEY (queue, group_id)
);
CREATE INDEX IF NOT EXISTS groups_ready ON groups (queue, head_turn, head_seq) WHERE busy_until IS NULL;
CREATE INDEX IF NOT EXISTS groups_busy ON groups (queue, busy_until) WHERE busy_until IS NOT NULL;
CREATE TABLE IF NOT EXISTS lanes (
    queue TEXT NOT NULL,
    lane TEXT NOT NULL,
    last_turn INTEGER NOT NULL,
    PRIMARY KEY (queue, lane)
);
CREATE TABLE IF NOT EXISTS clocks (
    queue TEXT PRIMARY KEY,
    turn INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS dedup (
    scope TEXT NOT NULL,
    dedup_id TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (scope, dedup_id)
);
CREATE INDEX IF NOT EXISTS dedup_expiry ON dedup (expires_at);
";

/// Layout 1 → 2, before `SCHEMA`: messages get a turn (0: they go first, in publish
/// order) and the index layout 2 replaced goes.
const UPGRADE_FROM_1: &str = "
ALTER TABLE messages ADD COLUMN turn INTEGER NOT NULL DEFAULT 0;
DROP INDEX IF EXISTS messages_in_flight;
DROP INDEX IF EXISTS messages_receipt;
";

/// Layout 1 → 2, after `SCHEMA`: one `groups` row per group with messages.
const REBUILD_GROUPS: &str = "
INSERT OR REPLACE INTO groups (queue, group_id, head_seq, head_turn, busy_until)
SELECT m.queue, m.group_id, m.seq, m.turn,
       (SELECT MAX(h.visible_at) FROM messages h
        WHERE h.queue = m.queue AND h.group_id = m.group_id AND h.receipt IS NOT NULL)
FROM messages m
WHERE m.seq = (SELECT MIN(f.seq) FROM messages f WHERE f.queue = m.queue AND f.group_id = m.group_id);
";

/// The statements on the path of every message, each an index probe (see the test
/// that checks their query plans).
mod sql {
    pub const SIGHT: &str = "INSERT INTO dedup (scope, dedup_id, expires_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (scope, dedup_id) DO UPDATE SET expires_at = excluded.expires_at
         WHERE dedup.expires_at <= ?4";
    /// Bounded: a publish forgets at most this many expired dedup ids.
    pub const FORGET: &str =
        "DELETE FROM dedup WHERE rowid IN (SELECT rowid FROM dedup WHERE expires_at <= ?1 LIMIT 64)";
    pub const TAKE_TURN: &str = "INSERT INTO lanes (queue, lane, last_turn)
         VALUES (?1, ?2, COALESCE((SELECT turn FROM clocks WHERE queue = ?1), 0) + 1)
         ON CONFLICT (queue, lane) DO UPDATE SET last_turn = MAX(last_turn + 1, excluded.last_turn)
         RETURNING last_turn";
    pub const INSERT: &str = "INSERT INTO messages
         (queue, message_id, group_id, dedup_id, body, attributes, sent_at, visible_at, turn)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8) RETURNING seq";
    pub const JOIN_GROUP: &str = "INSERT INTO groups (queue, group_id, head_seq, head_turn) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (queue, group_id) DO NOTHING";
    pub const EXPIRE: &str = "DELETE FROM messages WHERE queue = ?1 AND sent_at < ?2 RETURNING group_id";
    pub const RELEASE: &str =
        "UPDATE groups SET busy_until = NULL WHERE queue = ?1 AND busy_until IS NOT NULL AND busy_until <= ?2";
    pub const READY: &str = "SELECT group_id FROM groups WHERE queue = ?1 AND busy_until IS NULL
         ORDER BY head_turn, head_seq LIMIT ?2";
    pub const GROUP_MESSAGES: &str = "SELECT seq, message_id, group_id, dedup_id, body, attributes, receive_count, turn
         FROM messages WHERE queue = ?1 AND group_id = ?2 ORDER BY seq LIMIT ?3";
    pub const HOLD: &str =
        "UPDATE messages SET receive_count = receive_count + 1, visible_at = ?1, receipt = ?2 WHERE seq = ?3";
    pub const BUSY: &str = "UPDATE groups SET busy_until = ?3 WHERE queue = ?1 AND group_id = ?2";
    pub const ADVANCE: &str = "INSERT INTO clocks (queue, turn) VALUES (?1, ?2)
         ON CONFLICT (queue) DO UPDATE SET turn = MAX(turn, excluded.turn)";
    pub const HEAD: &str = "SELECT seq, turn FROM messages WHERE queue = ?1 AND group_id = ?2 ORDER BY seq LIMIT 1";
    pub const HELD_UNTIL: &str =
        "SELECT MAX(visible_at) FROM messages WHERE queue = ?1 AND group_id = ?2 AND receipt IS NOT NULL";
    pub const SET_GROUP: &str =
        "UPDATE groups SET head_seq = ?3, head_turn = ?4, busy_until = ?5 WHERE queue = ?1 AND group_id = ?2";
    pub const DROP_GROUP: &str = "DELETE FROM groups WHERE queue = ?1 AND group_id = ?2";
    pub const REMOVE: &str = "DELETE FROM messages WHERE seq = ?1";
    pub const ACK: &str = "DELETE FROM messages WHERE queue = ?1 AND receipt = ?2 RETURNING group_id";
    pub const CHANGE_VISIBILITY: &str = "UPDATE messages SET visible_at = ?1
         WHERE queue = ?2 AND receipt = ?3 AND visible_at > ?4 RETURNING group_id";
    pub const HELD: &str = "SELECT seq, message_id, group_id, dedup_id, body, attributes FROM messages
         WHERE queue = ?1 AND receipt = ?2 AND visible_at > ?3";
    pub const NEXT_RELEASE: &str = "SELECT MIN(busy_until) FROM groups WHERE queue = ?1 AND busy_until IS NOT NULL";
}

fn db(error: sqlx::Error) -> TransportError {
    TransportError::Unavailable(Box::new(error))
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// A message as it is written to a queue.
struct NewMessage<'a> {
    message_id: &'a str,
    group_id: &'a str,
    dedup_id: &'a str,
    body: &'a str,
    /// JSON object of String attributes.
    attributes: &'a str,
}

/// A queued message read back, to move it to another queue.
struct Stored {
    seq: i64,
    message_id: String,
    group_id: String,
    dedup_id: String,
    body: String,
    attributes: String,
}

impl Stored {
    fn from_row(row: &SqliteRow) -> Self {
        Self {
            seq: row.get("seq"),
            message_id: row.get("message_id"),
            group_id: row.get("group_id"),
            dedup_id: row.get("dedup_id"),
            body: row.get("body"),
            attributes: row.get("attributes"),
        }
    }

    fn with_attributes<'a>(&'a self, attributes: &'a str) -> NewMessage<'a> {
        NewMessage {
            message_id: &self.message_id,
            group_id: &self.group_id,
            dedup_id: &self.dedup_id,
            body: &self.body,
            attributes,
        }
    }
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
        Self::lay_out(&pool).await?;

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

    /// Creates the layout, or upgrades an older one in place, in one transaction.
    async fn lay_out(pool: &SqlitePool) -> Result<(), sqlx::Error> {
        let version: i64 = sqlx::query_scalar("PRAGMA user_version").fetch_one(pool).await?;
        if version >= LAYOUT {
            return Ok(());
        }
        let had_messages: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'messages')",
        )
        .fetch_one(pool)
        .await?;
        let script = if had_messages {
            format!(
                "BEGIN IMMEDIATE; {UPGRADE_FROM_1} {SCHEMA} {REBUILD_GROUPS} PRAGMA user_version = {LAYOUT}; COMMIT;"
            )
        } else {
            format!("BEGIN IMMEDIATE; {SCHEMA} PRAGMA user_version = {LAYOUT}; COMMIT;")
        };
        sqlx::raw_sql(&script).execute(pool).await?;
        Ok(())
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
        let result = sqlx::query(sql::SIGHT)
            .bind(scope)
            .bind(dedup_id)
            .bind(now.plus(DEDUP_WINDOW).as_millis())
            .bind(now.as_millis())
            .execute(&mut **tx)
            .await
            .map_err(db)?;
        Ok(result.rows_affected() == 1)
    }

    /// Appends `message` to `queue`: it takes its lane's next turn and joins its group.
    async fn enqueue(
        tx: &mut Transaction<'_, Sqlite>,
        queue: &str,
        message: NewMessage<'_>,
        now: Timestamp,
    ) -> Result<(), TransportError> {
        let turn: i64 = sqlx::query_scalar(sql::TAKE_TURN)
            .bind(queue)
            .bind(fairness_lane(message.group_id))
            .fetch_one(&mut **tx)
            .await
            .map_err(db)?;
        let seq: i64 = sqlx::query_scalar(sql::INSERT)
            .bind(queue)
            .bind(message.message_id)
            .bind(message.group_id)
            .bind(message.dedup_id)
            .bind(message.body)
            .bind(message.attributes)
            .bind(now.as_millis())
            .bind(turn)
            .fetch_one(&mut **tx)
            .await
            .map_err(db)?;
        sqlx::query(sql::JOIN_GROUP)
            .bind(queue)
            .bind(message.group_id)
            .bind(seq)
            .bind(turn)
            .execute(&mut **tx)
            .await
            .map_err(db)?;
        Ok(())
    }

    /// Brings `group`'s row up to date after messages left it or changed visibility:
    /// its head, whether it is still held, or no row when it is empty.
    async fn refresh_group(
        tx: &mut Transaction<'_, Sqlite>,
        queue: &str,
        group: &str,
        now: Timestamp,
    ) -> Result<(), TransportError> {
        let head: Option<(i64, i64)> =
            sqlx::query_as(sql::HEAD).bind(queue).bind(group).fetch_optional(&mut **tx).await.map_err(db)?;
        let Some((head_seq, head_turn)) = head else {
            sqlx::query(sql::DROP_GROUP).bind(queue).bind(group).execute(&mut **tx).await.map_err(db)?;
            return Ok(());
        };
        let held_until: Option<i64> =
            sqlx::query_scalar(sql::HELD_UNTIL).bind(queue).bind(group).fetch_one(&mut **tx).await.map_err(db)?;
        sqlx::query(sql::SET_GROUP)
            .bind(queue)
            .bind(group)
            .bind(head_seq)
            .bind(head_turn)
            .bind(held_until.filter(|until| *until > now.as_millis()))
            .execute(&mut **tx)
            .await
            .map_err(db)?;
        Ok(())
    }

    /// Moves a stored message to the end of `to`, with `attributes`.
    async fn move_message(
        tx: &mut Transaction<'_, Sqlite>,
        to: &str,
        message: &Stored,
        attributes: &str,
        now: Timestamp,
    ) -> Result<(), TransportError> {
        Self::enqueue(tx, to, message.with_attributes(attributes), now).await?;
        sqlx::query(sql::REMOVE).bind(message.seq).execute(&mut **tx).await.map_err(db)?;
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
        let max = max as usize;
        let mut tx = self.pool.begin().await.map_err(db)?;
        let mut expired: Vec<String> = sqlx::query_scalar(sql::EXPIRE)
            .bind(queue)
            .bind(now.as_millis().saturating_sub(millis(info.retention)))
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?;
        expired.sort();
        expired.dedup();
        for group in &expired {
            Self::refresh_group(&mut tx, queue, group, now).await?;
        }
        sqlx::query(sql::RELEASE).bind(queue).bind(now.as_millis()).execute(&mut *tx).await.map_err(db)?;

        let held_until = now.plus(visibility).as_millis();
        let mut delivered = Vec::new();
        let mut latest_turn = None;
        let mut moved_to_dlq = false;
        while delivered.len() < max {
            let groups: Vec<String> = sqlx::query_scalar(sql::READY)
                .bind(queue)
                .bind(i64::try_from(max - delivered.len()).unwrap_or(1))
                .fetch_all(&mut *tx)
                .await
                .map_err(db)?;
            if groups.is_empty() {
                break;
            }
            for group in &groups {
                let room = max - delivered.len();
                if room == 0 {
                    break;
                }
                let rows = sqlx::query(sql::GROUP_MESSAGES)
                    .bind(queue)
                    .bind(group)
                    .bind(i64::try_from(room).unwrap_or(1))
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(db)?;
                let mut held = false;
                let mut head_moved = rows.is_empty();
                for row in &rows {
                    let count: i64 = row.get("receive_count");
                    if let Some((dlq, max_receives)) = &info.dead_letter {
                        if count >= i64::from(*max_receives) {
                            let message = Stored::from_row(row);
                            Self::move_message(&mut tx, dlq, &message, &message.attributes, now).await?;
                            head_moved = true;
                            moved_to_dlq = true;
                            continue;
                        }
                    }
                    let receipt = uuid::Uuid::new_v4().simple().to_string();
                    sqlx::query(sql::HOLD)
                        .bind(held_until)
                        .bind(&receipt)
                        .bind(row.get::<i64, _>("seq"))
                        .execute(&mut *tx)
                        .await
                        .map_err(db)?;
                    held = true;
                    latest_turn = latest_turn.max(Some(row.get::<i64, _>("turn")));
                    delivered.push(received_from(row, receipt, count + 1));
                }
                if head_moved {
                    Self::refresh_group(&mut tx, queue, group, now).await?;
                }
                if held {
                    sqlx::query(sql::BUSY)
                        .bind(queue)
                        .bind(group)
                        .bind(held_until)
                        .execute(&mut *tx)
                        .await
                        .map_err(db)?;
                }
            }
        }
        if let Some(turn) = latest_turn {
            sqlx::query(sql::ADVANCE).bind(queue).bind(turn).execute(&mut *tx).await.map_err(db)?;
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

    /// When the earliest held group of `queue` is released.
    async fn next_visible(&self, queue: &str) -> Result<Option<Timestamp>, TransportError> {
        let next: Option<i64> =
            sqlx::query_scalar(sql::NEXT_RELEASE).bind(queue).fetch_one(&self.pool).await.map_err(db)?;
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
                let attributes = serde_json::to_string(&message.attributes).unwrap_or_else(|_| "{}".into());
                for sub in subscriptions.iter().filter(|s| s.policy.matches_message(&message.attributes, &message.body))
                {
                    if !Self::first_sighting(&mut tx, &sub.queue, &message.dedup_id, now).await? {
                        continue;
                    }
                    let body =
                        if sub.raw_delivery { message.body.clone() } else { sns_notification(topic, message, now) };
                    let message_id = uuid::Uuid::new_v4().to_string();
                    let new = NewMessage {
                        message_id: &message_id,
                        group_id: &message.group_id,
                        dedup_id: &message.dedup_id,
                        body: &body,
                        attributes: &attributes,
                    };
                    Self::enqueue(&mut tx, &sub.queue, new, now).await?;
                    woken.push(&sub.queue);
                }
            }
            results.push(Ok(()));
        }
        sqlx::query(sql::FORGET).bind(now.as_millis()).execute(&mut *tx).await.map_err(db)?;
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
        let now = self.clock.now();
        let mut tx = self.pool.begin().await.map_err(db)?;
        for receipt in receipts {
            let group: Option<String> =
                sqlx::query_scalar(sql::ACK).bind(queue).bind(&receipt.0).fetch_optional(&mut *tx).await.map_err(db)?;
            if let Some(group) = group {
                Self::refresh_group(&mut tx, queue, &group, now).await?;
            }
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
        let mut tx = self.pool.begin().await.map_err(db)?;
        let group: String = sqlx::query_scalar(sql::CHANGE_VISIBILITY)
            .bind(now.plus(timeout).as_millis())
            .bind(queue)
            .bind(&receipt.0)
            .bind(now.as_millis())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?
            .ok_or(TransportError::StaleReceipt)?;
        Self::refresh_group(&mut tx, queue, &group, now).await?;
        tx.commit().await.map_err(db)?;
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
        let now = self.clock.now();
        let mut tx = self.pool.begin().await.map_err(db)?;
        let held = sqlx::query(sql::HELD)
            .bind(queue)
            .bind(&message.receipt.0)
            .bind(now.as_millis())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?
            .ok_or(TransportError::StaleReceipt)?;
        let held = Stored::from_row(&held);
        let attributes = with_dead_letter_reason(&held.body, &attributes_from(&held.attributes), reason);
        let attributes = serde_json::to_string(&attributes).unwrap_or_else(|_| "{}".into());
        Self::move_message(&mut tx, dlq, &held, &attributes, now).await?;
        Self::refresh_group(&mut tx, queue, &held.group_id, now).await?;
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
        let now = self.clock.now();
        let mut tx = self.pool.begin().await.map_err(db)?;
        let rows = sqlx::query(
            "SELECT seq, message_id, group_id, dedup_id, body, attributes FROM messages WHERE queue = ?1 ORDER BY seq",
        )
        .bind(dlq)
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
        // Appended in their DLQ order, so each group's messages keep their order.
        for row in &rows {
            let message = Stored::from_row(row);
            let mut attributes = attributes_from(&message.attributes);
            attributes.remove(DEAD_LETTER_REASON);
            let attributes = serde_json::to_string(&attributes).unwrap_or_else(|_| "{}".into());
            Self::move_message(&mut tx, &source, &message, &attributes, now).await?;
        }
        sqlx::query("DELETE FROM groups WHERE queue = ?1").bind(dlq).execute(&mut *tx).await.map_err(db)?;
        tx.commit().await.map_err(db)?;
        if let Some(info) = self.queues.get(&source) {
            info.wake.notify_waiters();
        }
        Ok(u64::try_from(rows.len()).unwrap_or(u64::MAX))
    }

    async fn purge(&self, queue: &str) -> Result<u64, TransportError> {
        self.queue(queue)?;
        let mut tx = self.pool.begin().await.map_err(db)?;
        let deleted =
            sqlx::query("DELETE FROM messages WHERE queue = ?1").bind(queue).execute(&mut *tx).await.map_err(db)?;
        sqlx::query("DELETE FROM groups WHERE queue = ?1").bind(queue).execute(&mut *tx).await.map_err(db)?;
        tx.commit().await.map_err(db)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use shared::clock::ManualClock;
    use shared::topology::{Environment, InstanceName};

    fn topology() -> Topology {
        Topology::new(InstanceName::parse("plans").expect("name"), Environment::Production).expect("topology")
    }

    /// The number of `?N` parameters of `statement`.
    fn parameters(statement: &str) -> usize {
        (1..=9).filter(|n| statement.contains(&format!("?{n}"))).count()
    }

    /// Each statement on a message's path and the index (with the columns it is probed
    /// on) its plan must use.
    const PLANS: [(&str, &[&str]); 21] = [
        (sql::SIGHT, &[]),
        (sql::FORGET, &["dedup_expiry (expires_at<?)", "INTEGER PRIMARY KEY"]),
        (sql::TAKE_TURN, &["clocks_1 (queue=?)"]),
        (sql::INSERT, &[]),
        (sql::JOIN_GROUP, &[]),
        (sql::EXPIRE, &["messages_sent (queue=? AND sent_at<?)"]),
        (sql::RELEASE, &["groups_busy (queue=? AND busy_until>? AND busy_until<?)"]),
        (sql::READY, &["groups_ready (queue=?)"]),
        (sql::GROUP_MESSAGES, &["messages_group (queue=? AND group_id=?)"]),
        (sql::HOLD, &["INTEGER PRIMARY KEY (rowid=?)"]),
        (sql::BUSY, &["groups_1 (queue=? AND group_id=?)"]),
        (sql::ADVANCE, &[]),
        (sql::HEAD, &["messages_group (queue=? AND group_id=?)"]),
        (sql::HELD_UNTIL, &["messages_held (queue=? AND group_id=?)"]),
        (sql::SET_GROUP, &["groups_1 (queue=? AND group_id=?)"]),
        (sql::DROP_GROUP, &["groups_1 (queue=? AND group_id=?)"]),
        (sql::REMOVE, &["INTEGER PRIMARY KEY (rowid=?)"]),
        (sql::ACK, &["messages_by_receipt (queue=? AND receipt=?)"]),
        (sql::CHANGE_VISIBILITY, &["messages_by_receipt (queue=? AND receipt=?)"]),
        (sql::HELD, &["messages_by_receipt (queue=? AND receipt=?)"]),
        (sql::NEXT_RELEASE, &["groups_busy (queue=? AND busy_until>?)"]),
    ];

    /// Every statement on a message's path is an index probe: none scans a table or
    /// sorts, so the work per message does not grow with the backlog.
    #[tokio::test]
    async fn every_statement_on_a_messages_path_uses_an_index() {
        let dir = tempfile::tempdir().expect("tempdir");
        let transport = EmbeddedTransport::open(&dir.path().join("t.db"), &topology(), Arc::new(ManualClock::new()))
            .await
            .expect("open");
        for (statement, indexes) in PLANS {
            let explain = format!("EXPLAIN QUERY PLAN {statement}");
            let mut query = sqlx::query_as::<_, (i64, i64, i64, String)>(&explain);
            for _ in 0..parameters(statement) {
                query = query.bind(Option::<i64>::None);
            }
            let plan: Vec<String> =
                query.fetch_all(&transport.pool).await.expect("plan").into_iter().map(|row| row.3).collect();
            for step in &plan {
                assert!(
                    !(step.contains("TEMP B-TREE") || step.starts_with("SCAN") && step != "SCAN CONSTANT ROW"),
                    "`{statement}` does `{step}`"
                );
            }
            for index in indexes {
                assert!(plan.iter().any(|step| step.contains(index)), "`{statement}` does not use `{index}`: {plan:?}");
            }
        }
    }
}
