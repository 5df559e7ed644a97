//! The outbox, as the relay sees it: claim, publish, retry, release, fail, count, wait.

use std::time::Duration;

use async_trait::async_trait;

use super::StoreError;
use crate::clock::Timestamp;
use crate::envelope::EventEnvelope;

/// One outbox row claimed by a relay.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEntry {
    /// Insertion order; the relay publishes each tenant's rows in this order.
    pub seq: i64,
    pub envelope: EventEnvelope,
    /// How many publish attempts failed before this claim.
    pub attempts: u32,
}

/// Contract:
/// - [`Outbox::claim_outbox`] hands each pending row to one claimer at a time, even
///   across processes; a claim lapses after its lease, so a crashed relay's rows are
///   claimed again. Rows of one tenant are returned in `seq` order, and a tenant whose
///   earlier row is claimed by someone else or waiting for a retry is skipped entirely,
///   so one tenant's events are never published out of order.
/// - A row whose stored envelope cannot be read back is failed by the claim itself, with
///   its reason, and holds back nobody.
#[async_trait]
pub trait Outbox: Send + Sync + 'static {
    async fn claim_outbox(&self, limit: u32, lease: Duration) -> Result<Vec<OutboxEntry>, StoreError>;
    async fn mark_published(&self, seqs: &[i64]) -> Result<(), StoreError>;
    /// Releases a claimed row for another attempt no earlier than `not_before`.
    async fn retry_outbox(&self, seq: i64, not_before: Timestamp, error: &str) -> Result<(), StoreError>;
    /// Releases claimed rows untouched (no attempt counted), for rows that waited on an
    /// earlier row of their tenant.
    async fn release_outbox(&self, seqs: &[i64]) -> Result<(), StoreError>;
    /// Gives up on a claimed row: it stays in the outbox for operators, is no longer
    /// claimed, and no longer holds back its tenant's later rows.
    async fn fail_outbox(&self, seq: i64, error: &str) -> Result<(), StoreError>;
    /// Rows not yet published (failed rows excluded).
    async fn outbox_backlog(&self) -> Result<u64, StoreError>;
    /// When the oldest row not yet published (failed rows excluded) was written.
    async fn oldest_pending(&self) -> Result<Option<Timestamp>, StoreError>;
    /// Rows given up on (`fail_outbox`, or unreadable when claimed), for alerts.
    async fn failed_outbox(&self) -> Result<u64, StoreError>;
    /// Resolves when rows may have been added since the previous call returned. It is
    /// level-triggered (a notification that arrives while nobody waits is kept), so a
    /// relay that checks, finds nothing and then waits never misses an insert. Callers
    /// bound it with a timeout as a safety net.
    async fn wait_for_outbox(&self);
}
