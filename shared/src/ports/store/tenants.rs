//! The tenant directory: tenants, their settings and their API keys.

use async_trait::async_trait;

use super::StoreError;
use crate::clock::Timestamp;
use crate::domain::{ApiKeyRecord, SettingsChange, Tenant, TenantSettings, TenantSummary};
use crate::ids::{ApiKeyId, TenantId};

/// Tenants and keys. Operator-level by nature: it is how a request finds its tenant.
#[async_trait]
pub trait TenantDirectory: Send + Sync + 'static {
    /// Creates a tenant (a duplicate id is refused by the database).
    async fn create_tenant(&self, tenant: &Tenant) -> Result<(), StoreError>;
    async fn tenant(&self, id: TenantId) -> Result<Option<Tenant>, StoreError>;
    /// Every tenant, by id.
    async fn list_tenants(&self) -> Result<Vec<Tenant>, StoreError>;
    /// `None` when there is no such tenant.
    async fn tenant_settings(&self, id: TenantId) -> Result<Option<TenantSettings>, StoreError>;
    /// Replaces a tenant's settings; `NotFound` when there is no such tenant.
    async fn set_tenant_settings(&self, id: TenantId, settings: &TenantSettings) -> Result<(), StoreError>;
    /// Applies `change` in one step (two concurrent changes of different settings both
    /// land) and returns the settings after it; `NotFound` when there is no such tenant.
    async fn change_tenant_settings(&self, id: TenantId, change: &SettingsChange)
        -> Result<TenantSettings, StoreError>;
    /// Fails with `NotFound` when the key's tenant does not exist.
    async fn create_api_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError>;
    /// Looks a key up by its public id (authentication).
    async fn api_key(&self, id: ApiKeyId) -> Result<Option<ApiKeyRecord>, StoreError>;
    /// Tenants after `after` in creation order, those whose name contains `search`
    /// (any case) when given, at most `limit`, with their plan and active keys counted
    /// at `now`.
    async fn tenant_page(
        &self,
        search: Option<&str>,
        after: Option<TenantId>,
        limit: u32,
        now: Timestamp,
    ) -> Result<Vec<TenantSummary>, StoreError>;
    /// A tenant's keys, newest first, revoked ones included.
    async fn api_keys(&self, tenant: TenantId) -> Result<Vec<ApiKeyRecord>, StoreError>;
    /// Revokes a key of `tenant` at `now`; false when it has no such unrevoked key.
    async fn revoke_api_key(&self, tenant: TenantId, id: ApiKeyId, now: Timestamp) -> Result<bool, StoreError>;
    /// Records when keys were last used (one statement a call; API processes call it
    /// at most once a minute per key).
    async fn record_key_use(&self, uses: &[(ApiKeyId, Timestamp)]) -> Result<(), StoreError>;
    /// The keys revoked at or after `since`, so API processes drop them from their
    /// caches.
    async fn keys_revoked_since(&self, since: Timestamp) -> Result<Vec<ApiKeyId>, StoreError>;
}
