//! Feedback.

use std::sync::Arc;

use super::{envelope, new_feedback, tenant};
use crate::domain::FeedbackStatus;
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
    store.mark_feedback_processing(acme.id, feedback.id).await.expect("no-op");
    assert_eq!(
        status(store.clone()).await,
        Some(FeedbackStatus::Failed),
        "a redrive's attempt keeps it failed until done"
    );
}
