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

/// A settings change applies in one step: concurrent changes of the plan and of the
/// webhook both land, every time.
pub async fn concurrent_setting_changes_all_land(store: Arc<dyn StoreBackend>) {
    use crate::domain::SettingsChange;

    let acme = tenant(store.as_ref(), "Acme").await;
    assert!(matches!(
        store.change_tenant_settings(TenantId::new(), &SettingsChange::default()).await,
        Err(StoreError::NotFound(_))
    ));
    for round in 0..20 {
        let plan = PlanName::parse(if round % 2 == 0 { "pro" } else { "enterprise" }).expect("plan");
        let url = format!("https://discord.com/api/webhooks/{round}/x");
        let by_plan = SettingsChange { plan: Some(plan.clone()), alert_webhook_url: None };
        let by_url = SettingsChange { plan: None, alert_webhook_url: Some(Some(url.clone())) };
        let (a, b) = tokio::join!(
            store.change_tenant_settings(acme.id, &by_plan),
            store.change_tenant_settings(acme.id, &by_url)
        );
        let (a, b) = (a.expect("change"), b.expect("change"));
        assert_eq!(a.plan, plan, "each change returns the settings after it");
        assert_eq!(b.alert_webhook_url.as_deref(), Some(url.as_str()));
        let now = store.tenant_settings(acme.id).await.expect("get").expect("present");
        assert_eq!(now, TenantSettings { plan, alert_webhook_url: Some(url) }, "round {round}: both changes landed");
    }
    let cleared = SettingsChange { plan: None, alert_webhook_url: Some(None) };
    assert_eq!(store.change_tenant_settings(acme.id, &cleared).await.expect("change").alert_webhook_url, None);
}
