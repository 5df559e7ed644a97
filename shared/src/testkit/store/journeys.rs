//! An event's records, found by its id, for its journey.

use std::sync::Arc;
use std::time::Duration;

use super::parking::letter;
use super::{envelope, new_feedback, tenant};
use crate::domain::FeedbackStatus;
use crate::ids::EventId;
use crate::ports::{ConsumerName, Effects, StoreBackend};

pub async fn an_events_records_are_found_by_its_id_for_its_tenant_only(store: Arc<dyn StoreBackend>) {
    let (acme, globex) = (tenant(store.as_ref(), "Acme").await, tenant(store.as_ref(), "Globex").await);
    let feedback = new_feedback();
    let event = envelope(acme.id, "feedback.submitted", None);
    store.submit_feedback(acme.id, &feedback, &event).await.expect("submit");

    let accepted = store.event_records(event.id, None).await.expect("records").expect("the event");
    assert_eq!(accepted.outbox.tenant, acme.id);
    assert_eq!(accepted.outbox.published_at, None, "not published yet");
    assert!(accepted.handled.is_empty() && accepted.parked.is_empty());
    assert_eq!(accepted.effects.len(), 1, "the feedback row");
    assert_eq!((accepted.effects[0].kind, accepted.effects[0].status.as_str()), ("feedback", "accepted"));
    assert!(crate::EventEnvelope::from_json(&accepted.outbox.envelope).is_ok_and(|e| e.id == event.id));

    // Published, dead-lettered once by another consumer, and applied by the feedback worker.
    let claimed = store.claim_outbox(10, Duration::from_secs(30)).await.expect("claim");
    store.mark_published(&[claimed[0].seq]).await.expect("published");
    let mut parked = letter(1, "acme-analytics.fifo", Some(acme.id), "feedback.submitted", "boom");
    parked.event_id = Some(event.id);
    store.park(&parked).await.expect("park");
    let mut effects = Effects::new();
    effects.set_feedback_status(acme.id, feedback.id, FeedbackStatus::Completed, Some("feedback/x.json"));
    store.apply_once(ConsumerName::new("feedback"), acme.id, event.id, effects).await.expect("apply");

    let done = store.event_records(event.id, Some(acme.id)).await.expect("records").expect("the event");
    assert!(done.outbox.published_at.is_some());
    assert_eq!(done.handled.iter().map(|h| h.consumer.as_str()).collect::<Vec<_>>(), ["feedback"]);
    assert_eq!(done.parked.len(), 1);
    assert_eq!(done.parked[0].message.queue.as_str(), "acme-analytics.fifo");
    assert_eq!(done.effects[0].status, "completed");
    assert_eq!(done.effects[0].result_key.as_deref(), Some("feedback/x.json"));

    assert_eq!(store.event_records(event.id, Some(globex.id)).await.expect("records"), None, "not Globex's");
    assert_eq!(store.event_records(EventId::new(), None).await.expect("records"), None);

    // A tenant event accepted under an idempotency key.
    let keyed = envelope(globex.id, "order.placed", Some("order-42"));
    store.append_event(globex.id, &keyed).await.expect("append");
    let records = store.event_records(keyed.id, Some(globex.id)).await.expect("records").expect("the event");
    assert_eq!(records.idempotency_key.as_deref(), Some("order-42"));
    assert!(records.effects.is_empty(), "a tenant's own event has no effect rows");
}
