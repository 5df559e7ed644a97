use std::sync::Arc;

use serde_json::json;

use shared::domain::webhooks::WebhookSource;
use shared::events::{Payload, WebhookReceived};
use shared::ports::ObjectStore;
use workers::webhooks::WebhookWorker;
use workers::{Handler, HandlerError};

use crate::helpers::{delivery, CountingObjects, Env};

fn received(message_id: &str) -> WebhookReceived {
    WebhookReceived {
        source: WebhookSource::parse("stripe").expect("source"),
        message_id: message_id.to_owned(),
        payload: json!({"type": "invoice.paid"}).as_object().cloned().unwrap_or_default(),
    }
}

/// A redelivery records nothing twice; an object store that fails leaves no row, and
/// the retry records the webhook.
#[tokio::test]
async fn a_webhook_is_recorded_once_and_a_failed_attempt_leaves_nothing_behind() {
    let env = Env::new().await;
    let tenant = env.tenant("Acme").await;
    let objects = Arc::new(CountingObjects {
        inner: adapters::object_store::FilesystemObjectStore::new(env.dir.path().join("objects")),
        puts: Default::default(),
        fail_first: 1,
    });
    let worker = WebhookWorker::new(env.store.clone(), objects.clone());
    let envelope = received("msg-1").into_envelope(tenant);
    let failed = worker.handle(&delivery(&envelope, 1)).await.expect_err("the object store is down");
    assert!(matches!(failed, HandlerError::Unavailable(_)), "an outage spends no attempt: {failed:?}");
    assert!(env.store.webhook_events(tenant, None, 10).await.expect("list").events.is_empty(), "no row yet");
    worker.handle(&delivery(&envelope, 2)).await.expect("handled");
    worker.handle(&delivery(&envelope, 3)).await.expect("redelivered");
    let page = env.store.webhook_events(tenant, None, 10).await.expect("list");
    assert_eq!(page.events.len(), 1, "recorded once");
    assert_eq!(page.events[0].event_id, envelope.id);
    let key = WebhookWorker::result_key(&envelope).expect("key");
    assert_eq!(page.events[0].result_key, key.to_string());
    assert!(objects.get(&key).await.expect("get").is_some());
}

#[tokio::test]
async fn a_webhook_event_that_does_not_read_back_is_permanent() {
    let env = Env::new().await;
    let tenant = env.tenant("Acme").await;
    let objects = Arc::new(adapters::object_store::FilesystemObjectStore::new(env.dir.path().join("objects")));
    let worker = WebhookWorker::new(env.store.clone(), objects);
    let mut envelope = received("msg-1").into_envelope(tenant);
    envelope.data.remove("source");
    let error = worker.handle(&delivery(&envelope, 1)).await.expect_err("no source");
    assert!(matches!(error, HandlerError::Permanent(_)), "{error:?}");
    assert!(format!("{error:?}").contains("source"), "{error:?}");
}
