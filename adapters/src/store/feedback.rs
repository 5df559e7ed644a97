//! Feedback rows and their statuses.

use async_trait::async_trait;
use serde_json::{Map, Value};
use sqlx::any::AnyRow;
use sqlx::Row;

use shared::domain::{EmailAddress, Feedback, FeedbackMessage, FeedbackStatus, NewFeedback, Rating};
use shared::ports::{FeedbackStore, StoreError};
use shared::{EventEnvelope, EventId, FeedbackId, TenantId, Timestamp};

use super::group::BatchWrite;
use super::{append, check_envelope, corrupt, db, text, SqlStore, Table};

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

/// A feedback to store with its event.
pub(super) struct Submission {
    tenant: TenantId,
    feedback: NewFeedback,
    envelope: EventEnvelope,
}

/// The group commit of feedback submissions: the feedback rows and their outbox rows
/// of whatever requests arrived together, in one transaction of two multi-row
/// INSERTs, so a busy API costs the database one commit per batch rather than per
/// request.
pub(super) struct SubmissionWriter {
    pub writer: append::Writer,
}

#[async_trait]
impl BatchWrite for SubmissionWriter {
    type Item = Submission;
    type Answer = ();
    const MAX_BATCH: usize = 64;

    async fn write(&self, batch: &[&Submission]) -> Result<Vec<()>, StoreError> {
        let now = Timestamp::now().as_millis();
        let values: Vec<String> = (0..batch.len())
            .map(|r| {
                let p = r * 7;
                format!(
                    "(${}, ${}, ${}, ${}, ${}, ${}, ${}, $1, $2, $2)",
                    p + 3,
                    p + 4,
                    p + 5,
                    p + 6,
                    p + 7,
                    p + 8,
                    p + 9
                )
            })
            .collect();
        let sql = format!(
            "INSERT INTO feedback (tenant_id, id, event_id, rating, message, contact_email, metadata, status, created_at, updated_at)
             VALUES {}",
            values.join(", ")
        );
        let mut query = sqlx::query(&sql).bind(FeedbackStatus::Accepted.as_str()).bind(now);
        for Submission { tenant, feedback, envelope } in batch.iter().copied() {
            query = query
                .bind(tenant.to_string())
                .bind(feedback.id.to_string())
                .bind(envelope.id.to_string())
                .bind(feedback.rating.map(|r| i64::from(r.value())))
                .bind(feedback.message.as_str().to_owned())
                .bind(feedback.contact_email.as_ref().map(|e| e.as_str().to_owned()))
                .bind(Value::Object(feedback.metadata.clone()).to_string());
        }
        let mut tx = self.writer.pool.begin().await.map_err(db)?;
        query.execute(&mut *tx).await.map_err(db)?;
        let envelopes: Vec<&EventEnvelope> = batch.iter().map(|s| &s.envelope).collect();
        let rows: Vec<usize> = (0..envelopes.len()).collect();
        let sql = append::insert_outbox_sql(envelopes.len());
        append::bind_outbox_rows(sqlx::query(&sql), &envelopes, &rows, now).execute(&mut *tx).await.map_err(db)?;
        self.writer.commit_with_outbox(tx).await?;
        Ok(vec![(); batch.len()])
    }
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
        self.submissions.write(Submission { tenant, feedback: feedback.clone(), envelope: envelope.clone() }).await
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
        // Almost always from accepted; from failed when its message was redriven.
        for from in [FeedbackStatus::Accepted, FeedbackStatus::Failed] {
            if self
                .mark(Table::Feedback, tenant, &id.to_string(), from.as_str(), FeedbackStatus::Processing.as_str())
                .await?
            {
                break;
            }
        }
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
