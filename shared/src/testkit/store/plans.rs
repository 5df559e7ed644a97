//! Plans over parked dead letters, and redrive jobs.

use std::sync::Arc;
use std::time::Duration;

use super::parking::letter;
use super::{envelope, tenant};
use crate::clock::Timestamp;
use crate::ports::{
    Apply, JobState, JobStep, ParkedFilter, ParkedState, PlanAction, QueueName, Selection, StoreBackend, StoreError,
};

const HOUR: Duration = Duration::from_secs(3_600);
const LEASE: Duration = Duration::from_secs(30);

/// Applying a purge or restore; a restore takes those purged at `restorable_since` or later.
fn since(restorable_since: Timestamp) -> Apply {
    Apply { restorable_since, reason: None }
}

fn feedback_only() -> Selection {
    Selection::Filter(ParkedFilter { queue: Some(QueueName::new("feedback.fifo")), ..Default::default() })
}

pub async fn a_plan_freezes_its_selection(store: Arc<dyn StoreBackend>) {
    let (acme, globex) = (tenant(store.as_ref(), "Acme").await, tenant(store.as_ref(), "Globex").await);
    let mut letters = vec![
        letter(1, "feedback.fifo", Some(acme.id), "feedback.submitted", "Zendesk answered 503"),
        letter(2, "email.fifo", Some(acme.id), "email.requested", "SendGrid answered 401"),
        letter(3, "feedback.fifo", Some(globex.id), "feedback.submitted", "Zendesk answered 503"),
        letter(4, "feedback.fifo", Some(acme.id), "feedback.submitted", "Zendesk answered 502"),
    ];
    // Two of Acme's in one ordering group.
    letters[3].group_id = letters[0].group_id.clone();
    for l in &letters {
        store.park(l).await.expect("park");
    }
    let now = Timestamp::now();
    let plan = store.make_plan(PlanAction::Redrive, &feedback_only(), now, now.plus(HOUR)).await.expect("plan");
    assert_eq!(plan.counts.total, 3);
    let tallies = |t: &[crate::ports::Tally]| t.iter().map(|t| (t.key.clone(), t.count)).collect::<Vec<_>>();
    assert_eq!(tallies(&plan.counts.queues), [("feedback.fifo".to_owned(), 3)]);
    assert_eq!(tallies(&plan.counts.tenants)[0], (acme.id.to_string(), 2), "largest first");
    assert_eq!(tallies(&plan.counts.tenants).len(), 2);
    assert_eq!(plan.counts.group_count, 2);
    assert_eq!(tallies(&plan.counts.groups)[0], (letters[0].group_id.clone(), 2));
    assert_eq!(store.plan(plan.id).await.expect("read").expect("present"), plan, "read back as made");

    // The selection grows after the plan: the plan keeps what it froze.
    store
        .park(&letter(5, "feedback.fifo", Some(acme.id), "feedback.submitted", "Zendesk answered 503"))
        .await
        .expect("park");
    let job = store.start_job(plan.id, 600, now).await.expect("start");
    assert_eq!((job.total, job.done, job.state, job.rate_per_minute), (3, 0, JobState::Running, 600));
    let batch = store.job_batch(&job, 10).await.expect("batch");
    let order: Vec<String> = batch.iter().map(|p| p.message.message_id.to_string()).collect();
    assert_eq!(order, ["m-1", "m-3", "m-4"], "the frozen ones, in the order they were parked");
    assert_eq!(store.job_batch(&job, 2).await.expect("batch").len(), 2, "at most limit");

    let ids = Selection::Ids(vec![batch[0].id, i64::MAX]);
    let by_ids = store.make_plan(PlanAction::Purge, &ids, now, now.plus(HOUR)).await.expect("plan");
    assert_eq!(by_ids.counts.total, 1, "ids that are not parked are left out");
    let none = store.make_plan(PlanAction::Restore, &feedback_only(), now, now.plus(HOUR)).await.expect("plan");
    assert_eq!(none.counts.total, 0, "a restore selects purged ones only");
}

pub async fn a_plan_is_confirmed_once_and_only_in_time(store: Arc<dyn StoreBackend>) {
    let acme = tenant(store.as_ref(), "Acme").await;
    store.park(&letter(1, "feedback.fifo", Some(acme.id), "feedback.submitted", "boom")).await.expect("park");
    let now = Timestamp::now();
    let redrive = store.make_plan(PlanAction::Redrive, &feedback_only(), now, now.plus(HOUR)).await.expect("plan");
    let purge = store.make_plan(PlanAction::Purge, &feedback_only(), now, now.plus(HOUR)).await.expect("plan");
    let expired = store.make_plan(PlanAction::Redrive, &feedback_only(), now, now.plus(HOUR)).await.expect("plan");

    assert!(
        matches!(store.apply_plan(redrive.id, now, &since(now)).await, Err(StoreError::Conflict(_))),
        "a redrive is a job"
    );
    assert!(matches!(store.start_job(purge.id, 60, now).await, Err(StoreError::Conflict(_))), "a purge is no job");
    let job = store.start_job(redrive.id, 60, now).await.expect("start");
    match store.start_job(redrive.id, 60, now).await {
        Err(StoreError::Conflict(message)) => assert!(message.contains(&job.id.to_string()), "{message}"),
        other => panic!("a second confirmation: {other:?}"),
    }
    assert_eq!(store.plan(redrive.id).await.expect("read").expect("present").job, Some(job.id));
    let late = now.plus(HOUR).plus(Duration::from_secs(1));
    assert!(matches!(store.start_job(expired.id, 60, late).await, Err(StoreError::Conflict(_))), "expired");
    assert!(matches!(store.start_job(crate::ids::PlanId::new(), 60, now).await, Err(StoreError::NotFound(_))));
    assert_eq!(store.job(crate::ids::JobId::new()).await.expect("read"), None);

    // Two confirmations at once: one job.
    let raced = store.make_plan(PlanAction::Redrive, &feedback_only(), now, now.plus(HOUR)).await.expect("plan");
    let (a, b) = tokio::join!(store.start_job(raced.id, 60, now), store.start_job(raced.id, 60, now));
    assert_eq!(u8::from(a.is_ok()) + u8::from(b.is_ok()), 1, "{a:?} {b:?}");
}

pub async fn a_job_is_leased_stepped_and_taken_over(store: Arc<dyn StoreBackend>) {
    let acme = tenant(store.as_ref(), "Acme").await;
    for n in 1..=5 {
        store.park(&letter(n, "feedback.fifo", Some(acme.id), "feedback.submitted", "boom")).await.expect("park");
    }
    let now = Timestamp::now();
    let plan = store.make_plan(PlanAction::Redrive, &feedback_only(), now, now.plus(HOUR)).await.expect("plan");
    let job = store.start_job(plan.id, 60, now).await.expect("start");

    let held = store.claim_job("a", now, LEASE).await.expect("claim").expect("a running job");
    assert_eq!(held.id, job.id);
    assert_eq!(store.claim_job("b", now, LEASE).await.expect("claim"), None, "held by a");
    assert_eq!(store.claim_job("a", now, LEASE).await.expect("claim").map(|j| j.id), Some(job.id), "a keeps it");

    let first = store.job_batch(&held, 2).await.expect("batch");
    let step = JobStep { redriven: first.iter().map(|p| p.id).collect(), skipped: 0, cursor: first[1].id };
    let after = store.job_step(job.id, "a", &step, now, LEASE).await.expect("step");
    assert_eq!((after.done, after.cursor, after.state), (2, first[1].id, JobState::Running));
    let moved = store.parked_message(first[0].id).await.expect("read").expect("present");
    assert_eq!((moved.state, moved.redriven_by), (ParkedState::Redriven, Some(job.id)));
    let parked = store.parked(&ParkedFilter::default(), None, 10).await.expect("list");
    assert_eq!(parked.len(), 3, "redriven ones are no longer listed as parked");
    assert_eq!(store.parked_count(&QueueName::new("feedback.fifo")).await.expect("count"), 3);
    assert!(matches!(store.job_step(job.id, "b", &step, now, LEASE).await, Err(StoreError::Conflict(_))));

    // a dies; once its lease runs out b takes the job over where a left it.
    let later = now.plus(LEASE).plus(Duration::from_secs(1));
    let taken = store.claim_job("b", later, LEASE).await.expect("claim").expect("taken over");
    assert_eq!((taken.id, taken.done, taken.cursor), (job.id, 2, first[1].id));
    let rest = store.job_batch(&taken, 10).await.expect("batch");
    assert_eq!(rest.len(), 3, "after the cursor");
    assert!(rest.iter().all(|p| p.id > first[1].id));
    let step = JobStep { redriven: vec![rest[0].id, rest[2].id], skipped: 1, cursor: rest[2].id };
    store.job_step(job.id, "b", &step, later, LEASE).await.expect("step");
    assert!(
        matches!(store.job_step(job.id, "a", &step, later, LEASE).await, Err(StoreError::Conflict(_))),
        "a lost it"
    );
    let done = store.finish_job(job.id, "b", JobState::Completed, None, later).await.expect("finish");
    assert_eq!((done.state, done.done, done.skipped), (JobState::Completed, 4, 1));
    assert!(done.finished_at.is_some());
    assert_eq!(store.claim_job("b", later, LEASE).await.expect("claim"), None, "nothing left to run");
    assert_eq!(store.job(job.id).await.expect("read"), Some(done));
}

pub async fn a_cancelled_job_stays_cancelled(store: Arc<dyn StoreBackend>) {
    let acme = tenant(store.as_ref(), "Acme").await;
    store.park(&letter(1, "feedback.fifo", Some(acme.id), "feedback.submitted", "boom")).await.expect("park");
    let now = Timestamp::now();
    let plan = store.make_plan(PlanAction::Redrive, &feedback_only(), now, now.plus(HOUR)).await.expect("plan");
    let job = store.start_job(plan.id, 60, now).await.expect("start");
    store.claim_job("a", now, LEASE).await.expect("claim").expect("held");
    let cancelled = store.cancel_job(job.id, now).await.expect("cancel").expect("present");
    assert_eq!(cancelled.state, JobState::Cancelled);
    let step = JobStep { redriven: vec![], skipped: 0, cursor: 0 };
    let seen = store.job_step(job.id, "a", &step, now, LEASE).await.expect("step");
    assert_eq!(seen.state, JobState::Cancelled, "the worker sees the cancel at its next step");
    let finished = store.finish_job(job.id, "a", JobState::Completed, None, now).await.expect("finish");
    assert_eq!(finished.state, JobState::Cancelled, "finishing does not undo a cancel");
    assert_eq!(store.claim_job("b", now.plus(HOUR), LEASE).await.expect("claim"), None);
    assert_eq!(store.cancel_job(crate::ids::JobId::new(), now).await.expect("cancel"), None);
}

pub async fn purge_restore_and_retention(store: Arc<dyn StoreBackend>) {
    let acme = tenant(store.as_ref(), "Acme").await;
    for n in 1..=3 {
        store.park(&letter(n, "feedback.fifo", Some(acme.id), "feedback.submitted", "boom")).await.expect("park");
    }
    let now = Timestamp::now();
    let all = store.parked(&ParkedFilter::default(), None, 10).await.expect("list");
    let two = Selection::Ids(vec![all[0].id, all[1].id]);
    let purge = store.make_plan(PlanAction::Purge, &two, now, now.plus(HOUR)).await.expect("plan");
    assert_eq!(store.apply_plan(purge.id, now, &since(now)).await.expect("purge"), 2);
    assert!(matches!(store.apply_plan(purge.id, now, &since(now)).await, Err(StoreError::Conflict(_))), "once");
    assert_eq!(store.parked(&ParkedFilter::default(), None, 10).await.expect("list").len(), 1);
    let purged_filter = ParkedFilter { state: ParkedState::Purged, ..Default::default() };
    let purged = store.parked(&purged_filter, None, 10).await.expect("list");
    assert_eq!(purged.len(), 2);
    assert_eq!(purged[0].purged_at, Some(now));
    assert_eq!(store.parked_count(&QueueName::new("feedback.fifo")).await.expect("count"), 1);

    let purged_ones = Selection::Filter(purged_filter.clone());
    let restore = store.make_plan(PlanAction::Restore, &purged_ones, now, now.plus(HOUR)).await.expect("plan");
    assert_eq!(restore.counts.total, 2);
    let late = now.plus(Duration::from_secs(1));
    assert_eq!(
        store.apply_plan(restore.id, late, &since(late)).await.expect("restore"),
        0,
        "purged before the retention window"
    );
    let again = store.make_plan(PlanAction::Restore, &purged_ones, now, now.plus(HOUR)).await.expect("plan");
    assert_eq!(store.apply_plan(again.id, late, &since(now)).await.expect("restore"), 2);
    let back = store.parked_message(all[0].id).await.expect("read").expect("present");
    assert_eq!((back.state, back.purged_at), (ParkedState::Parked, None));

    // Retention: purged ones older than it are deleted; parked ones never.
    let purge = store.make_plan(PlanAction::Purge, &two, now, now.plus(HOUR)).await.expect("plan");
    store.apply_plan(purge.id, now, &since(now)).await.expect("purge");
    assert_eq!(store.sweep(now, now).await.expect("sweep"), 0, "not yet out of retention");
    assert_eq!(store.sweep(now.plus(Duration::from_millis(1)), now).await.expect("sweep"), 2);
    assert_eq!(store.parked_message(all[0].id).await.expect("read"), None);
    assert_eq!(store.parked(&ParkedFilter::default(), None, 10).await.expect("list").len(), 1);
    let stale = store.make_plan(PlanAction::Redrive, &feedback_only(), now, now.plus(HOUR)).await.expect("plan");
    store.sweep(now, now.plus(HOUR).plus(Duration::from_secs(1))).await.expect("sweep");
    assert_eq!(store.plan(stale.id).await.expect("read"), None, "an expired, unconfirmed plan is swept");
}

/// Outbox rows the relay gave up on: listed newest first (by tenant too), retried into
/// the relay's hands again, or discarded with a reason, each by a plan frozen like a
/// dead-letter plan.
pub async fn failed_outbox_rows_are_listed_retried_and_discarded(store: Arc<dyn StoreBackend>) {
    let (acme, globex) = (tenant(store.as_ref(), "Acme").await, tenant(store.as_ref(), "Globex").await);
    let events = [
        envelope(acme.id, "order.placed", None),
        envelope(globex.id, "order.placed", None),
        envelope(acme.id, "order.paid", None),
        envelope(acme.id, "order.shipped", None),
    ];
    for event in &events {
        store.append_event(event.tenant_id, event).await.expect("append");
    }
    let claimed = store.claim_outbox(10, LEASE).await.expect("claim");
    assert_eq!(claimed.len(), 4);
    // The relay gives up on the first three; the fourth is published.
    for entry in &claimed[..3] {
        store.fail_outbox(entry.seq, &format!("SNS refused {}", entry.envelope.id)).await.expect("fail");
    }
    store.mark_published(&[claimed[3].seq]).await.expect("published");
    assert_eq!(store.failed_outbox().await.expect("count"), 3);

    let all = store.failed_rows(None, None, 10).await.expect("list");
    let order: Vec<String> = all.iter().map(|r| r.event_id.clone()).collect();
    let expected: Vec<String> = [&events[2], &events[1], &events[0]].iter().map(|e| e.id.to_string()).collect();
    assert_eq!(order, expected, "newest first, the published one left out");
    assert_eq!(all[0].error.as_deref(), Some(format!("SNS refused {}", events[2].id).as_str()));
    assert_eq!(all[0].event_type.as_ref().map(|t| t.as_str()), Some("order.paid"));
    assert_eq!(all[0].tenant, acme.id);
    let page = store.failed_rows(None, Some(all[0].seq), 1).await.expect("page");
    assert_eq!(page[0].seq, all[1].seq, "a page after the cursor");
    let globex_rows = store.failed_rows(Some(globex.id), None, 10).await.expect("list");
    assert_eq!(globex_rows.iter().map(|r| r.tenant).collect::<Vec<_>>(), [globex.id]);

    let now = Timestamp::now();
    let wrong = store.make_plan(PlanAction::RetryOutbox, &feedback_only(), now, now.plus(HOUR)).await;
    assert!(matches!(wrong, Err(StoreError::Conflict(_))), "a retry selects outbox rows");
    let acme_only = Selection::FailedOutbox { tenant: Some(acme.id) };
    let retry = store.make_plan(PlanAction::RetryOutbox, &acme_only, now, now.plus(HOUR)).await.expect("plan");
    assert_eq!(retry.counts.total, 2);
    assert_eq!(
        retry.counts.tenants.iter().map(|t| (t.key.clone(), t.count)).collect::<Vec<_>>(),
        [(acme.id.to_string(), 2)]
    );
    assert_eq!(store.apply_plan(retry.id, now, &since(now)).await.expect("retry"), 2);
    assert_eq!(store.failed_outbox().await.expect("count"), 1, "only Globex's is still failed");
    let again = store.claim_outbox(10, LEASE).await.expect("claim");
    let ids: Vec<_> = again.iter().map(|e| e.envelope.id).collect();
    assert_eq!(ids, [events[0].id, events[2].id], "pending again, in order, with no attempts spent");
    assert!(again.iter().all(|e| e.attempts == 0));

    let discard = Selection::Ids(vec![globex_rows[0].seq, claimed[3].seq]);
    let plan = store.make_plan(PlanAction::DiscardOutbox, &discard, now, now.plus(HOUR)).await.expect("plan");
    assert_eq!(plan.counts.total, 1, "a published row is not failed");
    let no_reason = store.apply_plan(plan.id, now, &since(now)).await;
    assert!(matches!(no_reason, Err(StoreError::Conflict(_))), "a discard needs a reason");
    let with_reason = Apply { restorable_since: now, reason: Some("the tenant asked".into()) };
    assert_eq!(store.apply_plan(plan.id, now, &with_reason).await.expect("discard"), 1);
    assert_eq!(store.failed_outbox().await.expect("count"), 0, "discarded rows no longer count as failed");
    assert!(store.failed_rows(None, None, 10).await.expect("list").is_empty());
    assert!(
        store.claim_outbox(10, LEASE).await.expect("claim").iter().all(|e| e.envelope.id != events[1].id),
        "a discarded row is never published"
    );
}
