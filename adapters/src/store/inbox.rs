//! The inbox and the consumer's transaction its effects join.

use async_trait::async_trait;
use sqlx::{Any, Transaction};

use shared::domain::analytics::StagedAnalytics;
use shared::domain::testflight::InvitationOutcome;
use shared::domain::webhooks::ReceivedWebhook;
use shared::domain::{EmailOutcome, FeedbackStatus, NewEmail};
use shared::ports::{ConsumerName, EffectTx, Inbox, StoreError};
use shared::{EmailId, EventEnvelope, EventId, FeedbackId, InvitationId, TenantId, Timestamp};

use super::{analytics, append, db, emails, testflight, update_owned, webhooks, SqlStore};

#[async_trait]
impl Inbox for SqlStore {
    async fn applied(&self, consumer: ConsumerName, tenant: TenantId, event_id: EventId) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT 1 FROM inbox WHERE consumer = $1 AND event_id = $2 AND tenant_id = $3")
            .bind(consumer.as_str())
            .bind(event_id.to_string())
            .bind(tenant.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        Ok(row.is_some())
    }

    async fn begin_once(
        &self,
        consumer: ConsumerName,
        tenant: TenantId,
        event_id: EventId,
    ) -> Result<Option<Box<dyn EffectTx>>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        let inserted = sqlx::query(
            "INSERT INTO inbox (consumer, event_id, tenant_id, processed_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        )
        .bind(consumer.as_str())
        .bind(event_id.to_string())
        .bind(tenant.to_string())
        .bind(Timestamp::now().as_millis())
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        if inserted.rows_affected() == 0 {
            tx.rollback().await.map_err(db)?;
            return Ok(None);
        }
        Ok(Some(Box::new(SqlEffectTx { tx, writer: self.writer.clone(), wrote_outbox: false })))
    }
}

struct SqlEffectTx {
    tx: Transaction<'static, Any>,
    writer: append::Writer,
    /// Whether relays need waking after the commit.
    wrote_outbox: bool,
}

#[async_trait]
impl EffectTx for SqlEffectTx {
    async fn set_feedback_status(
        &mut self,
        tenant: TenantId,
        id: FeedbackId,
        status: FeedbackStatus,
        result_key: Option<&str>,
    ) -> Result<(), StoreError> {
        let query = sqlx::query(
            "UPDATE feedback SET status = $1, result_key = COALESCE($2, result_key), updated_at = $3
             WHERE tenant_id = $4 AND id = $5",
        )
        .bind(status.as_str())
        .bind(result_key.map(str::to_owned))
        .bind(Timestamp::now().as_millis());
        update_owned(&mut *self.tx, query, tenant, &id.to_string(), "feedback").await
    }

    async fn set_email_outcome(
        &mut self,
        tenant: TenantId,
        id: EmailId,
        outcome: &EmailOutcome,
    ) -> Result<(), StoreError> {
        let query = sqlx::query(
            "UPDATE emails SET status = $1, provider = $2, provider_message_id = $3, failure_reason = $4, result_key = $5,
                    updated_at = $6
             WHERE tenant_id = $7 AND id = $8",
        )
        .bind(outcome.status.as_str())
        .bind(outcome.provider.as_str())
        .bind(outcome.provider_message_id.clone())
        .bind(outcome.failure_reason.clone())
        .bind(outcome.result_key.clone())
        .bind(Timestamp::now().as_millis());
        update_owned(&mut *self.tx, query, tenant, &id.to_string(), "email").await
    }

    async fn set_invitation_outcome(
        &mut self,
        tenant: TenantId,
        id: InvitationId,
        outcome: &InvitationOutcome,
    ) -> Result<(), StoreError> {
        testflight::set_outcome(&mut self.tx, tenant, id, outcome).await
    }

    async fn stage_analytics(&mut self, tenant: TenantId, rows: &[StagedAnalytics]) -> Result<(), StoreError> {
        analytics::stage(&mut self.tx, tenant, rows).await
    }

    async fn submit_emails(
        &mut self,
        tenant: TenantId,
        emails: &[(NewEmail, EventEnvelope)],
    ) -> Result<(), StoreError> {
        emails::insert_emails(&mut self.tx, tenant, emails).await?;
        self.wrote_outbox |= !emails.is_empty();
        Ok(())
    }

    async fn record_webhook(&mut self, tenant: TenantId, webhook: &ReceivedWebhook) -> Result<(), StoreError> {
        webhooks::record(&mut self.tx, tenant, webhook).await
    }

    async fn commit(self: Box<Self>) -> Result<(), StoreError> {
        if self.wrote_outbox {
            self.writer.commit_with_outbox(self.tx).await
        } else {
            self.tx.commit().await.map_err(db)
        }
    }
}
