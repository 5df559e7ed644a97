//! The tenant directory.

use std::collections::HashSet;
use std::sync::Arc;

use super::tenant;
use crate::clock::Timestamp;
use crate::domain::{ApiKeyRecord, PlanName, TenantSettings};
use crate::ids::{ApiKeyId, TenantId};
use crate::ports::{StoreBackend, StoreError};

pub async fn directory(store: Arc<dyn StoreBackend>) {
    let acme = tenant(store.as_ref(), "Acme").await;
    let globex = tenant(store.as_ref(), "Globex").await;
    assert_eq!(store.tenant(acme.id).await.expect("get"), Some(acme.clone()));
    assert_eq!(store.tenant(TenantId::new()).await.expect("get"), None);
    let all: HashSet<TenantId> = store.list_tenants().await.expect("list").into_iter().map(|t| t.id).collect();
    assert_eq!(all, HashSet::from([acme.id, globex.id]));
}

pub async fn api_keys(store: Arc<dyn StoreBackend>) {
    let acme = tenant(store.as_ref(), "Acme").await;
    let key = ApiKeyRecord {
        id: ApiKeyId::new(),
        tenant_id: acme.id,
        secret_hash: "ab".repeat(32),
        created_at: Timestamp::now(),
        revoked_at: None,
    };
    store.create_api_key(&key).await.expect("create key");
    assert_eq!(store.api_key(key.id).await.expect("get"), Some(key.clone()));
    assert_eq!(store.api_key(ApiKeyId::new()).await.expect("get"), None);
    let orphan = ApiKeyRecord { id: ApiKeyId::new(), tenant_id: TenantId::new(), ..key };
    let error = store.create_api_key(&orphan).await.expect_err("unknown tenant");
    assert!(matches!(error, StoreError::NotFound(_)), "{error:?}");
}

pub async fn settings(store: Arc<dyn StoreBackend>) {
    let acme = tenant(store.as_ref(), "Acme").await;
    let defaults = store.tenant_settings(acme.id).await.expect("get").expect("present");
    assert_eq!(defaults, TenantSettings { plan: PlanName::standard(), alert_webhook_url: None });
    let pro = TenantSettings {
        plan: PlanName::parse("pro").expect("plan"),
        alert_webhook_url: Some("https://discord.com/api/webhooks/1/x".into()),
    };
    store.set_tenant_settings(acme.id, &pro).await.expect("set");
    assert_eq!(store.tenant_settings(acme.id).await.expect("get"), Some(pro.clone()));
    assert_eq!(store.tenant_settings(TenantId::new()).await.expect("get"), None);
    assert!(matches!(store.set_tenant_settings(TenantId::new(), &pro).await, Err(StoreError::NotFound(_))));
}
