//! `GET /v1/queues`: queue depths, the oldest message's age and the outbox's backlog,
//! for operators and scripts.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use shared::topology::UseCase;

use crate::helpers::{json, spawn_app_reading_orders, spawn_app_without_relay, Engine, TestApp};

async fn queues(app: &TestApp) -> Value {
    let response = app.operator_get("/v1/queues").await;
    assert_eq!(response.status(), 200);
    json(response).await
}

fn queue<'v>(view: &'v Value, use_case: &str) -> &'v Value {
    view["queues"].as_array().expect("queues").iter().find(|q| q["use_case"] == use_case).expect("the queue")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_statistics_show_what_waits_where() {
    // Nobody consumes the analytics queue here: the events published to it wait there.
    let app = spawn_app_reading_orders(Engine::Embedded).await;
    let view = queues(&app).await;
    assert_eq!(view["queues"].as_array().map(Vec::len), Some(app.topology.queues.len()), "{view}");
    for spec in &app.topology.queues {
        let listed = queue(&view, spec.use_case.as_str());
        assert_eq!(listed["name"], spec.name.as_str());
        assert_eq!(listed["dead_letter_queue"], spec.dlq_name.as_str());
        assert_eq!((listed["dead_letters"].as_u64(), listed["parked"].as_u64()), (Some(0), Some(0)), "{listed}");
    }
    for n in 0..2 {
        let body = json!({"type": "order.placed", "data": {"n": n}});
        assert_eq!(app.post_json("/v1/events", Some(&app.acme.key), &body).await.status(), 202);
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut view = queues(&app).await;
    while queue(&view, UseCase::Analytics.as_str())["visible"] != 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        view = queues(&app).await;
    }
    let analytics = queue(&view, UseCase::Analytics.as_str());
    assert_eq!((analytics["visible"].as_u64(), analytics["in_flight"].as_u64()), (Some(2), Some(0)), "{view}");
    assert_eq!(analytics["delayed"], 0);
    assert_eq!(analytics["oldest_age_source"], "transport", "the embedded transport knows its oldest message");
    let age = analytics["oldest_age_seconds"].as_f64().expect("an age");
    assert!((0.0..60.0).contains(&age), "{analytics}");
    assert_eq!(view["outbox"]["pending"], 0, "the relay published both: {view}");
    assert_eq!(view["outbox"]["oldest_pending_age_seconds"], Value::Null);
    let anonymous = app.client.get(format!("{}/v1/queues", app.console_url)).send().await.expect("send");
    assert_eq!(anonymous.status(), 401, "operators only");
    app.stop().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbox_backlog_and_its_oldest_age_are_shown() {
    let app = spawn_app_without_relay(Engine::Embedded).await;
    let body = json!({"type": "order.placed", "data": {}});
    assert_eq!(app.post_json("/v1/events", Some(&app.acme.key), &body).await.status(), 202);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let view = queues(&app).await;
    assert_eq!(view["outbox"]["pending"], 1, "{view}");
    let age = view["outbox"]["oldest_pending_age_seconds"].as_f64().expect("an age");
    assert!((0.15..60.0).contains(&age), "{view}");
    assert_eq!(view["outbox"]["failed"], 0);
    app.stop().await.expect("clean shutdown");
}
