//! Operators and the audit log.

use std::sync::Arc;
use std::time::Duration;

use super::tenant;
use crate::clock::Timestamp;
use crate::domain::operators::{OperatorName, OperatorRecord, Role};
use crate::ports::{AuditFilter, NewAuditEntry, StoreBackend, StoreError};

fn operator(name: &str, role: Role, hash: &str) -> OperatorRecord {
    OperatorRecord {
        name: OperatorName::parse(name).expect("name"),
        role,
        token_hash: hash.to_owned(),
        created_at: Timestamp::from_millis(1_700_000_000_000),
        revoked_at: None,
    }
}

pub async fn operators_are_named_found_by_token_and_revoked(store: Arc<dyn StoreBackend>) {
    let ana = operator("ana", Role::Admin, "hash-ana");
    let bo = operator("bo", Role::Viewer, "hash-bo");
    store.create_operator(&bo).await.expect("create");
    store.create_operator(&ana).await.expect("create");
    let taken = store.create_operator(&operator("ana", Role::Viewer, "hash-other")).await;
    assert!(matches!(taken, Err(StoreError::Conflict(_))), "names are unique: {taken:?}");
    assert_eq!(store.operators().await.expect("list"), vec![ana.clone(), bo.clone()], "by name");
    assert_eq!(store.operator_by_token("hash-bo").await.expect("find"), Some(bo.clone()));
    assert_eq!(store.operator_by_token("hash-nobody").await.expect("find"), None);

    let now = Timestamp::from_millis(1_700_000_100_000);
    assert!(store.revoke_operator(&bo.name, now).await.expect("revoke"));
    assert!(!store.revoke_operator(&bo.name, now).await.expect("revoke"), "once");
    assert!(!store.revoke_operator(&OperatorName::parse("cy").expect("name"), now).await.expect("revoke"));
    assert_eq!(store.operator_by_token("hash-bo").await.expect("find"), None, "a revoked token finds nobody");
    let listed = store.operators().await.expect("list");
    assert_eq!(listed[1].revoked_at, Some(now), "revoked ones are still listed");
    let again = store.create_operator(&operator("bo", Role::Viewer, "hash-bo-2")).await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "a revoked name is not reused");
}

pub async fn the_audit_log_lists_newest_first_by_filter(store: Arc<dyn StoreBackend>) {
    let acme = tenant(store.as_ref(), "Acme").await;
    let start = Timestamp::now();
    let entry = |n: u64, operator: &str, action: &str, tenant| NewAuditEntry {
        at: start.plus(Duration::from_secs(n)),
        operator: operator.into(),
        role: Role::Operator,
        action: action.into(),
        target: Some(format!("{{\"n\": {n}}}")),
        tenant,
        count: Some(n),
        outcome: if n == 2 { "refused: viewer may not".into() } else { "ok".into() },
    };
    let entries = [
        entry(0, "ana", "POST /v1/dead-letters/redrive", None),
        entry(1, "bo", "PATCH /v1/tenants/{id}", Some(acme.id)),
        entry(2, "bo", "POST /v1/dead-letters/purge", None),
        entry(3, "ana", "PATCH /v1/tenants/{id}", Some(acme.id)),
    ];
    let mut ids = Vec::new();
    for e in &entries {
        ids.push(store.append_audit(e).await.expect("append"));
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "later entries have larger ids");
    let all = store.audit(&AuditFilter::default(), None, 10).await.expect("list");
    assert_eq!(
        all.iter().map(|e| e.entry.clone()).collect::<Vec<_>>(),
        entries.iter().rev().cloned().collect::<Vec<_>>()
    );
    let page = store.audit(&AuditFilter::default(), Some(all[1].id), 2).await.expect("page");
    assert_eq!(page.iter().map(|e| e.id).collect::<Vec<_>>(), [ids[1], ids[0]]);
    let counts = |filter: AuditFilter| {
        let store = store.clone();
        async move { store.audit(&filter, None, 10).await.expect("list").iter().map(|e| e.entry.count).collect::<Vec<_>>() }
    };
    assert_eq!(counts(AuditFilter { operator: Some("bo".into()), ..Default::default() }).await, [Some(2), Some(1)]);
    let patch = AuditFilter { action: Some("PATCH /v1/tenants/{id}".into()), ..Default::default() };
    assert_eq!(counts(patch).await, [Some(3), Some(1)]);
    assert_eq!(counts(AuditFilter { tenant: Some(acme.id), ..Default::default() }).await, [Some(3), Some(1)]);
    let window = AuditFilter {
        from: Some(start.plus(Duration::from_secs(1))),
        to: Some(start.plus(Duration::from_secs(3))),
        ..Default::default()
    };
    assert_eq!(counts(window).await, [Some(2), Some(1)], "from is inclusive, to is not");
    let both = AuditFilter { operator: Some("ana".into()), tenant: Some(acme.id), ..Default::default() };
    assert_eq!(counts(both).await, [Some(3)]);
}
