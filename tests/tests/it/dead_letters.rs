//! Dead letters end to end: a poison message is dead-lettered after its attempts,
//! parked by the control plane, and browsed through the operator API without the
//! transport noticing.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

use shared::topology::UseCase;

use crate::helpers::{json, spawn_app_with_zendesk_on, Engine, TestApp};

/// The listing once it holds `n` dead letters (polled for up to 30 s).
async fn listed(app: &TestApp, query: &str, n: usize) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let response = app.operator_get(&format!("/v1/dead-letters{query}")).await;
        assert_eq!(response.status(), 200);
        let page = json(response).await;
        if page["dead_letters"].as_array().map(Vec::len) == Some(n) || Instant::now() > deadline {
            return page;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn a_poison_message_is_parked_with_its_attempts_and_listing_changes_nothing(engine: Engine) {
    // Every ticket create fails as an outage of Zendesk would: each run of the
    // feedback handler is a failed attempt.
    let zendesk = crate::helpers::empty_zendesk().await;
    Mock::given(method("POST"))
        .and(path("/api/v2/tickets.json"))
        .respond_with(ResponseTemplate::new(503).set_body_string("maintenance"))
        .mount(&zendesk)
        .await;
    let app = spawn_app_with_zendesk_on(engine, &zendesk.uri()).await;
    let accepted = json(app.post_json("/v1/feedback", Some(&app.acme.key), &json!({"message": "Poison"})).await).await;

    let page = listed(&app, "", 1).await;
    let listed_one = &page["dead_letters"][0];
    assert_eq!(listed_one["tenant_id"], json!(app.acme.id), "{page}");
    assert_eq!(listed_one["event_id"], accepted["event_id"]);
    assert_eq!(listed_one["event_type"], "feedback.submitted");
    assert_eq!(listed_one["use_case"], "feedback");
    assert_eq!(listed_one["queue"], app.topology.queue(UseCase::Feedback).name.as_str());
    assert_eq!(listed_one["attempts"], 3);
    assert_eq!(page["next_cursor"], Value::Null);

    let id = listed_one["id"].as_str().expect("id");
    let one = json(app.operator_get(&format!("/v1/dead-letters/{id}")).await).await;
    let attempts = one["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 3, "each handler run, with its time and error: {one}");
    for attempt in attempts {
        assert!(attempt["error"].as_str().expect("error").contains("503"), "{attempt}");
        assert!(attempt["at"].as_str().is_some(), "{attempt}");
    }
    assert_eq!(one["envelope"]["id"], accepted["event_id"], "the envelope as it was published");
    assert_eq!(one["envelope"]["data"]["message"], "Poison");
    assert!(one["dead_lettered_at"].as_str().is_some());
    let status =
        json(app.get(&format!("/v1/feedback/{}", accepted["id"].as_str().expect("id")), &app.acme.key).await).await;
    assert_eq!(status["status"], "failed", "whoever polls the feedback sees that it failed");

    // Browsing changes nothing on the transport: the dead-letter queue was drained into
    // the store, and listing, reading and grouping leave both queues as they are.
    let transport = app.backends.transport.clone();
    let spec = app.topology.queue(UseCase::Feedback);
    let before =
        (transport.stats(&spec.name).await.expect("stats"), transport.stats(&spec.dlq_name).await.expect("stats"));
    assert_eq!((before.1.visible, before.1.in_flight), (0, 0), "the dead-letter queue is drained into the store");
    for _ in 0..3 {
        assert_eq!(listed(&app, "", 1).await["dead_letters"][0]["id"], id);
        assert_eq!(app.operator_get(&format!("/v1/dead-letters/{id}")).await.status(), 200);
    }
    let groups = json(app.operator_get("/v1/dead-letters/groups").await).await;
    assert_eq!(groups["groups"].as_array().map(Vec::len), Some(1), "{groups}");
    assert_eq!(groups["groups"][0]["count"], 1);
    let after =
        (transport.stats(&spec.name).await.expect("stats"), transport.stats(&spec.dlq_name).await.expect("stats"));
    assert_eq!(after, before, "browsing received nothing");

    // Filters narrow; another tenant's or another type's list is empty.
    let fingerprint = groups["groups"][0]["fingerprint"].as_str().expect("fingerprint");
    for query in [
        format!("?tenant={}", app.acme.id),
        "?type=feedback.submitted".to_owned(),
        "?queue=feedback".to_owned(),
        format!("?queue={}", spec.name),
        format!("?error={fingerprint}"),
        "?from=2020-01-01T00:00:00Z".to_owned(),
    ] {
        assert_eq!(listed(&app, &query, 1).await["dead_letters"].as_array().map(Vec::len), Some(1), "{query}");
    }
    for query in [
        format!("?tenant={}", app.globex.id),
        "?type=email.requested".to_owned(),
        "?to=2020-01-01T00:00:00Z".to_owned(),
    ] {
        let page = json(app.operator_get(&format!("/v1/dead-letters{query}")).await).await;
        assert_eq!(page["dead_letters"], json!([]), "{query}");
    }
    app.stop().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_message_is_parked_and_browsed_on_the_embedded_engine() {
    a_poison_message_is_parked_with_its_attempts_and_listing_changes_nothing(Engine::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_message_is_parked_and_browsed_on_postgres() {
    a_poison_message_is_parked_with_its_attempts_and_listing_changes_nothing(Engine::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_filters_are_named_in_one_problem_and_unknown_ids_are_not_found() {
    let zendesk = crate::helpers::empty_zendesk().await;
    let app = spawn_app_with_zendesk_on(Engine::Embedded, &zendesk.uri()).await;
    let response = app
        .operator_get(
            "/v1/dead-letters?queue=nope&tenant=acme&type=Bad%20Type&error=xyz&from=yesterday&limit=0&cursor=-1",
        )
        .await;
    let status = response.status();
    let problem = json(response).await;
    assert_eq!(status, 400, "{problem}");
    let mut fields: Vec<&str> =
        problem["errors"].as_array().expect("errors").iter().filter_map(|e| e["field"].as_str()).collect();
    fields.sort_unstable();
    assert_eq!(fields, ["cursor", "error", "from", "limit", "queue", "tenant", "type"], "{problem}");
    for id in ["123456", "abc", "-1"] {
        assert_eq!(app.operator_get(&format!("/v1/dead-letters/{id}")).await.status(), 404, "{id}");
    }
    let anonymous = app.client.get(format!("{}/v1/dead-letters", app.console_url)).send().await.expect("send");
    assert_eq!(anonymous.status(), 401, "operators only");
    app.stop().await.expect("clean shutdown");
}
