//! Feedback: submitted by tenants' users, turned into a ticket and a result object.

use async_trait::async_trait;

use super::StoreError;
use crate::domain::{Feedback, NewFeedback};
use crate::envelope::EventEnvelope;
use crate::ids::{FeedbackId, TenantId};

#[async_trait]
pub trait FeedbackStore: Send + Sync + 'static {
    /// Stores feedback (status `accepted`) and its `feedback.submitted` event.
    async fn submit_feedback(
        &self,
        tenant: TenantId,
        feedback: &NewFeedback,
        envelope: &EventEnvelope,
    ) -> Result<(), StoreError>;
    async fn feedback(&self, tenant: TenantId, id: FeedbackId) -> Result<Option<Feedback>, StoreError>;
    /// Moves feedback from `accepted` to `processing`, or from `failed` (its message
    /// was redriven and a worker has it again); no-op once completed.
    async fn mark_feedback_processing(&self, tenant: TenantId, id: FeedbackId) -> Result<(), StoreError>;
    /// Moves feedback from `accepted` or `processing` to `failed` (its last delivery
    /// failed and it went to the dead-letter queue); a redrive may still complete it.
    async fn mark_feedback_failed(&self, tenant: TenantId, id: FeedbackId) -> Result<(), StoreError>;
}
