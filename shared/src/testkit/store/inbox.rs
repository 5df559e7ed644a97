//! The inbox.

use std::sync::Arc;
use std::time::Duration;

use super::{envelope, new_feedback, tenant};
use crate::domain::FeedbackStatus;
use crate::ports::StoreBackend;

pub async fn applies_an_event_once_per_consumer(store: Arc<dyn StoreBackend>) {
    let acme = tenant(store.as_ref(), "Acme").await;
    let feedback = new_feedback();
    let event = envelope(acme.id, "feedback.submitted", None);
    store.submit_feedback(event.tenant_id, &feedback, &event).await.expect("submit");

    // A transaction dropped without commit leaves nothing behind.
    {
        let mut tx = store
            .begin_once(crate::ports::ConsumerName::new("feedback"), acme.id, event.id)
            .await
            .expect("begin")
            .expect("first time");
        tx.set_feedback_status(acme.id, feedback.id, FeedbackStatus::Completed, Some("k/1.json")).await.expect("set");
    }
    let status = store.feedback(acme.id, feedback.id).await.expect("get").map(|f| f.status);
    assert_eq!(status, Some(FeedbackStatus::Accepted), "rolled back");

    assert!(
        !store.applied(crate::ports::ConsumerName::new("feedback"), acme.id, event.id).await.expect("applied"),
        "rolled back means not applied"
    );
    let mut tx = store
        .begin_once(crate::ports::ConsumerName::new("feedback"), acme.id, event.id)
        .await
        .expect("begin")
        .expect("not applied yet");
    tx.set_feedback_status(acme.id, feedback.id, FeedbackStatus::Completed, Some("k/1.json")).await.expect("set");
    tx.commit().await.expect("commit");
    let stored = store.feedback(acme.id, feedback.id).await.expect("get").expect("present");
    assert_eq!(stored.status, FeedbackStatus::Completed);
    assert_eq!(stored.result_key.as_deref(), Some("k/1.json"));

    assert!(
        store
            .begin_once(crate::ports::ConsumerName::new("feedback"), acme.id, event.id)
            .await
            .expect("begin")
            .is_none(),
        "applied once"
    );
    assert!(store.applied(crate::ports::ConsumerName::new("feedback"), acme.id, event.id).await.expect("applied"));
    assert!(
        !store.applied(crate::ports::ConsumerName::new("analytics"), acme.id, event.id).await.expect("applied"),
        "per consumer"
    );
    assert!(
        store
            .begin_once(crate::ports::ConsumerName::new("analytics"), acme.id, event.id)
            .await
            .expect("begin")
            .is_some(),
        "per consumer"
    );

    // Concurrent duplicates: exactly one gets the transaction.
    let other = envelope(acme.id, "feedback.submitted", None);
    let (a, b) = tokio::join!(
        async {
            let tx =
                store.begin_once(crate::ports::ConsumerName::new("feedback"), acme.id, other.id).await.expect("begin");
            let got = tx.is_some();
            if let Some(tx) = tx {
                tokio::time::sleep(Duration::from_millis(50)).await;
                tx.commit().await.expect("commit");
            }
            got
        },
        async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            let tx =
                store.begin_once(crate::ports::ConsumerName::new("feedback"), acme.id, other.id).await.expect("begin");
            let got = tx.is_some();
            if let Some(tx) = tx {
                tx.commit().await.expect("commit");
            }
            got
        }
    );
    assert!(a ^ b, "exactly one of two concurrent deliveries applies (got {a} and {b})");
}
