//! Event journeys: what happened to one event, for operators (any tenant) and for the
//! tenant itself (its own events only).

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

use shared::topology::UseCase;

use crate::helpers::{json, spawn_app_reading_orders, spawn_app_with_zendesk_on, Engine, TestApp};

fn steps<'v>(journey: &'v Value, name: &str) -> Vec<&'v Value> {
    journey["steps"].as_array().expect("steps").iter().filter(|s| s["step"] == name).collect()
}

/// The operator's view of `event` once its status is `status` (polled for 15 s).
async fn journey_when(app: &TestApp, event: &str, status: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let journey = json(app.operator_get(&format!("/v1/events/{event}")).await).await;
        if journey["status"] == status || Instant::now() > deadline {
            return journey;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn a_completed_feedback_has_every_step(engine: Engine) {
    let zendesk = crate::helpers::empty_zendesk().await;
    Mock::given(method("POST"))
        .and(path("/api/v2/tickets.json"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"ticket": {"id": 7}})))
        .mount(&zendesk)
        .await;
    let app = spawn_app_with_zendesk_on(engine, &zendesk.uri()).await;
    let accepted = json(app.post_json("/v1/feedback", Some(&app.acme.key), &json!({"message": "Great"})).await).await;
    let event = accepted["event_id"].as_str().expect("event id").to_owned();
    let journey = journey_when(&app, &event, "completed").await;
    assert_eq!(journey["status"], "completed", "{journey}");
    assert_eq!(
        (journey["type"].as_str(), journey["tenant_id"].as_str()),
        (Some("feedback.submitted"), Some(app.acme.id.to_string().as_str()))
    );
    let names: Vec<&str> =
        journey["steps"].as_array().expect("steps").iter().filter_map(|s| s["step"].as_str()).collect();
    assert_eq!(names, ["accepted", "outbox_committed", "published", "delivered", "handled", "effect"], "{journey}");
    let published = steps(&journey, "published")[0];
    assert_eq!(published["topic"], app.topology.topic(shared::Service::CoreApi).name.as_str());
    assert!(published["at"].is_string());
    let feedback_queue = app.topology.queue(UseCase::Feedback).name.as_str();
    assert_eq!(steps(&journey, "delivered")[0]["queue"], feedback_queue);
    assert_eq!(steps(&journey, "handled")[0]["worker"], "feedback");
    let effect = steps(&journey, "effect")[0];
    assert_eq!((effect["kind"].as_str(), effect["status"].as_str()), (Some("feedback"), Some("completed")));
    assert_eq!(effect["id"], accepted["id"]);
    assert!(effect["result_key"].as_str().expect("result key").starts_with("feedback/"));
    assert_eq!(effect["ticket_id"], 7);

    // The tenant sees its own; another tenant's is 404, as a missing one.
    let own = json(app.get(&format!("/v1/events/{event}"), &app.acme.key).await).await;
    assert_eq!(own["steps"], journey["steps"]);
    assert_eq!(app.get(&format!("/v1/events/{event}"), &app.globex.key).await.status(), 404);
    assert_eq!(app.get(&format!("/v1/events/{}", shared::EventId::new()), &app.acme.key).await.status(), 404);
    assert_eq!(app.get("/v1/events/not-an-id", &app.acme.key).await.status(), 404);
    assert_eq!(app.operator_get("/v1/events/not-an-id").await.status(), 404);
    app.stop().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completed_feedback_has_every_step_on_the_embedded_engine() {
    a_completed_feedback_has_every_step(Engine::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completed_feedback_has_every_step_on_postgres() {
    a_completed_feedback_has_every_step(Engine::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completed_feedback_has_every_step_on_postgres_and_aws() {
    a_completed_feedback_has_every_step(Engine::PostgresAws).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_in_flight_shows_what_it_waits_for() {
    // Nobody consumes the analytics queue here: an order event waits there.
    let app = spawn_app_reading_orders(Engine::Embedded).await;
    let body = json!({"type": "order.placed", "data": {"n": 1}});
    let response = app
        .client
        .post(format!("{}/v1/events", app.api_url))
        .bearer_auth(&app.acme.key)
        .header("Idempotency-Key", "order-1")
        .json(&body)
        .send()
        .await
        .expect("send");
    let event = json(response).await["event_id"].as_str().expect("event id").to_owned();
    let journey = journey_when(&app, &event, "in_flight").await;
    assert_eq!(journey["status"], "in_flight", "{journey}");
    assert_eq!(steps(&journey, "accepted")[0]["idempotency_key"], "order-1");
    let handled = steps(&journey, "handled")[0];
    assert_eq!((handled["state"].as_str(), handled["worker"].as_str()), (Some("pending"), Some("analytics")));
    assert_eq!(handled["waiting_for"], "the analytics worker");
    assert!(steps(&journey, "effect").is_empty(), "a tenant's own event has no effect rows");
    app.stop().await.expect("clean shutdown");
}
