//! TestFlight invitations.

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::{Any, AnyPool, Row, Transaction};

use shared::domain::testflight::{InvitationOutcome, InvitationRecord, InvitationStatus, NewInvitation};
use shared::domain::EmailAddress;
use shared::ports::{InvitationStore, StoreError};
use shared::{EventEnvelope, EventId, InvitationId, TenantId, Timestamp};

use super::append::Writer;
use super::outbox::insert_outbox_rows;
use super::{check_envelope, corrupt, db, text, update_owned, SqlStore};

fn from_row(row: &AnyRow) -> Result<InvitationRecord, StoreError> {
    let status = text(row, "status")?;
    let already: i64 = row.try_get("already_existed").map_err(db)?;
    Ok(InvitationRecord {
        id: InvitationId::parse(&text(row, "id")?).map_err(|e| corrupt("invitation id", e))?,
        tenant_id: TenantId::parse(&text(row, "tenant_id")?).map_err(|e| corrupt("tenant id", e))?,
        event_id: EventId::parse(&text(row, "event_id")?).map_err(|e| corrupt("event id", e))?,
        email: EmailAddress::parse(&text(row, "email")?).map_err(|e| corrupt("email", e))?,
        first_name: text(row, "first_name")?,
        last_name: text(row, "last_name")?,
        group_id: text(row, "group_id")?,
        status: InvitationStatus::parse(&status).ok_or_else(|| corrupt("invitation status", &status))?,
        tester_id: row.try_get("tester_id").map_err(db)?,
        already_existed: already != 0,
        failure_reason: row.try_get("failure_reason").map_err(db)?,
        result_key: row.try_get("result_key").map_err(db)?,
        created_at: Timestamp::from_millis(row.try_get("created_at").map_err(db)?),
        updated_at: Timestamp::from_millis(row.try_get("updated_at").map_err(db)?),
    })
}

pub(super) async fn submit(
    writer: &Writer,
    tenant: TenantId,
    invitation: &NewInvitation,
    envelope: &EventEnvelope,
) -> Result<(), StoreError> {
    let now = Timestamp::now().as_millis();
    let mut tx = writer.pool.begin().await.map_err(db)?;
    sqlx::query(
        "INSERT INTO testflight_invitations
             (tenant_id, id, event_id, email, first_name, last_name, group_id, status, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
    )
    .bind(tenant.to_string())
    .bind(invitation.id.to_string())
    .bind(envelope.id.to_string())
    .bind(invitation.email.as_str())
    .bind(invitation.first_name.as_str())
    .bind(invitation.last_name.as_str())
    .bind(invitation.group_id.as_str())
    .bind(InvitationStatus::Accepted.as_str())
    .bind(now)
    .execute(&mut *tx)
    .await
    .map_err(db)?;
    insert_outbox_rows(&mut tx, std::slice::from_ref(envelope), now).await?;
    writer.commit_with_outbox(tx).await
}

pub(super) async fn get(
    pool: &AnyPool,
    tenant: TenantId,
    id: InvitationId,
) -> Result<Option<InvitationRecord>, StoreError> {
    let row = sqlx::query(
        "SELECT tenant_id, id, event_id, email, first_name, last_name, group_id, status, tester_id, already_existed,
                failure_reason, result_key, created_at, updated_at
         FROM testflight_invitations WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tenant.to_string())
    .bind(id.to_string())
    .fetch_optional(pool)
    .await
    .map_err(db)?;
    row.as_ref().map(from_row).transpose()
}

pub(super) async fn mark_dead_lettered(
    pool: &AnyPool,
    tenant: TenantId,
    id: InvitationId,
    reason: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE testflight_invitations SET status = $1, failure_reason = $2, updated_at = $3
         WHERE tenant_id = $4 AND id = $5 AND status = $6",
    )
    .bind(InvitationStatus::Failed.as_str())
    .bind(reason)
    .bind(Timestamp::now().as_millis())
    .bind(tenant.to_string())
    .bind(id.to_string())
    .bind(InvitationStatus::Accepted.as_str())
    .execute(pool)
    .await
    .map_err(db)?;
    Ok(())
}

pub(super) async fn set_outcome(
    tx: &mut Transaction<'static, Any>,
    tenant: TenantId,
    id: InvitationId,
    outcome: &InvitationOutcome,
) -> Result<(), StoreError> {
    let query = sqlx::query(
        "UPDATE testflight_invitations
         SET status = $1, tester_id = $2, already_existed = $3, failure_reason = $4, result_key = $5, updated_at = $6
         WHERE tenant_id = $7 AND id = $8",
    )
    .bind(outcome.status.as_str())
    .bind(outcome.tester_id.clone())
    .bind(i64::from(outcome.already_existed))
    .bind(outcome.failure_reason.clone())
    .bind(outcome.result_key.clone())
    .bind(Timestamp::now().as_millis());
    update_owned(&mut **tx, query, tenant, &id.to_string(), "invitation").await
}

#[async_trait]
impl InvitationStore for SqlStore {
    async fn submit_invitation(
        &self,
        tenant: TenantId,
        invitation: &NewInvitation,
        envelope: &EventEnvelope,
    ) -> Result<(), StoreError> {
        check_envelope(tenant, envelope)?;
        submit(&self.writer, tenant, invitation, envelope).await
    }

    async fn invitation(&self, tenant: TenantId, id: InvitationId) -> Result<Option<InvitationRecord>, StoreError> {
        get(&self.pool, tenant, id).await
    }

    async fn mark_invitation_dead_lettered(
        &self,
        tenant: TenantId,
        id: InvitationId,
        reason: &str,
    ) -> Result<(), StoreError> {
        mark_dead_lettered(&self.pool, tenant, id, reason).await
    }
}
