//! TestFlight invitations.

use std::sync::Arc;

use super::{event, tenant};
use crate::ports::{StoreBackend, StoreError};

/// Invitations are tenant-scoped and record their outcome with the inbox row.
pub async fn tenant_scoped_with_outcome(store: Arc<dyn StoreBackend>) {
    use crate::domain::testflight::{InvitationOutcome, InvitationStatus};

    let acme = tenant(store.as_ref(), "Acme").await;
    let globex = tenant(store.as_ref(), "Globex").await;
    let invitation = super::new_invitation();
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

    let outcome = InvitationOutcome {
        status: InvitationStatus::Invited,
        tester_id: Some("T1".into()),
        already_existed: true,
        failure_reason: None,
        result_key: Some("testflight/k.json".into()),
    };
    let consumer = crate::ports::ConsumerName::new("testflight");
    let mut effects = crate::ports::Effects::new();
    effects.set_invitation_outcome(acme.id, invitation.id, outcome.clone());
    store.apply_once(consumer, acme.id, requested.id, effects).await.expect("outcome");
    let done = store.invitation(acme.id, invitation.id).await.expect("get").expect("present");
    assert_eq!(
        (done.status, done.tester_id.as_deref(), done.already_existed),
        (InvitationStatus::Invited, Some("T1"), true)
    );
    let theirs = event(globex.id, "testflight.x");
    let mut effects = crate::ports::Effects::new();
    effects.set_invitation_outcome(globex.id, invitation.id, outcome);
    let other = store.apply_once(consumer, globex.id, theirs.id, effects).await;
    assert!(matches!(other, Err(StoreError::NotFound(_))), "another tenant's invitation is not found: {other:?}");
    assert!(
        !store.applied(consumer, globex.id, theirs.id).await.expect("applied"),
        "a failed effect leaves no inbox row"
    );
}
