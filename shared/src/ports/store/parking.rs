//! Dead letters parked in the store. Each dead-letter queue is drained into the store
//! as messages arrive (SQS offers no way to look at a message without receiving it,
//! which counts toward its receives and hides it from everyone else), so operators
//! browse, group, redrive and purge parked copies, and listing changes nothing.

use std::collections::BTreeMap;

use async_trait::async_trait;
use sha2::{Digest, Sha256};

use super::{DedupId, MessageId, ParkedState, QueueName, StoreError};
use crate::clock::Timestamp;
use crate::envelope::EventType;
use crate::ids::{EventId, JobId, TenantId};
use crate::ports::Attempt;

/// A message taken off a dead-letter queue, to park.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewParked {
    /// The queue the message failed in (not its dead-letter queue).
    pub queue: QueueName,
    /// The dead-letter queue's id of the message: parking it again (a crash between
    /// parking and deleting it from the dead-letter queue) changes nothing.
    pub message_id: MessageId,
    pub group_id: String,
    pub dedup_id: DedupId,
    pub body: String,
    pub attributes: BTreeMap<String, String>,
    /// From the envelope in the body, when it can be read.
    pub tenant: Option<TenantId>,
    pub event_id: Option<EventId>,
    pub event_type: Option<EventType>,
    /// Why the consumer gave up (or why nobody knows: moved by the receive limit).
    pub error: String,
    /// Each failed run of the handler, oldest first; empty when the queue's receive
    /// limit moved it.
    pub attempts: Vec<Attempt>,
    pub dead_lettered_at: Timestamp,
}

/// A parked dead letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parked {
    /// Its number in the store: newer ones have larger numbers.
    pub id: i64,
    pub message: NewParked,
    pub error_group: ErrorGroupKey,
    pub parked_at: Timestamp,
    pub state: ParkedState,
    /// When it was purged (restorable for the retention period after).
    pub purged_at: Option<Timestamp>,
    /// The job that sent it back.
    pub redriven_by: Option<JobId>,
}

/// What a listing of parked dead letters is narrowed to; every field left `None`
/// matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParkedFilter {
    pub queue: Option<QueueName>,
    pub tenant: Option<TenantId>,
    pub event_type: Option<EventType>,
    pub error_group: Option<Fingerprint>,
    /// Dead-lettered at or after.
    pub from: Option<Timestamp>,
    /// Dead-lettered before.
    pub to: Option<Timestamp>,
    /// Parked (the default), purged or redriven ones.
    pub state: ParkedState,
}

/// Parked dead letters whose errors differ only in ids, numbers and quoted values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorGroup {
    pub key: ErrorGroupKey,
    pub count: u64,
    /// The newest error of the group, as it was.
    pub example: String,
    pub first_at: Timestamp,
    pub last_at: Timestamp,
}

/// An error's group: its pattern (the error with ids, numbers and quoted values
/// replaced) and that pattern's fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorGroupKey {
    pub fingerprint: Fingerprint,
    pub pattern: String,
}

/// 16 lowercase hex digits naming an error pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(String);

impl Fingerprint {
    /// Accepts exactly what [`ErrorGroupKey::of`] produces.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.len() == 16 && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            Ok(Self(text.to_owned()))
        } else {
            Err("an error group's fingerprint is 16 lowercase hex digits".into())
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The longest pattern kept (the fingerprint covers the whole of it).
const MAX_PATTERN_CHARS: usize = 300;

impl ErrorGroupKey {
    /// The group of `error`: the consumer's "(after N attempts)" ending is dropped;
    /// quoted values become `"…"`, words with a digit in them (ids, numbers, times)
    /// `#`, and e-mail addresses `<email>`; runs of spaces one space.
    pub fn of(error: &str) -> Self {
        let error = match error.rfind(" (after ") {
            Some(at) if error.ends_with(')') => &error[..at],
            _ => error,
        };
        let mut pattern = String::new();
        let mut chars = error.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '"' | '\'' | '`' => {
                    // A quote with its closing partner on the same error is a value.
                    let rest: String = chars.clone().collect();
                    if let Some(end) = rest.find(c) {
                        pattern.push(c);
                        pattern.push('…');
                        pattern.push(c);
                        for _ in 0..=rest[..end].chars().count() {
                            chars.next();
                        }
                    } else {
                        pattern.push(c);
                    }
                }
                c if c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '@' | '+') => {
                    let mut word = String::from(c);
                    while let Some(&next) = chars.peek() {
                        if next.is_alphanumeric() || matches!(next, '_' | '-' | '.' | '@' | '+') {
                            word.push(next);
                            chars.next();
                        } else {
                            break;
                        }
                    }
                    let trailing_dots = word.len() - word.trim_end_matches('.').len();
                    let core = &word[..word.len() - trailing_dots];
                    if core.contains('@') {
                        pattern.push_str("<email>");
                    } else if core.chars().any(|c| c.is_ascii_digit()) {
                        pattern.push('#');
                    } else {
                        pattern.push_str(core);
                    }
                    pattern.push_str(&".".repeat(trailing_dots));
                }
                c if c.is_whitespace() || c.is_control() => {
                    if !pattern.ends_with(' ') {
                        pattern.push(' ');
                    }
                }
                c => pattern.push(c),
            }
        }
        let pattern = pattern.trim();
        let digest = Sha256::digest(pattern.as_bytes());
        let fingerprint = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        Self { fingerprint: Fingerprint(fingerprint), pattern: pattern.chars().take(MAX_PATTERN_CHARS).collect() }
    }
}

/// Operator-level: the parked dead letters.
#[async_trait]
pub trait DeadLetterParking: Send + Sync + 'static {
    /// Parks `message`; false when it was parked before (same queue and message id),
    /// in which case nothing changes.
    async fn park(&self, message: &NewParked) -> Result<bool, StoreError>;

    /// Parked dead letters matching `filter`, newest first, numbered below `before`
    /// (none: from the newest), at most `limit`.
    async fn parked(&self, filter: &ParkedFilter, before: Option<i64>, limit: u32) -> Result<Vec<Parked>, StoreError>;

    /// One parked dead letter.
    async fn parked_message(&self, id: i64) -> Result<Option<Parked>, StoreError>;

    /// The error groups of the parked dead letters matching `filter`, largest first,
    /// at most `limit`.
    async fn parked_groups(&self, filter: &ParkedFilter, limit: u32) -> Result<Vec<ErrorGroup>, StoreError>;

    /// How many dead letters of `queue` are parked.
    async fn parked_count(&self, queue: &QueueName) -> Result<u64, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::{ErrorGroupKey, Fingerprint};

    #[test]
    fn errors_that_differ_in_values_share_a_group() {
        let a = ErrorGroupKey::of(
            "attempt failed: SendGrid answered 503 for evt_01a2b3c4 to 'ana@example.com' (after 3 attempts)",
        );
        let b = ErrorGroupKey::of("attempt failed: SendGrid answered 502 for evt_99ffee00 to 'bob@example.org'");
        assert_eq!(a, b);
        assert_eq!(a.pattern, "attempt failed: SendGrid answered # for # to '…'");
        let c = ErrorGroupKey::of("attempt failed: Zendesk answered 503 for evt_01a2b3c4");
        assert_ne!(a.fingerprint, c.fingerprint, "another provider is another group");
        assert_eq!(ErrorGroupKey::of("user ana@example.com unknown.").pattern, "user <email> unknown.");
        assert_eq!(ErrorGroupKey::of("a  \n b").pattern, "a b");
        assert_eq!(ErrorGroupKey::of("unclosed \"quote").pattern, "unclosed \"quote");
    }

    #[test]
    fn fingerprints_parse_only_in_their_own_shape() {
        let key = ErrorGroupKey::of("boom");
        assert_eq!(Fingerprint::parse(key.fingerprint.as_str()), Ok(key.fingerprint.clone()));
        for bad in ["", "ABCDEF0123456789", "0123456789abcde", "0123456789abcdefg", "zzzzzzzzzzzzzzzz"] {
            assert!(Fingerprint::parse(bad).is_err(), "{bad}");
        }
    }
}
