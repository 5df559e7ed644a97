//! workers: the outbox relay, the consumer runtime and the workers that consume the
//! platform's queues.
//!
//! Architecture invariant: workers see the store, the transport and the object store
//! only through the port traits in `shared::ports`.

pub mod access_requests;
pub mod alarms;
pub mod alerts;
pub mod analytics;
pub mod consumer;
pub mod email;
pub mod feedback;
pub mod parking;
pub mod redrive;
pub mod relay;
pub mod testflight;
pub mod webhooks;

pub use consumer::{Consumer, ConsumerConfig, ConsumerStats, EventHandler, Handler, HandlerError};
pub use relay::{OutboxRelay, RelayConfig};
pub use shared::config::BusForwarding;
