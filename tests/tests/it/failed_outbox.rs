//! Outbox rows the relay gave up on: listed for operators with the reason, retried
//! once the cause is fixed (and then published), or discarded with a reason (and never
//! published), each through a plan confirmed with its count.

use std::time::Duration;

use serde_json::{json, Value};

use shared::ports::{Outbox, ReceiveOptions};
use switchyard::platform::Component;

use crate::helpers::{json, spawn_app_without_relay, store, Engine, TestApp};

async fn post(app: &TestApp, path: &str, body: &Value) -> (u16, Value) {
    let response = app.operator_post(path, body).await;
    let status = response.status().as_u16();
    (status, json(response).await)
}

/// Accepts an `order.placed` event and has the relay give up on it, as it does when
/// the transport refuses an event for good.
async fn failed_event(app: &TestApp, n: u32) -> String {
    let body = json!({"type": "order.placed", "data": {"n": n}});
    let accepted = json(app.post_json("/v1/events", Some(&app.acme.key), &body).await).await;
    let event_id = accepted["event_id"].as_str().expect("event id").to_owned();
    let outbox: std::sync::Arc<dyn Outbox> = store(app);
    let claimed = outbox.claim_outbox(10, Duration::from_secs(30)).await.expect("claim");
    let entry = claimed.iter().find(|e| e.envelope.id.to_string() == event_id).expect("claimed");
    outbox.fail_outbox(entry.seq, "InvalidParameter: the topic refused the message").await.expect("fail");
    event_id
}

async fn a_failed_outbox_row_is_retried_and_published(engine: Engine) {
    let app = spawn_app_without_relay(engine).await;
    let retried = failed_event(&app, 1).await;
    let discarded = failed_event(&app, 2).await;

    let listed = json(app.operator_get("/v1/outbox/failed").await).await;
    let rows = listed["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 2, "{listed}");
    assert_eq!(rows[0]["event_id"], json!(discarded), "newest first");
    assert_eq!(rows[1]["event_type"], "order.placed");
    assert_eq!(rows[1]["tenant_id"], json!(app.acme.id));
    assert!(rows[1]["error"].as_str().expect("error").contains("InvalidParameter"), "{listed}");
    let discarded_seq = rows[0]["seq"].as_str().expect("seq").to_owned();
    let other = json(app.operator_get(&format!("/v1/outbox/failed?tenant={}", app.globex.id)).await).await;
    assert_eq!(other["rows"], json!([]));

    // Discard needs the plan's count and a reason.
    let (status, plan) = post(&app, "/v1/outbox/discard", &json!({"ids": [discarded_seq]})).await;
    assert_eq!((status, plan["count"].as_u64()), (200, Some(1)), "{plan}");
    let without = json!({"plan_id": plan["plan_id"], "confirm": 1});
    assert_eq!(post(&app, "/v1/outbox/discard", &without).await.0, 400, "a discard names its reason");
    let with = json!({"plan_id": plan["plan_id"], "confirm": 1, "reason": "a test event"});
    let (status, done) = post(&app, "/v1/outbox/discard", &with).await;
    assert_eq!((status, done["discarded"].as_u64()), (200, Some(1)), "{done}");

    // The cause is fixed; the retry plan is confirmed with its count.
    let (_, plan) = post(&app, "/v1/outbox/retry", &json!({"filter": {"tenant": app.acme.id.to_string()}})).await;
    assert_eq!(plan["count"], 1, "{plan}");
    assert_eq!(plan["tenants"], json!([{"tenant_id": app.acme.id.to_string(), "count": 1}]));
    let (status, _) = post(&app, "/v1/outbox/retry", &json!({"plan_id": plan["plan_id"], "confirm": 2})).await;
    assert_eq!(status, 409, "the count must be the plan's");
    let (status, done) = post(&app, "/v1/outbox/retry", &json!({"plan_id": plan["plan_id"], "confirm": 1})).await;
    assert_eq!((status, done["retried"].as_u64()), (200, Some(1)), "{done}");
    assert_eq!(json(app.operator_get("/v1/outbox/failed").await).await["rows"], json!([]));

    // A relay starts and publishes the retried row, and not the discarded one.
    let _relay = app.another_process(vec![Component::Relay]).await;
    let mut published = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while published.is_empty() && tokio::time::Instant::now() < deadline {
        let options = ReceiveOptions { max_messages: 10, wait: Duration::from_secs(1), visibility_timeout: None };
        for message in app.backends.transport.receive(&app.order_queue, options).await.expect("receive") {
            published.push(message.attributes.get("event_id").cloned().unwrap_or_default());
            app.backends.transport.ack(&app.order_queue, &[message.receipt]).await.expect("ack");
        }
    }
    let options = ReceiveOptions { max_messages: 10, wait: Duration::from_secs(1), visibility_timeout: None };
    let more = app.backends.transport.receive(&app.order_queue, options).await.expect("receive");
    published.extend(more.iter().map(|m| m.attributes.get("event_id").cloned().unwrap_or_default()));
    assert_eq!(published, [retried], "the retried event is published once; the discarded one never");
    app.stop().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_outbox_row_is_retried_and_published_on_the_embedded_engine() {
    a_failed_outbox_row_is_retried_and_published(Engine::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_outbox_row_is_retried_and_published_on_postgres() {
    a_failed_outbox_row_is_retried_and_published(Engine::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_outbox_requests_are_refused() {
    let app = spawn_app_without_relay(Engine::Embedded).await;
    for (path, body, field) in [
        ("/v1/outbox/retry", json!({"filter": {"queue": "feedback"}}), "filter.queue"),
        ("/v1/outbox/retry", json!({"filter": {"tenant": "acme"}}), "filter.tenant"),
        (
            "/v1/outbox/retry",
            json!({"plan_id": shared::PlanId::new().to_string(), "confirm": 1, "reason": "x"}),
            "reason",
        ),
        (
            "/v1/outbox/discard",
            json!({"plan_id": shared::PlanId::new().to_string(), "confirm": 1, "reason": " "}),
            "reason",
        ),
    ] {
        let (status, problem) = post(&app, path, &body).await;
        assert_eq!(status, 400, "{body}: {problem}");
        assert!(problem["errors"].as_array().expect("errors").iter().any(|e| e["field"] == field), "{problem}");
    }
    for query in ["?tenant=acme", "?limit=0", "?cursor=x"] {
        assert_eq!(app.operator_get(&format!("/v1/outbox/failed{query}")).await.status(), 400, "{query}");
    }
    let (_, dead_letter_plan) = post(&app, "/v1/dead-letters/purge", &json!({"filter": {}})).await;
    let confirm = json!({"plan_id": dead_letter_plan["plan_id"], "confirm": 0});
    assert_eq!(post(&app, "/v1/outbox/retry", &confirm).await.0, 409, "a dead-letter plan is no outbox retry");
    app.stop().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_outbox_row_is_retried_and_published_on_postgres_and_aws() {
    a_failed_outbox_row_is_retried_and_published(Engine::PostgresAws).await;
}
