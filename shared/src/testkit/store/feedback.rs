//! Feedback.

use std::sync::Arc;

use super::{envelope, new_feedback, tenant};
use crate::domain::{FeedbackMessage, FeedbackStatus};
use crate::ids::TenantId;
use crate::ports::StoreBackend;

pub async fn tenant_scoped_statuses(store: Arc<dyn StoreBackend>) {
    let acme = tenant(store.as_ref(), "Acme").await;
    let globex = tenant(store.as_ref(), "Globex").await;
    let feedback = new_feedback();
    let event = envelope(acme.id, "feedback.submitted", None);
    store.submit_feedback(event.tenant_id, &feedback, &event).await.expect("submit");
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
    let status = |store: Arc<dyn StoreBackend>| async move {
        store.feedback(acme.id, feedback.id).await.expect("get").map(|f| f.status)
    };
    store.mark_feedback_failed(globex.id, feedback.id).await.expect("no-op for another tenant");
    assert_eq!(status(store.clone()).await, Some(FeedbackStatus::Processing));
    store.mark_feedback_failed(acme.id, feedback.id).await.expect("failed");
    assert_eq!(status(store.clone()).await, Some(FeedbackStatus::Failed));
    store.mark_feedback_processing(globex.id, feedback.id).await.expect("no-op for another tenant");
    assert_eq!(status(store.clone()).await, Some(FeedbackStatus::Failed));
    store.mark_feedback_processing(acme.id, feedback.id).await.expect("processing again");
    assert_eq!(status(store.clone()).await, Some(FeedbackStatus::Processing), "a redriven one is processed again");
}

/// Submissions arriving together (what a group commit writes as one transaction):
/// each feedback is stored with its own fields and its own outbox row, across tenants,
/// and one that cannot be stored (an unknown tenant) fails alone.
pub async fn concurrent_submissions_each_stand_alone(store: Arc<dyn StoreBackend>) {
    let (acme, globex) = (tenant(store.as_ref(), "Acme").await, tenant(store.as_ref(), "Globex").await);
    let unknown = TenantId::new();
    // A wave of good ones, then a wave with a bad one among them.
    let waves = [(0..32).map(|n| if n % 2 == 0 { acme.id } else { globex.id }).collect::<Vec<_>>(), {
        let mut wave = vec![acme.id, globex.id, acme.id, acme.id];
        wave.insert(2, unknown);
        wave
    }];
    let mut stored = 0;
    for (w, owners) in waves.into_iter().enumerate() {
        let mut tasks = Vec::new();
        for (n, owner) in owners.into_iter().enumerate() {
            let mut feedback = new_feedback();
            feedback.message = FeedbackMessage::parse(&format!("message {w}.{n}")).expect("message");
            let (store, event) = (store.clone(), envelope(owner, "feedback.submitted", None));
            tasks.push(tokio::spawn(async move {
                let result = store.submit_feedback(owner, &feedback, &event).await;
                (owner, feedback, event, result)
            }));
        }
        for task in tasks {
            let (owner, feedback, event, result) = task.await.expect("submit task");
            if owner == unknown {
                assert!(result.is_err(), "a feedback of an unknown tenant is refused");
                assert_eq!(store.feedback(owner, feedback.id).await.expect("get"), None);
                continue;
            }
            result.expect("submit");
            let row = store.feedback(owner, feedback.id).await.expect("get").expect("present");
            assert_eq!((row.event_id, row.message, row.status), (event.id, feedback.message, FeedbackStatus::Accepted));
            stored += 1;
        }
    }
    assert_eq!(stored, 36);
    assert_eq!(store.outbox_backlog().await.expect("backlog"), 36, "one outbox row each, none for the refused one");
}
