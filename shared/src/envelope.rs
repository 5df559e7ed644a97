//! The event envelope: what every service publishes and every worker consumes.
//!
//! Wire form (JSON, stable; new optional fields may be added, existing ones never change
//! meaning without a new `schema_version`):
//!
//! ```json
//! {
//!   "id": "evt_0192f3a4b5c6d7e8f9a0b1c2d3e4f5a6",   // UUIDv7, also the dedup id
//!   "tenant_id": "ten_0192f3a4b5c6d7e8f9a0b1c2d3e4f5a6",
//!   "source": "core-api",                            // core-api | control-plane | adapters
//!   "type": "order.placed",
//!   "occurred_at": "2026-11-26T23:57:08.123Z",
//!   "data": { "...": "..." },                        // always a JSON object
//!   "idempotency_key": "client-key-1",               // omitted when absent
//!   "ordering_key": "fb_0192…",                      // omitted when absent (see below)
//!   "trace_context": { "traceparent": "00-…-…-01" }, // omitted when absent
//!   "schema_version": 1
//! }
//! ```
//!
//! Events with the same tenant and ordering key are delivered in order; others are
//! not ordered against each other, so they are processed in parallel. The message group
//! is [`EventEnvelope::group_id`]: `<tenant id>:<ordering key>`, or the tenant id alone
//! for an event without a key (all of that tenant's keyless events in one order).

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::clock::Timestamp;
use crate::ids::{EventId, TenantId};

/// The current envelope schema version.
pub const SCHEMA_VERSION: u32 = 1;

/// The service that published an event; each has its own FIFO topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Service {
    CoreApi,
    ControlPlane,
    Adapters,
}

impl Service {
    pub const ALL: [Service; 3] = [Service::CoreApi, Service::ControlPlane, Service::Adapters];

    pub fn as_str(self) -> &'static str {
        match self {
            Service::CoreApi => "core-api",
            Service::ControlPlane => "control-plane",
            Service::Adapters => "adapters",
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Service {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Service::ALL
            .into_iter()
            .find(|service| service.as_str() == s)
            .ok_or_else(|| format!("unknown service `{s}` (expected core-api, control-plane or adapters)"))
    }
}

/// Why a string is not an event type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventTypeError {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {max} characters (got {len})", max = EventType::MAX_LEN)]
    TooLong { len: usize },
    #[error(
        "must be dot-separated segments of lowercase letters, digits and underscores, each starting with a letter, with at least two segments (like `order.placed`)"
    )]
    Malformed,
}

/// An event type such as `order.placed`: matches
/// `^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$` and is at most 128 characters.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventType(Cow<'static, str>);

/// Whether `bytes` is well-formed (length aside): dot-separated segments of lowercase
/// letters, digits and underscores, each starting with a letter, at least two of them.
const fn well_formed(bytes: &[u8]) -> bool {
    let mut i = 0;
    let mut segments = 1;
    let mut at_segment_start = true;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'.' {
            if at_segment_start {
                return false;
            }
            segments += 1;
            at_segment_start = true;
        } else if at_segment_start {
            if !b.is_ascii_lowercase() {
                return false;
            }
            at_segment_start = false;
        } else if !(b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
            return false;
        }
        i += 1;
    }
    !at_segment_start && segments >= 2
}

impl EventType {
    pub const MAX_LEN: usize = 128;

    pub fn parse(value: &str) -> Result<Self, EventTypeError> {
        if value.is_empty() {
            return Err(EventTypeError::Empty);
        }
        if value.len() > Self::MAX_LEN {
            return Err(EventTypeError::TooLong { len: value.len() });
        }
        if !well_formed(value.as_bytes()) {
            return Err(EventTypeError::Malformed);
        }
        Ok(Self(Cow::Owned(value.to_owned())))
    }

    /// `<source>.received`: what a verified inbound webhook from `source` becomes.
    pub fn received_from(source: &crate::domain::webhooks::WebhookSource) -> Self {
        // A source is one well-formed segment, so this is a well-formed type.
        Self(Cow::Owned(format!("{source}.received")))
    }

    /// The source of a `<source>.received` type.
    pub fn received_source(&self) -> Option<&str> {
        self.as_str().strip_suffix(".received").filter(|source| !source.contains('.'))
    }

    /// An event type known when the code is compiled (the platform's own, in
    /// `shared::events::types`); a malformed one fails the build.
    pub const fn known(value: &'static str) -> Self {
        assert!(
            !value.is_empty() && value.len() <= Self::MAX_LEN && well_formed(value.as_bytes()),
            "not an event type"
        );
        Self(Cow::Borrowed(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first segment, e.g. `feedback` for `feedback.submitted`.
    pub fn namespace(&self) -> &str {
        self.0.split('.').next().unwrap_or_default()
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventType({})", self.0)
    }
}

impl Serialize for EventType {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for EventType {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// W3C trace context carried with an event so consumers continue the producer's trace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceContext {
    pub traceparent: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracestate: Option<String>,
}

/// One tenant-tagged event. See the module docs for the wire form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventEnvelope {
    pub id: EventId,
    pub tenant_id: TenantId,
    pub source: Service,
    #[serde(rename = "type")]
    pub event_type: EventType,
    pub occurred_at: Timestamp,
    pub data: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_context: Option<TraceContext>,
    /// What the event is ordered by within its tenant (see the module docs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ordering_key: Option<String>,
    pub schema_version: u32,
}

/// The longest ordering key a tenant may send.
pub const MAX_ORDERING_KEY: usize = 256;

/// A tenant's ordering key: 1 to 256 bytes, no control characters.
pub fn parse_ordering_key(raw: &str) -> Result<String, String> {
    if raw.is_empty() || raw.len() > MAX_ORDERING_KEY || raw.chars().any(char::is_control) {
        return Err(format!("must be 1 to {MAX_ORDERING_KEY} bytes without control characters"));
    }
    Ok(raw.to_owned())
}

/// SQS's limit on a message group id.
const MAX_GROUP_ID: usize = 128;

/// `<tenant>:<key>`, or `<tenant>:~<hash of the key>` when the key would pass the group
/// id limit or is not printable ASCII (a literal key never starts with `~`, so the two
/// forms never meet).
fn group_of(tenant: &str, key: &str) -> String {
    let fits = tenant.len() + 1 + key.len() <= MAX_GROUP_ID;
    if fits && !key.starts_with('~') && key.bytes().all(|b| b.is_ascii_graphic()) {
        return format!("{tenant}:{key}");
    }
    use sha2::Digest;
    let digest = sha2::Sha256::digest(key.as_bytes());
    let hash: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("{tenant}:~{hash}")
}

impl EventEnvelope {
    /// The message group: the tenant leads, then the ordering key (see the module docs).
    pub fn group_id(&self) -> String {
        let tenant = self.tenant_id.to_string();
        match &self.ordering_key {
            Some(key) => group_of(&tenant, key),
            None => tenant,
        }
    }

    /// The message the relay publishes for this event: the envelope as the body,
    /// grouped by [`Self::group_id`], deduplicated by event id, with String attributes `tenant_id`,
    /// `event_type`, `event_id` and `traceparent`.
    pub fn to_message(&self) -> crate::ports::OutgoingMessage {
        crate::ports::OutgoingMessage {
            group_id: self.group_id(),
            dedup_id: self.id.to_string(),
            body: self.to_json(),
            attributes: self.attributes(),
        }
    }

    /// The size of [`Self::to_message`] as SNS and SQS count it, without building it
    /// (the API checks it on every write).
    pub fn message_size(&self) -> usize {
        struct Count(usize);
        impl std::io::Write for Count {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0 += bytes.len();
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut body = Count(0);
        if serde_json::to_writer(&mut body, self).is_err() {
            return usize::MAX;
        }
        body.0 + self.attributes().iter().map(|(k, v)| k.len() + "String".len() + v.len()).sum::<usize>()
    }

    fn attributes(&self) -> std::collections::BTreeMap<String, String> {
        let mut attributes = std::collections::BTreeMap::from([
            ("tenant_id".to_owned(), self.tenant_id.to_string()),
            ("event_type".to_owned(), self.event_type.to_string()),
            ("event_id".to_owned(), self.id.to_string()),
        ]);
        if let Some(trace) = &self.trace_context {
            attributes.insert("traceparent".to_owned(), trace.traceparent.clone());
        }
        attributes
    }

    /// A new envelope with a fresh UUIDv7 id, stamped now.
    pub fn new(tenant_id: TenantId, source: Service, event_type: EventType, data: Map<String, Value>) -> Self {
        Self {
            id: EventId::new(),
            tenant_id,
            source,
            event_type,
            occurred_at: Timestamp::now(),
            data,
            idempotency_key: None,
            trace_context: None,
            ordering_key: None,
            schema_version: SCHEMA_VERSION,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"))
    }

    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_message_size_is_the_published_messages() {
        let data = json!({"n": 1e2, "text": "é \" \u{1}", "list": [1, 2.5, null]});
        let mut envelope = EventEnvelope::new(
            TenantId::new(),
            Service::CoreApi,
            EventType::parse("order.placed").expect("type"),
            data.as_object().cloned().expect("object"),
        );
        assert_eq!(envelope.message_size(), envelope.to_message().size());
        envelope.idempotency_key = Some("k-1".into());
        assert_eq!(envelope.message_size(), envelope.to_message().size());
    }

    #[test]
    fn event_type_accepts_dotted_lowercase() {
        for ok in ["order.placed", "a.b", "feedback.submitted", "x1_y.z_2.w"] {
            assert!(EventType::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn event_type_rejects_everything_else() {
        for bad in [
            "",
            "order",
            "Order.placed",
            "order.",
            ".placed",
            "order..placed",
            "1order.placed",
            "order.placed!",
            "order._x",
            "order placed.x",
        ] {
            assert!(EventType::parse(bad).is_err(), "{bad}");
        }
        let long = format!("a.{}", "b".repeat(127));
        assert_eq!(EventType::parse(&long), Err(EventTypeError::TooLong { len: 129 }));
        assert!(EventType::parse(&format!("a.{}", "b".repeat(126))).is_ok());
    }

    #[test]
    fn envelope_wire_form_is_stable() {
        let tenant = TenantId::parse("ten_0192f3a4b5c6d7e8f9a0b1c2d3e4f5a6").unwrap();
        let mut envelope = EventEnvelope::new(
            tenant,
            Service::CoreApi,
            EventType::parse("order.placed").unwrap(),
            json!({"total": 12}).as_object().cloned().unwrap(),
        );
        envelope.id = EventId::parse("evt_0192f3a4b5c6d7e8f9a0b1c2d3e4f5a7").unwrap();
        envelope.occurred_at = Timestamp::from_millis(1_764_201_428_123);
        let value: Value = serde_json::from_str(&envelope.to_json()).unwrap();
        assert_eq!(
            value,
            json!({
                "id": "evt_0192f3a4b5c6d7e8f9a0b1c2d3e4f5a7",
                "tenant_id": "ten_0192f3a4b5c6d7e8f9a0b1c2d3e4f5a6",
                "source": "core-api",
                "type": "order.placed",
                "occurred_at": "2025-11-26T23:57:08.123Z",
                "data": {"total": 12},
                "schema_version": 1
            })
        );
        assert_eq!(EventEnvelope::from_json(&envelope.to_json()).unwrap(), envelope);
    }

    fn event_with_key(key: Option<&str>) -> EventEnvelope {
        let mut envelope = EventEnvelope::new(
            TenantId::new(),
            Service::CoreApi,
            EventType::parse("order.placed").expect("type"),
            Map::new(),
        );
        envelope.ordering_key = key.map(str::to_owned);
        envelope
    }

    #[test]
    fn the_group_is_the_tenant_then_the_ordering_key() {
        let keyless = event_with_key(None);
        assert_eq!(keyless.group_id(), keyless.tenant_id.to_string(), "no key: one order per tenant");
        assert!(!keyless.to_json().contains("ordering_key"), "absent keys are not written");

        let keyed = event_with_key(Some("order-42"));
        let group = keyed.to_message().group_id;
        assert_eq!(group, format!("{}:order-42", keyed.tenant_id));
        assert_eq!(crate::ports::fairness_lane(&group), keyed.tenant_id.to_string(), "the tenant is the lane");
        assert_eq!(EventEnvelope::from_json(&keyed.to_json()).expect("reads back"), keyed);
    }

    #[test]
    fn a_key_that_would_not_fit_a_group_id_is_hashed() {
        for key in ["k".repeat(MAX_ORDERING_KEY), "clé é".to_owned(), "with space".to_owned(), "~abc".to_owned()] {
            let envelope = event_with_key(Some(&key));
            let group = envelope.group_id();
            assert!(group.len() <= MAX_GROUP_ID, "{group}");
            assert!(group.starts_with(&format!("{}:~", envelope.tenant_id)), "{group}");
            assert!(envelope.to_message().validate().is_ok(), "SQS takes it: {group}");
            let mut again = event_with_key(Some(&key));
            again.tenant_id = envelope.tenant_id;
            assert_eq!(again.group_id(), group, "the same key is the same group");
        }
        let mut other = event_with_key(Some("clé è"));
        let first = event_with_key(Some("clé é"));
        other.tenant_id = first.tenant_id;
        assert_ne!(other.group_id(), first.group_id(), "different keys, different groups");
    }

    #[test]
    fn ordering_keys_from_tenants_are_checked() {
        assert!(parse_ordering_key("order-42").is_ok());
        assert!(parse_ordering_key(&"k".repeat(MAX_ORDERING_KEY)).is_ok());
        for bad in ["", "a\nb", &"k".repeat(MAX_ORDERING_KEY + 1)] {
            assert!(parse_ordering_key(bad).is_err(), "{bad:?}");
        }
    }
}
