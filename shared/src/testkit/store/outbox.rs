//! The outbox.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use super::{envelope, tenant};
use crate::clock::Timestamp;
use crate::ids::EventId;
use crate::ports::StoreBackend;
use crate::testkit::within;

pub async fn claim_publish_and_lease(store: Arc<dyn StoreBackend>) {
    let acme = tenant(store.as_ref(), "Acme").await;
    let globex = tenant(store.as_ref(), "Globex").await;
    assert_eq!(store.oldest_pending().await.expect("oldest"), None, "nothing pending");
    let before = Timestamp::now();
    let mut acme_ids = Vec::new();
    for _ in 0..3 {
        let e = envelope(acme.id, "order.placed", None);
        store.append_event(e.tenant_id, &e).await.expect("append");
        acme_ids.push(e.id);
    }
    for _ in 0..2 {
        store.append_event(globex.id, &envelope(globex.id, "order.placed", None)).await.expect("append");
    }
    let oldest = store.oldest_pending().await.expect("oldest").expect("pending rows");
    assert!(oldest >= before && oldest <= Timestamp::now(), "the first row's time");
    let first = store.claim_outbox(4, Duration::from_secs(30)).await.expect("claim");
    assert_eq!(first.len(), 4, "the limit is honoured");
    assert!(
        store.claim_outbox(10, Duration::from_secs(30)).await.expect("claim").is_empty(),
        "claimed rows are leased, and the fifth row waits behind its tenant's leased row"
    );
    let acme_claimed: Vec<EventId> =
        first.iter().filter(|e| e.envelope.tenant_id == acme.id).map(|e| e.envelope.id).collect();
    assert_eq!(acme_claimed, acme_ids[..2], "the limit is shared between the tenants; each in insertion order");
    let seqs: Vec<i64> = first.iter().map(|e| e.seq).collect();
    store.mark_published(&seqs).await.expect("published");
    let last = store.claim_outbox(10, Duration::from_secs(30)).await.expect("claim");
    assert_eq!(last.len(), 1, "published rows release their tenant's next row");
    store.mark_published(&[last[0].seq]).await.expect("published");
    assert_eq!(store.outbox_backlog().await.expect("backlog"), 0);
    assert_eq!(store.oldest_pending().await.expect("oldest"), None, "all published");
    assert!(store.claim_outbox(10, Duration::from_secs(30)).await.expect("claim").is_empty());

    // A released row is claimable again at once, with no attempt counted.
    store.append_event(globex.id, &envelope(globex.id, "order.placed", None)).await.expect("append");
    let claimed = store.claim_outbox(10, Duration::from_secs(30)).await.expect("claim");
    store.release_outbox(&[claimed[0].seq]).await.expect("release");
    let again = store.claim_outbox(10, Duration::from_secs(30)).await.expect("claim");
    assert_eq!((again[0].seq, again[0].attempts), (claimed[0].seq, 0));
    store.mark_published(&[again[0].seq]).await.expect("published");

    // An expired lease makes the row claimable again.
    store.append_event(acme.id, &envelope(acme.id, "order.placed", None)).await.expect("append");
    let leased = store.claim_outbox(10, Duration::from_millis(1)).await.expect("claim");
    assert_eq!(leased.len(), 1);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let again = store.claim_outbox(10, Duration::from_secs(30)).await.expect("claim");
    assert_eq!(again.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![leased[0].seq]);
}

pub async fn each_tenant_stays_in_order(store: Arc<dyn StoreBackend>) {
    let acme = tenant(store.as_ref(), "Acme").await;
    let globex = tenant(store.as_ref(), "Globex").await;
    let a1 = envelope(acme.id, "order.placed", None);
    let a2 = envelope(acme.id, "order.shipped", None);
    let g1 = envelope(globex.id, "order.placed", None);
    for e in [&a1, &a2, &g1] {
        store.append_event(e.tenant_id, e).await.expect("append");
    }
    let claimed = store.claim_outbox(1, Duration::from_secs(30)).await.expect("claim");
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].envelope.id, a1.id);
    let next = store.claim_outbox(10, Duration::from_secs(30)).await.expect("claim");
    assert_eq!(
        next.iter().map(|e| e.envelope.id).collect::<Vec<_>>(),
        vec![g1.id],
        "a tenant whose earlier row is claimed is skipped entirely"
    );
    store
        .retry_outbox(claimed[0].seq, Timestamp::now().plus(Duration::from_secs(60)), "topic unavailable")
        .await
        .expect("retry");
    assert!(
        store.claim_outbox(10, Duration::from_secs(30)).await.expect("claim").is_empty(),
        "a row waiting for its retry holds back its tenant's later rows"
    );
    store.retry_outbox(claimed[0].seq, Timestamp::now(), "try now").await.expect("retry");
    let retried = store.claim_outbox(10, Duration::from_secs(30)).await.expect("claim");
    assert_eq!(retried.iter().map(|e| e.envelope.id).collect::<Vec<_>>(), vec![a1.id, a2.id]);
    assert_eq!(retried[0].attempts, 2, "failed attempts are counted");
    assert_eq!(retried[1].attempts, 0);

    // Giving up on a row releases the tenant's later rows and leaves the backlog.
    let a3 = envelope(acme.id, "order.closed", None);
    store.append_event(a3.tenant_id, &a3).await.expect("append");
    store.fail_outbox(retried[0].seq, "gave up").await.expect("fail");
    store.retry_outbox(retried[1].seq, Timestamp::now(), "try again").await.expect("retry");
    let after = store.claim_outbox(10, Duration::from_secs(30)).await.expect("claim");
    assert_eq!(after.iter().map(|e| e.envelope.id).collect::<Vec<_>>(), vec![a2.id, a3.id]);
    assert_eq!(store.outbox_backlog().await.expect("backlog"), 3, "a2, a3 and g1 are pending; a1 has failed");
    assert_eq!(store.failed_outbox().await.expect("failed"), 1, "a1 is counted as failed");
}

pub async fn a_tenants_backlog_does_not_hold_back_another_tenant(store: Arc<dyn StoreBackend>) {
    let acme = tenant(store.as_ref(), "Acme").await;
    let globex = tenant(store.as_ref(), "Globex").await;
    let mut acme_ids = Vec::new();
    for _ in 0..40 {
        let e = envelope(acme.id, "order.placed", None);
        store.append_event(acme.id, &e).await.expect("append");
        acme_ids.push(e.id);
    }
    let g1 = envelope(globex.id, "order.placed", None);
    store.append_event(globex.id, &g1).await.expect("append");

    let claimed = store.claim_outbox(10, Duration::from_secs(30)).await.expect("claim");
    assert_eq!(claimed.len(), 10);
    assert!(claimed.iter().any(|e| e.envelope.id == g1.id), "Globex's row is not behind Acme's 40");
    let acme_claimed: Vec<EventId> =
        claimed.iter().filter(|e| e.envelope.tenant_id == acme.id).map(|e| e.envelope.id).collect();
    assert_eq!(acme_claimed, acme_ids[..9], "Acme takes the rest of the claim, oldest first");

    // With Globex done, Acme has the whole claim, after the rows it already has out.
    store.mark_published(&claimed.iter().map(|e| e.seq).collect::<Vec<_>>()).await.expect("published");
    let next = store.claim_outbox(10, Duration::from_secs(30)).await.expect("claim");
    assert_eq!(next.iter().map(|e| e.envelope.id).collect::<Vec<_>>(), acme_ids[9..19]);
}

pub async fn two_claimers_never_share_a_row(store: Arc<dyn StoreBackend>) {
    let mut tenants = Vec::new();
    for i in 0..8 {
        tenants.push(tenant(store.as_ref(), &format!("Tenant {i}")).await);
    }
    for round in 0..10 {
        for t in &tenants {
            store
                .append_event(t.id, &envelope(t.id, if round % 2 == 0 { "a.b" } else { "c.d" }, None))
                .await
                .expect("append");
        }
    }
    let claimer = |store: Arc<dyn StoreBackend>| async move {
        let mut mine = Vec::new();
        loop {
            let batch = store.claim_outbox(7, Duration::from_secs(60)).await.expect("claim");
            if batch.is_empty() {
                break;
            }
            let seqs: Vec<i64> = batch.iter().map(|e| e.seq).collect();
            store.mark_published(&seqs).await.expect("publish");
            mine.extend(seqs);
        }
        mine
    };
    let (a, b) = tokio::join!(tokio::spawn(claimer(store.clone())), tokio::spawn(claimer(store.clone())));
    let (a, b) = (a.expect("join"), b.expect("join"));
    let a_set: HashSet<i64> = a.iter().copied().collect();
    assert!(b.iter().all(|seq| !a_set.contains(seq)), "no row is claimed twice");
    assert_eq!(a.len() + b.len(), 80, "every row is claimed");
    assert_eq!(store.outbox_backlog().await.expect("backlog"), 0);
}

pub async fn wake_up_is_level_triggered(store: Arc<dyn StoreBackend>) {
    let acme = tenant(store.as_ref(), "Acme").await;
    // Drain whatever notifications tenant creation may have produced.
    let _ = tokio::time::timeout(Duration::from_millis(200), store.wait_for_outbox()).await;
    let waiter = {
        let store = store.clone();
        tokio::spawn(async move { store.wait_for_outbox().await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    store.append_event(acme.id, &envelope(acme.id, "order.placed", None)).await.expect("append");
    within(Duration::from_secs(5), "the outbox wake-up after an insert", waiter).await.expect("join");
    // Level-triggered: an insert while nobody waits is still seen by the next wait.
    store.append_event(acme.id, &envelope(acme.id, "order.placed", None)).await.expect("append");
    tokio::time::sleep(Duration::from_millis(200)).await;
    within(Duration::from_secs(5), "a kept wake-up", store.wait_for_outbox()).await;
}
