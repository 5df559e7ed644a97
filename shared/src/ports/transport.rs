//! The transport port: FIFO topics with filtered subscriptions into FIFO queues, each
//! queue with a dead-letter queue. AWS (SNS FIFO + SQS FIFO) and the embedded engine
//! implement it with the same semantics.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::BoxError;
use crate::clock::Timestamp;

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("no topic named `{0}`")]
    UnknownTopic(String),
    #[error("no queue named `{0}`")]
    UnknownQueue(String),
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("the receipt handle is no longer valid (the message was deleted or received again)")]
    StaleReceipt,
    #[error("the transport is throttling requests")]
    Throttled,
    #[error("the transport is unavailable")]
    Unavailable(#[source] BoxError),
    #[error("transport error")]
    Other(#[source] BoxError),
}

impl TransportError {
    /// Whether the same call may succeed later (throttling, outages).
    pub fn is_retryable(&self) -> bool {
        matches!(self, TransportError::Throttled | TransportError::Unavailable(_))
    }
}

/// One message to publish to a FIFO topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    /// Messages of one group are delivered in publish order, one in-flight batch at a
    /// time. Switchyard's group ids are `<tenant id>:<ordering key>` (see
    /// `EventEnvelope::group_id`); the part before the first `:` is the group's
    /// [`fairness_lane`].
    pub group_id: String,
    /// Messages with a dedup id seen in the last five minutes are accepted and dropped.
    pub dedup_id: String,
    pub body: String,
    /// String attributes; filter policies in attribute scope look at these.
    pub attributes: BTreeMap<String, String>,
}

/// The lane a group shares its turns with: the group id up to its first `:`, or the
/// whole id. The embedded transport serves lanes in turn, so one lane's backlog does not
/// hold back another lane's new messages; SQS FIFO has no such notion and ignores it.
pub fn fairness_lane(group_id: &str) -> &str {
    group_id.split_once(':').map_or(group_id, |(lane, _)| lane)
}

/// At most this many messages per publish, receive or ack.
pub const MAX_BATCH: usize = 10;
/// The largest message (body plus attributes), as SNS and SQS count it.
pub const MAX_MESSAGE_BYTES: usize = 262_144;
/// At most this many attributes per message.
pub const MAX_ATTRIBUTES: usize = 10;

impl OutgoingMessage {
    /// The message's size as SNS and SQS count it: the body plus each attribute's
    /// name, type and value.
    pub fn size(&self) -> usize {
        self.body.len() + self.attributes.iter().map(|(k, v)| k.len() + "String".len() + v.len()).sum::<usize>()
    }

    /// Checks what SNS and SQS would reject, so every backend rejects the same things.
    pub fn validate(&self) -> Result<(), TransportError> {
        let id_ok = |id: &str| !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic());
        if !id_ok(&self.group_id) {
            return Err(TransportError::Invalid("group id must be 1 to 128 printable ASCII characters".into()));
        }
        if !id_ok(&self.dedup_id) {
            return Err(TransportError::Invalid("dedup id must be 1 to 128 printable ASCII characters".into()));
        }
        if self.attributes.len() > MAX_ATTRIBUTES {
            return Err(TransportError::Invalid(format!("at most {MAX_ATTRIBUTES} message attributes")));
        }
        let size = self.size();
        if size > MAX_MESSAGE_BYTES {
            return Err(TransportError::Invalid(format!("message is {size} bytes; the limit is {MAX_MESSAGE_BYTES}")));
        }
        Ok(())
    }
}

/// Checks a publish batch before anything is sent: the batch size (an error for the
/// whole call), each entry, and the contract's rule that a rejected entry rejects its
/// group's later entries. `Ok` entries are the ones to send.
pub fn check_batch(batch: &[OutgoingMessage], limit: usize) -> Result<Vec<Result<(), TransportError>>, TransportError> {
    if batch.is_empty() || batch.len() > limit {
        return Err(TransportError::Invalid(format!("a batch holds 1 to {limit} messages (got {})", batch.len())));
    }
    let mut rejected_groups: Vec<&str> = Vec::new();
    Ok(batch
        .iter()
        .map(|message| {
            if rejected_groups.contains(&message.group_id.as_str()) {
                return Err(TransportError::Invalid(format!(
                    "an earlier message of group `{}` in this batch was rejected",
                    message.group_id
                )));
            }
            message.validate().inspect_err(|_| rejected_groups.push(&message.group_id))
        })
        .collect())
}

/// Options for [`Transport::receive`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiveOptions {
    /// 1 to 10.
    pub max_messages: u32,
    /// Long-poll: how long to wait for a first message (at most 20 s).
    pub wait: Duration,
    /// Overrides the queue's visibility timeout for these messages.
    pub visibility_timeout: Option<Duration>,
}

impl Default for ReceiveOptions {
    fn default() -> Self {
        Self { max_messages: 10, wait: Duration::from_secs(20), visibility_timeout: None }
    }
}

/// Proof of one receipt of a message, used to delete it or change its visibility.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Receipt(pub String);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    pub message_id: String,
    pub receipt: Receipt,
    pub group_id: String,
    pub dedup_id: String,
    pub body: String,
    pub attributes: BTreeMap<String, String>,
    /// 1 on the first delivery.
    pub receive_count: u32,
    /// When the message was sent to this queue.
    pub sent_at: Timestamp,
}

/// A message sitting in a dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub message_id: String,
    pub group_id: String,
    pub dedup_id: String,
    pub body: String,
    pub attributes: BTreeMap<String, String>,
}

impl DeadLetter {
    /// Why the consumer gave up on it, when it was moved by [`Transport::dead_letter`]
    /// (a message moved by the queue's receive limit has none).
    pub fn reason(&self) -> Option<&str> {
        self.attributes.get(DEAD_LETTER_REASON).map(String::as_str)
    }

    /// Its handler's failed runs, oldest first, when it was moved by
    /// [`Transport::dead_letter`]; none when the queue's receive limit moved it.
    pub fn attempts(&self) -> Vec<Attempt> {
        attempts_in(&self.attributes)
    }
}

/// The attempts a dead letter's attributes carry ([`DEAD_LETTER_ATTEMPTS`]); none
/// when it has none or they cannot be read.
pub fn attempts_in(attributes: &BTreeMap<String, String>) -> Vec<Attempt> {
    attributes.get(DEAD_LETTER_ATTEMPTS).and_then(|json| serde_json::from_str(json).ok()).unwrap_or_default()
}

/// One failed run of a message's handler.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub at: Timestamp,
    pub error: String,
}

/// Why a consumer gives up on a message: the reason (one line, for alerts and lists)
/// and each failed run of its handler, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Failure {
    pub reason: String,
    pub attempts: Vec<Attempt>,
}

impl Failure {
    pub fn new(reason: impl Into<String>) -> Self {
        Self { reason: reason.into(), attempts: Vec::new() }
    }
}

/// The attribute [`Transport::dead_letter`] keeps the reason in. Redrive removes it.
pub const DEAD_LETTER_REASON: &str = "dead_letter_reason";
/// The attribute [`Transport::dead_letter`] keeps the attempts in (a JSON array of
/// [`Attempt`]). Redrive removes it.
pub const DEAD_LETTER_ATTEMPTS: &str = "dead_letter_attempts";

/// The attributes of `message` in its dead-letter queue: its own plus the reason and
/// the attempts, cut (and stripped of characters SQS refuses) so the message stays
/// within [`MAX_MESSAGE_BYTES`] and [`MAX_ATTRIBUTES`]. The reason comes first; the
/// oldest attempts are the first to go when there is no room for all.
pub fn dead_letter_attributes(
    body: &str,
    attributes: &BTreeMap<String, String>,
    failure: &Failure,
) -> BTreeMap<String, String> {
    let mut attributes = attributes.clone();
    attributes.remove(DEAD_LETTER_REASON);
    attributes.remove(DEAD_LETTER_ATTEMPTS);
    let size = |attributes: &BTreeMap<String, String>| {
        body.len() + attributes.iter().map(|(k, v)| k.len() + "String".len() + v.len()).sum::<usize>()
    };
    let room = |attributes: &BTreeMap<String, String>, name: &str| {
        MAX_MESSAGE_BYTES.saturating_sub(size(attributes) + name.len() + "String".len())
    };
    let text = one_line(&failure.reason, room(&attributes, DEAD_LETTER_REASON).min(MAX_REASON_BYTES));
    if !text.trim().is_empty() && attributes.len() < MAX_ATTRIBUTES {
        attributes.insert(DEAD_LETTER_REASON.to_owned(), text);
    }
    let mut attempts: Vec<Attempt> = failure
        .attempts
        .iter()
        .map(|a| Attempt { at: a.at, error: one_line(&a.error, MAX_ATTEMPT_ERROR_BYTES) })
        .collect();
    while !attempts.is_empty() && attributes.len() < MAX_ATTRIBUTES {
        let json = serde_json::to_string(&attempts).unwrap_or_default();
        if json.len() <= room(&attributes, DEAD_LETTER_ATTEMPTS) {
            attributes.insert(DEAD_LETTER_ATTEMPTS.to_owned(), json);
            break;
        }
        attempts.remove(0);
    }
    attributes
}

/// `text` on one line (control characters, which SQS refuses in attributes, become
/// spaces), cut to at most `max` bytes on a character boundary.
fn one_line(text: &str, max: usize) -> String {
    let mut line = String::new();
    for c in text.chars().map(|c| if c.is_control() { ' ' } else { c }) {
        if line.len() + c.len_utf8() > max {
            break;
        }
        line.push(c);
    }
    line
}

/// The longest error kept per attempt.
const MAX_ATTEMPT_ERROR_BYTES: usize = 512;

/// The longest reason kept with a dead letter.
const MAX_REASON_BYTES: usize = 1024;

/// Approximate counts for one queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueStats {
    pub visible: u64,
    pub in_flight: u64,
    /// Sent with a delay that has not passed yet.
    pub delayed: u64,
    /// How long the oldest message has been in the queue, where the transport can say
    /// (SQS reports it only as a CloudWatch metric: `None`).
    pub oldest_age: Option<Duration>,
}

/// The transport.
///
/// Contract:
/// - `publish` takes at most [`Transport::publish_limit`] messages (10 on SNS) and
///   answers entry by entry; an entry whose
///   dedup id the topic saw in the last five minutes succeeds without delivering again.
///   Each subscription whose filter policy matches gets its own copy (fan-out). When an
///   entry is rejected, every later entry of the same group in that batch is rejected
///   too, so a group is never published out of order.
/// - Within a group, messages are received in publish order. While a group has a
///   message in flight (received, not deleted, visibility not expired), no later message
///   of that group is handed out; other groups are not held back.
/// - A received message that is not deleted becomes visible again after its visibility
///   timeout, with `receive_count` one higher. A message received `maxReceiveCount`
///   (3) times and not deleted moves to the queue's dead-letter queue on its next
///   receive instead of being delivered.
/// - `ack` deletes; acking an already-deleted message is not an error. Callers use the
///   receipt of the latest receive: an older one may be rejected (`StaleReceipt`) or
///   ignored, depending on the backend.
/// - `dead_letter` moves one received message (by its current receipt) to the queue's
///   dead-letter queue at once, with its group and dedup ids, the reason in the
///   [`DEAD_LETTER_REASON`] attribute and the attempts in [`DEAD_LETTER_ATTEMPTS`]
///   ([`dead_letter_attributes`]): the consumer counts a message's attempts itself
///   and gives up on it without waiting for its receives to run out. On the embedded
///   engine the move is one transaction; on SQS it is a send to the DLQ and then a
///   delete, so a crash between the two leaves the message in both (the DLQ's dedup
///   id drops a second copy sent within five minutes).
/// - Dead letters can be listed (without consuming them), redriven to their source
///   queue (keeping group and dedup ids; a group's redriven messages stay in their old
///   order and are not interleaved with each other) and purged.
/// - `send` puts at most [`MAX_BATCH`] messages straight onto one queue (no topic, no
///   filter policy): the way operators' redrives put a parked message back. It answers
///   entry by entry like `publish`, with the same group rule, and the queue's own dedup
///   window: an entry whose dedup id the queue saw in the last five minutes succeeds
///   without being queued again.
/// - Nothing published and acknowledged is lost across a restart of the process.
#[async_trait]
pub trait Transport: Send + Sync + 'static {
    /// The most messages one `publish` takes: [`MAX_BATCH`] (SNS's `PublishBatch`)
    /// unless the backend takes more in one call.
    fn publish_limit(&self) -> usize {
        MAX_BATCH
    }

    async fn publish(
        &self,
        topic: &str,
        batch: &[OutgoingMessage],
    ) -> Result<Vec<Result<(), TransportError>>, TransportError>;

    /// Sends `batch` (1 to [`MAX_BATCH`] messages) to `queue`, in order.
    async fn send(
        &self,
        queue: &str,
        batch: &[OutgoingMessage],
    ) -> Result<Vec<Result<(), TransportError>>, TransportError>;

    async fn receive(&self, queue: &str, options: ReceiveOptions) -> Result<Vec<ReceivedMessage>, TransportError>;

    async fn ack(&self, queue: &str, receipts: &[Receipt]) -> Result<(), TransportError>;

    async fn change_visibility(&self, queue: &str, receipt: &Receipt, timeout: Duration) -> Result<(), TransportError>;

    async fn dead_letter(
        &self,
        queue: &str,
        message: &ReceivedMessage,
        failure: &Failure,
    ) -> Result<(), TransportError>;

    async fn dead_letters(&self, dlq: &str, max: u32) -> Result<Vec<DeadLetter>, TransportError>;

    /// Moves every message of `dlq` back to the queue it came from; returns how many.
    async fn redrive(&self, dlq: &str) -> Result<u64, TransportError>;

    /// Deletes every message of `queue`; returns how many (approximate on AWS).
    async fn purge(&self, queue: &str) -> Result<u64, TransportError>;

    async fn stats(&self, queue: &str) -> Result<QueueStats, TransportError>;
}
