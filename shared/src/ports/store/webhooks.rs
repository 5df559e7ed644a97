//! Inbound webhooks: the secret each source signs with, per tenant.

use async_trait::async_trait;

use super::StoreError;
use crate::config::Secret;
use crate::domain::webhooks::ReceivedWebhook;
use crate::ids::TenantId;

/// One page of a tenant's received webhooks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookPage {
    /// Oldest first.
    pub events: Vec<ReceivedWebhook>,
    /// The cursor of the next page, when there may be one.
    pub next: Option<i64>,
}

/// The webhook a consumer records goes through the inbox transaction
/// ([`super::Effects::record_webhook`]), so each is recorded once.
#[async_trait]
pub trait WebhookStore: Send + Sync + 'static {
    /// The tenant's received webhooks after the cursor `after` (none: from the first),
    /// at most `limit`, oldest first.
    async fn webhook_events(&self, tenant: TenantId, after: Option<i64>, limit: u32)
        -> Result<WebhookPage, StoreError>;
    /// Sets (or replaces) the secret webhooks from `source` are signed with for `tenant`.
    async fn set_webhook_secret(&self, tenant: TenantId, source: &str, secret: &Secret) -> Result<(), StoreError>;
    async fn webhook_secret(&self, tenant: TenantId, source: &str) -> Result<Option<Secret>, StoreError>;
}
