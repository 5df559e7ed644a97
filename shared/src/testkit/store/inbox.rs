//! The inbox.

use std::sync::Arc;

use super::{envelope, new_feedback, tenant};
use crate::domain::FeedbackStatus;
use crate::ids::FeedbackId;
use crate::ports::{Applied, ConsumerName, Effects, StoreBackend, StoreError};

const FEEDBACK: ConsumerName = ConsumerName::new("feedback");

fn completed(tenant: crate::ids::TenantId, id: FeedbackId, key: &str) -> Effects {
    let mut effects = Effects::new();
    effects.set_feedback_status(tenant, id, FeedbackStatus::Completed, Some(key));
    effects
}

pub async fn applies_an_event_once_per_consumer(store: Arc<dyn StoreBackend>) {
    let acme = tenant(store.as_ref(), "Acme").await;
    let feedback = new_feedback();
    let event = envelope(acme.id, "feedback.submitted", None);
    store.submit_feedback(event.tenant_id, &feedback, &event).await.expect("submit");

    // One failing effect writes nothing: neither the others nor the inbox row.
    let mut effects = completed(acme.id, feedback.id, "k/1.json");
    effects.set_feedback_status(acme.id, FeedbackId::new(), FeedbackStatus::Completed, None);
    let failed = store.apply_once(FEEDBACK, acme.id, event.id, effects).await;
    assert!(matches!(failed, Err(StoreError::NotFound(_))), "a missing row is not found: {failed:?}");
    let status = store.feedback(acme.id, feedback.id).await.expect("get").map(|f| f.status);
    assert_eq!(status, Some(FeedbackStatus::Accepted), "nothing of a failed apply is kept");
    assert!(!store.applied(FEEDBACK, acme.id, event.id).await.expect("applied"), "failed means not applied");

    let applied = store.apply_once(FEEDBACK, acme.id, event.id, completed(acme.id, feedback.id, "k/1.json")).await;
    assert_eq!(applied.expect("apply"), Applied::Now);
    let stored = store.feedback(acme.id, feedback.id).await.expect("get").expect("present");
    assert_eq!(stored.status, FeedbackStatus::Completed);
    assert_eq!(stored.result_key.as_deref(), Some("k/1.json"));

    // Applied once: a redelivery's effects are not written.
    let mut again = Effects::new();
    again.set_feedback_status(acme.id, feedback.id, FeedbackStatus::Failed, None);
    assert_eq!(store.apply_once(FEEDBACK, acme.id, event.id, again).await.expect("again"), Applied::Before);
    let status = store.feedback(acme.id, feedback.id).await.expect("get").map(|f| f.status);
    assert_eq!(status, Some(FeedbackStatus::Completed), "applied once");
    assert!(store.applied(FEEDBACK, acme.id, event.id).await.expect("applied"));

    let analytics = ConsumerName::new("analytics");
    assert!(!store.applied(analytics, acme.id, event.id).await.expect("applied"), "per consumer");
    assert_eq!(store.apply_once(analytics, acme.id, event.id, Effects::new()).await.expect("apply"), Applied::Now);
}

/// Many handlers finishing at once (what a group commit gathers into one
/// transaction): duplicates of one event apply exactly once, a failing one fails
/// alone, and every other applies.
pub async fn concurrent_applies_stay_separate(store: Arc<dyn StoreBackend>) {
    let acme = tenant(store.as_ref(), "Acme").await;
    let mut submitted = Vec::new();
    for _ in 0..24 {
        let (feedback, event) = (new_feedback(), envelope(acme.id, "feedback.submitted", None));
        store.submit_feedback(acme.id, &feedback, &event).await.expect("submit");
        submitted.push((feedback, event));
    }
    // Status transitions finishing together: each row moves, and only its own.
    let marks: Vec<_> = submitted
        .iter()
        .map(|(feedback, _)| {
            let (store, id) = (store.clone(), feedback.id);
            tokio::spawn(async move { store.mark_feedback_processing(acme.id, id).await })
        })
        .collect();
    for mark in marks {
        mark.await.expect("mark task").expect("mark processing");
    }
    for (feedback, _) in &submitted {
        let status = store.feedback(acme.id, feedback.id).await.expect("get").map(|f| f.status);
        assert_eq!(status, Some(FeedbackStatus::Processing), "feedback {} is processing", feedback.id);
    }
    let duplicated = &submitted[0];
    let mut applies = Vec::new();
    for (feedback, event) in &submitted {
        applies.push((event.id, completed(acme.id, feedback.id, &format!("k/{}.json", feedback.id))));
    }
    for _ in 0..8 {
        applies.push((duplicated.1.id, completed(acme.id, duplicated.0.id, "k/duplicate.json")));
    }
    let bad = envelope(acme.id, "feedback.submitted", None);
    applies.push((bad.id, completed(acme.id, FeedbackId::new(), "k/bad.json")));

    let tasks: Vec<_> = applies
        .into_iter()
        .map(|(event, effects)| {
            let store = store.clone();
            tokio::spawn(async move { (event, store.apply_once(FEEDBACK, acme.id, event, effects).await) })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.expect("apply task"));
    }

    let of = |id| answers.iter().filter(move |(event, _)| *event == id).map(|(_, answer)| answer);
    let duplicates: Vec<_> = of(duplicated.1.id).collect();
    assert_eq!(duplicates.len(), 9);
    assert_eq!(
        duplicates.iter().filter(|a| matches!(a, Ok(Applied::Now))).count(),
        1,
        "exactly one delivery of an event applies: {duplicates:?}"
    );
    assert!(duplicates.iter().all(|a| a.is_ok()), "the others find it applied: {duplicates:?}");
    let bad_answer: Vec<_> = of(bad.id).collect();
    assert!(matches!(bad_answer[..], [Err(StoreError::NotFound(_))]), "the bad one fails alone: {bad_answer:?}");
    assert!(!store.applied(FEEDBACK, acme.id, bad.id).await.expect("applied"));
    for (feedback, event) in &submitted[1..] {
        assert!(matches!(of(event.id).collect::<Vec<_>>()[..], [Ok(Applied::Now)]), "event {} applies", event.id);
        let stored = store.feedback(acme.id, feedback.id).await.expect("get").expect("present");
        assert_eq!(stored.status, FeedbackStatus::Completed);
        assert_eq!(stored.result_key, Some(format!("k/{}.json", feedback.id)), "its own effect, not a neighbour's");
    }
    let first = store.feedback(acme.id, duplicated.0.id).await.expect("get").expect("present");
    assert_eq!(first.status, FeedbackStatus::Completed);
}

/// Completions finishing together, with nothing wrong among them (what a group commit
/// writes as one statement per kind of effect): every row gets its own status and
/// result key, across tenants, and a missing key keeps the row's own.
pub async fn concurrent_completions_each_keep_their_own(store: Arc<dyn StoreBackend>) {
    let (acme, globex) = (tenant(store.as_ref(), "Acme").await, tenant(store.as_ref(), "Globex").await);
    let mut submitted = Vec::new();
    for n in 0..32 {
        let owner = if n % 2 == 0 { acme.id } else { globex.id };
        let (feedback, event) = (new_feedback(), envelope(owner, "feedback.submitted", None));
        store.submit_feedback(owner, &feedback, &event).await.expect("submit");
        submitted.push((n, owner, feedback.id, event.id));
    }
    let expected = |n: usize, id: FeedbackId| {
        if n % 5 == 0 {
            (FeedbackStatus::Failed, None)
        } else {
            (FeedbackStatus::Completed, Some(format!("k/{n}/{id}.json")))
        }
    };
    let tasks: Vec<_> = submitted
        .iter()
        .map(|&(n, owner, id, event)| {
            let store = store.clone();
            let (status, key) = expected(n, id);
            tokio::spawn(async move {
                let mut effects = Effects::new();
                effects.set_feedback_status(owner, id, status, key.as_deref());
                store.apply_once(FEEDBACK, owner, event, effects).await
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.expect("apply task").expect("apply"), Applied::Now);
    }
    for &(n, owner, id, _) in &submitted {
        let stored = store.feedback(owner, id).await.expect("get").expect("present");
        assert_eq!((stored.status, stored.result_key), expected(n, id), "feedback {n} has its own outcome");
    }
}
