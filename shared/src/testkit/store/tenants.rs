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
        expires_at: None,
        last_used_at: None,
    };
    store.create_api_key(&key).await.expect("create key");
    assert_eq!(store.api_key(key.id).await.expect("get"), Some(key.clone()));
    assert_eq!(store.api_key(ApiKeyId::new()).await.expect("get"), None);
    let orphan = ApiKeyRecord { id: ApiKeyId::new(), tenant_id: TenantId::new(), ..key.clone() };
    let error = store.create_api_key(&orphan).await.expect_err("unknown tenant");
    assert!(matches!(error, StoreError::NotFound(_)), "{error:?}");

    // A second key that expires; both listed newest first.
    let now = Timestamp::now();
    let expiring = ApiKeyRecord {
        id: ApiKeyId::new(),
        created_at: key.created_at.plus(std::time::Duration::from_millis(1)),
        expires_at: Some(now.plus(std::time::Duration::from_secs(60))),
        ..key.clone()
    };
    store.create_api_key(&expiring).await.expect("create key");
    let listed = store.api_keys(acme.id).await.expect("list");
    assert_eq!(listed.iter().map(|k| k.id).collect::<Vec<_>>(), [expiring.id, key.id]);
    assert_eq!(listed[0].expires_at, expiring.expires_at);
    let globex = tenant(store.as_ref(), "Globex").await;
    assert!(store.api_keys(globex.id).await.expect("list").is_empty(), "another tenant's keys are not listed");
    assert!(expiring.usable_at(now) && !expiring.usable_at(now.plus(std::time::Duration::from_secs(61))));

    // Use is recorded in one call for many keys, and never moves back.
    let used = now.plus(std::time::Duration::from_secs(5));
    store.record_key_use(&[(key.id, used), (expiring.id, used)]).await.expect("record");
    store.record_key_use(&[(key.id, now)]).await.expect("an older use");
    assert_eq!(store.api_key(key.id).await.expect("get").expect("key").last_used_at, Some(used));

    // Revocation: once, by its tenant only, and findable by time.
    assert!(!store.revoke_api_key(globex.id, key.id, now).await.expect("revoke"), "not Globex's key");
    let before = Timestamp::from_millis(now.as_millis() - 1);
    assert!(store.keys_revoked_since(before).await.expect("since").is_empty());
    assert!(store.revoke_api_key(acme.id, key.id, now).await.expect("revoke"));
    assert!(!store.revoke_api_key(acme.id, key.id, now).await.expect("revoke"), "once");
    assert_eq!(store.api_key(key.id).await.expect("get").expect("key").revoked_at, Some(now));
    assert_eq!(store.keys_revoked_since(before).await.expect("since"), [key.id]);
    assert!(store.keys_revoked_since(now.plus(std::time::Duration::from_millis(1))).await.expect("since").is_empty());
}

pub async fn tenants_are_paged_and_searched(store: Arc<dyn StoreBackend>) {
    let mut made = Vec::new();
    for name in ["Acme", "Globex", "acme labs", "50%_off"] {
        made.push(tenant(store.as_ref(), name).await);
    }
    let key = |tenant: TenantId, revoked: bool| ApiKeyRecord {
        id: ApiKeyId::new(),
        tenant_id: tenant,
        secret_hash: "cd".repeat(32),
        created_at: Timestamp::now(),
        revoked_at: revoked.then(Timestamp::now),
        expires_at: None,
        last_used_at: None,
    };
    for k in [key(made[0].id, false), key(made[0].id, false), key(made[0].id, true), key(made[1].id, false)] {
        store.create_api_key(&k).await.expect("key");
    }
    let now = Timestamp::now();
    let all = store.tenant_page(None, None, 10, now).await.expect("page");
    assert_eq!(all.iter().map(|t| t.tenant.id).collect::<Vec<_>>(), made.iter().map(|t| t.id).collect::<Vec<_>>());
    assert_eq!(all.iter().map(|t| t.active_keys).collect::<Vec<_>>(), [2, 1, 0, 0], "revoked keys do not count");
    assert_eq!(all[0].plan, PlanName::standard());
    let first = store.tenant_page(None, None, 2, now).await.expect("page");
    let next = store.tenant_page(None, Some(first[1].tenant.id), 2, now).await.expect("page");
    assert_eq!(next.iter().map(|t| t.tenant.id).collect::<Vec<_>>(), [made[2].id, made[3].id]);
    let names = |search: &'static str| {
        let store = store.clone();
        async move {
            let page = store.tenant_page(Some(search), None, 10, Timestamp::now()).await.expect("search");
            page.iter().map(|t| t.tenant.name.as_str().to_owned()).collect::<Vec<_>>()
        }
    };
    assert_eq!(names("ACME").await, ["Acme", "acme labs"], "any case, anywhere in the name");
    assert_eq!(names("%").await, ["50%_off"], "% matches itself");
    assert_eq!(names("_").await, ["50%_off"], "_ matches itself");
    assert!(names("initech").await.is_empty());
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
