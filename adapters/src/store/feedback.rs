//! Feedback rows and their statuses.

use async_trait::async_trait;
use serde_json::{Map, Value};
use sqlx::any::AnyRow;
use sqlx::Row;

use shared::domain::{EmailAddress, Feedback, FeedbackMessage, FeedbackStatus, NewFeedback, Rating};
use shared::ports::{FeedbackStore, StoreError};
use shared::{EventEnvelope, EventId, FeedbackId, TenantId, Timestamp};

use super::outbox::insert_outbox;
use super::{check_envelope, corrupt, db, text, SqlStore, Table};

fn feedback_from(row: &AnyRow) -> Result<Feedback, StoreError> {
    let rating: Option<i64> = row.try_get("rating").map_err(db)?;
    let email: Option<String> = row.try_get("contact_email").map_err(db)?;
    let metadata: Map<String, Value> =
        serde_json::from_str(&text(row, "metadata")?).map_err(|e| corrupt("feedback metadata", e))?;
    let status = text(row, "status")?;
    Ok(Feedback {
        id: FeedbackId::parse(&text(row, "id")?).map_err(|e| corrupt("feedback id", e))?,
        tenant_id: TenantId::parse(&text(row, "tenant_id")?).map_err(|e| corrupt("tenant id", e))?,
        event_id: EventId::parse(&text(row, "event_id")?).map_err(|e| corrupt("event id", e))?,
        rating: rating.map(Rating::parse).transpose().map_err(|e| corrupt("rating", e))?,
        message: FeedbackMessage::parse(&text(row, "message")?).map_err(|e| corrupt("message", e))?,
        contact_email: email.as_deref().map(EmailAddress::parse).transpose().map_err(|e| corrupt("email", e))?,
        metadata,
        status: FeedbackStatus::parse(&status).ok_or_else(|| corrupt("status", &status))?,
        result_key: row.try_get("result_key").map_err(db)?,
        created_at: Timestamp::from_millis(row.try_get("created_at").map_err(db)?),
        updated_at: Timestamp::from_millis(row.try_get("updated_at").map_err(db)?),
    })
}

#[async_trait]
impl FeedbackStore for SqlStore {
    async fn submit_feedback(
        &self,
        tenant: TenantId,
        feedback: &NewFeedback,
        envelope: &EventEnvelope,
    ) -> Result<(), StoreError> {
        check_envelope(tenant, envelope)?;
        let now = Timestamp::now().as_millis();
        let mut tx = self.pool.begin().await.map_err(db)?;
        sqlx::query(
            "INSERT INTO feedback (tenant_id, id, event_id, rating, message, contact_email, metadata, status, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
        )
        .bind(tenant.to_string())
        .bind(feedback.id.to_string())
        .bind(envelope.id.to_string())
        .bind(feedback.rating.map(|r| i64::from(r.value())))
        .bind(feedback.message.as_str())
        .bind(feedback.contact_email.as_ref().map(|e| e.as_str().to_owned()))
        .bind(Value::Object(feedback.metadata.clone()).to_string())
        .bind(FeedbackStatus::Accepted.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        insert_outbox(&mut tx, envelope).await?;
        self.writer.commit_with_outbox(tx).await
    }

    async fn feedback(&self, tenant: TenantId, id: FeedbackId) -> Result<Option<Feedback>, StoreError> {
        let row = sqlx::query(
            "SELECT tenant_id, id, event_id, rating, message, contact_email, metadata, status, result_key, created_at, updated_at
             FROM feedback WHERE tenant_id = $1 AND id = $2",
        )
        .bind(tenant.to_string())
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.as_ref().map(feedback_from).transpose()
    }

    async fn mark_feedback_processing(&self, tenant: TenantId, id: FeedbackId) -> Result<(), StoreError> {
        self.transition(
            Table::Feedback,
            tenant,
            &id.to_string(),
            FeedbackStatus::Accepted.as_str(),
            FeedbackStatus::Processing.as_str(),
        )
        .await?;
        Ok(())
    }

    async fn mark_feedback_failed(&self, tenant: TenantId, id: FeedbackId) -> Result<(), StoreError> {
        for from in [FeedbackStatus::Processing, FeedbackStatus::Accepted] {
            if self
                .transition(Table::Feedback, tenant, &id.to_string(), from.as_str(), FeedbackStatus::Failed.as_str())
                .await?
            {
                break;
            }
        }
        Ok(())
    }
}
