//! The SQL store: one implementation of every store port for PostgreSQL and SQLite,
//! through sqlx's `Any` driver.
//!
//! One file per port (`tenants`, `webhooks`, `events`, `outbox`, `inbox`, `feedback`,
//! `emails`, `analytics`, `access`, `testflight`, `health`), each holding that port's
//! `impl` and its row mapping. `append` is the group commit behind
//! `EventLog::append_event`; `migrate` runs the compiled-in migrations. This file holds
//! the connection, the error sorting and the few helpers the ports share. The dialects
//! differ only where they must, all behind [`Dialect`]: claiming leased rows
//! (PostgreSQL serialises claimers with an advisory lock and skips locked rows; SQLite
//! has a single writer) and waking relays (LISTEN/NOTIFY on PostgreSQL, in-process on
//! SQLite).

mod access;
mod analytics;
mod append;
mod emails;
mod events;
mod feedback;
mod group;
mod health;
mod inbox;
mod journeys;
mod migrate;
mod operators;
mod outbox;
mod parking;
mod plans;
mod tenants;
mod testflight;
mod webhooks;

use std::path::Path;
use std::sync::{Arc, Once};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::any::{AnyArguments, AnyPoolOptions, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, AnyPool, Row, Transaction};
use tokio::sync::{Notify, OnceCell};

use shared::config::StoreConfig;
use shared::ports::{Readiness, StoreError};
use shared::{EventEnvelope, TenantId};

pub(crate) const OUTBOX_CHANNEL: &str = "switchyard_outbox";
const CLAIM_LOCK: i64 = 72_635_402;
const SQLITE_PRAGMAS: [&str; 4] = [
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = NORMAL",
    "PRAGMA foreign_keys = ON",
    "PRAGMA busy_timeout = 5000",
];

/// Which SQL database; every difference between the two is a method here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    Sqlite,
}

impl Dialect {
    /// The clause a lease claim's candidate rows end with: PostgreSQL skips rows
    /// another claimer holds locked; SQLite has one writer, so there are none.
    fn skip_locked(self) -> &'static str {
        match self {
            Dialect::Postgres => "FOR UPDATE SKIP LOCKED",
            Dialect::Sqlite => "",
        }
    }

    /// Makes claimers inside `tx` take turns, so each sees the claims the previous one
    /// committed (PostgreSQL's transaction-scoped advisory lock; SQLite's single writer
    /// already does).
    async fn take_claim_turn(self, tx: &mut Transaction<'static, Any>) -> Result<(), StoreError> {
        if self == Dialect::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(CLAIM_LOCK).execute(&mut **tx).await.map_err(db)?;
        }
        Ok(())
    }

    /// Whether other processes learn of outbox inserts through LISTEN/NOTIFY.
    fn notifies_across_processes(self) -> bool {
        self == Dialect::Postgres
    }

    /// How many concurrent group-commit writers (appends, and consumers' effects) the
    /// database can use.
    fn append_writers(self) -> usize {
        match self {
            Dialect::Postgres => 2,
            Dialect::Sqlite => 1,
        }
    }
}

/// Refuses an envelope of another tenant than the one a write is scoped to.
fn check_envelope(tenant: TenantId, envelope: &EventEnvelope) -> Result<(), StoreError> {
    StoreError::check_tenant(|| format!("event {}", envelope.id), envelope.tenant_id, tenant)
}

type AnyQuery<'q> = Query<'q, Any, AnyArguments<'q>>;

/// The statement of a lease claim on `table` (which has `seq` and `claimed_until`
/// columns): it leases the rows `candidates` selects (a `SELECT seq … ORDER BY … LIMIT`
/// whose parameters start at `$2`) until `$1` and returns their `returning` columns.
fn lease_claim_sql(dialect: Dialect, table: &str, candidates: &str, returning: &str) -> String {
    format!(
        "UPDATE {table} SET claimed_until = $1 WHERE seq IN ({candidates} {}) RETURNING {returning}",
        dialect.skip_locked()
    )
}

/// Runs `query`, an UPDATE of one tenant's row whose last two parameters are the
/// tenant and the row id (bound here); `NotFound` naming `what` when no row matched.
async fn update_owned<'q, 'c, E>(
    executor: E,
    query: AnyQuery<'q>,
    tenant: TenantId,
    id: &str,
    what: &str,
) -> Result<(), StoreError>
where
    E: sqlx::Executor<'c, Database = Any>,
    'q: 'c,
{
    let updated = query.bind(tenant.to_string()).bind(id.to_owned()).execute(executor).await.map_err(db)?;
    if updated.rows_affected() == 0 {
        return Err(StoreError::NotFound(format!("{what} {id} of tenant {tenant}")));
    }
    Ok(())
}

/// Tables whose rows move through statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Table {
    Feedback,
    Emails,
}

impl Table {
    fn name(self) -> &'static str {
        match self {
            Table::Feedback => "feedback",
            Table::Emails => "emails",
        }
    }
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
    appender: group::GroupCommit<append::Writer>,
    /// Consumers' effects and status transitions.
    effects: group::GroupCommit<inbox::EffectWriter>,
    /// Feedback submissions (a feedback row and its outbox row each).
    submissions: group::GroupCommit<feedback::SubmissionWriter>,
    /// For writes that a crash of the database server may lose at the price of a
    /// repeat, and nothing more: the relay's claims and published marks (a republished
    /// event is dropped by the transport's dedup id, or applied once by the inbox) and
    /// a feedback's `processing` mark (set again by the redelivery). On PostgreSQL its
    /// connections commit without waiting for their WAL flush (`synchronous_commit =
    /// off`), so these commits cost no disk wait; a kill -9 of this process loses
    /// none of them, and the next durable commit flushes them with its own. On SQLite
    /// it is the one pool.
    relaxed: AnyPool,
    /// Status marks through `relaxed`, with a group commit of their own so that they
    /// never share a transaction with a durable write.
    marks: group::GroupCommit<inbox::EffectWriter>,
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
        // No ping before each use (sqlx's default costs a round trip per acquire): a
        // connection the server dropped fails its statement with an I/O error, which
        // is `Unavailable`, and every caller waits that out and retries.
        let (dialect, url, options) = match config {
            StoreConfig::Postgres { url, max_connections, acquire_timeout } => (
                Dialect::Postgres,
                url.expose().to_owned(),
                AnyPoolOptions::new()
                    .max_connections(*max_connections)
                    .acquire_timeout(*acquire_timeout)
                    .test_before_acquire(false),
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
                    .test_before_acquire(false)
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
        let (options, relaxed) = match config {
            StoreConfig::Postgres { max_connections, acquire_timeout, .. } if *max_connections >= 2 => {
                // A quarter of the connections (at least one) for the relaxed writes.
                let relaxed = (*max_connections / 4).max(1);
                let pool = AnyPoolOptions::new()
                    .max_connections(relaxed)
                    .test_before_acquire(false)
                    .acquire_timeout(*acquire_timeout)
                    .after_connect(|conn, _meta| {
                        Box::pin(async move {
                            sqlx::query("SET synchronous_commit = off").execute(&mut *conn).await?;
                            Ok(())
                        })
                    })
                    .connect_lazy(&url)
                    .map_err(|source| ConnectError::Connect { dialect, source })?;
                (options.max_connections(max_connections - relaxed), Some(pool))
            }
            _ => (options, None),
        };
        let pool = options.connect(&url).await.map_err(|source| ConnectError::Connect { dialect, source })?;
        let relaxed = relaxed.unwrap_or_else(|| pool.clone());
        let outbox_signal = Arc::new(Notify::new());
        let remote_wake = dialect.notifies_across_processes().then(|| append::Writer::start_notifier(pool.clone()));
        let writer = append::Writer { pool: pool.clone(), outbox_signal: outbox_signal.clone(), remote_wake };
        let appender = group::GroupCommit::start(writer.clone(), dialect.append_writers());
        let effects = group::GroupCommit::start(
            inbox::EffectWriter { pool: pool.clone(), writer: writer.clone() },
            dialect.append_writers(),
        );
        let submissions =
            group::GroupCommit::start(feedback::SubmissionWriter { writer: writer.clone() }, dialect.append_writers());
        let marks = group::GroupCommit::start(
            inbox::EffectWriter { pool: relaxed.clone(), writer: writer.clone() },
            dialect.append_writers(),
        );
        Ok(Self {
            pool,
            dialect,
            outbox_signal,
            listener: OnceCell::new(),
            database_url: url,
            writer,
            appender,
            effects,
            submissions,
            relaxed,
            marks,
        })
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Applies pending migrations; returns how many.
    pub async fn migrate(&self) -> Result<usize, ConnectError> {
        migrate::run(&self.pool, self.dialect).await.map_err(ConnectError::Migrate)
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

fn in_list(first_param: usize, count: usize) -> String {
    (first_param..first_param + count).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

#[async_trait]
impl Readiness for SqlStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map_err(db)?;
        Ok(())
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

#[cfg(test)]
mod relaxed_commits {
    use std::time::Duration;

    use shared::config::{Secret, StoreConfig};

    use super::SqlStore;

    async fn setting(pool: &sqlx::AnyPool) -> String {
        sqlx::query_scalar("SELECT current_setting('synchronous_commit')").fetch_one(pool).await.unwrap()
    }

    /// Durable writes wait for their WAL flush; the relaxed pool's do not, and the two
    /// share the configured connections rather than adding to them.
    #[tokio::test]
    async fn only_the_relaxed_pool_skips_the_flush_on_postgres() {
        let url = crate::testing::fresh_postgres_database().await.expect("a test database");
        let config = StoreConfig::Postgres {
            url: Secret::new(url),
            max_connections: 8,
            acquire_timeout: Duration::from_secs(5),
        };
        let store = SqlStore::connect(&config).await.unwrap();
        assert_eq!(setting(&store.pool).await, "on");
        assert_eq!(setting(&store.relaxed).await, "off");
        assert_eq!(store.pool.options().get_max_connections() + store.relaxed.options().get_max_connections(), 8);
    }
}
