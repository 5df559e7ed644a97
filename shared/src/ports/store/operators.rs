//! Operators and the audit log.
//!
//! The audit log is append-only: the port has no way to change or delete an entry, and
//! the tables refuse UPDATE and DELETE (a trigger).

use async_trait::async_trait;

use super::StoreError;
use crate::clock::Timestamp;
use crate::domain::operators::{OperatorName, OperatorRecord, Role};
use crate::ids::TenantId;

/// Operator-level: the deployment's named operators.
#[async_trait]
pub trait Operators: Send + Sync + 'static {
    /// `Conflict` when the name is taken (by a revoked operator too).
    async fn create_operator(&self, operator: &OperatorRecord) -> Result<(), StoreError>;
    /// Every operator, revoked ones included, by name.
    async fn operators(&self) -> Result<Vec<OperatorRecord>, StoreError>;
    /// Revokes `name`'s token at `now`; false when there is no such active operator.
    async fn revoke_operator(&self, name: &OperatorName, now: Timestamp) -> Result<bool, StoreError>;
    /// The active operator whose token hashes to `token_hash`.
    async fn operator_by_token(&self, token_hash: &str) -> Result<Option<OperatorRecord>, StoreError>;
}

/// What one audit entry records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAuditEntry {
    pub at: Timestamp,
    /// Who: an operator's name, `admin` for the bootstrap token, `cli` for local
    /// commands on the store.
    pub operator: String,
    pub role: Role,
    /// What: the route (`POST /v1/dead-letters/redrive`) or the command.
    pub action: String,
    /// The selection or target (ids, a filter, a plan), as JSON text.
    pub target: Option<String>,
    /// The tenant it concerned, when one.
    pub tenant: Option<TenantId>,
    /// How many things it acted on, when that is a number.
    pub count: Option<u64>,
    /// `ok`, `refused: …` (the caller's fault: 4xx) or `failed: …` (5xx).
    pub outcome: String,
}

/// An entry as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Newer entries have larger ids.
    pub id: i64,
    pub entry: NewAuditEntry,
}

/// What a listing of the audit log is narrowed to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub operator: Option<String>,
    pub action: Option<String>,
    pub tenant: Option<TenantId>,
    /// At or after.
    pub from: Option<Timestamp>,
    /// Before.
    pub to: Option<Timestamp>,
}

/// Operator-level: the append-only audit log.
#[async_trait]
pub trait AuditLog: Send + Sync + 'static {
    async fn append_audit(&self, entry: &NewAuditEntry) -> Result<i64, StoreError>;
    /// Entries matching `filter`, newest first, numbered below `before`, at most `limit`.
    async fn audit(&self, filter: &AuditFilter, before: Option<i64>, limit: u32)
        -> Result<Vec<AuditEntry>, StoreError>;
}
