use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;

use adapters::object_store::FilesystemObjectStore;
use shared::domain::access::{AccessRequest, Decision, NewAccessRequest, Submitted};
use shared::domain::{EmailAddress, TenantName};
use shared::events::types::{ACCESS_REQUEST_APPROVED, ACCESS_REQUEST_SUBMITTED, EMAIL_REQUESTED};
use shared::ports::ObjectStore;
use shared::topology::UseCase;
use shared::{EventEnvelope, EventType, ObjectKey, Service, TenantId};
use workers::access_requests::AccessRequestWorker;
use workers::alerts::{Alerter, Monitor, MonitorPorts};
use workers::{Handler, HandlerError};

use crate::helpers::{assert_dead_lettered_and_alerted, delivery, AlertRecorder, Env};

fn event(event_type: EventType, service: Service) -> impl Fn(&AccessRequest) -> EventEnvelope + Send + Sync {
    move |request: &AccessRequest| {
        let data = json!({
            "ticket_id": request.ticket_id,
            "requester": request.requester.as_str(),
            "organization": request.organization.as_str(),
            "message": request.message,
            "created_tenant_id": request.created_tenant_id,
        });
        EventEnvelope::new(
            request.tenant_id,
            service,
            event_type.clone(),
            data.as_object().cloned().unwrap_or_default(),
        )
    }
}

/// Submits a request as the API does; returns it and its event.
async fn submit(env: &Env, tenant: TenantId) -> (AccessRequest, EventEnvelope) {
    let new = NewAccessRequest {
        requester: EmailAddress::parse("ana@initech.example").expect("requester"),
        organization: TenantName::parse("Initech").expect("organization"),
        message: Some("We run 40 apps".into()),
    };
    let make = event(ACCESS_REQUEST_SUBMITTED, Service::CoreApi);
    match env.store.submit_access_request(tenant, &new, &make).await.expect("submit") {
        Submitted::Created(request) => {
            let envelope = make(&request);
            (request, envelope)
        }
        Submitted::PendingExists(existing) => panic!("unexpected pending request {existing:?}"),
    }
}

fn worker(env: &Env, sink: Arc<AlertRecorder>) -> AccessRequestWorker {
    AccessRequestWorker::new(
        env.store.clone(),
        Arc::new(FilesystemObjectStore::new(env.dir.path().join("objects"))),
        Some(sink),
        Some(EmailAddress::parse("support@acme.example").expect("support")),
        None,
    )
}

/// The `email.requested` events in the outbox, as (to, subject).
async fn requested_emails(env: &Env) -> Vec<(String, String)> {
    let entries = env.store.claim_outbox(1_000, Duration::from_millis(1)).await.expect("claim");
    entries
        .iter()
        .filter(|e| e.envelope.event_type == EMAIL_REQUESTED)
        .map(|e| {
            (
                e.envelope.data["to"].as_str().unwrap_or_default().to_owned(),
                e.envelope.data["subject"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_new_request_is_stored_alerted_and_emailed_to_support_once_even_when_the_alert_fails_twice() {
    let env = Env::new().await;
    let tenant = env.tenant("Portal").await;
    let (request, envelope) = submit(&env, tenant).await;
    let sink = Arc::new(AlertRecorder::failing(2));
    let worker = worker(&env, sink.clone());
    for attempt in 1..=2 {
        let error = worker.handle(&delivery(&envelope, attempt)).await.expect_err("Discord is down");
        assert!(matches!(error, HandlerError::Transient(_)), "{error:?}");
    }
    worker.handle(&delivery(&envelope, 3)).await.expect("handled");
    worker.handle(&delivery(&envelope, 4)).await.expect("a redelivery is acknowledged");

    let posted = sink.posted.lock().expect("lock").clone();
    assert_eq!(posted.len(), 1, "one alert once Discord is back");
    assert_eq!(posted[0].title, "New access request R00001");
    assert_eq!(
        requested_emails(&env).await,
        [("support@acme.example".to_owned(), "Access request R00001 from Initech".to_owned())],
        "one email to support"
    );
    let objects = FilesystemObjectStore::new(env.dir.path().join("objects"));
    let key = ObjectKey::partitioned("access-requests", tenant, envelope.occurred_at, "R00001.json").expect("key");
    let stored: serde_json::Value =
        serde_json::from_slice(&objects.get(&key).await.expect("get").expect("stored by ticket id")).expect("json");
    assert_eq!(stored["ticket_id"], json!(request.ticket_id));
}

#[tokio::test]
async fn an_approval_emails_the_requester_once() {
    let env = Env::new().await;
    let tenant = env.tenant("Portal").await;
    let (request, _) = submit(&env, tenant).await;
    let created = TenantId::new();
    let make = event(ACCESS_REQUEST_APPROVED, Service::ControlPlane);
    let approved = env
        .store
        .decide_access_request(request.ticket_id, &Decision::Approve { tenant: created }, &make)
        .await
        .expect("approve");
    let envelope = make(&approved);
    let worker = worker(&env, Arc::new(AlertRecorder::default()));
    worker.handle(&delivery(&envelope, 1)).await.expect("handled");
    worker.handle(&delivery(&envelope, 2)).await.expect("redelivery");
    let emails = requested_emails(&env).await;
    assert_eq!(emails.len(), 1, "{emails:?}");
    assert_eq!(emails[0], ("ana@initech.example".to_owned(), "Your access request R00001 was approved".to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_sink_that_always_fails_sends_the_request_to_the_dead_letter_queue_and_is_alerted() {
    let env = Env::new().await;
    let tenant = env.tenant("Portal").await;
    let (_, envelope) = submit(&env, tenant).await;
    let handler = Arc::new(worker(&env, Arc::new(AlertRecorder::failing(usize::MAX))));
    assert_dead_lettered_and_alerted(&env, UseCase::AccessRequests, handler, &envelope).await;
    assert!(requested_emails(&env).await.is_empty(), "no effect committed");
}

#[tokio::test]
async fn a_request_pending_too_long_gets_one_reminder_per_period() {
    let env = Env::new().await;
    let tenant = env.tenant("Portal").await;
    submit(&env, tenant).await;
    let operators = Arc::new(AlertRecorder::default());
    let mut monitor = Monitor::new(
        env.embedded.clone(),
        MonitorPorts::of(&env.store),
        env.topology.clone(),
        Alerter::new(operators.clone(), Duration::from_secs(1)),
    );
    monitor.access_reminders = Some((Duration::ZERO, Duration::from_secs(3600)));
    let start = Instant::now();
    monitor.check(start).await;
    monitor.check(start + Duration::from_secs(10)).await;
    let posted = operators.posted.lock().expect("lock").clone();
    assert_eq!(posted.iter().map(|a| a.title.clone()).collect::<Vec<_>>(), ["Access request R00001 is still pending"]);
}
