//! Switchyard's shared vocabulary: typed ids, the event envelope, the topology, the
//! event-pattern matcher, configuration types and the port traits that adapters implement.
//!
//! Architecture invariant: this crate performs no I/O and depends on no I/O crate
//! (no sqlx, no AWS SDK, no actix). Everything here is plain data and pure functions,
//! plus trait definitions.

pub mod clock;
pub mod config;
pub mod domain;
pub mod envelope;
pub mod events;
pub mod ids;
pub mod limits;
pub mod object_key;
pub mod pattern;
pub mod ports;
pub mod telemetry;
pub mod topology;

#[cfg(feature = "testkit")]
pub mod testkit;

pub use clock::{Clock, SystemClock, Timestamp};
pub use envelope::{EventEnvelope, EventType, Service, TraceContext};
pub use ids::{
    AnalyticsBatchId, AnalyticsEventId, ApiKeyId, EmailId, EventId, FeedbackId, IdError, InvitationId, JobId, PlanId,
    TenantId,
};
pub use object_key::ObjectKey;
