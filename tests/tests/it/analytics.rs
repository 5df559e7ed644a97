//! `POST /v1/analytics/events` end to end: validation, the batch written as gzip NDJSON
//! under the tenant's hour partition, its status, and the reconciliation counts.

use std::io::Read;
use std::time::Duration;

use serde_json::{json, Value};

use shared::testkit::eventually;

use crate::helpers::{json, spawn_app, Engine, TestApp};

async fn reconciliation_when_written(app: &TestApp, accepted: u64) -> Value {
    eventually(Duration::from_secs(8), "the analytics are written", || async {
        let counts = json(app.get("/v1/analytics/reconciliation", &app.acme.key).await).await;
        if counts["written"] == accepted {
            Ok(counts)
        } else {
            Err(counts)
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_written_as_gzip_ndjson_and_reconciles() {
    let app = spawn_app(Engine::Embedded).await;
    let events: Vec<Value> = (0..5)
        .map(|i| json!({"name": "screen_view", "timestamp": "2026-11-27T10:00:00Z", "user_id": "u1", "properties": {"screen": i}}))
        .collect();
    let response = app.post_json("/v1/analytics/events", Some(&app.acme.key), &json!({"events": events})).await;
    assert_eq!(response.status(), 202);
    let accepted = json(response).await;
    assert_eq!(accepted["accepted"], 5);
    let ids: Vec<String> =
        accepted["event_ids"].as_array().expect("ids").iter().map(|id| id.as_str().expect("id").to_owned()).collect();

    let counts = reconciliation_when_written(&app, 5).await;
    assert_eq!(
        counts,
        json!({"accepted": 5, "in_transit": 0, "staged": 0, "written": 5, "rows_in_objects": 5, "duplicate_rows": 0})
    );
    let batch = json(
        app.get(&format!("/v1/analytics/batches/{}", accepted["batch_id"].as_str().expect("id")), &app.acme.key).await,
    )
    .await;
    assert_eq!((batch["status"].as_str(), batch["written_count"].as_u64()), (Some("written"), Some(5)));

    let objects = &app.backends.objects;
    let keys = objects.list(&format!("analytics/tenant={}/", app.acme.id)).await.expect("list");
    assert_eq!(keys.len(), 1, "{keys:?}");
    let body = objects.get(&keys[0]).await.expect("get").expect("object");
    let mut text = String::new();
    flate2::read::GzDecoder::new(body.as_slice()).read_to_string(&mut text).expect("gzip");
    let rows: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).expect("NDJSON")).collect();
    let written: Vec<&str> = rows.iter().map(|r| r["event_id"].as_str().expect("event id")).collect();
    assert_eq!(written, ids.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(rows[3]["properties"]["screen"], 3);
    assert_eq!(rows[0]["timestamp"], "2026-11-27T10:00:00.000Z");

    // Another tenant sees none of it.
    let theirs = json(app.get("/v1/analytics/reconciliation", &app.globex.key).await).await;
    assert_eq!(theirs["accepted"], 0);
    let other = app
        .get(&format!("/v1/analytics/batches/{}", accepted["batch_id"].as_str().expect("id")), &app.globex.key)
        .await;
    assert_eq!(other.status(), 404);
    app.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_batches_are_refused_and_change_nothing() {
    let app = spawn_app(Engine::Embedded).await;
    let too_many: Vec<Value> = (0..501).map(|_| json!({"name": "x"})).collect();
    let cases = [
        (json!({}), "events"),
        (json!({"events": []}), "events"),
        (json!({"events": too_many}), "events"),
        (json!({"events": [{"name": "ok"}, {"name": ""}]}), "events[1].name"),
        (json!({"events": [{"name": "ok", "timestamp": "tuesday"}]}), "events[0].timestamp"),
        (json!({"events": ["signup"]}), "events[0]"),
    ];
    for (body, field) in cases {
        let response = app.post_json("/v1/analytics/events", Some(&app.acme.key), &body).await;
        assert_eq!(response.status(), 400, "{body}");
        let problem = json(response).await;
        assert!(
            problem["errors"].as_array().expect("errors").iter().any(|e| e["field"] == field),
            "{field} in {problem}"
        );
    }
    let unauthenticated = app.post_json("/v1/analytics/events", None, &json!({"events": [{"name": "x"}]})).await;
    assert_eq!(unauthenticated.status(), 401);
    let counts = json(app.get("/v1/analytics/reconciliation", &app.acme.key).await).await;
    assert_eq!(counts["accepted"], 0, "nothing was accepted");
    assert_eq!(app.get("/v1/analytics/batches/nope", &app.acme.key).await.status(), 404);
    app.stop().await.expect("clean stop");
}
