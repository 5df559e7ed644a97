//! The event log.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use super::{envelope, tenant};
use crate::ids::{EventId, TenantId};
use crate::ports::{Appended, StoreBackend, StoreError};

/// A write scoped to one tenant refuses another tenant's envelope and writes nothing.
pub async fn another_tenants_envelope_is_refused(store: Arc<dyn StoreBackend>) {
    let acme = tenant(store.as_ref(), "Acme").await;
    let globex = tenant(store.as_ref(), "Globex").await;
    let theirs = envelope(globex.id, "order.placed", Some("k-1"));
    let refused = store.append_event(acme.id, &theirs).await;
    assert!(
        matches!(&refused, Err(StoreError::WrongTenant { owner, tenant, .. }) if *owner == globex.id && *tenant == acme.id),
        "{refused:?}"
    );
    assert_eq!(store.outbox_backlog().await.expect("backlog"), 0, "nothing was written");
    assert_eq!(store.event(globex.id, theirs.id).await.expect("get"), None);
    assert_eq!(store.append_event(globex.id, &theirs).await.expect("its own tenant"), Appended::Created);
}

pub async fn idempotent_append(store: Arc<dyn StoreBackend>) {
    let acme = tenant(store.as_ref(), "Acme").await;
    let globex = tenant(store.as_ref(), "Globex").await;
    let first = envelope(acme.id, "order.placed", Some("k-1"));
    assert_eq!(store.append_event(first.tenant_id, &first).await.expect("append"), Appended::Created);
    let again = envelope(acme.id, "order.placed", Some("k-1"));
    assert_eq!(store.append_event(again.tenant_id, &again).await.expect("append"), Appended::Existing(first.id));
    let other_tenant = envelope(globex.id, "order.placed", Some("k-1"));
    assert_eq!(store.append_event(other_tenant.tenant_id, &other_tenant).await.expect("append"), Appended::Created);
    let no_key = envelope(acme.id, "order.placed", None);
    assert_eq!(store.append_event(no_key.tenant_id, &no_key).await.expect("append"), Appended::Created);
    assert_eq!(store.outbox_backlog().await.expect("backlog"), 3);
    let claimed = store.claim_outbox(10, Duration::from_secs(30)).await.expect("claim");
    let ids: Vec<EventId> = claimed.iter().map(|e| e.envelope.id).collect();
    assert!(ids.contains(&first.id) && ids.contains(&other_tenant.id) && ids.contains(&no_key.id));
    assert!(!ids.contains(&again.id));
    let stored = claimed.iter().find(|e| e.envelope.id == first.id).expect("first");
    assert_eq!(stored.envelope, first, "the envelope round-trips unchanged");
}

pub async fn concurrent_appends_with_one_key(store: Arc<dyn StoreBackend>) {
    let acme = tenant(store.as_ref(), "Acme").await;
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let store = store.clone();
        let envelope = envelope(acme.id, "order.placed", Some("same-key"));
        tasks.push(tokio::spawn(async move {
            (envelope.id, store.append_event(envelope.tenant_id, &envelope).await.expect("append"))
        }));
    }
    let mut created = Vec::new();
    let mut existing = HashSet::new();
    for task in tasks {
        match task.await.expect("join") {
            (id, Appended::Created) => created.push(id),
            (_, Appended::Existing(id)) => {
                existing.insert(id);
            }
        }
    }
    assert_eq!(created.len(), 1, "exactly one append commits");
    assert!(existing.iter().all(|id| *id == created[0]), "all others see the committed id");
    assert_eq!(store.outbox_backlog().await.expect("backlog"), 1);
}

pub async fn a_failing_append_spares_its_neighbours(store: Arc<dyn StoreBackend>) {
    let acme = tenant(store.as_ref(), "Acme").await;
    let mut tasks = Vec::new();
    for i in 0..12 {
        let store = store.clone();
        // Every fourth append names a tenant that does not exist.
        let owner = if i % 4 == 3 { TenantId::new() } else { acme.id };
        let key = format!("k-{i}");
        tasks.push(tokio::spawn(async move {
            (owner == acme.id, store.append_event(owner, &envelope(owner, "order.placed", Some(&key))).await)
        }));
    }
    for task in tasks {
        match task.await.expect("join") {
            (true, result) => assert_eq!(result.expect("a good append"), Appended::Created),
            (false, result) => assert!(result.is_err(), "an append for an unknown tenant fails"),
        }
    }
    assert_eq!(store.outbox_backlog().await.expect("backlog"), 9);
}
