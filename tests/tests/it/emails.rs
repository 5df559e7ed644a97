//! `POST /v1/emails` end to end: validation, campaigns fanned out per recipient, the
//! email worker sending through the (captured) provider, and the status per email.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{json, Value};

use shared::testkit::eventually;

use crate::helpers::{json, spawn_app, Engine, TestApp};

async fn wait_for_status(app: &TestApp, id: &str, wanted: &str) -> Value {
    eventually(Duration::from_secs(8), &format!("email {id} reaches {wanted}"), || async {
        let email = json(app.get(&format!("/v1/emails/{id}"), &app.acme.key).await).await;
        if email["status"] == wanted {
            Ok(email)
        } else {
            Err(email)
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_fans_out_to_one_sent_email_per_recipient() {
    campaign(Engine::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_fans_out_on_postgres_and_aws() {
    campaign(Engine::PostgresAws).await;
}

async fn campaign(engine: Engine) {
    let app = spawn_app(engine).await;
    let response = app
        .post_json(
            "/v1/emails",
            Some(&app.acme.key),
            &json!({"recipients": ["a@example.com", "b@example.com", "c@example.com"], "subject": "Launch", "html": "<p>Hi</p>"}),
        )
        .await;
    assert_eq!(response.status(), 202);
    let campaign = json(response).await;
    assert_eq!(campaign["count"], 3);
    let ids: Vec<String> = campaign["emails"]
        .as_array()
        .expect("emails")
        .iter()
        .map(|e| e["id"].as_str().expect("id").to_owned())
        .collect();
    for id in &ids {
        let email = wait_for_status(&app, id, "sent").await;
        assert_eq!(email["provider"], "capture");
        assert_eq!(email["campaign_id"], campaign["campaign_id"]);
        assert!(email["result_key"].as_str().is_some_and(|k| k.starts_with(&format!("email/tenant={}/", app.acme.id))));
    }
    let captured = std::fs::read_to_string(app.captures.join("emails.jsonl")).expect("captured emails");
    let recipients: HashSet<String> = captured
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| v["to"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(recipients, HashSet::from(["a@example.com".into(), "b@example.com".into(), "c@example.com".into()]));
    assert_eq!(captured.lines().count(), 3, "one send per recipient");

    // Another tenant sees none of it.
    assert_eq!(app.get(&format!("/v1/emails/{}", ids[0]), &app.globex.key).await.status(), 404);
    app.stop().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_requests_are_validated_field_by_field() {
    let app = spawn_app(Engine::Embedded).await;
    let single = app
        .post_json(
            "/v1/emails",
            Some(&app.acme.key),
            &json!({"to": "ana@example.com", "subject": "Welcome", "template_id": "d-1", "variables": {"name": "Ana"}}),
        )
        .await;
    assert_eq!(single.status(), 202);
    let id = json(single).await["id"].as_str().expect("id").to_owned();
    wait_for_status(&app, &id, "sent").await;

    let cases = [
        (json!({"subject": "x", "text": "y"}), vec!["to"]),
        (json!({"to": "a@example.com", "recipients": ["b@example.com"], "subject": "x", "text": "y"}), vec!["to"]),
        (json!({"to": "not-an-address", "subject": "x", "text": "y"}), vec!["to"]),
        (json!({"to": "a@example.com", "text": "y"}), vec!["subject"]),
        (json!({"to": "a@example.com", "subject": "x"}), vec!["text"]),
        (json!({"to": "a@example.com", "subject": "x", "text": null, "html": null}), vec!["text"]),
        (json!({"to": "a@example.com", "subject": "x", "text": "y", "template_id": "d-1"}), vec!["template_id"]),
        (json!({"to": "a@example.com", "subject": "x", "text": "y", "variables": {}}), vec!["variables"]),
        (json!({"recipients": ["a@example.com", "nope"], "subject": "x", "text": "y"}), vec!["recipients[1]"]),
    ];
    for (body, fields) in cases {
        let response = app.post_json("/v1/emails", Some(&app.acme.key), &body).await;
        assert_eq!(response.status(), 400, "{body}");
        let problem = json(response).await;
        let got: Vec<String> = problem["errors"]
            .as_array()
            .expect("errors")
            .iter()
            .map(|e| e["field"].as_str().unwrap_or_default().to_owned())
            .collect();
        assert_eq!(got, fields, "{body}");
    }
    let too_many: Vec<String> = (0..1001).map(|i| format!("u{i}@example.com")).collect();
    let response = app
        .post_json("/v1/emails", Some(&app.acme.key), &json!({"recipients": too_many, "subject": "x", "text": "y"}))
        .await;
    assert_eq!(response.status(), 400);
    app.stop().await.expect("clean shutdown");
}
