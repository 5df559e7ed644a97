//! Store scenarios for the worker flows (analytics, access requests, TestFlight); part
//! of the store suite (`store::run_suite` runs them).

use std::sync::Arc;
use std::time::Duration;

use serde_json::Map;

use super::store::tenant;
use crate::clock::Timestamp;
use crate::domain::access::{AccessRequest, AccessRequestStatus, Decision, NewAccessRequest, Submitted, TicketId};
use crate::domain::analytics::{hour_of, NewAnalyticsBatch, StagedAnalytics};
use crate::domain::{EmailAddress, TenantName};
use crate::envelope::{EventEnvelope, EventType, Service};
use crate::ids::{AnalyticsBatchId, AnalyticsEventId, TenantId};
use crate::ports::{Store, StoreError};

const LEASE: Duration = Duration::from_secs(60);

fn event(tenant: TenantId, event_type: &str) -> EventEnvelope {
    EventEnvelope::new(tenant, Service::CoreApi, EventType::parse(event_type).expect("type"), Map::new())
}

fn staged(batch: AnalyticsBatchId, hour: Timestamp, n: usize) -> Vec<StagedAnalytics> {
    (0..n)
        .map(|i| {
            let event_id = AnalyticsEventId::new();
            StagedAnalytics {
                event_id,
                batch_id: batch,
                hour,
                line: format!("{{\"event_id\":\"{event_id}\",\"i\":{i}}}"),
            }
        })
        .collect()
}

async fn stage(store: &dyn Store, tenant: TenantId, rows: &[StagedAnalytics]) {
    let delivery = event(tenant, "analytics.events_accepted");
    let mut tx = store.begin_once("analytics", tenant, delivery.id).await.expect("begin").expect("first");
    tx.stage_analytics(tenant, rows).await.expect("stage");
    tx.commit().await.expect("commit");
}

/// Batches are counted when accepted, staged rows are claimed per tenant and hour once
/// due (by count or by age), and written rows count once even when written twice.
pub(super) async fn analytics(store: Arc<dyn Store>) {
    let acme = tenant(store.as_ref(), "Acme").await;
    let globex = tenant(store.as_ref(), "Globex").await;
    let batch = NewAnalyticsBatch { id: AnalyticsBatchId::new(), event_count: 4 };
    store.submit_analytics(acme.id, &batch, &[event(acme.id, "analytics.events_accepted")]).await.expect("submit");
    assert_eq!(store.outbox_backlog().await.expect("backlog"), 1, "the batch's event is in the outbox");
    let stored = store.analytics_batch(acme.id, batch.id).await.expect("get").expect("present");
    assert_eq!((stored.event_count, stored.written_count, stored.status()), (4, 0, "accepted"));
    assert_eq!(store.analytics_batch(globex.id, batch.id).await.expect("get"), None, "tenant-scoped");
    let counts = store.analytics_counts(acme.id).await.expect("counts");
    assert_eq!((counts.accepted, counts.staged, counts.written, counts.in_transit()), (4, 0, 0, 4));

    let ten = hour_of(Timestamp::parse_rfc3339("2026-11-27T10:15:00Z").expect("t"));
    let eleven = hour_of(Timestamp::parse_rfc3339("2026-11-27T11:15:00Z").expect("t"));
    let first_hour = staged(batch.id, ten, 3);
    stage(store.as_ref(), acme.id, &first_hour).await;
    stage(store.as_ref(), acme.id, &staged(batch.id, eleven, 1)).await;
    let other = NewAnalyticsBatch { id: AnalyticsBatchId::new(), event_count: 1 };
    store.submit_analytics(globex.id, &other, &[]).await.expect("submit");
    stage(store.as_ref(), globex.id, &staged(other.id, ten, 1)).await;
    assert_eq!(store.analytics_counts(acme.id).await.expect("counts").staged, 4);

    let long_ago = Timestamp::from_millis(0);
    assert_eq!(store.claim_analytics(10, long_ago, LEASE).await.expect("claim"), None, "nothing due yet");
    let full = store.claim_analytics(2, long_ago, LEASE).await.expect("claim").expect("due by count");
    assert_eq!((full.tenant, full.hour, full.rows.len()), (acme.id, ten, 2));
    let expected: Vec<String> = first_hour[..2].iter().map(|r| r.line.clone()).collect();
    assert_eq!(full.lines, expected, "in staging order");
    assert_eq!(store.claim_analytics(2, long_ago, LEASE).await.expect("claim"), None, "claimed rows are not due");

    // By age: every partition with unclaimed rows, one per claim, each once.
    let soon = Timestamp::now().plus(Duration::from_secs(1));
    let mut partitions = Vec::new();
    while let Some(chunk) = store.claim_analytics(10, soon, LEASE).await.expect("claim") {
        partitions.push((chunk.tenant, chunk.hour, chunk.rows.len()));
        assert!(partitions.len() <= 3, "each row is claimed once: {partitions:?}");
    }
    partitions.sort();
    let mut expected = vec![(acme.id, ten, 1), (acme.id, eleven, 1), (globex.id, ten, 1)];
    expected.sort();
    assert_eq!(partitions, expected);

    store.record_analytics_object(&full, "analytics/a.ndjson.gz").await.expect("record");
    let stored = store.analytics_batch(acme.id, batch.id).await.expect("get").expect("present");
    assert_eq!((stored.written_count, stored.status()), (2, "writing"));
    let counts = store.analytics_counts(acme.id).await.expect("counts");
    assert_eq!((counts.accepted, counts.staged, counts.written, counts.rows_in_objects), (4, 2, 2, 2));

    // A lapsed claim is claimed again; when both writers record, the rows count once as
    // written and twice in objects (a detectable duplicate), never as lost.
    let again = NewAnalyticsBatch { id: AnalyticsBatchId::new(), event_count: 2 };
    store.submit_analytics(globex.id, &again, &[]).await.expect("submit");
    stage(store.as_ref(), globex.id, &staged(again.id, eleven, 2)).await;
    let soon = Timestamp::now().plus(Duration::from_secs(1));
    let first = store.claim_analytics(10, soon, Duration::ZERO).await.expect("claim").expect("due");
    let second = store.claim_analytics(10, soon, Duration::ZERO).await.expect("claim").expect("lapsed");
    assert_eq!((first.tenant, first.hour, first.rows.len()), (globex.id, eleven, 2));
    assert_eq!(first.rows, second.rows, "the same rows, claimed again");
    store.record_analytics_object(&first, "analytics/g1.ndjson.gz").await.expect("record");
    store.record_analytics_object(&second, "analytics/g2.ndjson.gz").await.expect("record again");
    let counts = store.analytics_counts(globex.id).await.expect("counts");
    assert_eq!((counts.accepted, counts.staged, counts.written, counts.rows_in_objects), (3, 1, 2, 4));
    let done = store.analytics_batch(globex.id, again.id).await.expect("get").expect("present");
    assert_eq!(done.status(), "written");
}

fn access_event(request: &AccessRequest) -> EventEnvelope {
    let mut envelope = event(request.tenant_id, "access_request.submitted");
    envelope.data.insert("ticket_id".into(), request.ticket_id.to_string().into());
    envelope
}

fn new_request(requester: &str, organization: &str) -> NewAccessRequest {
    NewAccessRequest {
        requester: EmailAddress::parse(requester).expect("requester"),
        organization: TenantName::parse(organization).expect("organization"),
        message: Some("We would like to try it".into()),
    }
}

fn created(submitted: Submitted) -> AccessRequest {
    match submitted {
        Submitted::Created(request) => request,
        Submitted::PendingExists(existing) => panic!("expected a new request, found {existing:?}"),
    }
}

/// Ticket ids per deployment, one pending request per requester, decisions that create
/// the tenant in the same transaction, and reminders once per period.
pub(super) async fn access_requests(store: Arc<dyn Store>) {
    let acme = tenant(store.as_ref(), "Acme").await;
    let globex = tenant(store.as_ref(), "Globex").await;
    let first = created(
        store
            .submit_access_request(acme.id, &new_request("ana@example.com", "Initech"), &access_event)
            .await
            .expect("submit"),
    );
    assert_eq!((first.ticket_id.to_string(), first.status), ("R00001".to_owned(), AccessRequestStatus::Pending));
    assert_eq!(store.outbox_backlog().await.expect("backlog"), 1, "the submitted event is in the outbox");
    match store
        .submit_access_request(acme.id, &new_request("ANA@example.com", "Initech 2"), &access_event)
        .await
        .expect("submit")
    {
        Submitted::PendingExists(existing) => assert_eq!(existing.ticket_id, first.ticket_id),
        Submitted::Created(request) => panic!("a second pending request was created: {request:?}"),
    }
    assert_eq!(store.outbox_backlog().await.expect("backlog"), 1, "nothing written for the duplicate");
    let second = created(
        store
            .submit_access_request(globex.id, &new_request("ana@example.com", "Hooli"), &access_event)
            .await
            .expect("submit"),
    );
    assert_eq!(second.ticket_id.to_string(), "R00002", "numbered per deployment, pending per tenant");

    let ana = EmailAddress::parse("ana@example.com").expect("a");
    let mine = store.access_requests_of(acme.id, &ana).await.expect("mine");
    assert_eq!(mine.iter().map(|r| r.ticket_id).collect::<Vec<_>>(), [first.ticket_id]);
    assert_eq!(store.access_request(first.ticket_id).await.expect("get"), Some(first.clone()));
    assert_eq!(store.list_access_requests(Some(AccessRequestStatus::Pending)).await.expect("list").len(), 2);

    let new_tenant = TenantId::new();
    let approve = Decision::Approve { tenant: new_tenant };
    let approved = store.decide_access_request(first.ticket_id, &approve, &access_event).await.expect("approve");
    assert_eq!((approved.status, approved.created_tenant_id), (AccessRequestStatus::Approved, Some(new_tenant)));
    let tenant = store.tenant(new_tenant).await.expect("tenant").expect("created with the approval");
    assert_eq!(tenant.name.as_str(), "Initech");
    assert_eq!(store.outbox_backlog().await.expect("backlog"), 3, "the decision's event is in the outbox");
    let again = store.decide_access_request(first.ticket_id, &Decision::Reject { reason: None }, &access_event).await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    let missing = store.decide_access_request(TicketId::from_number(99), &approve, &access_event).await;
    assert!(matches!(missing, Err(StoreError::NotFound(_))), "{missing:?}");
    let rejected = store
        .decide_access_request(second.ticket_id, &Decision::Reject { reason: Some("Not a fit".into()) }, &access_event)
        .await
        .expect("reject");
    assert_eq!(
        (rejected.status, rejected.decision_reason.as_deref()),
        (AccessRequestStatus::Rejected, Some("Not a fit"))
    );

    // Decided: the requester may ask again.
    let third = created(
        store
            .submit_access_request(acme.id, &new_request("ana@example.com", "Initech"), &access_event)
            .await
            .expect("submit"),
    );
    assert_eq!(third.ticket_id.to_string(), "R00003");

    let now = Timestamp::now();
    let later = now.plus(Duration::from_secs(1));
    let hour_ago = Timestamp::from_millis(now.as_millis() - 3_600_000);
    let due = store.due_access_reminders(later, hour_ago).await.expect("reminders");
    assert_eq!(due.iter().map(|r| r.ticket_id).collect::<Vec<_>>(), [third.ticket_id], "pending ones only");
    assert!(store.due_access_reminders(later, hour_ago).await.expect("reminders").is_empty(), "once per period");
    assert!(store.due_access_reminders(hour_ago, later).await.expect("reminders").is_empty(), "not old enough");
    let next_period = store.due_access_reminders(later, later).await.expect("reminders");
    assert_eq!(next_period.len(), 1, "again in the next period");
}

/// Invitations are tenant-scoped and record their outcome with the inbox row.
pub(super) async fn invitations(store: Arc<dyn Store>) {
    use crate::domain::testflight::{InvitationOutcome, InvitationStatus, NewInvitation};
    use crate::ids::InvitationId;

    let acme = tenant(store.as_ref(), "Acme").await;
    let globex = tenant(store.as_ref(), "Globex").await;
    let invitation = NewInvitation {
        id: InvitationId::new(),
        email: EmailAddress::parse("tess@example.com").expect("email"),
        first_name: "Tess".into(),
        last_name: "Ter".into(),
        group_id: "group-1".into(),
    };
    let requested = event(acme.id, "testflight.invitation_requested");
    store.submit_invitation(acme.id, &invitation, &requested).await.expect("submit");
    assert_eq!(store.outbox_backlog().await.expect("backlog"), 1);
    let stored = store.invitation(acme.id, invitation.id).await.expect("get").expect("present");
    assert_eq!(
        (stored.status, stored.event_id, stored.group_id.as_str()),
        (InvitationStatus::Accepted, requested.id, "group-1")
    );
    assert_eq!(store.invitation(globex.id, invitation.id).await.expect("get"), None, "tenant-scoped");

    // Dead-lettered: shown failed with the reason; the redriven message still completes it.
    store.mark_invitation_dead_lettered(globex.id, invitation.id, "not yours").await.expect("a no-op");
    assert_eq!(
        store.invitation(acme.id, invitation.id).await.expect("get").expect("present").status,
        InvitationStatus::Accepted
    );
    store.mark_invitation_dead_lettered(acme.id, invitation.id, "throttled (after 3 attempts)").await.expect("mark");
    let dead = store.invitation(acme.id, invitation.id).await.expect("get").expect("present");
    assert_eq!(
        (dead.status, dead.failure_reason.as_deref()),
        (InvitationStatus::Failed, Some("throttled (after 3 attempts)"))
    );

    let mut tx = store.begin_once("testflight", acme.id, requested.id).await.expect("begin").expect("first");
    let outcome = InvitationOutcome {
        status: InvitationStatus::Invited,
        tester_id: Some("T1".into()),
        already_existed: true,
        failure_reason: None,
        result_key: Some("testflight/k.json".into()),
    };
    tx.set_invitation_outcome(acme.id, invitation.id, &outcome).await.expect("outcome");
    tx.commit().await.expect("commit");
    let done = store.invitation(acme.id, invitation.id).await.expect("get").expect("present");
    assert_eq!(
        (done.status, done.tester_id.as_deref(), done.already_existed),
        (InvitationStatus::Invited, Some("T1"), true)
    );
    let mut tx = store
        .begin_once(
            "testflight",
            globex.id,
            EventEnvelope::new(globex.id, Service::CoreApi, EventType::parse("testflight.x").expect("t"), Map::new())
                .id,
        )
        .await
        .expect("begin")
        .expect("first");
    let other = tx.set_invitation_outcome(globex.id, invitation.id, &outcome).await;
    assert!(matches!(other, Err(StoreError::NotFound(_))), "another tenant's invitation is not found: {other:?}");
}
