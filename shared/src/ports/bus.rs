//! The event-bus port: content-based routing (EventBridge). Optional per deployment.

use async_trait::async_trait;

use super::TransportError;
use crate::pattern::EventPattern;

/// One event for the bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusEvent {
    /// The publishing service (`core-api`).
    pub source: String,
    /// The event type (`order.placed`).
    pub detail_type: String,
    /// The event envelope as JSON.
    pub detail: String,
}

/// The event bus.
///
/// Contract: `put_events` takes at most 10 events and answers entry by entry (there is
/// no dedup: an event put twice is delivered twice). `rule_patterns` returns the event
/// pattern of every rule on the bus, so a publisher can skip events no rule wants.
#[async_trait]
pub trait EventBus: Send + Sync + 'static {
    async fn put_events(&self, events: &[BusEvent]) -> Result<Vec<Result<(), TransportError>>, TransportError>;
    async fn rule_patterns(&self) -> Result<Vec<EventPattern>, TransportError>;
}
