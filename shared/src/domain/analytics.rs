//! Analytics: batches of product events accepted by `POST /v1/analytics/events`, staged
//! by the analytics worker and written as gzip NDJSON objects.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::clock::Timestamp;
use crate::ids::{AnalyticsBatchId, AnalyticsEventId, TenantId};

/// Events one request may carry.
pub const MAX_BATCH_EVENTS: usize = 500;
/// The largest single event, serialized.
pub const MAX_EVENT_BYTES: usize = 32 * 1024;
const MAX_NAME_CHARS: usize = 200;
const MAX_USER_ID_CHARS: usize = 256;
const HOUR_MILLIS: i64 = 3_600_000;

/// One product event, validated (its JSON is the form events travel in).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AnalyticsEvent {
    pub id: AnalyticsEventId,
    pub name: String,
    /// When it happened on the client (defaults to when it was accepted).
    pub timestamp: Timestamp,
    pub user_id: Option<String>,
    pub properties: Map<String, Value>,
}

/// A problem with one field of one event: (field, message).
pub type FieldIssue = (&'static str, String);

impl AnalyticsEvent {
    /// Parses one event of a request body; `received` stands in for a missing timestamp.
    pub fn parse(value: &Value, received: Timestamp) -> Result<Self, Vec<FieldIssue>> {
        let Some(object) = value.as_object() else {
            return Err(vec![("", "must be a JSON object".into())]);
        };
        let mut issues = Vec::new();
        let name = match object.get("name") {
            Some(Value::String(name))
                if !name.trim().is_empty()
                    && name.chars().count() <= MAX_NAME_CHARS
                    && !name.chars().any(char::is_control) =>
            {
                name.clone()
            }
            Some(Value::String(_)) => {
                issues.push(("name", format!("must be 1 to {MAX_NAME_CHARS} characters without control characters")));
                String::new()
            }
            _ => {
                issues.push(("name", "is required (a string)".into()));
                String::new()
            }
        };
        let timestamp = match object.get("timestamp") {
            None | Some(Value::Null) => received,
            Some(Value::String(text)) => Timestamp::parse_rfc3339(text).unwrap_or_else(|_| {
                issues.push(("timestamp", "must be an RFC 3339 date-time such as 2026-11-27T10:00:00Z".into()));
                received
            }),
            Some(_) => {
                issues.push(("timestamp", "must be an RFC 3339 string".into()));
                received
            }
        };
        let user_id = match object.get("user_id") {
            None | Some(Value::Null) => None,
            Some(Value::String(id)) if !id.is_empty() && id.chars().count() <= MAX_USER_ID_CHARS => Some(id.clone()),
            Some(_) => {
                issues.push(("user_id", format!("must be a string of 1 to {MAX_USER_ID_CHARS} characters")));
                None
            }
        };
        let properties = match object.get("properties") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(map)) => map.clone(),
            Some(_) => {
                issues.push(("properties", "must be a JSON object".into()));
                Map::new()
            }
        };
        if let Some(unknown) =
            object.keys().find(|k| !["name", "timestamp", "user_id", "properties"].contains(&k.as_str()))
        {
            issues.push(("", format!("unknown field `{unknown}` (expected name, timestamp, user_id, properties)")));
        }
        if value.to_string().len() > MAX_EVENT_BYTES {
            issues.push(("", format!("an event must be at most {MAX_EVENT_BYTES} bytes")));
        }
        if !issues.is_empty() {
            return Err(issues);
        }
        Ok(Self { id: AnalyticsEventId::new(), name, timestamp, user_id, properties })
    }

    /// The event as it travels in `analytics.events_accepted`.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

/// The start of the UTC hour `at` falls in: the partition an accepted event is written to.
pub fn hour_of(at: Timestamp) -> Timestamp {
    Timestamp::from_millis(at.as_millis().div_euclid(HOUR_MILLIS) * HOUR_MILLIS)
}

/// A batch as the API accepted it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAnalyticsBatch {
    pub id: AnalyticsBatchId,
    pub event_count: u32,
}

/// A stored batch and how much of it is written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AnalyticsBatch {
    pub id: AnalyticsBatchId,
    pub tenant_id: TenantId,
    pub event_count: u32,
    /// Events of this batch already in a written object.
    pub written_count: u32,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl AnalyticsBatch {
    /// `accepted` (nothing written yet), `writing` (part written) or `written`.
    pub fn status(&self) -> &'static str {
        match self.written_count {
            0 => "accepted",
            n if n < self.event_count => "writing",
            _ => "written",
        }
    }
}

/// One event staged by the worker, waiting to be written: the NDJSON line is final.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedAnalytics {
    pub event_id: AnalyticsEventId,
    pub batch_id: AnalyticsBatchId,
    /// The hour partition (see [`hour_of`]).
    pub hour: Timestamp,
    pub line: String,
}

/// Staged rows claimed for one object: one tenant, one hour partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnalyticsChunk {
    pub tenant: TenantId,
    pub hour: Timestamp,
    /// Store handles of the claimed rows, in staging order.
    pub rows: Vec<i64>,
    pub lines: Vec<String>,
}

/// Accepted against written, for one tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct AnalyticsCounts {
    /// Events the API accepted.
    pub accepted: u64,
    /// Events the worker staged and has not written yet.
    pub staged: u64,
    /// Distinct accepted events that are in a written object.
    pub written: u64,
    /// Rows in written objects; above `written` only when a crash made the worker
    /// write some events twice (find them by `event_id`).
    pub rows_in_objects: u64,
}

impl AnalyticsCounts {
    /// Accepted events neither staged nor written yet: still in the outbox or the queue.
    pub fn in_transit(&self) -> u64 {
        self.accepted.saturating_sub(self.staged + self.written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn received() -> Timestamp {
        Timestamp::parse_rfc3339("2026-11-27T10:30:00Z").unwrap()
    }

    #[test]
    fn parses_an_event_and_defaults_the_timestamp() {
        let event = AnalyticsEvent::parse(&json!({"name": "signup", "user_id": "u1"}), received()).unwrap();
        assert_eq!(event.name, "signup");
        assert_eq!(event.timestamp, received());
        assert_eq!(event.user_id.as_deref(), Some("u1"));
        let dated = AnalyticsEvent::parse(
            &json!({"name": "x", "timestamp": "2026-01-02T03:04:05Z", "properties": {"a": 1}}),
            received(),
        )
        .unwrap();
        assert_eq!(dated.timestamp.to_rfc3339(), "2026-01-02T03:04:05.000Z");
        assert_eq!(dated.properties["a"], 1);
    }

    #[test]
    fn names_every_bad_field() {
        let issues = AnalyticsEvent::parse(
            &json!({"name": "", "timestamp": "yesterday", "user_id": 7, "properties": [], "extra": 1}),
            received(),
        )
        .unwrap_err();
        let fields: Vec<&str> = issues.iter().map(|(f, _)| *f).collect();
        assert_eq!(fields, ["name", "timestamp", "user_id", "properties", ""]);
        assert!(AnalyticsEvent::parse(&json!("signup"), received()).is_err());
        let big = json!({"name": "x", "properties": {"blob": "y".repeat(MAX_EVENT_BYTES)}});
        assert!(AnalyticsEvent::parse(&big, received()).is_err());
    }

    #[test]
    fn hours_and_counts() {
        assert_eq!(hour_of(received()).to_rfc3339(), "2026-11-27T10:00:00.000Z");
        let counts = AnalyticsCounts { accepted: 10, staged: 3, written: 5, rows_in_objects: 6 };
        assert_eq!(counts.in_transit(), 2);
        let batch = AnalyticsBatch {
            id: AnalyticsBatchId::new(),
            tenant_id: TenantId::new(),
            event_count: 2,
            written_count: 1,
            created_at: received(),
            updated_at: received(),
        };
        assert_eq!(batch.status(), "writing");
    }
}
