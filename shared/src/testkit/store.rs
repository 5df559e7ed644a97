//! The store conformance suite.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Map, Value};

use super::{announce, within};
use crate::clock::Timestamp;
use crate::domain::{
    ApiKeyRecord, EmailAddress, FeedbackMessage, FeedbackStatus, NewFeedback, Rating, Tenant, TenantName,
};
use crate::envelope::{EventEnvelope, EventType, Service};
use crate::ids::{ApiKeyId, EventId, FeedbackId, TenantId};
use crate::ports::{Appended, Store, StoreError};

const SUITE: &str = "store";

/// Runs every store scenario; `make` returns a fresh, empty, migrated store each time.
pub async fn run_suite<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn Store>>,
{
    announce(SUITE, "tenants");
    tenants(make().await).await;
    announce(SUITE, "api keys");
    api_keys(make().await).await;
    announce(SUITE, "idempotent append");
    idempotent_append(make().await).await;
    announce(SUITE, "concurrent appends with one idempotency key");
    concurrent_idempotency(make().await).await;
    announce(SUITE, "a failing append does not fail its concurrent neighbours");
    failing_neighbour(make().await).await;
    announce(SUITE, "feedback is tenant-scoped");
    feedback_scoped(make().await).await;
    announce(SUITE, "outbox claim, publish and lease");
    outbox_claims(make().await).await;
    announce(SUITE, "outbox keeps each tenant in order across retries");
    outbox_tenant_order(make().await).await;
    announce(SUITE, "two claimers never share a row");
    concurrent_claims(make().await).await;
    announce(SUITE, "outbox wake-up");
    outbox_wakeup(make().await).await;
    announce(SUITE, "inbox applies an event once per consumer");
    inbox_once(make().await).await;
    announce(SUITE, "emails: campaigns, send claims and outcomes");
    emails(make().await).await;
    announce(SUITE, "tenant settings: plan and alert webhook");
    tenant_settings(make().await).await;
    announce(SUITE, "worker reports: latest per process");
    worker_reports(make().await).await;
    announce(SUITE, "dead-letter records: after a cursor, since a time");
    dead_letter_records(make().await).await;
    announce(SUITE, "webhook secrets per tenant and source");
    webhook_secrets(make().await).await;
    announce(SUITE, "analytics: batches, staging, claims by count and age, written once");
    super::store_flows::analytics(make().await).await;
    announce(SUITE, "access requests: tickets, one pending per requester, decisions, reminders");
    super::store_flows::access_requests(make().await).await;
    announce(SUITE, "TestFlight invitations: tenant-scoped, outcome with the inbox row");
    super::store_flows::invitations(make().await).await;
}

async fn tenant_settings(store: Arc<dyn Store>) {
    use crate::domain::{PlanName, TenantSettings};

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

async fn worker_reports(store: Arc<dyn Store>) {
    use crate::ports::WorkerReport;

    let now = Timestamp::now();
    let report = |process: &str, handled, failed, at| WorkerReport {
        worker: "email".into(),
        process: process.into(),
        handled,
        failed,
        reported_at: at,
    };
    store.report_worker(&report("p1", 1, 0, now)).await.expect("report");
    store.report_worker(&report("p1", 5, 2, now)).await.expect("replace");
    store.report_worker(&report("p2", 3, 3, now)).await.expect("report");
    store.report_worker(&report("old", 9, 9, Timestamp::from_millis(0))).await.expect("report");
    let recent = store.worker_reports(Timestamp::from_millis(now.as_millis() - 60_000)).await.expect("reports");
    assert_eq!(recent, vec![report("p1", 5, 2, now), report("p2", 3, 3, now)], "latest per process, recent only");
}

async fn dead_letter_records(store: Arc<dyn Store>) {
    use crate::ports::DeadLetterRecord;

    let acme = tenant(store.as_ref(), "Acme").await;
    let record = |n: u32, at: Timestamp| DeadLetterRecord {
        tenant: acme.id,
        queue: "q.fifo".into(),
        message_id: format!("m{n}"),
        event_id: format!("evt{n}"),
        event_type: "feedback.submitted".into(),
        error: "provider down".into(),
        recorded_at: at,
    };
    let now = Timestamp::now();
    store.record_dead_letter(&record(0, Timestamp::from_millis(0))).await.expect("record");
    for n in 1..=3 {
        store.record_dead_letter(&record(n, now)).await.expect("record");
    }
    let recent = store.dead_letters_since(0, now, 2).await.expect("since");
    assert_eq!(
        recent.iter().map(|(_, r)| r.message_id.as_str()).collect::<Vec<_>>(),
        ["m1", "m2"],
        "recent, oldest first"
    );
    assert_eq!(recent[0].1, record(1, now));
    let rest = store.dead_letters_since(recent[1].0, now, 10).await.expect("since");
    assert_eq!(rest.iter().map(|(_, r)| r.message_id.as_str()).collect::<Vec<_>>(), ["m3"], "after the cursor");
    assert!(store.dead_letters_since(rest[0].0, now, 10).await.expect("since").is_empty());
}

async fn webhook_secrets(store: Arc<dyn Store>) {
    let acme = tenant(store.as_ref(), "Acme").await;
    let globex = tenant(store.as_ref(), "Globex").await;
    assert_eq!(store.webhook_secret(acme.id, "stripe").await.expect("get"), None);
    store.set_webhook_secret(acme.id, "stripe", "whsec_1").await.expect("set");
    store.set_webhook_secret(acme.id, "stripe", "whsec_2").await.expect("replace");
    assert_eq!(store.webhook_secret(acme.id, "stripe").await.expect("get").as_deref(), Some("whsec_2"));
    assert_eq!(store.webhook_secret(globex.id, "stripe").await.expect("get"), None, "per tenant");
    assert_eq!(store.webhook_secret(acme.id, "github").await.expect("get"), None, "per source");
}

pub async fn tenant(store: &dyn Store, name: &str) -> Tenant {
    let tenant =
        Tenant { id: TenantId::new(), name: TenantName::parse(name).expect("name"), created_at: Timestamp::now() };
    store.create_tenant(&tenant).await.expect("create tenant");
    tenant
}

fn envelope(tenant: TenantId, event_type: &str, key: Option<&str>) -> EventEnvelope {
    let mut data = Map::new();
    data.insert("n".into(), Value::from(1));
    let mut envelope = EventEnvelope::new(tenant, Service::CoreApi, EventType::parse(event_type).expect("type"), data);
    envelope.idempotency_key = key.map(str::to_owned);
    envelope
}

async fn tenants(store: Arc<dyn Store>) {
    let acme = tenant(store.as_ref(), "Acme").await;
    let globex = tenant(store.as_ref(), "Globex").await;
    assert_eq!(store.tenant(acme.id).await.expect("get"), Some(acme.clone()));
    assert_eq!(store.tenant(TenantId::new()).await.expect("get"), None);
    let all: HashSet<TenantId> = store.list_tenants().await.expect("list").into_iter().map(|t| t.id).collect();
    assert_eq!(all, HashSet::from([acme.id, globex.id]));
}

async fn api_keys(store: Arc<dyn Store>) {
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

async fn idempotent_append(store: Arc<dyn Store>) {
    let acme = tenant(store.as_ref(), "Acme").await;
    let globex = tenant(store.as_ref(), "Globex").await;
    let first = envelope(acme.id, "order.placed", Some("k-1"));
    assert_eq!(store.append_event(&first).await.expect("append"), Appended::Created);
    let again = envelope(acme.id, "order.placed", Some("k-1"));
    assert_eq!(store.append_event(&again).await.expect("append"), Appended::Existing(first.id));
    let other_tenant = envelope(globex.id, "order.placed", Some("k-1"));
    assert_eq!(store.append_event(&other_tenant).await.expect("append"), Appended::Created);
    let no_key = envelope(acme.id, "order.placed", None);
    assert_eq!(store.append_event(&no_key).await.expect("append"), Appended::Created);
    assert_eq!(store.outbox_backlog().await.expect("backlog"), 3);
    let claimed = store.claim_outbox(10, Duration::from_secs(30)).await.expect("claim");
    let ids: Vec<EventId> = claimed.iter().map(|e| e.envelope.id).collect();
    assert!(ids.contains(&first.id) && ids.contains(&other_tenant.id) && ids.contains(&no_key.id));
    assert!(!ids.contains(&again.id));
    let stored = claimed.iter().find(|e| e.envelope.id == first.id).expect("first");
    assert_eq!(stored.envelope, first, "the envelope round-trips unchanged");
}

async fn concurrent_idempotency(store: Arc<dyn Store>) {
    let acme = tenant(store.as_ref(), "Acme").await;
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let store = store.clone();
        let envelope = envelope(acme.id, "order.placed", Some("same-key"));
        tasks.push(tokio::spawn(async move { (envelope.id, store.append_event(&envelope).await.expect("append")) }));
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

async fn failing_neighbour(store: Arc<dyn Store>) {
    let acme = tenant(store.as_ref(), "Acme").await;
    let mut tasks = Vec::new();
    for i in 0..12 {
        let store = store.clone();
        // Every fourth append names a tenant that does not exist.
        let owner = if i % 4 == 3 { TenantId::new() } else { acme.id };
        let key = format!("k-{i}");
        tasks.push(tokio::spawn(async move {
            (owner == acme.id, store.append_event(&envelope(owner, "order.placed", Some(&key))).await)
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

fn new_feedback() -> NewFeedback {
    NewFeedback {
        id: FeedbackId::new(),
        rating: Some(Rating::parse(4).expect("rating")),
        message: FeedbackMessage::parse("Love it").expect("message"),
        contact_email: Some(EmailAddress::parse("ana@example.com").expect("email")),
        metadata: json!({"app_version": "1.2.3"}).as_object().cloned().unwrap_or_default(),
    }
}

async fn feedback_scoped(store: Arc<dyn Store>) {
    let acme = tenant(store.as_ref(), "Acme").await;
    let globex = tenant(store.as_ref(), "Globex").await;
    let feedback = new_feedback();
    let event = envelope(acme.id, "feedback.submitted", None);
    store.submit_feedback(&feedback, &event).await.expect("submit");
    let stored = store.feedback(acme.id, feedback.id).await.expect("get").expect("present");
    assert_eq!(stored.status, FeedbackStatus::Accepted);
    assert_eq!(stored.event_id, event.id);
    assert_eq!(stored.message, feedback.message);
    assert_eq!(stored.rating, feedback.rating);
    assert_eq!(stored.contact_email, feedback.contact_email);
    assert_eq!(stored.metadata, feedback.metadata);
    assert_eq!(store.feedback(globex.id, feedback.id).await.expect("get"), None, "another tenant sees nothing");
    store.mark_feedback_processing(globex.id, feedback.id).await.expect("no-op for another tenant");
    assert_eq!(
        store.feedback(acme.id, feedback.id).await.expect("get").map(|f| f.status),
        Some(FeedbackStatus::Accepted)
    );
    store.mark_feedback_processing(acme.id, feedback.id).await.expect("processing");
    assert_eq!(
        store.feedback(acme.id, feedback.id).await.expect("get").map(|f| f.status),
        Some(FeedbackStatus::Processing)
    );
    assert_eq!(store.outbox_backlog().await.expect("backlog"), 1, "the event is in the outbox");
    let status = |store: Arc<dyn Store>| async move {
        store.feedback(acme.id, feedback.id).await.expect("get").map(|f| f.status)
    };
    store.mark_feedback_failed(globex.id, feedback.id).await.expect("no-op for another tenant");
    assert_eq!(status(store.clone()).await, Some(FeedbackStatus::Processing));
    store.mark_feedback_failed(acme.id, feedback.id).await.expect("failed");
    assert_eq!(status(store.clone()).await, Some(FeedbackStatus::Failed));
    store.mark_feedback_processing(acme.id, feedback.id).await.expect("no-op");
    assert_eq!(
        status(store.clone()).await,
        Some(FeedbackStatus::Failed),
        "a redrive's attempt keeps it failed until done"
    );
}

async fn outbox_claims(store: Arc<dyn Store>) {
    let acme = tenant(store.as_ref(), "Acme").await;
    let globex = tenant(store.as_ref(), "Globex").await;
    let mut acme_ids = Vec::new();
    for _ in 0..3 {
        let e = envelope(acme.id, "order.placed", None);
        store.append_event(&e).await.expect("append");
        acme_ids.push(e.id);
    }
    for _ in 0..2 {
        store.append_event(&envelope(globex.id, "order.placed", None)).await.expect("append");
    }
    let first = store.claim_outbox(4, Duration::from_secs(30)).await.expect("claim");
    assert_eq!(first.len(), 4, "the limit is honoured");
    assert!(
        store.claim_outbox(10, Duration::from_secs(30)).await.expect("claim").is_empty(),
        "claimed rows are leased, and the fifth row waits behind its tenant's leased row"
    );
    let acme_claimed: Vec<EventId> =
        first.iter().filter(|e| e.envelope.tenant_id == acme.id).map(|e| e.envelope.id).collect();
    assert_eq!(acme_claimed, acme_ids, "a tenant's rows come in insertion order");
    let seqs: Vec<i64> = first.iter().map(|e| e.seq).collect();
    store.mark_published(&seqs).await.expect("published");
    let last = store.claim_outbox(10, Duration::from_secs(30)).await.expect("claim");
    assert_eq!(last.len(), 1, "published rows release their tenant's next row");
    store.mark_published(&[last[0].seq]).await.expect("published");
    assert_eq!(store.outbox_backlog().await.expect("backlog"), 0);
    assert!(store.claim_outbox(10, Duration::from_secs(30)).await.expect("claim").is_empty());

    // A released row is claimable again at once, with no attempt counted.
    store.append_event(&envelope(globex.id, "order.placed", None)).await.expect("append");
    let claimed = store.claim_outbox(10, Duration::from_secs(30)).await.expect("claim");
    store.release_outbox(&[claimed[0].seq]).await.expect("release");
    let again = store.claim_outbox(10, Duration::from_secs(30)).await.expect("claim");
    assert_eq!((again[0].seq, again[0].attempts), (claimed[0].seq, 0));
    store.mark_published(&[again[0].seq]).await.expect("published");

    // An expired lease makes the row claimable again.
    store.append_event(&envelope(acme.id, "order.placed", None)).await.expect("append");
    let leased = store.claim_outbox(10, Duration::from_millis(1)).await.expect("claim");
    assert_eq!(leased.len(), 1);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let again = store.claim_outbox(10, Duration::from_secs(30)).await.expect("claim");
    assert_eq!(again.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![leased[0].seq]);
}

async fn outbox_tenant_order(store: Arc<dyn Store>) {
    let acme = tenant(store.as_ref(), "Acme").await;
    let globex = tenant(store.as_ref(), "Globex").await;
    let a1 = envelope(acme.id, "order.placed", None);
    let a2 = envelope(acme.id, "order.shipped", None);
    let g1 = envelope(globex.id, "order.placed", None);
    for e in [&a1, &a2, &g1] {
        store.append_event(e).await.expect("append");
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
    store.append_event(&a3).await.expect("append");
    store.fail_outbox(retried[0].seq, "gave up").await.expect("fail");
    store.retry_outbox(retried[1].seq, Timestamp::now(), "try again").await.expect("retry");
    let after = store.claim_outbox(10, Duration::from_secs(30)).await.expect("claim");
    assert_eq!(after.iter().map(|e| e.envelope.id).collect::<Vec<_>>(), vec![a2.id, a3.id]);
    assert_eq!(store.outbox_backlog().await.expect("backlog"), 3, "a2, a3 and g1 are pending; a1 has failed");
    assert_eq!(store.failed_outbox().await.expect("failed"), 1, "a1 is counted as failed");
}

async fn concurrent_claims(store: Arc<dyn Store>) {
    let mut tenants = Vec::new();
    for i in 0..8 {
        tenants.push(tenant(store.as_ref(), &format!("Tenant {i}")).await);
    }
    for round in 0..10 {
        for t in &tenants {
            store
                .append_event(&envelope(t.id, if round % 2 == 0 { "a.b" } else { "c.d" }, None))
                .await
                .expect("append");
        }
    }
    let claimer = |store: Arc<dyn Store>| async move {
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

async fn outbox_wakeup(store: Arc<dyn Store>) {
    let acme = tenant(store.as_ref(), "Acme").await;
    // Drain whatever notifications tenant creation may have produced.
    let _ = tokio::time::timeout(Duration::from_millis(200), store.wait_for_outbox()).await;
    let waiter = {
        let store = store.clone();
        tokio::spawn(async move { store.wait_for_outbox().await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    store.append_event(&envelope(acme.id, "order.placed", None)).await.expect("append");
    within(Duration::from_secs(5), "the outbox wake-up after an insert", waiter).await.expect("join");
    // Level-triggered: an insert while nobody waits is still seen by the next wait.
    store.append_event(&envelope(acme.id, "order.placed", None)).await.expect("append");
    tokio::time::sleep(Duration::from_millis(200)).await;
    within(Duration::from_secs(5), "a kept wake-up", store.wait_for_outbox()).await;
}

async fn inbox_once(store: Arc<dyn Store>) {
    let acme = tenant(store.as_ref(), "Acme").await;
    let feedback = new_feedback();
    let event = envelope(acme.id, "feedback.submitted", None);
    store.submit_feedback(&feedback, &event).await.expect("submit");

    // A transaction dropped without commit leaves nothing behind.
    {
        let mut tx = store.begin_once("feedback", acme.id, event.id).await.expect("begin").expect("first time");
        tx.set_feedback_status(acme.id, feedback.id, FeedbackStatus::Completed, Some("k/1.json")).await.expect("set");
    }
    let status = store.feedback(acme.id, feedback.id).await.expect("get").map(|f| f.status);
    assert_eq!(status, Some(FeedbackStatus::Accepted), "rolled back");

    assert!(!store.applied("feedback", acme.id, event.id).await.expect("applied"), "rolled back means not applied");
    let mut tx = store.begin_once("feedback", acme.id, event.id).await.expect("begin").expect("not applied yet");
    tx.set_feedback_status(acme.id, feedback.id, FeedbackStatus::Completed, Some("k/1.json")).await.expect("set");
    tx.commit().await.expect("commit");
    let stored = store.feedback(acme.id, feedback.id).await.expect("get").expect("present");
    assert_eq!(stored.status, FeedbackStatus::Completed);
    assert_eq!(stored.result_key.as_deref(), Some("k/1.json"));

    assert!(store.begin_once("feedback", acme.id, event.id).await.expect("begin").is_none(), "applied once");
    assert!(store.applied("feedback", acme.id, event.id).await.expect("applied"));
    assert!(!store.applied("analytics", acme.id, event.id).await.expect("applied"), "per consumer");
    assert!(store.begin_once("analytics", acme.id, event.id).await.expect("begin").is_some(), "per consumer");

    // Concurrent duplicates: exactly one gets the transaction.
    let other = envelope(acme.id, "feedback.submitted", None);
    let (a, b) = tokio::join!(
        async {
            let tx = store.begin_once("feedback", acme.id, other.id).await.expect("begin");
            let got = tx.is_some();
            if let Some(tx) = tx {
                tokio::time::sleep(Duration::from_millis(50)).await;
                tx.commit().await.expect("commit");
            }
            got
        },
        async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            let tx = store.begin_once("feedback", acme.id, other.id).await.expect("begin");
            let got = tx.is_some();
            if let Some(tx) = tx {
                tx.commit().await.expect("commit");
            }
            got
        }
    );
    assert!(a ^ b, "exactly one of two concurrent deliveries applies (got {a} and {b})");
}

async fn emails(store: Arc<dyn Store>) {
    use crate::domain::{EmailOutcome, EmailStatus, NewEmail};
    use crate::ids::EmailId;
    use crate::ports::SendStart;

    let acme = tenant(store.as_ref(), "Acme").await;
    let globex = tenant(store.as_ref(), "Globex").await;
    let campaign = EmailId::new();
    let batch: Vec<(NewEmail, EventEnvelope)> = ["a@example.com", "b@example.com", "c@example.com"]
        .iter()
        .map(|to| {
            let email = NewEmail {
                id: EmailId::new(),
                campaign_id: Some(campaign),
                to: EmailAddress::parse(to).expect("address"),
                subject: "Hello".into(),
            };
            (email, envelope(acme.id, "email.requested", None))
        })
        .collect();
    store.submit_emails(&batch).await.expect("submit");
    assert_eq!(store.outbox_backlog().await.expect("backlog"), 3, "one event per recipient");
    let (first, event) = &batch[0];
    let stored = store.email(acme.id, first.id).await.expect("get").expect("present");
    assert_eq!((stored.status, stored.campaign_id, stored.event_id), (EmailStatus::Accepted, Some(campaign), event.id));
    assert_eq!(store.email(globex.id, first.id).await.expect("get"), None, "tenant-scoped");

    // All or nothing: a campaign with one bad row stores nothing.
    let orphan = (
        NewEmail {
            id: EmailId::new(),
            campaign_id: None,
            to: EmailAddress::parse("d@example.com").expect("a"),
            subject: "x".into(),
        },
        envelope(TenantId::new(), "email.requested", None),
    );
    let good = (
        NewEmail {
            id: EmailId::new(),
            campaign_id: None,
            to: EmailAddress::parse("e@example.com").expect("a"),
            subject: "x".into(),
        },
        envelope(acme.id, "email.requested", None),
    );
    assert!(store.submit_emails(&[good.clone(), orphan]).await.is_err());
    assert_eq!(store.email(acme.id, good.0.id).await.expect("get"), None, "rolled back");

    assert_eq!(store.start_email_send(acme.id, first.id).await.expect("start"), SendStart::Started);
    assert_eq!(store.start_email_send(acme.id, first.id).await.expect("start"), SendStart::Interrupted);
    store.retry_email_send(acme.id, first.id).await.expect("retry");
    assert_eq!(store.start_email_send(acme.id, first.id).await.expect("start"), SendStart::Started);
    assert_eq!(store.start_email_send(globex.id, first.id).await.expect("start"), SendStart::Missing);

    // Dead-lettered: shown failed with the reason; a redrive starts it again.
    store.mark_email_dead_lettered(globex.id, first.id, "not yours").await.expect("another tenant's: a no-op");
    store.mark_email_dead_lettered(acme.id, first.id, "provider down (after 3 attempts)").await.expect("mark");
    let dead = store.email(acme.id, first.id).await.expect("get").expect("present");
    assert_eq!(
        (dead.status, dead.failure_reason.as_deref()),
        (EmailStatus::Failed, Some("provider down (after 3 attempts)"))
    );
    assert_eq!(store.start_email_send(acme.id, first.id).await.expect("start"), SendStart::Started, "redriven");
    assert_eq!(store.email(acme.id, first.id).await.expect("get").expect("present").failure_reason, None);

    let mut tx = store.begin_once("email", acme.id, event.id).await.expect("begin").expect("first");
    let outcome = EmailOutcome {
        status: EmailStatus::Sent,
        provider: "sendgrid".into(),
        provider_message_id: Some("msg-1".into()),
        failure_reason: None,
        result_key: Some("email/k.json".into()),
    };
    tx.set_email_outcome(acme.id, first.id, &outcome).await.expect("outcome");
    tx.commit().await.expect("commit");
    let sent = store.email(acme.id, first.id).await.expect("get").expect("present");
    assert_eq!((sent.status, sent.provider_message_id.as_deref()), (EmailStatus::Sent, Some("msg-1")));
    assert_eq!(store.start_email_send(acme.id, first.id).await.expect("start"), SendStart::Finished);
    store.mark_email_dead_lettered(acme.id, first.id, "late").await.expect("mark");
    assert_eq!(
        store.email(acme.id, first.id).await.expect("get").expect("present").status,
        EmailStatus::Sent,
        "an email that ended keeps its outcome"
    );
}
