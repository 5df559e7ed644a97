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

/// A POST as an operator: its status and its body.
async fn post(app: &TestApp, path: &str, body: &Value) -> (u16, Value) {
    let response = app.operator_post(path, body).await;
    let status = response.status().as_u16();
    (status, json(response).await)
}

async fn feedback_status(app: &TestApp, id: &str) -> String {
    let feedback = json(app.get(&format!("/v1/feedback/{id}"), &app.acme.key).await).await;
    feedback["status"].as_str().unwrap_or_default().to_owned()
}

/// The job once it has finished (polled for up to 30 s).
async fn finished(app: &TestApp, job: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let view = json(app.operator_get(&format!("/v1/jobs/{job}")).await).await;
        if view["state"] != "running" || Instant::now() > deadline {
            return view;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn a_redriven_poison_message_completes_once_and_purge_can_be_undone(engine: Engine) {
    let zendesk = crate::helpers::empty_zendesk().await;
    let failing = Mock::given(method("POST"))
        .and(path("/api/v2/tickets.json"))
        .respond_with(ResponseTemplate::new(503).set_body_string("maintenance"))
        .mount_as_scoped(&zendesk)
        .await;
    let app = spawn_app_with_zendesk_on(engine, &zendesk.uri()).await;
    let first = json(app.post_json("/v1/feedback", Some(&app.acme.key), &json!({"message": "First"})).await).await;
    let first_id = first["id"].as_str().expect("id").to_owned();
    listed(&app, "", 1).await;

    // The plan freezes what it matched: a dead letter parked after it is not in it.
    let (status, plan) = post(&app, "/v1/dead-letters/redrive", &json!({"filter": {"queue": "feedback"}})).await;
    assert_eq!(status, 200, "{plan}");
    assert_eq!(plan["count"], 1, "{plan}");
    assert_eq!(plan["queues"][0]["queue"], app.topology.queue(UseCase::Feedback).name.as_str());
    assert_eq!(plan["tenants"], json!([{"tenant_id": app.acme.id.to_string(), "count": 1}]));
    assert_eq!(plan["group_count"], 1);
    let second = json(app.post_json("/v1/feedback", Some(&app.acme.key), &json!({"message": "Second"})).await).await;
    let second_id = second["id"].as_str().expect("id").to_owned();
    let page = listed(&app, "", 2).await;
    assert_eq!(page["dead_letters"].as_array().map(Vec::len), Some(2), "{page}");
    assert_eq!(feedback_status(&app, &first_id).await, "failed");
    let queues = json(app.operator_get("/v1/queues").await).await;
    let feedback = queues["queues"].as_array().expect("queues").iter().find(|q| q["use_case"] == "feedback");
    assert_eq!(feedback.expect("the feedback queue")["parked"], 2, "{queues}");

    // The cause is fixed; the plan is confirmed and its job runs.
    drop(failing);
    Mock::given(method("POST"))
        .and(path("/api/v2/tickets.json"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"ticket": {"id": 42}})))
        .mount(&zendesk)
        .await;
    let confirm = json!({"plan_id": plan["plan_id"], "confirm": true});
    let (status, job) = post(&app, "/v1/dead-letters/redrive", &confirm).await;
    assert_eq!(status, 202, "{job}");
    assert_eq!((job["state"].as_str(), job["total"].as_u64()), (Some("running"), Some(1)), "{job}");
    let job_id = job["id"].as_str().expect("job id").to_owned();
    let done = finished(&app, &job_id).await;
    assert_eq!((done["state"].as_str(), done["done"].as_u64()), (Some("completed"), Some(1)), "{done}");
    let (status, again) = post(&app, "/v1/dead-letters/redrive", &confirm).await;
    assert_eq!(status, 409, "a plan is carried out once: {again}");

    let deadline = Instant::now() + Duration::from_secs(30);
    while feedback_status(&app, &first_id).await != "completed" && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(feedback_status(&app, &first_id).await, "completed", "the redriven feedback completed");
    assert_eq!(feedback_status(&app, &second_id).await, "failed", "the one the plan did not freeze is untouched");
    let creates = |message: &'static str| {
        let zendesk = &zendesk;
        async move {
            let requests = zendesk.received_requests().await.unwrap_or_default();
            requests
                .iter()
                .filter(|r| r.method.as_str() == "POST" && String::from_utf8_lossy(&r.body).contains(message))
                .count()
        }
    };
    assert_eq!(creates("First").await, 4, "three failed attempts, then the one ticket the redrive made");
    // Its journey: dead-lettered with its attempts, redriven by the job, then handled.
    let event_id = first["event_id"].as_str().expect("event id");
    let journey = json(app.operator_get(&format!("/v1/events/{event_id}")).await).await;
    assert_eq!(journey["status"], "completed", "{journey}");
    let steps = journey["steps"].as_array().expect("steps");
    let named = |name: &str| steps.iter().filter(|s| s["step"] == name).cloned().collect::<Vec<Value>>();
    assert_eq!(named("dead_lettered").len(), 1, "{journey}");
    assert_eq!(named("dead_lettered")[0]["attempts"].as_array().map(Vec::len), Some(3));
    assert_eq!(named("redriven")[0]["job_id"], json!(job_id));
    let handled = named("handled");
    assert_eq!((handled[0]["state"].as_str(), handled[0]["worker"].as_str()), (Some("done"), Some("feedback")));
    assert_eq!(named("effect")[0]["status"], "completed");
    assert_eq!(named("effect")[0]["ticket_id"], 42, "the ticket, from the result object");
    let own = json(app.get(&format!("/v1/events/{event_id}"), &app.acme.key).await).await;
    assert_eq!(own["status"], "completed", "the tenant sees its own event's journey");
    let waiting =
        json(app.operator_get(&format!("/v1/events/{}", second["event_id"].as_str().expect("id"))).await).await;
    assert_eq!(waiting["status"], "dead_lettered", "{waiting}");

    let parked = listed(&app, "", 1).await;
    assert_eq!(parked["dead_letters"][0]["event_id"], second["event_id"], "only the second is still parked");
    let redriven = listed(&app, "?state=redriven", 1).await;
    assert_eq!(redriven["dead_letters"][0]["redriven_by"], json!(job_id), "{redriven}");

    // Purge needs the plan's count; a purged one is restorable.
    let (_, purge) = post(&app, "/v1/dead-letters/purge", &json!({"filter": {}})).await;
    assert_eq!(purge["count"], 1, "{purge}");
    let (status, refused) =
        post(&app, "/v1/dead-letters/purge", &json!({"plan_id": purge["plan_id"], "confirm": 5})).await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(
        listed(&app, "", 1).await["dead_letters"].as_array().map(Vec::len),
        Some(1),
        "a refusal changes nothing"
    );
    let (status, purged) =
        post(&app, "/v1/dead-letters/purge", &json!({"plan_id": purge["plan_id"], "confirm": 1})).await;
    assert_eq!((status, purged["purged"].as_u64()), (200, Some(1)), "{purged}");
    assert!(purged["restorable_until"].as_str().is_some(), "{purged}");
    assert_eq!(listed(&app, "", 0).await["dead_letters"], json!([]));
    let (_, restore) = post(&app, "/v1/dead-letters/restore", &json!({"filter": {}})).await;
    assert_eq!(restore["count"], 1, "{restore}");
    let (status, restored) =
        post(&app, "/v1/dead-letters/restore", &json!({"plan_id": restore["plan_id"], "confirm": 1})).await;
    assert_eq!((status, restored["restored"].as_u64()), (200, Some(1)), "{restored}");
    assert_eq!(listed(&app, "", 1).await["dead_letters"][0]["event_id"], second["event_id"]);
    assert_eq!(feedback_status(&app, &second_id).await, "failed");
    app.stop().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redriven_poison_message_completes_once_on_the_embedded_engine() {
    a_redriven_poison_message_completes_once_and_purge_can_be_undone(Engine::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redriven_poison_message_completes_once_on_postgres() {
    a_redriven_poison_message_completes_once_and_purge_can_be_undone(Engine::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_plans_and_confirmations_are_refused_and_change_nothing() {
    let zendesk = crate::helpers::empty_zendesk().await;
    let app = spawn_app_with_zendesk_on(Engine::Embedded, &zendesk.uri()).await;
    let cases = [
        (json!({}), "(body)"),
        (json!({"ids": [], "filter": {}}), "ids"),
        (json!({"ids": []}), "ids"),
        (json!({"ids": ["x"]}), "ids"),
        (json!({"ids": "1"}), "ids"),
        (json!({"filter": {"queue": "nope"}}), "filter.queue"),
        (json!({"filter": {"limit": "5"}}), "filter.limit"),
        (json!({"filter": {"tenant": 5}}), "filter.tenant"),
        (json!({"filter": [1]}), "filter"),
        (json!({"filter": {}, "extra": 1}), "extra"),
        (json!({"plan_id": "nope", "confirm": true}), "plan_id"),
        (json!({"plan_id": shared::PlanId::new().to_string()}), "confirm"),
        (
            json!({"plan_id": shared::PlanId::new().to_string(), "confirm": true, "rate_per_minute": 0}),
            "rate_per_minute",
        ),
    ];
    for (body, field) in cases {
        let (status, problem) = post(&app, "/v1/dead-letters/redrive", &body).await;
        assert_eq!(status, 400, "{body}: {problem}");
        let fields: Vec<&str> =
            problem["errors"].as_array().expect("errors").iter().filter_map(|e| e["field"].as_str()).collect();
        assert!(fields.contains(&field), "{body}: {problem}");
    }
    let unknown = json!({"plan_id": shared::PlanId::new().to_string(), "confirm": true});
    assert_eq!(post(&app, "/v1/dead-letters/redrive", &unknown).await.0, 404);
    let (_, purge) = post(&app, "/v1/dead-letters/purge", &json!({"filter": {}})).await;
    assert_eq!(purge["count"], 0);
    let wrong_route = json!({"plan_id": purge["plan_id"], "confirm": true});
    assert_eq!(post(&app, "/v1/dead-letters/redrive", &wrong_route).await.0, 409, "a purge plan is no redrive");
    let (status, _) =
        post(&app, "/v1/dead-letters/purge", &json!({"plan_id": purge["plan_id"], "confirm": true})).await;
    assert_eq!(status, 409, "a purge is confirmed with its count");
    assert_eq!(app.operator_get(&format!("/v1/jobs/{}", shared::JobId::new())).await.status(), 404);
    assert_eq!(app.operator_get("/v1/jobs/nope").await.status(), 404);
    let anonymous = app.client.post(format!("{}/v1/dead-letters/purge", app.console_url)).json(&json!({"filter": {}}));
    assert_eq!(anonymous.send().await.expect("send").status(), 401, "operators only");
    app.stop().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redriven_poison_message_completes_once_on_postgres_and_aws() {
    a_redriven_poison_message_completes_once_and_purge_can_be_undone(Engine::PostgresAws).await;
}
