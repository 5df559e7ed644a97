//! Email rows: requested, sending, and how each send ended.

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use shared::domain::{EmailAddress, EmailRecord, EmailStatus, NewEmail};
use shared::ports::{EmailStore, SendStart, StoreError};
use shared::{EmailId, EventEnvelope, EventId, TenantId, Timestamp};

use super::outbox::insert_outbox_rows;
use super::{check_envelope, corrupt, db, text, SqlStore, Table};

fn email_from(row: &AnyRow) -> Result<EmailRecord, StoreError> {
    let campaign: Option<String> = row.try_get("campaign_id").map_err(db)?;
    let status = text(row, "status")?;
    Ok(EmailRecord {
        id: EmailId::parse(&text(row, "id")?).map_err(|e| corrupt("email id", e))?,
        tenant_id: TenantId::parse(&text(row, "tenant_id")?).map_err(|e| corrupt("tenant id", e))?,
        event_id: EventId::parse(&text(row, "event_id")?).map_err(|e| corrupt("event id", e))?,
        campaign_id: campaign.as_deref().map(EmailId::parse).transpose().map_err(|e| corrupt("campaign id", e))?,
        to: EmailAddress::parse(&text(row, "recipient")?).map_err(|e| corrupt("recipient", e))?,
        subject: text(row, "subject")?,
        status: EmailStatus::parse(&status).ok_or_else(|| corrupt("email status", &status))?,
        provider: row.try_get("provider").map_err(db)?,
        provider_message_id: row.try_get("provider_message_id").map_err(db)?,
        failure_reason: row.try_get("failure_reason").map_err(db)?,
        result_key: row.try_get("result_key").map_err(db)?,
        created_at: Timestamp::from_millis(row.try_get("created_at").map_err(db)?),
        updated_at: Timestamp::from_millis(row.try_get("updated_at").map_err(db)?),
    })
}

/// Email rows and their `email.requested` outbox rows, inside `tx`.
pub(super) async fn insert_emails(
    tx: &mut Transaction<'static, Any>,
    tenant: TenantId,
    emails: &[(NewEmail, EventEnvelope)],
) -> Result<(), StoreError> {
    for (_, envelope) in emails {
        check_envelope(tenant, envelope)?;
    }
    let now = Timestamp::now().as_millis();
    for (email, envelope) in emails {
        sqlx::query(
            "INSERT INTO emails (tenant_id, id, event_id, campaign_id, recipient, subject, status, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
        )
        .bind(tenant.to_string())
        .bind(email.id.to_string())
        .bind(envelope.id.to_string())
        .bind(email.campaign_id.map(|c| c.to_string()))
        .bind(email.to.as_str())
        .bind(email.subject.as_str())
        .bind(EmailStatus::Accepted.as_str())
        .bind(now)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    }
    let envelopes: Vec<EventEnvelope> = emails.iter().map(|(_, e)| e.clone()).collect();
    insert_outbox_rows(tx, &envelopes, now).await
}

#[async_trait]
impl EmailStore for SqlStore {
    async fn submit_emails(&self, tenant: TenantId, emails: &[(NewEmail, EventEnvelope)]) -> Result<(), StoreError> {
        if emails.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await.map_err(db)?;
        insert_emails(&mut tx, tenant, emails).await?;
        self.writer.commit_with_outbox(tx).await
    }

    async fn email(&self, tenant: TenantId, id: EmailId) -> Result<Option<EmailRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT tenant_id, id, event_id, campaign_id, recipient, subject, status, provider, provider_message_id,
                    failure_reason, result_key, created_at, updated_at
             FROM emails WHERE tenant_id = $1 AND id = $2",
        )
        .bind(tenant.to_string())
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.as_ref().map(email_from).transpose()
    }

    async fn start_email_send(&self, tenant: TenantId, id: EmailId) -> Result<SendStart, StoreError> {
        let started = self
            .transition(
                Table::Emails,
                tenant,
                &id.to_string(),
                EmailStatus::Accepted.as_str(),
                EmailStatus::Sending.as_str(),
            )
            .await?;
        if started {
            return Ok(SendStart::Started);
        }
        // A dead-lettered email (failed, but no provider ever answered) starts again
        // when its message is redriven.
        let redriven = sqlx::query(
            "UPDATE emails SET status = $1, failure_reason = NULL, updated_at = $2
             WHERE tenant_id = $3 AND id = $4 AND status = $5 AND provider IS NULL",
        )
        .bind(EmailStatus::Sending.as_str())
        .bind(Timestamp::now().as_millis())
        .bind(tenant.to_string())
        .bind(id.to_string())
        .bind(EmailStatus::Failed.as_str())
        .execute(&self.pool)
        .await
        .map_err(db)?;
        if redriven.rows_affected() == 1 {
            return Ok(SendStart::Started);
        }
        Ok(match self.email(tenant, id).await?.map(|e| e.status) {
            None => SendStart::Missing,
            Some(EmailStatus::Sending) => SendStart::Interrupted,
            Some(_) => SendStart::Finished,
        })
    }

    async fn mark_email_dead_lettered(&self, tenant: TenantId, id: EmailId, reason: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE emails SET status = $1, failure_reason = $2, updated_at = $3
             WHERE tenant_id = $4 AND id = $5 AND status IN ($6, $7)",
        )
        .bind(EmailStatus::Failed.as_str())
        .bind(reason)
        .bind(Timestamp::now().as_millis())
        .bind(tenant.to_string())
        .bind(id.to_string())
        .bind(EmailStatus::Accepted.as_str())
        .bind(EmailStatus::Sending.as_str())
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn retry_email_send(&self, tenant: TenantId, id: EmailId) -> Result<(), StoreError> {
        self.transition(
            Table::Emails,
            tenant,
            &id.to_string(),
            EmailStatus::Sending.as_str(),
            EmailStatus::Accepted.as_str(),
        )
        .await?;
        Ok(())
    }
}
