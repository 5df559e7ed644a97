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

use std::collections::{BTreeMap, HashMap, HashSet};
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
    check_batch, dead_letter_attributes, fairness_lane, DeadLetter, Failure, OutgoingMessage, QueueStats, Receipt,
    ReceiveOptions, ReceivedMessage, Transport, TransportError, DEAD_LETTER_ATTEMPTS, DEAD_LETTER_REASON, MAX_BATCH,
};
use shared::topology::Topology;
use shared::{Clock, Timestamp};

/// How long a dedup id is remembered.
/// The most messages one publish takes (SNS takes ten a call).
pub const PUBLISH_LIMIT: usize = 100;
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
    /// When the retention clean-up last ran (it runs at most once a second).
    expired_at: std::sync::Mutex<Option<Timestamp>>,
}

impl QueueInfo {
    /// Whether the retention clean-up should run now: at most once a second, since
    /// retention is days and a receive should not pay for it every time.
    fn retention_due(&self, now: Timestamp) -> bool {
        let Ok(mut last) = self.expired_at.lock() else { return true };
        if last.is_some_and(|at| now.as_millis().saturating_sub(at.as_millis()) < 1_000) {
            return false;
        }
        *last = Some(now);
        true
    }
}

/// The embedded transport. Cheap to share behind an `Arc`.
pub struct EmbeddedTransport {
    pool: SqlitePool,
    clock: Arc<dyn Clock>,
    topics: HashMap<String, Vec<Subscription>>,
    queues: HashMap<String, QueueInfo>,
}

/// The layout this code writes, kept in `PRAGMA user_version`. Older layouts are
/// upgraded in place when the file is opened, keeping every message: layout 1 (no
/// version set) had no groups, lanes or turns; layout 2 kept groups up to date from
/// Rust, one statement at a time.
const LAYOUT: i64 = 3;

/// How a queue is laid out, so that every step of a message's life is an index probe
/// whatever the backlog, and costs one statement:
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
/// - Triggers keep `groups`, `lanes` and `clocks` in step with `messages`, inside the
///   statement that changed it: every call into SQLite is a hand-off to its thread,
///   and a message's whole life is a handful of them.
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
    turn INTEGER NOT NULL DEFAULT 0,
    lane TEXT NOT NULL DEFAULT ''
);
-- Listing and purging a queue in publish order.
CREATE INDEX IF NOT EXISTS messages_queue ON messages (queue, seq);
-- A group's messages in order.
CREATE INDEX IF NOT EXISTS messages_group ON messages (queue, group_id, seq);
-- Until when a group is held: its latest in-flight visibility.
CREATE INDEX IF NOT EXISTS messages_held ON messages (queue, group_id, visible_at) WHERE receipt IS NOT NULL;
-- Received messages whose visibility ended: the ones a receive may move to the DLQ.
CREATE INDEX IF NOT EXISTS messages_lapsed ON messages (queue, visible_at) WHERE receipt IS NOT NULL;
-- Ack, visibility change and dead-lettering by receipt.
CREATE INDEX IF NOT EXISTS messages_by_receipt ON messages (queue, receipt) WHERE receipt IS NOT NULL;
-- The retention clean-up that runs on every receive.
CREATE INDEX IF NOT EXISTS messages_sent ON messages (queue, sent_at);
CREATE TABLE IF NOT EXISTS groups (
    queue TEXT NOT NULL,
    group_id TEXT NOT NULL,
    head_seq INTEGER,
    head_turn INTEGER,
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

-- A new message joins its group (as its head when the group is new) and its lane.
CREATE TRIGGER IF NOT EXISTS message_queued AFTER INSERT ON messages BEGIN
    INSERT INTO groups (queue, group_id, head_seq, head_turn) VALUES (NEW.queue, NEW.group_id, NEW.seq, NEW.turn)
        ON CONFLICT (queue, group_id) DO NOTHING;
    INSERT INTO lanes (queue, lane, last_turn) VALUES (NEW.queue, NEW.lane, NEW.turn)
        ON CONFLICT (queue, lane) DO UPDATE SET last_turn = MAX(last_turn, excluded.last_turn);
END;
-- A message that left (acked, moved, expired, purged) hands its group to the next one,
-- or the group goes.
CREATE TRIGGER IF NOT EXISTS message_gone AFTER DELETE ON messages BEGIN
    UPDATE groups SET
        (head_seq, head_turn) = (SELECT seq, turn FROM messages
                                 WHERE queue = OLD.queue AND group_id = OLD.group_id ORDER BY seq LIMIT 1),
        busy_until = (SELECT MAX(visible_at) FROM messages
                      WHERE queue = OLD.queue AND group_id = OLD.group_id AND receipt IS NOT NULL)
    WHERE queue = OLD.queue AND group_id = OLD.group_id;
    DELETE FROM groups WHERE queue = OLD.queue AND group_id = OLD.group_id AND head_seq IS NULL;
END;
-- A received message (or one whose visibility changed) holds its group until its
-- latest in-flight visibility, and moves the queue's clock to its turn.
CREATE TRIGGER IF NOT EXISTS message_held AFTER UPDATE OF visible_at ON messages WHEN NEW.receipt IS NOT NULL BEGIN
    UPDATE groups SET busy_until = (SELECT MAX(visible_at) FROM messages
                                    WHERE queue = NEW.queue AND group_id = NEW.group_id AND receipt IS NOT NULL)
    WHERE queue = NEW.queue AND group_id = NEW.group_id;
    INSERT INTO clocks (queue, turn) VALUES (NEW.queue, NEW.turn)
        ON CONFLICT (queue) DO UPDATE SET turn = MAX(turn, excluded.turn);
END;
";

/// Layout 1 → 2, before `SCHEMA`: messages get a turn (0: they go first, in publish
/// order) and the indexes layout 2 replaced go.
const UPGRADE_FROM_1: &str = "
ALTER TABLE messages ADD COLUMN turn INTEGER NOT NULL DEFAULT 0;
DROP INDEX IF EXISTS messages_in_flight;
DROP INDEX IF EXISTS messages_receipt;
";

/// Layout 2 → 3, before `SCHEMA`: messages know their lane (the group id up to its
/// first `:`, as `fairness_lane` says) and `groups` is built again with nullable heads.
const UPGRADE_FROM_2: &str = "
ALTER TABLE messages ADD COLUMN lane TEXT NOT NULL DEFAULT '';
UPDATE messages SET lane = CASE WHEN instr(group_id, ':') > 0 THEN substr(group_id, 1, instr(group_id, ':') - 1)
                                ELSE group_id END;
DROP TABLE IF EXISTS groups;
";

/// After `SCHEMA` on an upgrade: one `groups` row per group with messages.
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
    /// Records the dedup ids of the JSON array ?2 in scope ?1 until ?3; returns those
    /// not seen within the window (expired at ?4), each once. One statement a batch.
    pub const SIGHT: &str = "INSERT INTO dedup (scope, dedup_id, expires_at)
         SELECT ?1, value, ?3 FROM json_each(?2) WHERE true
         ON CONFLICT (scope, dedup_id) DO UPDATE SET expires_at = excluded.expires_at
         WHERE dedup.expires_at <= ?4
         RETURNING dedup_id";
    /// Bounded: a publish forgets at most this many expired dedup ids.
    pub const FORGET: &str =
        "DELETE FROM dedup WHERE rowid IN (SELECT rowid FROM dedup WHERE expires_at <= ?1 LIMIT 64)";
    /// Appends the messages of the JSON array ?3 (each `[message id, group id, dedup
    /// id, body, attributes, lane]`) to queue ?1 at time ?2, in their order. The n-th
    /// message of a lane in the batch takes the n-th turn after the later of its lane's
    /// last turn and the queue's clock, as n publishes of one message would; the
    /// turns are computed (materialized) before any row is written, because the
    /// `message_queued` trigger moves the lane's last turn with each row.
    pub const ENQUEUE: &str = "WITH batch AS MATERIALIZED (
             SELECT key AS position, value ->> 0 AS message_id, value ->> 1 AS group_id, value ->> 2 AS dedup_id,
                    value ->> 3 AS body, value ->> 4 AS attributes, value ->> 5 AS lane
             FROM json_each(?3)
         ), turns AS MATERIALIZED (
             SELECT b.*, MAX(COALESCE((SELECT last_turn FROM lanes WHERE queue = ?1 AND lane = b.lane), 0),
                             COALESCE((SELECT turn FROM clocks WHERE queue = ?1), 0))
                         + ROW_NUMBER() OVER (PARTITION BY b.lane ORDER BY b.position) AS turn
             FROM batch b
         )
         INSERT INTO messages (queue, message_id, group_id, dedup_id, body, attributes, sent_at, visible_at, lane, turn)
         SELECT ?1, message_id, group_id, dedup_id, body, attributes, ?2, ?2, lane, turn FROM turns
         WHERE true ORDER BY position";
    pub const EXPIRE: &str = "DELETE FROM messages WHERE queue = ?1 AND sent_at < ?2";
    pub const RELEASE: &str =
        "UPDATE groups SET busy_until = NULL WHERE queue = ?1 AND busy_until IS NOT NULL AND busy_until <= ?2";
    /// Received `maxReceiveCount` times and visible again: due for the DLQ.
    pub const DUE: &str = "SELECT seq, message_id, group_id, dedup_id, body, attributes FROM messages
         WHERE queue = ?1 AND receipt IS NOT NULL AND visible_at <= ?2 AND receive_count >= ?3";
    /// The ready groups in turn order, each from its head, at most `?2` messages in all.
    pub const RECEIVE: &str = "UPDATE messages
         SET receive_count = receive_count + 1, visible_at = ?3, receipt = lower(hex(randomblob(16)))
         WHERE seq IN (
             SELECT m.seq
             FROM (SELECT group_id, head_turn, head_seq FROM groups
                   WHERE queue = ?1 AND busy_until IS NULL ORDER BY head_turn, head_seq LIMIT ?2) g
             JOIN messages m ON m.seq IN (SELECT s.seq FROM messages s
                                          WHERE s.queue = ?1 AND s.group_id = g.group_id ORDER BY s.seq LIMIT ?2)
             ORDER BY g.head_turn, g.head_seq, m.seq LIMIT ?2)
         RETURNING seq, message_id, group_id, dedup_id, body, attributes, receive_count, receipt, sent_at";
    pub const REMOVE: &str = "DELETE FROM messages WHERE seq = ?1";
    // By receipt, named: without statistics the planner may prefer a range of
    // `messages_lapsed`, which grows with the messages in flight.
    /// Deletes the messages of up to ten receipts (`?2` on) in one statement.
    pub fn ack(receipts: usize) -> String {
        let list: Vec<String> = (0..receipts).map(|i| format!("?{}", i + 2)).collect();
        format!(
            "DELETE FROM messages INDEXED BY messages_by_receipt WHERE queue = ?1 AND receipt IN ({})",
            list.join(", ")
        )
    }
    pub const CHANGE_VISIBILITY: &str = "UPDATE messages INDEXED BY messages_by_receipt SET visible_at = ?1
         WHERE queue = ?2 AND receipt = ?3 AND visible_at > ?4";
    pub const HELD: &str = "SELECT seq, message_id, group_id, dedup_id, body, attributes
         FROM messages INDEXED BY messages_by_receipt WHERE queue = ?1 AND receipt = ?2 AND visible_at > ?3";
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
        // No ping before each use: the file cannot go away under an open connection,
        // and the ping is a round trip to the connection's thread per statement.
        let pool = SqlitePoolOptions::new().max_connections(1).test_before_acquire(false).connect_with(options).await?;
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
                    expired_at: std::sync::Mutex::new(None),
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
                    expired_at: std::sync::Mutex::new(None),
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
        let mut script = String::from("BEGIN IMMEDIATE;");
        if had_messages {
            if version < 2 {
                script.push_str(UPGRADE_FROM_1);
            }
            script.push_str(UPGRADE_FROM_2);
        }
        script.push_str(SCHEMA);
        if had_messages {
            script.push_str(REBUILD_GROUPS);
        }
        script.push_str(&format!("PRAGMA user_version = {LAYOUT}; COMMIT;"));
        sqlx::raw_sql(&script).execute(pool).await?;
        Ok(())
    }

    fn queue(&self, name: &str) -> Result<&QueueInfo, TransportError> {
        self.queues.get(name).ok_or_else(|| TransportError::UnknownQueue(name.to_owned()))
    }

    /// Records `dedup_ids` in `scope`; for each, whether this is its first sighting
    /// within the window (a repeat within `dedup_ids` is not). One statement.
    async fn first_sightings(
        tx: &mut Transaction<'_, Sqlite>,
        scope: &str,
        dedup_ids: &[&str],
        now: Timestamp,
    ) -> Result<Vec<bool>, TransportError> {
        if dedup_ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(sql::SIGHT)
            .bind(scope)
            .bind(serde_json::to_string(dedup_ids).map_err(|e| TransportError::Invalid(e.to_string()))?)
            .bind(now.plus(DEDUP_WINDOW).as_millis())
            .bind(now.as_millis())
            .fetch_all(&mut **tx)
            .await
            .map_err(db)?;
        let mut first: HashSet<String> = rows.iter().map(|row| row.get::<String, _>(0)).collect();
        Ok(dedup_ids.iter().map(|id| first.remove(*id)).collect())
    }

    /// Appends `messages` to `queue` in their order, each in its lane's next turn. One
    /// statement.
    async fn enqueue(
        tx: &mut Transaction<'_, Sqlite>,
        queue: &str,
        messages: &[NewMessage<'_>],
        now: Timestamp,
    ) -> Result<(), TransportError> {
        if messages.is_empty() {
            return Ok(());
        }
        let rows: Vec<[&str; 6]> = messages
            .iter()
            .map(|m| [m.message_id, m.group_id, m.dedup_id, m.body, m.attributes, fairness_lane(m.group_id)])
            .collect();
        sqlx::query(sql::ENQUEUE)
            .bind(queue)
            .bind(now.as_millis())
            .bind(serde_json::to_string(&rows).map_err(|e| TransportError::Invalid(e.to_string()))?)
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
        Self::enqueue(tx, to, &[message.with_attributes(attributes)], now).await?;
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
        let mut tx = self.pool.begin().await.map_err(db)?;
        if info.retention_due(now) {
            sqlx::query(sql::EXPIRE)
                .bind(queue)
                .bind(now.as_millis().saturating_sub(millis(info.retention)))
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        sqlx::query(sql::RELEASE).bind(queue).bind(now.as_millis()).execute(&mut *tx).await.map_err(db)?;
        let mut moved_to_dlq = false;
        if let Some((dlq, max_receives)) = &info.dead_letter {
            let due = sqlx::query(sql::DUE)
                .bind(queue)
                .bind(now.as_millis())
                .bind(i64::from(*max_receives))
                .fetch_all(&mut *tx)
                .await
                .map_err(db)?;
            for row in &due {
                // Re-inserted so that it takes its place at the end of the DLQ.
                let message = Stored::from_row(row);
                Self::move_message(&mut tx, dlq, &message, &message.attributes, now).await?;
                moved_to_dlq = true;
            }
        }
        let mut rows = sqlx::query(sql::RECEIVE)
            .bind(queue)
            .bind(i64::from(max))
            .bind(now.plus(visibility).as_millis())
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        // Each group's messages in publish order.
        rows.sort_by_key(|row| row.get::<i64, _>("seq"));
        let delivered = rows.iter().map(received_from).collect();
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

fn received_from(row: &SqliteRow) -> ReceivedMessage {
    let receive_count: i64 = row.get("receive_count");
    ReceivedMessage {
        message_id: row.get("message_id"),
        receipt: Receipt(row.get("receipt")),
        group_id: row.get("group_id"),
        dedup_id: row.get("dedup_id"),
        body: row.get("body"),
        attributes: attributes_from(row.get::<&str, _>("attributes")),
        receive_count: u32::try_from(receive_count).unwrap_or(u32::MAX),
        sent_at: Timestamp::from_millis(row.get("sent_at")),
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
    /// A relay's whole claim in one transaction: what SNS takes in ten calls costs one
    /// commit here.
    fn publish_limit(&self) -> usize {
        PUBLISH_LIMIT
    }

    async fn publish(
        &self,
        topic: &str,
        batch: &[OutgoingMessage],
    ) -> Result<Vec<Result<(), TransportError>>, TransportError> {
        let subscriptions = self.topics.get(topic).ok_or_else(|| TransportError::UnknownTopic(topic.to_owned()))?;
        let checks = check_batch(batch, PUBLISH_LIMIT)?;
        let now = self.clock.now();
        let mut results = Vec::with_capacity(batch.len());
        let mut woken: Vec<&str> = Vec::new();
        let mut valid: Vec<&OutgoingMessage> = Vec::with_capacity(batch.len());
        for (message, check) in batch.iter().zip(checks) {
            results.push(check.map(|()| valid.push(message)));
        }
        let mut tx = self.pool.begin().await.map_err(db)?;
        // A batch is one statement per step (the topic's dedup, then per subscribed
        // queue its dedup and its messages), not one per message.
        let ids: Vec<&str> = valid.iter().map(|m| m.dedup_id.as_str()).collect();
        let first = Self::first_sightings(&mut tx, topic, &ids, now).await?;
        let fresh: Vec<(&OutgoingMessage, String)> = valid
            .iter()
            .zip(first)
            .filter(|(_, first)| *first)
            .map(|(m, _)| (*m, serde_json::to_string(&m.attributes).unwrap_or_else(|_| "{}".into())))
            .collect();
        for sub in subscriptions.iter() {
            let wanted: Vec<&(&OutgoingMessage, String)> =
                fresh.iter().filter(|(m, _)| sub.policy.matches_message(&m.attributes, &m.body)).collect();
            let ids: Vec<&str> = wanted.iter().map(|(m, _)| m.dedup_id.as_str()).collect();
            let first = Self::first_sightings(&mut tx, &sub.queue, &ids, now).await?;
            let queued: Vec<(&OutgoingMessage, &str, String, String)> = wanted
                .iter()
                .zip(first)
                .filter(|(_, first)| *first)
                .map(|((m, attributes), _)| {
                    let body = if sub.raw_delivery { m.body.clone() } else { sns_notification(topic, m, now) };
                    (*m, attributes.as_str(), body, uuid::Uuid::new_v4().to_string())
                })
                .collect();
            let messages: Vec<NewMessage<'_>> = queued
                .iter()
                .map(|(m, attributes, body, message_id)| NewMessage {
                    message_id,
                    group_id: &m.group_id,
                    dedup_id: &m.dedup_id,
                    body,
                    attributes,
                })
                .collect();
            Self::enqueue(&mut tx, &sub.queue, &messages, now).await?;
            if !messages.is_empty() {
                woken.push(&sub.queue);
            }
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

    async fn send(
        &self,
        queue: &str,
        batch: &[OutgoingMessage],
    ) -> Result<Vec<Result<(), TransportError>>, TransportError> {
        let info = self.queue(queue)?;
        let checks = check_batch(batch, MAX_BATCH)?;
        let now = self.clock.now();
        let mut results = Vec::with_capacity(batch.len());
        let mut valid: Vec<&OutgoingMessage> = Vec::with_capacity(batch.len());
        for (message, check) in batch.iter().zip(checks) {
            results.push(check.map(|()| valid.push(message)));
        }
        let mut tx = self.pool.begin().await.map_err(db)?;
        let ids: Vec<&str> = valid.iter().map(|m| m.dedup_id.as_str()).collect();
        let first = Self::first_sightings(&mut tx, queue, &ids, now).await?;
        let queued: Vec<(&OutgoingMessage, String, String)> = valid
            .iter()
            .zip(first)
            .filter(|(_, first)| *first)
            .map(|(m, _)| {
                let attributes = serde_json::to_string(&m.attributes).unwrap_or_else(|_| "{}".into());
                (*m, attributes, uuid::Uuid::new_v4().to_string())
            })
            .collect();
        let messages: Vec<NewMessage<'_>> = queued
            .iter()
            .map(|(m, attributes, message_id)| NewMessage {
                message_id,
                group_id: &m.group_id,
                dedup_id: &m.dedup_id,
                body: &m.body,
                attributes,
            })
            .collect();
        Self::enqueue(&mut tx, queue, &messages, now).await?;
        tx.commit().await.map_err(db)?;
        if !messages.is_empty() {
            info.wake.notify_waiters();
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
        if receipts.is_empty() {
            return Ok(());
        }
        let statement = sql::ack(receipts.len());
        let mut query = sqlx::query(&statement).bind(queue);
        for receipt in receipts {
            query = query.bind(&receipt.0);
        }
        query.execute(&self.pool).await.map_err(db)?;
        info.wake.notify_waiters();
        Ok(())
    }

    async fn change_visibility(&self, queue: &str, receipt: &Receipt, timeout: Duration) -> Result<(), TransportError> {
        let info = self.queue(queue)?;
        if timeout > Duration::from_secs(12 * 60 * 60) {
            return Err(TransportError::Invalid("visibility timeout is at most 12 hours".into()));
        }
        let now = self.clock.now();
        let updated = sqlx::query(sql::CHANGE_VISIBILITY)
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

    async fn dead_letter(
        &self,
        queue: &str,
        message: &ReceivedMessage,
        failure: &Failure,
    ) -> Result<(), TransportError> {
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
        let attributes = dead_letter_attributes(&held.body, &attributes_from(&held.attributes), failure);
        let attributes = serde_json::to_string(&attributes).unwrap_or_else(|_| "{}".into());
        Self::move_message(&mut tx, dlq, &held, &attributes, now).await?;
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
            attributes.remove(DEAD_LETTER_ATTEMPTS);
            let attributes = serde_json::to_string(&attributes).unwrap_or_else(|_| "{}".into());
            Self::move_message(&mut tx, &source, &message, &attributes, now).await?;
        }
        tx.commit().await.map_err(db)?;
        if let Some(info) = self.queues.get(&source) {
            info.wake.notify_waiters();
        }
        Ok(u64::try_from(rows.len()).unwrap_or(u64::MAX))
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
                    COALESCE(SUM(CASE WHEN visible_at > ?2 AND receipt IS NOT NULL THEN 1 ELSE 0 END), 0) AS in_flight,
                    COALESCE(SUM(CASE WHEN visible_at > ?2 AND receipt IS NULL THEN 1 ELSE 0 END), 0) AS delayed,
                    MIN(sent_at) AS oldest
             FROM messages WHERE queue = ?1",
        )
        .bind(queue)
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(db)?;
        let count = |column: &str| u64::try_from(row.get::<i64, _>(column)).unwrap_or(0);
        let oldest: Option<i64> = row.get("oldest");
        Ok(QueueStats {
            visible: count("visible"),
            in_flight: count("in_flight"),
            delayed: count("delayed"),
            oldest_age: oldest.map(|sent| Timestamp::from_millis(sent).until(self.clock.now())),
        })
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
    const PLANS: [(&str, &[&str]); 12] = [
        (sql::SIGHT, &[]),
        (sql::FORGET, &["dedup_expiry (expires_at<?)", "INTEGER PRIMARY KEY"]),
        (sql::ENQUEUE, &["lanes_1 (queue=? AND lane=?)", "clocks_1 (queue=?)"]),
        (sql::EXPIRE, &["messages_sent (queue=? AND sent_at<?)"]),
        (sql::RELEASE, &["groups_busy (queue=? AND busy_until>? AND busy_until<?)"]),
        (sql::DUE, &["messages_lapsed (queue=? AND visible_at<?)"]),
        (sql::RECEIVE, &["groups_ready (queue=?)", "messages_group (queue=? AND group_id=?)", "INTEGER PRIMARY KEY"]),
        (sql::REMOVE, &["INTEGER PRIMARY KEY (rowid=?)"]),
        (ACK_OF_THREE, &["messages_by_receipt (queue=? AND receipt=?)"]),
        (sql::CHANGE_VISIBILITY, &["messages_by_receipt (queue=? AND receipt=?)"]),
        (sql::HELD, &["messages_by_receipt (queue=? AND receipt=?)"]),
        (sql::NEXT_RELEASE, &["groups_busy (queue=? AND busy_until>?)"]),
    ];

    const ACK_OF_THREE: &str =
        "DELETE FROM messages INDEXED BY messages_by_receipt WHERE queue = ?1 AND receipt IN (?2, ?3, ?4)";

    #[test]
    fn an_ack_of_three_receipts_is_one_statement() {
        assert_eq!(sql::ack(3), ACK_OF_THREE);
    }

    /// The statements the triggers in `SCHEMA` run, with `NEW.x` and `OLD.x` as
    /// parameters.
    fn trigger_statements() -> Vec<String> {
        let mut statements = Vec::new();
        let mut rest = SCHEMA;
        while let Some(start) = rest.find(" BEGIN\n") {
            let body = &rest[start + " BEGIN\n".len()..];
            let end = body.find("\nEND;").expect("END of a trigger");
            for statement in body[..end].split(';').map(str::trim).filter(|s| !s.is_empty()) {
                let mut text = String::new();
                let mut words = statement.split_inclusive(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.'));
                for word in &mut words {
                    let (token, tail) = word.split_at(
                        word.trim_end_matches(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.')).len(),
                    );
                    if token.starts_with("NEW.") || token.starts_with("OLD.") {
                        text.push_str("?1");
                    } else {
                        text.push_str(token);
                    }
                    text.push_str(tail);
                }
                statements.push(text);
            }
            rest = &body[end..];
        }
        statements
    }

    async fn plan(transport: &EmbeddedTransport, statement: &str) -> Vec<String> {
        let explain = format!("EXPLAIN QUERY PLAN {statement}");
        let mut query = sqlx::query_as::<_, (i64, i64, i64, String)>(&explain);
        for _ in 0..parameters(statement) {
            query = query.bind(Option::<i64>::None);
        }
        let plan: Vec<String> =
            query.fetch_all(&transport.pool).await.expect("plan").into_iter().map(|row| row.3).collect();
        // The receive walks and sorts what it picked: at most ten ready groups (`g`)
        // and at most ten messages of each. A publish walks and sorts its own batch (at
        // most ten messages).
        let bounded: &[&str] = match statement {
            sql::RECEIVE => &["SCAN g", "USE TEMP B-TREE FOR ORDER BY"],
            sql::SIGHT => &["SCAN json_each VIRTUAL TABLE INDEX 1:"],
            sql::ENQUEUE => &[
                "SCAN json_each VIRTUAL TABLE INDEX 1:",
                "SCAN b",
                "SCAN (subquery-",
                "SCAN turns",
                "USE TEMP B-TREE FOR ORDER BY",
            ],
            _ => &[],
        };
        for step in plan.iter().filter(|step| !bounded.iter().any(|b| step.starts_with(b))) {
            assert!(
                !(step.contains("TEMP B-TREE") || step.starts_with("SCAN") && step != "SCAN CONSTANT ROW"),
                "`{statement}` does `{step}`"
            );
        }
        plan
    }

    /// Every statement on a message's path is an index probe: none scans a table or
    /// sorts, so the work per message does not grow with the backlog.
    #[tokio::test]
    async fn every_statement_on_a_messages_path_uses_an_index() {
        let dir = tempfile::tempdir().expect("tempdir");
        let transport = EmbeddedTransport::open(&dir.path().join("t.db"), &topology(), Arc::new(ManualClock::new()))
            .await
            .expect("open");
        for (statement, indexes) in PLANS {
            let plan = plan(&transport, statement).await;
            for index in indexes {
                assert!(plan.iter().any(|step| step.contains(index)), "`{statement}` does not use `{index}`: {plan:?}");
            }
        }
        let triggered = trigger_statements();
        assert_eq!(triggered.len(), 6, "the statements of three triggers: {triggered:#?}");
        for statement in &triggered {
            let plan = plan(&transport, statement).await;
            assert!(
                plan.iter().all(|step| step.starts_with("SEARCH") || step.contains("SUBQUERY")),
                "{statement}: {plan:?}"
            );
        }
    }
}
