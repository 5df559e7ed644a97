//! Operators and the append-only audit log.

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::Row;

use shared::domain::operators::{OperatorName, OperatorRecord, Role};
use shared::ports::{AuditEntry, AuditFilter, AuditLog, NewAuditEntry, Operators, StoreError};
use shared::{TenantId, Timestamp};

use super::{corrupt, db, text, SqlStore};

fn operator_from(row: &AnyRow) -> Result<OperatorRecord, StoreError> {
    Ok(OperatorRecord {
        name: OperatorName::parse(&text(row, "name")?).map_err(|e| corrupt("operator name", e))?,
        role: Role::parse(&text(row, "role")?).map_err(|e| corrupt("operator role", e))?,
        token_hash: text(row, "token_hash")?,
        created_at: Timestamp::from_millis(row.try_get("created_at").map_err(db)?),
        revoked_at: row.try_get::<Option<i64>, _>("revoked_at").map_err(db)?.map(Timestamp::from_millis),
    })
}

const OPERATOR_COLUMNS: &str = "name, role, token_hash, created_at, revoked_at";

#[async_trait]
impl Operators for SqlStore {
    async fn create_operator(&self, operator: &OperatorRecord) -> Result<(), StoreError> {
        let inserted = sqlx::query(
            "INSERT INTO operators (name, role, token_hash, created_at, revoked_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(operator.name.as_str())
        .bind(operator.role.as_str())
        .bind(operator.token_hash.as_str())
        .bind(operator.created_at.as_millis())
        .bind(operator.revoked_at.map(Timestamp::as_millis))
        .execute(&self.pool)
        .await
        .map_err(db)?;
        if inserted.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!("there is an operator named {} already", operator.name)));
        }
        Ok(())
    }

    async fn operators(&self) -> Result<Vec<OperatorRecord>, StoreError> {
        let sql = format!("SELECT {OPERATOR_COLUMNS} FROM operators ORDER BY name");
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await.map_err(db)?;
        rows.iter().map(operator_from).collect()
    }

    async fn revoke_operator(&self, name: &OperatorName, now: Timestamp) -> Result<bool, StoreError> {
        let revoked = sqlx::query("UPDATE operators SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL")
            .bind(now.as_millis())
            .bind(name.as_str())
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(revoked.rows_affected() == 1)
    }

    async fn operator_by_token(&self, token_hash: &str) -> Result<Option<OperatorRecord>, StoreError> {
        let sql = format!("SELECT {OPERATOR_COLUMNS} FROM operators WHERE token_hash = $1 AND revoked_at IS NULL");
        let row = sqlx::query(&sql).bind(token_hash.to_owned()).fetch_optional(&self.pool).await.map_err(db)?;
        row.as_ref().map(operator_from).transpose()
    }
}

/// The longest target or outcome kept per entry.
const MAX_TEXT_CHARS: usize = 4_000;

#[async_trait]
impl AuditLog for SqlStore {
    async fn append_audit(&self, entry: &NewAuditEntry) -> Result<i64, StoreError> {
        let clip = |text: &str| text.chars().take(MAX_TEXT_CHARS).collect::<String>();
        let row = sqlx::query(
            "INSERT INTO audit_log (at, operator, role, action, target, tenant_id, count, outcome)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING seq",
        )
        .bind(entry.at.as_millis())
        .bind(clip(&entry.operator))
        .bind(entry.role.as_str())
        .bind(clip(&entry.action))
        .bind(entry.target.as_deref().map(clip))
        .bind(entry.tenant.map(|t| t.to_string()))
        .bind(entry.count.map(|n| i64::try_from(n).unwrap_or(i64::MAX)))
        .bind(clip(&entry.outcome))
        .fetch_one(&self.pool)
        .await
        .map_err(db)?;
        row.try_get(0).map_err(db)
    }

    async fn audit(
        &self,
        filter: &AuditFilter,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let mut clauses = vec!["seq < $1".to_owned()];
        let mut texts: Vec<String> = Vec::new();
        let mut numbers: Vec<i64> = Vec::new();
        // Text parameters first ($3…), then times: numbered as they are bound.
        for (column, value) in [
            ("operator", filter.operator.clone()),
            ("action", filter.action.clone()),
            ("tenant_id", filter.tenant.map(|t| t.to_string())),
        ] {
            if let Some(value) = value {
                texts.push(value);
                clauses.push(format!("{column} = ${}", 2 + texts.len()));
            }
        }
        for (op, value) in [(">=", filter.from), ("<", filter.to)] {
            if let Some(value) = value {
                numbers.push(value.as_millis());
                clauses.push(format!("at {op} ${}", 2 + texts.len() + numbers.len()));
            }
        }
        let sql = format!(
            "SELECT seq, at, operator, role, action, target, tenant_id, count, outcome FROM audit_log
             WHERE {} ORDER BY seq DESC LIMIT $2",
            clauses.join(" AND ")
        );
        let mut query = sqlx::query(&sql).bind(before.unwrap_or(i64::MAX)).bind(i64::from(limit));
        for value in texts {
            query = query.bind(value);
        }
        for value in numbers {
            query = query.bind(value);
        }
        let rows = query.fetch_all(&self.pool).await.map_err(db)?;
        rows.iter()
            .map(|row| {
                let count: Option<i64> = row.try_get("count").map_err(db)?;
                Ok(AuditEntry {
                    id: row.try_get("seq").map_err(db)?,
                    entry: NewAuditEntry {
                        at: Timestamp::from_millis(row.try_get("at").map_err(db)?),
                        operator: text(row, "operator")?,
                        role: Role::parse(&text(row, "role")?).map_err(|e| corrupt("audit role", e))?,
                        action: text(row, "action")?,
                        target: row.try_get("target").map_err(db)?,
                        tenant: row
                            .try_get::<Option<String>, _>("tenant_id")
                            .map_err(db)?
                            .map(|t| TenantId::parse(&t))
                            .transpose()
                            .map_err(|e| corrupt("audit tenant", e))?,
                        count: count.map(|n| u64::try_from(n).unwrap_or(0)),
                        outcome: text(row, "outcome")?,
                    },
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use shared::config::{Secret, StoreConfig};
    use shared::domain::operators::Role;
    use shared::ports::{AuditLog, NewAuditEntry};
    use shared::Timestamp;

    use super::SqlStore;

    async fn refuses_changes(store: &SqlStore) {
        store.migrate().await.expect("migrate");
        let entry = NewAuditEntry {
            at: Timestamp::now(),
            operator: "ana".into(),
            role: Role::Admin,
            action: "POST /v1/dead-letters/purge".into(),
            target: None,
            tenant: None,
            count: Some(3),
            outcome: "ok".into(),
        };
        store.append_audit(&entry).await.expect("append");
        for statement in ["UPDATE audit_log SET outcome = 'nothing happened'", "DELETE FROM audit_log"] {
            let error = sqlx::query(statement).execute(&store.pool).await.expect_err(statement);
            assert!(error.to_string().contains("append-only"), "{statement}: {error}");
        }
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_log").fetch_one(&store.pool).await.unwrap();
        assert_eq!(count, 1);
    }

    #[tokio::test]
    async fn the_audit_log_refuses_updates_and_deletes_on_sqlite() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqlStore::connect(&StoreConfig::Sqlite { path: dir.path().join("s.db") }).await.expect("store");
        refuses_changes(&store).await;
    }

    #[tokio::test]
    async fn the_audit_log_refuses_updates_and_deletes_on_postgres() {
        let url = crate::testing::fresh_postgres_database().await.expect("a test database");
        let config = StoreConfig::Postgres {
            url: Secret::new(url),
            max_connections: 2,
            acquire_timeout: Duration::from_secs(5),
        };
        refuses_changes(&SqlStore::connect(&config).await.expect("store")).await;
    }
}
