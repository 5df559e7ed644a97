//! Webhook secrets.

use std::sync::Arc;

use super::tenant;
use crate::config::Secret;
use crate::ports::StoreBackend;

pub async fn secrets_per_tenant_and_source(store: Arc<dyn StoreBackend>) {
    let acme = tenant(store.as_ref(), "Acme").await;
    let globex = tenant(store.as_ref(), "Globex").await;
    assert_eq!(store.webhook_secret(acme.id, "stripe").await.expect("get"), None);
    store.set_webhook_secret(acme.id, "stripe", &Secret::new("whsec_1")).await.expect("set");
    store.set_webhook_secret(acme.id, "stripe", &Secret::new("whsec_2")).await.expect("replace");
    assert_eq!(
        store.webhook_secret(acme.id, "stripe").await.expect("get").as_ref().map(Secret::expose),
        Some("whsec_2")
    );
    assert_eq!(store.webhook_secret(globex.id, "stripe").await.expect("get"), None, "per tenant");
    assert_eq!(store.webhook_secret(acme.id, "github").await.expect("get"), None, "per source");
}
