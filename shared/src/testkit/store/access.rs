//! Access requests.

use std::sync::Arc;
use std::time::Duration;

use super::{event, tenant};
use crate::clock::Timestamp;
use crate::domain::access::{
    AccessRequest, AccessRequestStatus, Decision, Imported, ImportedAccessRequest, NewAccessRequest, Submitted,
    TicketId,
};
use crate::domain::{EmailAddress, TenantName};
use crate::envelope::EventEnvelope;
use crate::ids::TenantId;
use crate::ports::{StoreBackend, StoreError};

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
pub async fn tickets_pending_decisions_and_reminders(store: Arc<dyn StoreBackend>) {
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

/// The old backend's requests come across under their own ticket numbers, once, and
/// new requests continue after the highest of them.
pub async fn imported_requests_keep_their_tickets_and_the_sequence_continues(store: Arc<dyn StoreBackend>) {
    let acme = tenant(store.as_ref(), "Acme").await;
    let at = Timestamp::from_millis(1_700_000_000_000);
    let imported = |ticket: u64, email: &str, status: AccessRequestStatus| ImportedAccessRequest {
        ticket_id: TicketId::from_number(ticket),
        requester_id: Some(format!("usr_{ticket}")),
        requester: EmailAddress::parse(email).expect("email"),
        organization: TenantName::parse("Initech").expect("name"),
        message: Some("please".into()),
        status,
        created_at: at,
        decided_at: (status != AccessRequestStatus::Pending).then(|| at.plus(Duration::from_secs(60))),
    };
    let approved = imported(41, "bo@example.com", AccessRequestStatus::Approved);
    assert_eq!(store.import_access_request(acme.id, &approved).await.expect("import"), Imported::Created);
    let pending = imported(7, "Ana@Example.com", AccessRequestStatus::Pending);
    assert_eq!(store.import_access_request(acme.id, &pending).await.expect("import"), Imported::Created);
    assert!(matches!(store.import_access_request(acme.id, &approved).await.expect("again"), Imported::AlreadyThere(_)));
    let other = imported(41, "cy@example.com", AccessRequestStatus::Rejected);
    match store.import_access_request(acme.id, &other).await.expect("import") {
        Imported::AlreadyThere(why) => assert!(why.contains("taken"), "{why}"),
        outcome => panic!("another request under a taken ticket: {outcome:?}"),
    }
    let second_pending = imported(9, "ana@example.com", AccessRequestStatus::Pending);
    match store.import_access_request(acme.id, &second_pending).await.expect("import") {
        Imported::Refused(why) => assert!(why.contains("R00007"), "{why}"),
        outcome => panic!("a second pending request: {outcome:?}"),
    }
    let stored = store.access_request(TicketId::from_number(41)).await.expect("get").expect("imported");
    assert_eq!((stored.status, stored.created_at), (AccessRequestStatus::Approved, at));
    assert_eq!(stored.updated_at, at.plus(Duration::from_secs(60)), "decided then");
    assert_eq!(store.outbox_backlog().await.expect("backlog"), 0, "history emits no events");
    let pending_now = store.access_request(TicketId::from_number(7)).await.expect("get").expect("imported");
    assert_eq!(pending_now.requester.as_str(), "ana@example.com");

    let next = created(
        store
            .submit_access_request(acme.id, &new_request("dee@example.com", "Hooli"), &access_event)
            .await
            .expect("submit"),
    );
    assert_eq!(next.ticket_id.to_string(), "R00042", "after the highest imported ticket");
    match store.submit_access_request(acme.id, &new_request("ana@example.com", "Initech"), &access_event).await {
        Ok(Submitted::PendingExists(existing)) => assert_eq!(existing.ticket_id.to_string(), "R00007"),
        other => panic!("an imported pending request counts: {other:?}"),
    }
}
