//! Access requests: ticket numbers from the table's sequence, one pending request per
//! requester and tenant (a partial unique index), decisions and reminders.

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

use shared::domain::access::{
    AccessRequest, AccessRequestStatus, Decision, Imported, ImportedAccessRequest, NewAccessRequest, Submitted,
    TicketId,
};
use shared::domain::{EmailAddress, TenantName};
use shared::ports::store::EventFor;
use shared::ports::{AccessRequestStore, StoreError};
use shared::{EventEnvelope, TenantId, Timestamp};

use super::append::Writer;
use super::outbox::insert_outbox_rows;
use super::{corrupt, db, text, Dialect, SqlStore};

const COLUMNS: &str = "seq, tenant_id, requester, organization, message, status, decision_reason, created_tenant_id, \
                       created_at, updated_at";

fn from_row(row: &AnyRow) -> Result<AccessRequest, StoreError> {
    let seq: i64 = row.try_get("seq").map_err(db)?;
    let status = text(row, "status")?;
    let created: Option<String> = row.try_get("created_tenant_id").map_err(db)?;
    Ok(AccessRequest {
        ticket_id: TicketId::from_number(u64::try_from(seq).map_err(|e| corrupt("ticket", e))?),
        tenant_id: TenantId::parse(&text(row, "tenant_id")?).map_err(|e| corrupt("tenant id", e))?,
        requester: EmailAddress::parse(&text(row, "requester")?).map_err(|e| corrupt("requester", e))?,
        organization: TenantName::parse(&text(row, "organization")?).map_err(|e| corrupt("organization", e))?,
        message: row.try_get("message").map_err(db)?,
        status: AccessRequestStatus::parse(&status).ok_or_else(|| corrupt("access request status", &status))?,
        decision_reason: row.try_get("decision_reason").map_err(db)?,
        created_tenant_id: created.as_deref().map(TenantId::parse).transpose().map_err(|e| corrupt("tenant id", e))?,
        created_at: Timestamp::from_millis(row.try_get("created_at").map_err(db)?),
        updated_at: Timestamp::from_millis(row.try_get("updated_at").map_err(db)?),
    })
}

fn ticket_seq(ticket: TicketId) -> i64 {
    i64::try_from(ticket.number()).unwrap_or(i64::MAX)
}

async fn pending_of(pool: &AnyPool, tenant: TenantId, requester: &str) -> Result<Option<AccessRequest>, StoreError> {
    let sql =
        format!("SELECT {COLUMNS} FROM access_requests WHERE tenant_id = $1 AND requester = $2 AND status = 'pending'");
    let row = sqlx::query(&sql).bind(tenant.to_string()).bind(requester).fetch_optional(pool).await.map_err(db)?;
    row.as_ref().map(from_row).transpose()
}

async fn import(
    pool: &AnyPool,
    dialect: Dialect,
    tenant: TenantId,
    request: &ImportedAccessRequest,
) -> Result<Imported, StoreError> {
    let requester = request.requester.as_str().to_lowercase();
    let mut tx = pool.begin().await.map_err(db)?;
    let sql = format!("SELECT {COLUMNS} FROM access_requests WHERE seq = $1");
    let existing = sqlx::query(&sql).bind(ticket_seq(request.ticket_id)).fetch_optional(&mut *tx).await.map_err(db)?;
    if let Some(row) = existing {
        let found = from_row(&row)?;
        let same = found.tenant_id == tenant
            && found.requester.as_str() == requester
            && found.organization == request.organization
            && found.status == request.status;
        return Ok(Imported::AlreadyThere(if same {
            "imported before".to_owned()
        } else {
            format!("ticket {} is taken by another request ({})", request.ticket_id, found.requester.as_str())
        }));
    }
    if request.status == AccessRequestStatus::Pending {
        let pending = sqlx::query(
            "SELECT seq FROM access_requests WHERE tenant_id = $1 AND requester = $2 AND status = 'pending'",
        )
        .bind(tenant.to_string())
        .bind(requester.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        if let Some(row) = pending {
            let seq: i64 = row.try_get(0).map_err(db)?;
            let other = TicketId::from_number(u64::try_from(seq).unwrap_or(0));
            return Ok(Imported::Refused(format!("{requester} already has a pending request ({other})")));
        }
    }
    let updated = request.decided_at.unwrap_or(request.created_at);
    sqlx::query(
        "INSERT INTO access_requests (seq, tenant_id, requester, requester_id, organization, message, status,
             created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(ticket_seq(request.ticket_id))
    .bind(tenant.to_string())
    .bind(requester.as_str())
    .bind(request.requester_id.clone())
    .bind(request.organization.as_str())
    .bind(request.message.clone())
    .bind(request.status.as_str())
    .bind(request.created_at.as_millis())
    .bind(updated.as_millis())
    .execute(&mut *tx)
    .await
    .map_err(db)?;
    // New tickets continue after the highest number there is. (SQLite's AUTOINCREMENT
    // does so by itself once a row has a higher number.)
    if dialect == Dialect::Postgres {
        sqlx::query(
            "SELECT setval(pg_get_serial_sequence('access_requests', 'seq'),
                           GREATEST((SELECT MAX(seq) FROM access_requests),
                                    (SELECT last_value FROM access_requests_seq_seq)))",
        )
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    }
    tx.commit().await.map_err(db)?;
    Ok(Imported::Created)
}

pub(super) async fn submit(
    writer: &Writer,
    tenant: TenantId,
    request: &NewAccessRequest,
    event: &(dyn for<'r> Fn(&'r AccessRequest) -> EventEnvelope + Send + Sync + '_),
) -> Result<Submitted, StoreError> {
    let requester = request.requester.as_str().to_lowercase();
    if let Some(existing) = pending_of(&writer.pool, tenant, &requester).await? {
        return Ok(Submitted::PendingExists(existing));
    }
    let now = Timestamp::now().as_millis();
    let mut tx = writer.pool.begin().await.map_err(db)?;
    let sql = format!(
        "INSERT INTO access_requests (tenant_id, requester, organization, message, status, created_at, updated_at)
         VALUES ($1, $2, $3, $4, 'pending', $5, $5)
         RETURNING {COLUMNS}"
    );
    let inserted = sqlx::query(&sql)
        .bind(tenant.to_string())
        .bind(requester.as_str())
        .bind(request.organization.as_str())
        .bind(request.message.clone())
        .bind(now)
        .fetch_one(&mut *tx)
        .await;
    let row = match inserted {
        Ok(row) => row,
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            // A concurrent submission by the same requester won the race.
            drop(tx);
            return pending_of(&writer.pool, tenant, &requester)
                .await?
                .map(Submitted::PendingExists)
                .ok_or_else(|| StoreError::Conflict("a pending request was decided concurrently".into()));
        }
        Err(other) => return Err(db(other)),
    };
    let stored = from_row(&row)?;
    insert_outbox_rows(&mut tx, &[event(&stored)], now).await?;
    writer.commit_with_outbox(tx).await?;
    Ok(Submitted::Created(stored))
}

pub(super) async fn of_requester(
    pool: &AnyPool,
    tenant: TenantId,
    requester: &EmailAddress,
) -> Result<Vec<AccessRequest>, StoreError> {
    let sql =
        format!("SELECT {COLUMNS} FROM access_requests WHERE tenant_id = $1 AND requester = $2 ORDER BY seq DESC");
    let rows = sqlx::query(&sql)
        .bind(tenant.to_string())
        .bind(requester.as_str().to_lowercase())
        .fetch_all(pool)
        .await
        .map_err(db)?;
    rows.iter().map(from_row).collect()
}

pub(super) async fn by_ticket(pool: &AnyPool, ticket: TicketId) -> Result<Option<AccessRequest>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM access_requests WHERE seq = $1");
    let row = sqlx::query(&sql).bind(ticket_seq(ticket)).fetch_optional(pool).await.map_err(db)?;
    row.as_ref().map(from_row).transpose()
}

pub(super) async fn list(
    pool: &AnyPool,
    status: Option<AccessRequestStatus>,
) -> Result<Vec<AccessRequest>, StoreError> {
    let rows = match status {
        Some(status) => {
            let sql = format!("SELECT {COLUMNS} FROM access_requests WHERE status = $1 ORDER BY seq");
            sqlx::query(&sql).bind(status.as_str()).fetch_all(pool).await
        }
        None => sqlx::query(&format!("SELECT {COLUMNS} FROM access_requests ORDER BY seq")).fetch_all(pool).await,
    }
    .map_err(db)?;
    rows.iter().map(from_row).collect()
}

pub(super) async fn decide(
    writer: &Writer,
    ticket: TicketId,
    decision: &Decision,
    event: &(dyn for<'r> Fn(&'r AccessRequest) -> EventEnvelope + Send + Sync + '_),
) -> Result<AccessRequest, StoreError> {
    let now = Timestamp::now().as_millis();
    let (status, reason, created_tenant) = match decision {
        Decision::Approve { tenant } => (AccessRequestStatus::Approved, None, Some(tenant.to_string())),
        Decision::Reject { reason } => (AccessRequestStatus::Rejected, reason.clone(), None),
    };
    let mut tx = writer.pool.begin().await.map_err(db)?;
    let sql = format!(
        "UPDATE access_requests SET status = $1, decision_reason = $2, created_tenant_id = $3, updated_at = $4
         WHERE seq = $5 AND status = 'pending'
         RETURNING {COLUMNS}"
    );
    let row = sqlx::query(&sql)
        .bind(status.as_str())
        .bind(reason)
        .bind(created_tenant.clone())
        .bind(now)
        .bind(ticket_seq(ticket))
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
    let Some(row) = row else {
        drop(tx);
        return match by_ticket(&writer.pool, ticket).await? {
            Some(current) => Err(StoreError::Conflict(format!("{ticket} is already {}", current.status.as_str()))),
            None => Err(StoreError::NotFound(format!("access request {ticket}"))),
        };
    };
    let decided = from_row(&row)?;
    if let Some(tenant) = created_tenant {
        sqlx::query("INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3)")
            .bind(tenant)
            .bind(decided.organization.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
    }
    insert_outbox_rows(&mut tx, &[event(&decided)], now).await?;
    writer.commit_with_outbox(tx).await?;
    Ok(decided)
}

pub(super) async fn due_reminders(
    pool: &AnyPool,
    created_before: Timestamp,
    reminded_before: Timestamp,
) -> Result<Vec<AccessRequest>, StoreError> {
    let sql = format!(
        "UPDATE access_requests SET reminded_at = $1
         WHERE status = 'pending' AND created_at <= $2 AND (reminded_at IS NULL OR reminded_at <= $3)
         RETURNING {COLUMNS}"
    );
    let rows = sqlx::query(&sql)
        .bind(Timestamp::now().as_millis())
        .bind(created_before.as_millis())
        .bind(reminded_before.as_millis())
        .fetch_all(pool)
        .await
        .map_err(db)?;
    let mut due = rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
    due.sort_by_key(|r| r.ticket_id);
    Ok(due)
}

#[async_trait]
impl AccessRequestStore for SqlStore {
    async fn submit_access_request(
        &self,
        tenant: TenantId,
        request: &NewAccessRequest,
        event: EventFor<'_>,
    ) -> Result<Submitted, StoreError> {
        submit(&self.writer, tenant, request, event).await
    }

    async fn access_requests_of(
        &self,
        tenant: TenantId,
        requester: &EmailAddress,
    ) -> Result<Vec<AccessRequest>, StoreError> {
        of_requester(&self.pool, tenant, requester).await
    }

    async fn access_request(&self, ticket: TicketId) -> Result<Option<AccessRequest>, StoreError> {
        by_ticket(&self.pool, ticket).await
    }

    async fn list_access_requests(
        &self,
        status: Option<AccessRequestStatus>,
    ) -> Result<Vec<AccessRequest>, StoreError> {
        list(&self.pool, status).await
    }

    async fn decide_access_request(
        &self,
        ticket: TicketId,
        decision: &Decision,
        event: EventFor<'_>,
    ) -> Result<AccessRequest, StoreError> {
        decide(&self.writer, ticket, decision, event).await
    }

    async fn import_access_request(
        &self,
        tenant: TenantId,
        request: &ImportedAccessRequest,
    ) -> Result<Imported, StoreError> {
        import(&self.pool, self.dialect, tenant, request).await
    }

    async fn due_access_reminders(
        &self,
        created_before: Timestamp,
        reminded_before: Timestamp,
    ) -> Result<Vec<AccessRequest>, StoreError> {
        due_reminders(&self.pool, created_before, reminded_before).await
    }
}
