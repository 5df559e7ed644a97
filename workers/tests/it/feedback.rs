use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;

use adapters::object_store::FilesystemObjectStore;
use shared::domain::{FeedbackMessage, FeedbackStatus, NewFeedback};
use shared::events::types::FEEDBACK_SUBMITTED;
use shared::ports::providers::{ProviderError, Ticket, TicketDesk, TicketRef};
use shared::ports::ObjectStore;
use shared::{EventEnvelope, FeedbackId, Service, TenantId};
use workers::feedback::FeedbackWorker;
use workers::{Handler, HandlerError};

use crate::helpers::{delivery, CountingObjects, Env};

/// Stores feedback with `message` and its `feedback.submitted` event, whose data holds
/// the feedback id, the message and `extra`.
async fn submit(env: &Env, tenant: TenantId, message: &str, extra: serde_json::Value) -> (NewFeedback, EventEnvelope) {
    let feedback = NewFeedback {
        id: FeedbackId::new(),
        rating: None,
        message: FeedbackMessage::parse(message).expect("message"),
        contact_email: None,
        metadata: Default::default(),
    };
    let mut data = json!({"feedback_id": feedback.id, "message": message});
    if let (Some(data), Some(extra)) = (data.as_object_mut(), extra.as_object()) {
        data.extend(extra.clone());
    }
    let envelope =
        EventEnvelope::new(tenant, Service::CoreApi, FEEDBACK_SUBMITTED, data.as_object().cloned().unwrap_or_default());
    env.store.submit_feedback(envelope.tenant_id, &feedback, &envelope).await.expect("submit");
    (feedback, envelope)
}

#[tokio::test]
async fn a_redelivered_event_is_applied_once_and_a_failed_attempt_leaves_nothing_behind() {
    let env = Env::new().await;
    let tenant = env.tenant("Acme").await;
    let (feedback, envelope) = submit(&env, tenant, "Hi", json!({})).await;

    let objects = Arc::new(CountingObjects {
        inner: FilesystemObjectStore::new(env.dir.path().join("objects")),
        puts: AtomicUsize::new(0),
        fail_first: 1,
    });
    let worker = FeedbackWorker::new(env.store.clone(), env.store.clone(), objects.clone());

    let error = worker.handle(&delivery(&envelope, 1)).await.expect_err("object store down");
    assert!(matches!(error, HandlerError::Unavailable(_)), "an outage spends no attempt: {error:?}");
    let status = env.store.feedback(tenant, feedback.id).await.expect("get").expect("present").status;
    assert_eq!(status, FeedbackStatus::Processing, "not completed, and the inbox rolled back");

    worker.handle(&delivery(&envelope, 2)).await.expect("second attempt applies");
    let first_completion = env.store.feedback(tenant, feedback.id).await.expect("get").expect("present").updated_at;
    worker.handle(&delivery(&envelope, 3)).await.expect("a duplicate is acknowledged");
    assert_eq!(objects.puts.load(Ordering::SeqCst), 3, "the duplicate rewrites the same deterministic key");
    assert_eq!(
        env.store.feedback(tenant, feedback.id).await.expect("get").expect("present").updated_at,
        first_completion,
        "the database effect happened once"
    );
    let stored = env.store.feedback(tenant, feedback.id).await.expect("get").expect("present");
    assert_eq!(stored.status, FeedbackStatus::Completed);
    let key = FeedbackWorker::result_key(&envelope).expect("key");
    assert_eq!(stored.result_key.as_deref(), Some(key.as_str()));
    assert!(objects.get(&key).await.expect("get").is_some());
}

#[tokio::test]
async fn malformed_messages_are_permanent_failures() {
    let env = Env::new().await;
    let objects = Arc::new(FilesystemObjectStore::new(env.dir.path().join("objects")));
    let worker = FeedbackWorker::new(env.store.clone(), env.store.clone(), objects);
    let mut message = delivery(
        &EventEnvelope::new(env.tenant("Acme").await, Service::CoreApi, FEEDBACK_SUBMITTED, Default::default()),
        1,
    );
    let missing_id = worker.handle(&message).await.expect_err("no feedback id");
    assert!(matches!(missing_id, HandlerError::Permanent(_)));
    assert!(
        format!("{:?}", missing_id).contains("missing field `feedback_id`"),
        "the reason names the field: {missing_id:?}"
    );
    let other = EventEnvelope::new(
        env.tenant("Globex").await,
        Service::CoreApi,
        shared::EventType::parse("order.placed").expect("type"),
        Default::default(),
    );
    worker.handle(&delivery(&other, 1)).await.expect("another type is not this worker's: acknowledged untouched");
    message.body = "not json".into();
    assert!(matches!(worker.handle(&message).await, Err(HandlerError::Permanent(_))));
}

/// A help desk that is down for the first `failures` calls, then keeps tickets by
/// external id as Zendesk does.
struct FlakyDesk {
    failures: AtomicUsize,
    tickets: std::sync::Mutex<std::collections::HashMap<String, u64>>,
}

#[async_trait]
impl TicketDesk for FlakyDesk {
    async fn create_ticket(&self, ticket: &Ticket) -> Result<TicketRef, ProviderError> {
        if self.failures.load(Ordering::SeqCst) > 0 {
            self.failures.fetch_sub(1, Ordering::SeqCst);
            return Err(ProviderError::Unavailable { provider: "zendesk", detail: "503".into() });
        }
        let mut tickets = self.tickets.lock().expect("lock");
        if let Some(id) = tickets.get(&ticket.external_id) {
            return Ok(TicketRef { id: *id, created: false });
        }
        let id = 1000 + tickets.len() as u64;
        tickets.insert(ticket.external_id.clone(), id);
        Ok(TicketRef { id, created: true })
    }
}

#[tokio::test]
async fn a_help_desk_that_fails_twice_gets_exactly_one_ticket() {
    let env = Env::new().await;
    let tenant = env.tenant("Acme").await;
    let (feedback, envelope) =
        submit(&env, tenant, "Crashes on export", json!({"rating": 2, "contact_email": "ana@example.com"})).await;
    let desk = Arc::new(FlakyDesk { failures: AtomicUsize::new(2), tickets: Default::default() });
    let objects = Arc::new(FilesystemObjectStore::new(env.dir.path().join("objects")));
    let worker = FeedbackWorker::new(env.store.clone(), env.store.clone(), objects.clone()).with_tickets(desk.clone());

    for attempt in 1..=2 {
        let error = worker.handle(&delivery(&envelope, attempt)).await.expect_err("the desk is down");
        assert!(matches!(error, HandlerError::Transient(_)), "retryable: {error:?}");
    }
    worker.handle(&delivery(&envelope, 3)).await.expect("the third attempt succeeds");
    worker.handle(&delivery(&envelope, 4)).await.expect("a late duplicate is harmless");
    assert_eq!(desk.tickets.lock().expect("lock").len(), 1, "exactly one ticket");
    assert_eq!(
        env.store.outbox_backlog().await.expect("backlog"),
        2,
        "the feedback event and exactly one confirmation email request"
    );
    let requested = env.store.claim_outbox(10, Duration::from_secs(30)).await.expect("claim");
    let confirmation = requested.iter().find(|e| e.envelope.event_type.as_str() == "email.requested").expect("email");
    assert_eq!(confirmation.envelope.data["to"], "ana@example.com");
    let stored = env.store.feedback(tenant, feedback.id).await.expect("get").expect("present");
    assert_eq!(stored.status, FeedbackStatus::Completed);
    let object = objects.get(&FeedbackWorker::result_key(&envelope).expect("key")).await.expect("get").expect("object");
    let object: serde_json::Value = serde_json::from_slice(&object).expect("json");
    assert_eq!(object["ticket_id"], 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_help_desk_that_is_always_down_dead_letters_the_feedback_and_alerts() {
    let env = Env::new().await;
    let tenant = env.tenant("Acme").await;
    let (feedback, envelope) = submit(&env, tenant, "Crashes on export", json!({})).await;
    let desk = Arc::new(FlakyDesk { failures: AtomicUsize::new(usize::MAX), tickets: Default::default() });
    let objects = Arc::new(FilesystemObjectStore::new(env.dir.path().join("objects")));
    let worker =
        Arc::new(FeedbackWorker::new(env.store.clone(), env.store.clone(), objects).with_tickets(desk.clone()));
    crate::helpers::assert_dead_lettered_and_alerted(&env, shared::topology::UseCase::Feedback, worker, &envelope)
        .await;
    assert!(desk.tickets.lock().expect("lock").is_empty());
    let status = env.store.feedback(tenant, feedback.id).await.expect("get").expect("present").status;
    assert_eq!(status, FeedbackStatus::Failed, "whoever polls it sees it failed, not processing");
}
