//! Analytics: accepted batches, staged events, and the objects they are written to.

use std::time::Duration;

use async_trait::async_trait;

use super::StoreError;
use crate::clock::Timestamp;
use crate::domain::analytics::{AnalyticsBatch, AnalyticsChunk, AnalyticsCounts, NewAnalyticsBatch};
use crate::envelope::EventEnvelope;
use crate::ids::{AnalyticsBatchId, TenantId};

/// Events are staged through the inbox transaction ([`super::Effects::stage_analytics`]).
#[async_trait]
pub trait AnalyticsStore: Send + Sync + 'static {
    /// Stores an analytics batch (its events travel in `envelopes`, one per chunk) with
    /// those envelopes' outbox rows, in one transaction.
    async fn submit_analytics(
        &self,
        tenant: TenantId,
        batch: &NewAnalyticsBatch,
        envelopes: &[EventEnvelope],
    ) -> Result<(), StoreError>;
    async fn analytics_batch(
        &self,
        tenant: TenantId,
        id: AnalyticsBatchId,
    ) -> Result<Option<AnalyticsBatch>, StoreError>;
    /// Accepted, staged and written analytics events of a tenant (reconciliation).
    async fn analytics_counts(&self, tenant: TenantId) -> Result<AnalyticsCounts, StoreError>;
    /// Operator-level: claims up to `max_rows` staged analytics rows of one tenant and
    /// hour partition that is due: it holds at least `max_rows` unclaimed rows, or its
    /// oldest unclaimed row was staged at or before `staged_before`. `None` when nothing
    /// is due. The claim lapses after `lease` (a writer that crashed is replaced; its
    /// rows may then be written twice, each row carrying its event id).
    async fn claim_analytics(
        &self,
        max_rows: u32,
        staged_before: Timestamp,
        lease: Duration,
    ) -> Result<Option<AnalyticsChunk>, StoreError>;
    /// Records that `chunk` was written to the object `key`: its rows leave staging and
    /// count as written, and the object counts its rows for reconciliation.
    async fn record_analytics_object(&self, chunk: &AnalyticsChunk, key: &str) -> Result<(), StoreError>;
}
