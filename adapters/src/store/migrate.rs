//! A small migration runner: the SQL files under `migrations/<dialect>/`, compiled in,
//! applied in order inside one transaction each, recorded in `switchyard_migrations`.

use sqlx::{AnyPool, Row};

use super::Dialect;

pub(crate) struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

/// The migrations of one dialect's folder, in order.
macro_rules! migrations_in {
    ($dir:literal) => {
        &[
            Migration {
                version: 1,
                name: "foundation",
                sql: include_str!(concat!("../../../migrations/", $dir, "/0001_foundation.sql")),
            },
            Migration {
                version: 2,
                name: "emails",
                sql: include_str!(concat!("../../../migrations/", $dir, "/0002_emails.sql")),
            },
            Migration {
                version: 3,
                name: "webhook_secrets",
                sql: include_str!(concat!("../../../migrations/", $dir, "/0003_webhook_secrets.sql")),
            },
            Migration {
                version: 4,
                name: "analytics",
                sql: include_str!(concat!("../../../migrations/", $dir, "/0004_analytics.sql")),
            },
            Migration {
                version: 5,
                name: "access_requests",
                sql: include_str!(concat!("../../../migrations/", $dir, "/0005_access_requests.sql")),
            },
            Migration {
                version: 6,
                name: "testflight",
                sql: include_str!(concat!("../../../migrations/", $dir, "/0006_testflight.sql")),
            },
            Migration {
                version: 7,
                name: "tenant_settings",
                sql: include_str!(concat!("../../../migrations/", $dir, "/0007_tenant_settings.sql")),
            },
            Migration {
                version: 8,
                name: "worker_stats",
                sql: include_str!(concat!("../../../migrations/", $dir, "/0008_worker_stats.sql")),
            },
            Migration {
                version: 9,
                name: "dead_letters",
                sql: include_str!(concat!("../../../migrations/", $dir, "/0009_dead_letters.sql")),
            },
            Migration {
                version: 10,
                name: "webhook_events",
                sql: include_str!(concat!("../../../migrations/", $dir, "/0010_webhook_events.sql")),
            },
            Migration {
                version: 11,
                name: "outbox_fair_claim",
                sql: include_str!(concat!("../../../migrations/", $dir, "/0011_outbox_fair_claim.sql")),
            },
            Migration {
                version: 12,
                name: "parked_dead_letters",
                sql: include_str!(concat!("../../../migrations/", $dir, "/0012_parked_dead_letters.sql")),
            },
            Migration {
                version: 13,
                name: "operator_plans",
                sql: include_str!(concat!("../../../migrations/", $dir, "/0013_operator_plans.sql")),
            },
            Migration {
                version: 14,
                name: "outbox_discard",
                sql: include_str!(concat!("../../../migrations/", $dir, "/0014_outbox_discard.sql")),
            },
            Migration {
                version: 15,
                name: "worker_wait",
                sql: include_str!(concat!("../../../migrations/", $dir, "/0015_worker_wait.sql")),
            },
            Migration {
                version: 16,
                name: "operators_audit",
                sql: include_str!(concat!("../../../migrations/", $dir, "/0016_operators_audit.sql")),
            },
            Migration {
                version: 17,
                name: "api_key_lifecycle",
                sql: include_str!(concat!("../../../migrations/", $dir, "/0017_api_key_lifecycle.sql")),
            },
            Migration {
                version: 18,
                name: "imported_access_requests",
                sql: include_str!(concat!("../../../migrations/", $dir, "/0018_imported_access_requests.sql")),
            },
            Migration {
                version: 19,
                name: "event_journeys",
                sql: include_str!(concat!("../../../migrations/", $dir, "/0019_event_journeys.sql")),
            },
        ]
    };
}

pub(crate) fn migrations(dialect: Dialect) -> &'static [Migration] {
    match dialect {
        Dialect::Postgres => migrations_in!("postgres"),
        Dialect::Sqlite => migrations_in!("sqlite"),
    }
}

/// Applies every migration not yet recorded; returns how many were applied.
pub(crate) async fn run(pool: &AnyPool, dialect: Dialect) -> Result<usize, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    if dialect == Dialect::Postgres {
        // Two processes migrating at once take turns.
        sqlx::query("SELECT pg_advisory_lock(72635401)").execute(&mut *conn).await?;
    }
    let result = apply(&mut conn, dialect).await;
    if dialect == Dialect::Postgres {
        sqlx::query("SELECT pg_advisory_unlock(72635401)").execute(&mut *conn).await?;
    }
    result
}

async fn apply(conn: &mut sqlx::AnyConnection, dialect: Dialect) -> Result<usize, sqlx::Error> {
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS switchyard_migrations (
            version BIGINT PRIMARY KEY,
            name TEXT NOT NULL,
            applied_at BIGINT NOT NULL
        )",
    )
    .execute(&mut *conn)
    .await?;
    let applied: Vec<i64> = sqlx::query("SELECT version FROM switchyard_migrations")
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|row| row.try_get::<i64, _>(0))
        .collect::<Result<_, _>>()?;
    let mut count = 0;
    for migration in migrations(dialect).iter().filter(|m| !applied.contains(&m.version)) {
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        sqlx::raw_sql(migration.sql).execute(&mut *tx).await?;
        sqlx::query("INSERT INTO switchyard_migrations (version, name, applied_at) VALUES ($1, $2, $3)")
            .bind(migration.version)
            .bind(migration.name)
            .bind(shared::Timestamp::now().as_millis())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::info!(version = migration.version, name = migration.name, "applied migration");
        count += 1;
    }
    Ok(count)
}
