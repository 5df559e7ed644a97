//! Inbound webhooks: the secret each source signs with, per tenant.

use async_trait::async_trait;

use super::StoreError;
use crate::config::Secret;
use crate::ids::TenantId;

#[async_trait]
pub trait WebhookStore: Send + Sync + 'static {
    /// Sets (or replaces) the secret webhooks from `source` are signed with for `tenant`.
    async fn set_webhook_secret(&self, tenant: TenantId, source: &str, secret: &Secret) -> Result<(), StoreError>;
    async fn webhook_secret(&self, tenant: TenantId, source: &str) -> Result<Option<Secret>, StoreError>;
}
