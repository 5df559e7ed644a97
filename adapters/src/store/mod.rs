//! The SQL store: one implementation of the store port for PostgreSQL and SQLite,
//! through sqlx's `Any` driver. The dialects differ only where they must: claiming
//! outbox rows (PostgreSQL serialises claimers with an advisory lock and skips locked
//! rows; SQLite has a single writer) and waking the relay (LISTEN/NOTIFY on
//! PostgreSQL, in-process on SQLite).

mod access;
mod analytics;
mod append;
mod migrate;
mod testflight;

use std::path::Path;
use std::sync::{Arc, Once};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Map, Value};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{Any, AnyPool, Row, Transaction};
use tokio::sync::{Notify, OnceCell};

use shared::config::StoreConfig;
use shared::domain::access::{AccessRequest, AccessRequestStatus, Decision, NewAccessRequest, Submitted, TicketId};
use shared::domain::analytics::{AnalyticsBatch, AnalyticsChunk, AnalyticsCounts, NewAnalyticsBatch, StagedAnalytics};
use shared::domain::testflight::{InvitationOutcome, InvitationRecord, NewInvitation};
use shared::domain::{
    ApiKeyRecord, EmailAddress, EmailOutcome, EmailRecord, EmailStatus, Feedback, FeedbackMessage, FeedbackStatus,
    NewEmail, NewFeedback, PlanName, Rating, Tenant, TenantName, TenantSettings,
};
use shared::ports::{Appended, DeadLetterRecord, EffectTx, OutboxEntry, SendStart, Store, StoreError, WorkerReport};
use shared::{
    AnalyticsBatchId, ApiKeyId, EmailId, EventEnvelope, EventId, FeedbackId, InvitationId, TenantId, Timestamp,
};

pub(crate) const OUTBOX_CHANNEL: &str = "switchyard_outbox";
const CLAIM_LOCK: i64 = 72_635_402;
const SQLITE_PRAGMAS: [&str; 4] = [
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = NORMAL",
    "PRAGMA foreign_keys = ON",
    "PRAGMA busy_timeout = 5000",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    Sqlite,
}

/// Tables whose rows move through statuses.
#[derive(Debug, Clone, Copy)]
enum Table {
    Feedback,
    Emails,
}

/// What happens to a row whose publish failed.
#[derive(Debug, Clone, Copy)]
enum FailedAttempt {
    /// Claimable again from this time.
    RetryAt(Timestamp),
    /// Kept, marked failed, no longer claimed.
    GiveUp,
}

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("could not connect to the {dialect:?} store")]
    Connect {
        dialect: Dialect,
        #[source]
        source: sqlx::Error,
    },
    #[error("could not create the directory for the SQLite store at {path}")]
    Directory {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("migrations failed")]
    Migrate(#[source] sqlx::Error),
}

/// PostgreSQL or SQLite behind one implementation of [`Store`].
pub struct SqlStore {
    pool: AnyPool,
    dialect: Dialect,
    /// Level-triggered wake-up for the relay.
    outbox_signal: Arc<Notify>,
    /// PostgreSQL only: the LISTEN task, started on the first wait.
    listener: OnceCell<tokio::task::JoinHandle<()>>,
    database_url: String,
    writer: append::Writer,
    appender: append::Appender,
}

impl Drop for SqlStore {
    fn drop(&mut self) {
        if let Some(task) = self.listener.get() {
            task.abort();
        }
    }
}

fn install_drivers() {
    static ONCE: Once = Once::new();
    ONCE.call_once(sqlx::any::install_default_drivers);
}

fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}?mode=rwc", path.display())
}

impl SqlStore {
    pub async fn connect(config: &StoreConfig) -> Result<Self, ConnectError> {
        install_drivers();
        let (dialect, url, options) = match config {
            StoreConfig::Postgres { url, max_connections, acquire_timeout } => (
                Dialect::Postgres,
                url.expose().to_owned(),
                AnyPoolOptions::new().max_connections(*max_connections).acquire_timeout(*acquire_timeout),
            ),
            StoreConfig::Sqlite { path } => {
                if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(parent)
                        .map_err(|source| ConnectError::Directory { path: parent.display().to_string(), source })?;
                }
                // One connection: SQLite has one writer, and a single connection turns
                // "database is locked" races into an orderly queue.
                let options = AnyPoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(Duration::from_secs(30))
                    .after_connect(|conn, _meta| {
                        Box::pin(async move {
                            for pragma in SQLITE_PRAGMAS {
                                sqlx::query(pragma).execute(&mut *conn).await?;
                            }
                            Ok(())
                        })
                    });
                (Dialect::Sqlite, sqlite_url(path), options)
            }
        };
        let pool = options.connect(&url).await.map_err(|source| ConnectError::Connect { dialect, source })?;
        let outbox_signal = Arc::new(Notify::new());
        let remote_wake = (dialect == Dialect::Postgres).then(|| append::Writer::start_notifier(pool.clone()));
        let writer = append::Writer { pool: pool.clone(), outbox_signal: outbox_signal.clone(), remote_wake };
        let workers = match dialect {
            Dialect::Postgres => 4,
            Dialect::Sqlite => 1,
        };
        let appender = append::Appender::start(writer.clone(), workers);
        Ok(Self { pool, dialect, outbox_signal, listener: OnceCell::new(), database_url: url, writer, appender })
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Applies pending migrations; returns how many.
    pub async fn migrate(&self) -> Result<usize, ConnectError> {
        migrate::run(&self.pool, self.dialect).await.map_err(ConnectError::Migrate)
    }

    /// Moves a tenant's row from status `from` to `to`; false when it was not in `from`.
    /// Outbox rows matching `condition` (a constant SQL predicate).
    async fn count_outbox(&self, condition: &'static str) -> Result<u64, StoreError> {
        let count: i64 = sqlx::query(&format!("SELECT COUNT(*) FROM outbox WHERE {condition}"))
            .fetch_one(&self.pool)
            .await
            .map_err(db)?
            .try_get(0)
            .map_err(db)?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    async fn transition(
        &self,
        table: Table,
        tenant: TenantId,
        id: &str,
        from: &str,
        to: &str,
    ) -> Result<bool, StoreError> {
        let table = match table {
            Table::Feedback => "feedback",
            Table::Emails => "emails",
        };
        let sql =
            format!("UPDATE {table} SET status = $1, updated_at = $2 WHERE tenant_id = $3 AND id = $4 AND status = $5");
        let updated = sqlx::query(&sql)
            .bind(to)
            .bind(Timestamp::now().as_millis())
            .bind(tenant.to_string())
            .bind(id)
            .bind(from)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(updated.rows_affected() == 1)
    }

    /// Releases a claimed row after a failed publish, counting the attempt.
    async fn record_failed_attempt(&self, seq: i64, next: FailedAttempt, error: &str) -> Result<(), StoreError> {
        let (column, at) = match next {
            FailedAttempt::RetryAt(at) => ("not_before", at),
            FailedAttempt::GiveUp => ("failed_at", Timestamp::now()),
        };
        let sql = format!(
            "UPDATE outbox SET claimed_until = NULL, {column} = $1, attempts = attempts + 1, last_error = $2
             WHERE seq = $3 AND published_at IS NULL"
        );
        sqlx::query(&sql)
            .bind(at.as_millis())
            .bind(error.chars().take(2_000).collect::<String>())
            .bind(seq)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn start_listener(&self) -> tokio::task::JoinHandle<()> {
        let signal = self.outbox_signal.clone();
        let url = self.database_url.clone();
        tokio::spawn(async move {
            loop {
                match sqlx::postgres::PgListener::connect(&url).await {
                    Ok(mut listener) => {
                        if let Err(error) = listener.listen(OUTBOX_CHANNEL).await {
                            tracing::warn!(%error, "LISTEN failed; the relay falls back to its timer");
                        } else {
                            // Rows inserted while we were not listening are picked up by this wake-up.
                            signal.notify_one();
                            loop {
                                match listener.recv().await {
                                    Ok(_) => signal.notify_one(),
                                    Err(error) => {
                                        tracing::warn!(%error, "outbox listener lost its connection");
                                        break;
                                    }
                                }
                            }
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, "could not LISTEN for outbox inserts; retrying")
                    }
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    }
}

/// Sorts a database error by whose fault it is: the database being unreachable, busy,
/// shutting down or asking for a retry is `Unavailable` (callers wait it out); what it
/// refuses about the request itself (a constraint, a value it cannot store) is
/// `Database`.
pub(crate) fn db(error: sqlx::Error) -> StoreError {
    let unavailable = match &error {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(database) => database.code().is_some_and(|code| unavailable_code(&code)),
        _ => false,
    };
    if unavailable {
        StoreError::Unavailable(Box::new(error))
    } else {
        StoreError::Database(Box::new(error))
    }
}

/// PostgreSQL SQLSTATEs of classes 08 (connection), 53 (insufficient resources), 57
/// (operator intervention: shutdown, cannot connect now), and serialization failures
/// and deadlocks; SQLite's BUSY and LOCKED result codes (primary and extended).
fn unavailable_code(code: &str) -> bool {
    ["08", "53", "57"].iter().any(|class| code.starts_with(class))
        || matches!(code, "40001" | "40P01")
        // SQLite's codes are numbers of up to four digits; PostgreSQL's are five characters.
        || (code.len() < 5 && code.parse::<u32>().is_ok_and(|n| matches!(n & 0xff, 5 | 6)))
}

pub(crate) fn corrupt(what: &str, error: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {error}"))
}

fn text(row: &AnyRow, column: &str) -> Result<String, StoreError> {
    row.try_get::<String, _>(column).map_err(db)
}

fn tenant_from(row: &AnyRow) -> Result<Tenant, StoreError> {
    Ok(Tenant {
        id: TenantId::parse(&text(row, "id")?).map_err(|e| corrupt("tenant id", e))?,
        name: TenantName::parse(&text(row, "name")?).map_err(|e| corrupt("tenant name", e))?,
        created_at: Timestamp::from_millis(row.try_get("created_at").map_err(db)?),
    })
}

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
async fn insert_emails(
    tx: &mut Transaction<'static, Any>,
    emails: &[(NewEmail, EventEnvelope)],
) -> Result<(), StoreError> {
    let now = Timestamp::now().as_millis();
    for (email, envelope) in emails {
        sqlx::query(
            "INSERT INTO emails (tenant_id, id, event_id, campaign_id, recipient, subject, status, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
        )
        .bind(envelope.tenant_id.to_string())
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

/// Outbox rows for `envelopes`, inside `tx`, in multi-row INSERTs.
async fn insert_outbox_rows(
    tx: &mut Transaction<'static, Any>,
    envelopes: &[EventEnvelope],
    now: i64,
) -> Result<(), StoreError> {
    let envelopes: Vec<&EventEnvelope> = envelopes.iter().collect();
    for chunk in envelopes.chunks(200) {
        let rows: Vec<usize> = (0..chunk.len()).collect();
        let sql = append::insert_outbox_sql(chunk.len());
        append::bind_outbox_rows(sqlx::query(&sql), chunk, &rows, now).execute(&mut **tx).await.map_err(db)?;
    }
    Ok(())
}

async fn insert_outbox(tx: &mut Transaction<'static, Any>, envelope: &EventEnvelope) -> Result<(), StoreError> {
    let sql = append::insert_outbox_sql(1);
    append::bind_outbox_rows(sqlx::query(&sql), &[envelope], &[0], Timestamp::now().as_millis())
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    Ok(())
}

fn in_list(first_param: usize, count: usize) -> String {
    (first_param..first_param + count).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

#[async_trait]
impl Store for SqlStore {
    async fn create_tenant(&self, tenant: &Tenant) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3)")
            .bind(tenant.id.to_string())
            .bind(tenant.name.as_str())
            .bind(tenant.created_at.as_millis())
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn tenant(&self, id: TenantId) -> Result<Option<Tenant>, StoreError> {
        let row = sqlx::query("SELECT id, name, created_at FROM tenants WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.as_ref().map(tenant_from).transpose()
    }

    async fn list_tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        let rows = sqlx::query("SELECT id, name, created_at FROM tenants ORDER BY id")
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter().map(tenant_from).collect()
    }

    async fn tenant_settings(&self, id: TenantId) -> Result<Option<TenantSettings>, StoreError> {
        let row = sqlx::query("SELECT plan, alert_webhook_url FROM tenants WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(TenantSettings {
            plan: PlanName::parse(&text(&row, "plan")?).map_err(|e| corrupt("plan", e))?,
            alert_webhook_url: row.try_get("alert_webhook_url").map_err(db)?,
        }))
    }

    async fn set_tenant_settings(&self, id: TenantId, settings: &TenantSettings) -> Result<(), StoreError> {
        let updated = sqlx::query("UPDATE tenants SET plan = $1, alert_webhook_url = $2 WHERE id = $3")
            .bind(settings.plan.as_str())
            .bind(settings.alert_webhook_url.clone())
            .bind(id.to_string())
            .execute(&self.pool)
            .await
            .map_err(db)?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("tenant {id}")));
        }
        Ok(())
    }

    async fn create_api_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError> {
        let inserted = sqlx::query(
            "INSERT INTO api_keys (id, tenant_id, secret_hash, created_at, revoked_at)
             SELECT $1, $2, $3, $4, $5 WHERE EXISTS (SELECT 1 FROM tenants WHERE id = $2)",
        )
        .bind(key.id.to_string())
        .bind(key.tenant_id.to_string())
        .bind(key.secret_hash.as_str())
        .bind(key.created_at.as_millis())
        .bind(key.revoked_at.map(Timestamp::as_millis))
        .execute(&self.pool)
        .await
        .map_err(db)?;
        if inserted.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("tenant {}", key.tenant_id)));
        }
        Ok(())
    }

    async fn api_key(&self, id: ApiKeyId) -> Result<Option<ApiKeyRecord>, StoreError> {
        let row = sqlx::query("SELECT id, tenant_id, secret_hash, created_at, revoked_at FROM api_keys WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        let Some(row) = row else { return Ok(None) };
        let revoked: Option<i64> = row.try_get("revoked_at").map_err(db)?;
        Ok(Some(ApiKeyRecord {
            id: ApiKeyId::parse(&text(&row, "id")?).map_err(|e| corrupt("key id", e))?,
            tenant_id: TenantId::parse(&text(&row, "tenant_id")?).map_err(|e| corrupt("tenant id", e))?,
            secret_hash: text(&row, "secret_hash")?,
            created_at: Timestamp::from_millis(row.try_get("created_at").map_err(db)?),
            revoked_at: revoked.map(Timestamp::from_millis),
        }))
    }

    async fn append_event(&self, envelope: &EventEnvelope) -> Result<Appended, StoreError> {
        self.appender.append(envelope).await
    }

    async fn submit_feedback(&self, feedback: &NewFeedback, envelope: &EventEnvelope) -> Result<(), StoreError> {
        let now = Timestamp::now().as_millis();
        let mut tx = self.pool.begin().await.map_err(db)?;
        sqlx::query(
            "INSERT INTO feedback (tenant_id, id, event_id, rating, message, contact_email, metadata, status, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
        )
        .bind(envelope.tenant_id.to_string())
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

    async fn submit_emails(&self, emails: &[(NewEmail, EventEnvelope)]) -> Result<(), StoreError> {
        if emails.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await.map_err(db)?;
        insert_emails(&mut tx, emails).await?;
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

    async fn submit_analytics(
        &self,
        tenant: TenantId,
        batch: &NewAnalyticsBatch,
        envelopes: &[EventEnvelope],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        analytics::insert_batch(&mut tx, tenant, batch, envelopes).await?;
        self.writer.commit_with_outbox(tx).await
    }

    async fn analytics_batch(
        &self,
        tenant: TenantId,
        id: AnalyticsBatchId,
    ) -> Result<Option<AnalyticsBatch>, StoreError> {
        analytics::batch(&self.pool, tenant, id).await
    }

    async fn analytics_counts(&self, tenant: TenantId) -> Result<AnalyticsCounts, StoreError> {
        analytics::counts(&self.pool, tenant).await
    }

    async fn claim_analytics(
        &self,
        max_rows: u32,
        staged_before: Timestamp,
        lease: Duration,
    ) -> Result<Option<AnalyticsChunk>, StoreError> {
        analytics::claim(&self.pool, self.dialect, max_rows, staged_before, lease).await
    }

    async fn record_analytics_object(&self, chunk: &AnalyticsChunk, key: &str) -> Result<(), StoreError> {
        analytics::record_object(&self.pool, chunk, key).await
    }

    async fn submit_access_request(
        &self,
        tenant: TenantId,
        request: &NewAccessRequest,
        event: &(dyn for<'r> Fn(&'r AccessRequest) -> EventEnvelope + Send + Sync),
    ) -> Result<Submitted, StoreError> {
        access::submit(&self.writer, tenant, request, event).await
    }

    async fn access_requests_of(
        &self,
        tenant: TenantId,
        requester: &EmailAddress,
    ) -> Result<Vec<AccessRequest>, StoreError> {
        access::of_requester(&self.pool, tenant, requester).await
    }

    async fn access_request(&self, ticket: TicketId) -> Result<Option<AccessRequest>, StoreError> {
        access::by_ticket(&self.pool, ticket).await
    }

    async fn list_access_requests(
        &self,
        status: Option<AccessRequestStatus>,
    ) -> Result<Vec<AccessRequest>, StoreError> {
        access::list(&self.pool, status).await
    }

    async fn decide_access_request(
        &self,
        ticket: TicketId,
        decision: &Decision,
        event: &(dyn for<'r> Fn(&'r AccessRequest) -> EventEnvelope + Send + Sync),
    ) -> Result<AccessRequest, StoreError> {
        access::decide(&self.writer, ticket, decision, event).await
    }

    async fn due_access_reminders(
        &self,
        created_before: Timestamp,
        reminded_before: Timestamp,
    ) -> Result<Vec<AccessRequest>, StoreError> {
        access::due_reminders(&self.pool, created_before, reminded_before).await
    }

    async fn submit_invitation(
        &self,
        tenant: TenantId,
        invitation: &NewInvitation,
        envelope: &EventEnvelope,
    ) -> Result<(), StoreError> {
        testflight::submit(&self.writer, tenant, invitation, envelope).await
    }

    async fn invitation(&self, tenant: TenantId, id: InvitationId) -> Result<Option<InvitationRecord>, StoreError> {
        testflight::get(&self.pool, tenant, id).await
    }

    async fn mark_invitation_dead_lettered(
        &self,
        tenant: TenantId,
        id: InvitationId,
        reason: &str,
    ) -> Result<(), StoreError> {
        testflight::mark_dead_lettered(&self.pool, tenant, id, reason).await
    }

    async fn set_webhook_secret(&self, tenant: TenantId, source: &str, secret: &str) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        sqlx::query("DELETE FROM webhook_secrets WHERE tenant_id = $1 AND source = $2")
            .bind(tenant.to_string())
            .bind(source)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        sqlx::query("INSERT INTO webhook_secrets (tenant_id, source, secret, created_at) VALUES ($1, $2, $3, $4)")
            .bind(tenant.to_string())
            .bind(source)
            .bind(secret)
            .bind(Timestamp::now().as_millis())
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)
    }

    async fn webhook_secret(&self, tenant: TenantId, source: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT secret FROM webhook_secrets WHERE tenant_id = $1 AND source = $2")
            .bind(tenant.to_string())
            .bind(source)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.map(|r| r.try_get::<String, _>(0).map_err(db)).transpose()
    }

    async fn claim_outbox(&self, limit: u32, lease: Duration) -> Result<Vec<OutboxEntry>, StoreError> {
        let now = Timestamp::now();
        let lock_rows = match self.dialect {
            Dialect::Postgres => "FOR UPDATE SKIP LOCKED",
            Dialect::Sqlite => "",
        };
        // A row is claimable when it is pending, due, not leased, and every earlier
        // pending row of its tenant is claimable too (so a tenant is never reordered).
        let sql = format!(
            "UPDATE outbox SET claimed_until = $1
             WHERE seq IN (
                 SELECT o.seq FROM outbox o
                 WHERE o.published_at IS NULL AND o.failed_at IS NULL
                   AND o.not_before <= $2
                   AND (o.claimed_until IS NULL OR o.claimed_until <= $2)
                   AND NOT EXISTS (
                       SELECT 1 FROM outbox e
                       WHERE e.tenant_id = o.tenant_id AND e.published_at IS NULL AND e.failed_at IS NULL
                         AND e.seq < o.seq
                         AND (e.not_before > $2 OR (e.claimed_until IS NOT NULL AND e.claimed_until > $2))
                   )
                 ORDER BY o.seq
                 LIMIT $3
                 {lock_rows}
             )
             RETURNING seq, envelope, attempts"
        );
        let mut tx = self.pool.begin().await.map_err(db)?;
        if self.dialect == Dialect::Postgres {
            // Claimers take turns, so each sees the claims the previous one committed.
            sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(CLAIM_LOCK).execute(&mut *tx).await.map_err(db)?;
        }
        let rows = sqlx::query(&sql)
            .bind(now.plus(lease).as_millis())
            .bind(now.as_millis())
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        // Row by row: a row whose envelope cannot be read back is failed with the reason
        // (kept for operators) and holds back nobody, not even its own tenant.
        let mut entries = Vec::with_capacity(rows.len());
        for row in &rows {
            let seq: i64 = row.try_get("seq").map_err(db)?;
            let attempts: i64 = row.try_get("attempts").map_err(db)?;
            match EventEnvelope::from_json(&text(row, "envelope")?) {
                Ok(envelope) => {
                    entries.push(OutboxEntry { seq, envelope, attempts: u32::try_from(attempts).unwrap_or(u32::MAX) });
                }
                Err(error) => {
                    let reason = format!("the stored envelope cannot be read back: {error}");
                    tracing::error!(seq, reason = reason.as_str(), "outbox row can never be published; marked failed");
                    self.fail_outbox(seq, &reason).await?;
                }
            }
        }
        entries.sort_by_key(|e| e.seq);
        Ok(entries)
    }

    async fn mark_published(&self, seqs: &[i64]) -> Result<(), StoreError> {
        if seqs.is_empty() {
            return Ok(());
        }
        let sql = format!(
            "UPDATE outbox SET published_at = $1, claimed_until = NULL WHERE seq IN ({})",
            in_list(2, seqs.len())
        );
        let mut query = sqlx::query(&sql).bind(Timestamp::now().as_millis());
        for seq in seqs {
            query = query.bind(*seq);
        }
        query.execute(&self.pool).await.map_err(db)?;
        Ok(())
    }

    async fn retry_outbox(&self, seq: i64, not_before: Timestamp, error: &str) -> Result<(), StoreError> {
        self.record_failed_attempt(seq, FailedAttempt::RetryAt(not_before), error).await
    }

    async fn release_outbox(&self, seqs: &[i64]) -> Result<(), StoreError> {
        if seqs.is_empty() {
            return Ok(());
        }
        let sql = format!("UPDATE outbox SET claimed_until = NULL WHERE seq IN ({})", in_list(1, seqs.len()));
        let mut query = sqlx::query(&sql);
        for seq in seqs {
            query = query.bind(*seq);
        }
        query.execute(&self.pool).await.map_err(db)?;
        Ok(())
    }

    async fn fail_outbox(&self, seq: i64, error: &str) -> Result<(), StoreError> {
        self.record_failed_attempt(seq, FailedAttempt::GiveUp, error).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map_err(db)?;
        Ok(())
    }

    async fn event(&self, tenant: TenantId, id: EventId) -> Result<Option<EventEnvelope>, StoreError> {
        let row = sqlx::query("SELECT envelope FROM outbox WHERE tenant_id = $1 AND event_id = $2")
            .bind(tenant.to_string())
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.map(|row| EventEnvelope::from_json(&text(&row, "envelope")?).map_err(|e| corrupt("outbox envelope", e)))
            .transpose()
    }

    async fn failed_outbox(&self) -> Result<u64, StoreError> {
        self.count_outbox("failed_at IS NOT NULL").await
    }

    async fn outbox_backlog(&self) -> Result<u64, StoreError> {
        self.count_outbox("published_at IS NULL AND failed_at IS NULL").await
    }

    async fn wait_for_outbox(&self) {
        if self.dialect == Dialect::Postgres {
            self.listener.get_or_init(|| self.start_listener()).await;
        }
        self.outbox_signal.notified().await;
    }

    async fn report_worker(&self, report: &WorkerReport) -> Result<(), StoreError> {
        let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        sqlx::query(
            "INSERT INTO worker_stats (worker, process, handled, failed, reported_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (worker, process) DO UPDATE
             SET handled = excluded.handled, failed = excluded.failed, reported_at = excluded.reported_at",
        )
        .bind(report.worker.as_str())
        .bind(report.process.as_str())
        .bind(count(report.handled))
        .bind(count(report.failed))
        .bind(report.reported_at.as_millis())
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn record_dead_letter(&self, record: &DeadLetterRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO dead_letters (tenant_id, queue, message_id, event_id, event_type, error, recorded_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(record.tenant.to_string())
        .bind(record.queue.as_str())
        .bind(record.message_id.as_str())
        .bind(record.event_id.as_str())
        .bind(record.event_type.as_str())
        .bind(record.error.chars().take(2_000).collect::<String>())
        .bind(record.recorded_at.as_millis())
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn dead_letters_since(
        &self,
        after: i64,
        since: Timestamp,
        limit: u32,
    ) -> Result<Vec<(i64, DeadLetterRecord)>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, tenant_id, queue, message_id, event_id, event_type, error, recorded_at FROM dead_letters
             WHERE seq > $1 AND recorded_at >= $2 ORDER BY seq LIMIT $3",
        )
        .bind(after)
        .bind(since.as_millis())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|row| {
                let record = DeadLetterRecord {
                    tenant: TenantId::parse(&text(row, "tenant_id")?).map_err(|e| corrupt("tenant id", e))?,
                    queue: text(row, "queue")?,
                    message_id: text(row, "message_id")?,
                    event_id: text(row, "event_id")?,
                    event_type: text(row, "event_type")?,
                    error: text(row, "error")?,
                    recorded_at: Timestamp::from_millis(row.try_get("recorded_at").map_err(db)?),
                };
                Ok((row.try_get("seq").map_err(db)?, record))
            })
            .collect()
    }

    async fn worker_reports(&self, since: Timestamp) -> Result<Vec<WorkerReport>, StoreError> {
        let rows = sqlx::query(
            "SELECT worker, process, handled, failed, reported_at FROM worker_stats
             WHERE reported_at >= $1 ORDER BY worker, process",
        )
        .bind(since.as_millis())
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|row| {
                let count = |column: &str| -> Result<u64, StoreError> {
                    let value: i64 = row.try_get(column).map_err(db)?;
                    Ok(u64::try_from(value).unwrap_or(0))
                };
                Ok(WorkerReport {
                    worker: text(row, "worker")?,
                    process: text(row, "process")?,
                    handled: count("handled")?,
                    failed: count("failed")?,
                    reported_at: Timestamp::from_millis(row.try_get("reported_at").map_err(db)?),
                })
            })
            .collect()
    }

    async fn applied(&self, consumer: &str, tenant: TenantId, event_id: EventId) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT 1 FROM inbox WHERE consumer = $1 AND event_id = $2 AND tenant_id = $3")
            .bind(consumer)
            .bind(event_id.to_string())
            .bind(tenant.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        Ok(row.is_some())
    }

    async fn begin_once(
        &self,
        consumer: &str,
        tenant: TenantId,
        event_id: EventId,
    ) -> Result<Option<Box<dyn EffectTx>>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        let inserted = sqlx::query(
            "INSERT INTO inbox (consumer, event_id, tenant_id, processed_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        )
        .bind(consumer)
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
        let updated = sqlx::query(
            "UPDATE feedback SET status = $1, result_key = COALESCE($2, result_key), updated_at = $3
             WHERE tenant_id = $4 AND id = $5",
        )
        .bind(status.as_str())
        .bind(result_key.map(str::to_owned))
        .bind(Timestamp::now().as_millis())
        .bind(tenant.to_string())
        .bind(id.to_string())
        .execute(&mut *self.tx)
        .await
        .map_err(db)?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("feedback {id} of tenant {tenant}")));
        }
        Ok(())
    }

    async fn set_email_outcome(
        &mut self,
        tenant: TenantId,
        id: EmailId,
        outcome: &EmailOutcome,
    ) -> Result<(), StoreError> {
        let updated = sqlx::query(
            "UPDATE emails SET status = $1, provider = $2, provider_message_id = $3, failure_reason = $4, result_key = $5,
                    updated_at = $6
             WHERE tenant_id = $7 AND id = $8",
        )
        .bind(outcome.status.as_str())
        .bind(outcome.provider.as_str())
        .bind(outcome.provider_message_id.clone())
        .bind(outcome.failure_reason.clone())
        .bind(outcome.result_key.clone())
        .bind(Timestamp::now().as_millis())
        .bind(tenant.to_string())
        .bind(id.to_string())
        .execute(&mut *self.tx)
        .await
        .map_err(db)?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("email {id} of tenant {tenant}")));
        }
        Ok(())
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

    async fn submit_emails(&mut self, emails: &[(NewEmail, EventEnvelope)]) -> Result<(), StoreError> {
        insert_emails(&mut self.tx, emails).await?;
        self.wrote_outbox |= !emails.is_empty();
        Ok(())
    }

    async fn commit(self: Box<Self>) -> Result<(), StoreError> {
        if self.wrote_outbox {
            self.writer.commit_with_outbox(self.tx).await
        } else {
            self.tx.commit().await.map_err(db)
        }
    }
}

#[cfg(test)]
mod classification {
    use super::unavailable_code;

    #[test]
    fn outages_and_retry_requests_are_unavailable_refusals_are_not() {
        for code in ["08006", "08001", "53300", "57P01", "57P03", "40001", "40P01", "5", "517", "6", "262"] {
            assert!(unavailable_code(code), "{code}");
        }
        for code in ["23505", "23514", "22P05", "22021", "42P01", "19", "2067", "1"] {
            assert!(!unavailable_code(code), "{code}");
        }
    }
}
