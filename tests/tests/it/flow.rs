//! Feedback travels API → outbox → topic → FIFO queue → worker → partitioned object.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};

use shared::ports::ReceiveOptions;
use shared::{EventEnvelope, ObjectKey};

use shared::testkit::eventually;

use crate::helpers::{json, spawn_app, spawn_app_reading_orders, Engine, TestApp};

async fn wait_for_completion(app: &TestApp, id: &str) -> Value {
    eventually(Duration::from_secs(15), "the feedback completes", || async {
        let body = json(app.get(&format!("/v1/feedback/{id}"), &app.acme.key).await).await;
        if body["status"] == "completed" {
            return Ok(body);
        }
        assert!(
            ["accepted", "processing"].contains(&body["status"].as_str().unwrap_or_default()),
            "unexpected status: {body}"
        );
        Err(body)
    })
    .await
}

async fn feedback_flow(engine: Engine) {
    let app = spawn_app(engine).await;
    let response = app
        .post_json(
            "/v1/feedback",
            Some(&app.acme.key),
            &json!({"rating": 4, "message": "The export button is hard to find", "contact_email": "ana@example.com", "metadata": {"app_version": "2.1.0"}}),
        )
        .await;
    assert_eq!(response.status(), 202);
    let accepted = json(response).await;
    assert_eq!(accepted["status"], "accepted");
    let id = accepted["id"].as_str().expect("id").to_owned();
    assert!(id.starts_with("fbk_"));

    let done = wait_for_completion(&app, &id).await;
    let key = done["result_key"].as_str().expect("result key");
    let event_id = accepted["event_id"].as_str().expect("event id");
    let prefix = format!("feedback/tenant={}/year=", app.acme.id);
    assert!(key.starts_with(&prefix), "{key}");
    assert!(key.ends_with(&format!("/{event_id}.json")), "{key}");
    let parts: Vec<&str> = key.split('/').collect();
    assert!(parts[3].starts_with("month=") && parts[4].starts_with("day=") && parts[5].starts_with("hour="), "{key}");

    let object =
        app.backends.objects.get(&ObjectKey::parse(key).expect("key")).await.expect("get").expect("object exists");
    let object: Value = serde_json::from_slice(&object).expect("json object");
    assert_eq!(object["tenant_id"], app.acme.id.to_string());
    assert_eq!(object["feedback"]["message"], "The export button is hard to find");
    assert_eq!(object["feedback"]["rating"], 4);

    // Another tenant cannot see it.
    assert_eq!(app.get(&format!("/v1/feedback/{id}"), &app.globex.key).await.status(), 404);

    // The contact address gets one confirmation email, through the email worker.
    let confirmations = eventually(Duration::from_secs(10), "a confirmation email", || async {
        let captured = std::fs::read_to_string(app.captures.join("emails.jsonl")).unwrap_or_default();
        match captured.lines().filter(|l| l.contains("ana@example.com")).count() {
            0 => Err(captured),
            n => Ok(n),
        }
    })
    .await;
    assert_eq!(confirmations, 1, "one confirmation email");
    app.stop().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feedback_flows_end_to_end_on_the_embedded_engine() {
    feedback_flow(Engine::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feedback_flows_end_to_end_on_postgres() {
    feedback_flow(Engine::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feedback_flows_end_to_end_on_postgres_and_aws() {
    feedback_flow(Engine::PostgresAws).await;
}

async fn events_reach_the_core_api_topic(engine: Engine) {
    let app = spawn_app_reading_orders(engine).await;
    // Keyless events are one order per tenant; keyed ones one order per key.
    let tenant = app.acme.id.to_string();
    let mut sent: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for n in 0..12 {
        let key = ["", "cart-1", "cart-2"][n % 3];
        let mut body = json!({"type": "order.placed", "data": {"n": n}});
        let group = if key.is_empty() {
            tenant.clone()
        } else {
            body["ordering_key"] = json!(key);
            format!("{tenant}:{key}")
        };
        let response = app.post_json("/v1/events", Some(&app.acme.key), &body).await;
        assert_eq!(response.status(), 202);
        sent.entry(group).or_default().push(json(response).await["event_id"].as_str().expect("id").to_owned());
    }
    let mut received: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let total = sent.values().map(Vec::len).sum::<usize>();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while received.values().map(Vec::len).sum::<usize>() < total && tokio::time::Instant::now() < deadline {
        let options = ReceiveOptions { max_messages: 10, wait: Duration::from_secs(2), visibility_timeout: None };
        for message in app.backends.transport.receive(&app.order_queue, options).await.expect("receive") {
            assert_eq!(message.attributes.get("tenant_id"), Some(&app.acme.id.to_string()));
            assert_eq!(message.attributes.get("event_type").map(String::as_str), Some("order.placed"));
            let envelope = EventEnvelope::from_json(&message.body).expect("envelope body");
            assert_eq!(envelope.tenant_id, app.acme.id);
            assert_eq!(message.dedup_id, envelope.id.to_string(), "dedup id = event id");
            assert_eq!(message.attributes.get("event_id"), Some(&envelope.id.to_string()));
            received.entry(message.group_id.clone()).or_default().push(envelope.id.to_string());
            app.backends.transport.ack(&app.order_queue, &[message.receipt]).await.expect("ack");
        }
    }
    assert_eq!(received, sent, "every event is published once, in order within its group");
    app.stop().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_events_are_published_in_order_on_the_embedded_engine() {
    events_reach_the_core_api_topic(Engine::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_events_are_published_in_order_on_postgres() {
    events_reach_the_core_api_topic(Engine::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_events_are_published_in_order_on_postgres_and_aws() {
    events_reach_the_core_api_topic(Engine::PostgresAws).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feedback_opens_one_zendesk_ticket_named_by_its_event() {
    use wiremock::matchers::{body_partial_json, method, path};
    use wiremock::{Mock, ResponseTemplate};

    let zendesk = crate::helpers::empty_zendesk().await;
    Mock::given(method("POST"))
        .and(path("/api/v2/tickets.json"))
        .and(body_partial_json(
            json!({"ticket": {"subject": "Feedback (2/5)", "comment": {"body": "Crashes on export"}}}),
        ))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"ticket": {"id": 42}})))
        .expect(1)
        .mount(&zendesk)
        .await;
    let app = crate::helpers::spawn_app_with_zendesk(&zendesk.uri()).await;
    let response =
        app.post_json("/v1/feedback", Some(&app.acme.key), &json!({"rating": 2, "message": "Crashes on export"})).await;
    let accepted = json(response).await;
    let done = wait_for_completion(&app, accepted["id"].as_str().expect("id")).await;
    let key = ObjectKey::parse(done["result_key"].as_str().expect("key")).expect("key");
    let object: Value =
        serde_json::from_slice(&app.backends.objects.get(&key).await.expect("get").expect("object")).expect("json");
    assert_eq!(object["ticket_id"], 42);
    let requests = zendesk.received_requests().await.unwrap_or_default();
    let created = requests.iter().find(|r| r.method.as_str() == "POST").expect("a create request");
    let body: Value = serde_json::from_slice(&created.body).expect("json");
    assert_eq!(body["ticket"]["external_id"], accepted["event_id"], "the ticket is named by the event id");
    app.stop().await.expect("clean shutdown");
}
