//! Typed, prefixed identifiers.
//!
//! Every id is a UUIDv7 rendered as `<prefix>_<32 lowercase hex digits>`, for example
//! `ten_0192f3a4b5c6d7e8f9a0b1c2d3e4f5a6`. The prefix makes logs and URLs
//! self-explaining and makes it impossible to pass an event id where a tenant id is
//! expected. UUIDv7 ids sort by creation time.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

/// Why a string is not an id of the expected kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not a valid {kind} id: expected `{prefix}_` followed by 32 hex digits")]
pub struct IdError {
    kind: &'static str,
    prefix: &'static str,
    value: String,
}

macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Uuid);

        impl $name {
            /// The prefix this id carries on the wire, without the underscore.
            pub const PREFIX: &'static str = $prefix;

            /// A new, time-ordered id.
            #[allow(clippy::new_without_default)]
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            /// Wraps an existing UUID (for example one read back from a database).
            pub fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            pub fn as_uuid(&self) -> Uuid {
                self.0
            }

            /// Parses `<prefix>_<32 hex digits>`.
            pub fn parse(value: &str) -> Result<Self, IdError> {
                let error = || IdError { kind: $kind, prefix: $prefix, value: value.chars().take(80).collect() };
                let hex = value
                    .strip_prefix($prefix)
                    .and_then(|rest| rest.strip_prefix('_'))
                    .ok_or_else(error)?;
                if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
                    return Err(error());
                }
                Uuid::try_parse(hex).map(Self).map_err(|_| error())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}_{}", $prefix, self.0.simple())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(deserializer)?;
                Self::parse(&raw).map_err(serde::de::Error::custom)
            }
        }
    };
}

prefixed_id!(
    /// A tenant: one customer application of a deployment.
    TenantId, "ten", "tenant"
);
prefixed_id!(
    /// One event, assigned when the API accepts it; also the transport's dedup id.
    EventId, "evt", "event"
);
prefixed_id!(
    /// One tenant API key (the public half; the secret is never stored).
    ApiKeyId, "key", "API key"
);
prefixed_id!(
    /// One piece of feedback submitted through `POST /v1/feedback`.
    FeedbackId, "fbk", "feedback"
);
prefixed_id!(
    /// One email to one recipient (a campaign fans out to one per recipient).
    EmailId, "eml", "email"
);

prefixed_id!(
    /// One `POST /v1/analytics/events` request (a batch of up to 500 events).
    AnalyticsBatchId, "anb", "analytics batch"
);
prefixed_id!(
    /// One analytics event inside a batch; every written NDJSON row carries it, so a
    /// row written twice after a crash can be found.
    AnalyticsEventId, "aev", "analytics event"
);

prefixed_id!(
    /// One TestFlight invitation (`POST /v1/testflight/invitations`).
    InvitationId, "tfi", "TestFlight invitation"
);

prefixed_id!(
    /// An operator's plan over dead letters: the selection it froze and what confirming
    /// it does.
    PlanId, "pln", "plan"
);
prefixed_id!(
    /// A server-side job an operator started by confirming a plan.
    JobId, "job", "job"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_display_and_parse() {
        let id = TenantId::new();
        let text = id.to_string();
        assert!(text.starts_with("ten_"));
        assert_eq!(text.len(), 36);
        assert_eq!(TenantId::parse(&text), Ok(id));
    }

    #[test]
    fn rejects_other_prefixes_and_bad_hex() {
        let event = EventId::new().to_string();
        assert!(TenantId::parse(&event).is_err());
        assert!(TenantId::parse("ten_").is_err());
        assert!(TenantId::parse("ten_0192F3A4B5C6D7E8F9A0B1C2D3E4F5A6").is_err());
        assert!(TenantId::parse("ten_0192f3a4-b5c6-d7e8-f9a0-b1c2d3e4").is_err());
        let err = FeedbackId::parse("nope").unwrap_err();
        assert!(err.to_string().contains("fbk_"), "{err}");
    }

    #[test]
    fn new_ids_are_time_ordered() {
        let a = EventId::new();
        let b = EventId::new();
        assert!(a < b);
        assert_eq!(a.as_uuid().get_version_num(), 7);
    }

    #[test]
    fn serializes_as_a_string() {
        let id = ApiKeyId::new();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        let back: ApiKeyId = serde_json::from_str(&json).unwrap();
        assert_eq!(back, id);
        assert!(serde_json::from_str::<ApiKeyId>("\"ten_00\"").is_err());
    }
}
