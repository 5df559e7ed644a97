//! The REST contract: validation, authentication, idempotency and problem+json.

use std::collections::HashSet;

use serde_json::{json, Value};

use crate::helpers::{json, spawn_app, store, Engine, TestApp};

async fn problem(response: reqwest::Response, status: u16) -> Value {
    let actual = response.status();
    let content_type =
        response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let text = response.text().await.unwrap_or_default();
    assert_eq!(actual, status, "{text}");
    assert_eq!(content_type, "application/problem+json", "{text}");
    let body: Value = serde_json::from_str(&text).expect("a JSON problem");
    assert_eq!(body["status"], status);
    assert!(body["type"].is_string() && body["title"].is_string() && body["detail"].is_string(), "{body}");
    body
}

fn failing_fields(body: &Value) -> HashSet<String> {
    body["errors"].as_array().expect("errors").iter().map(|e| e["field"].as_str().expect("field").to_owned()).collect()
}

async fn backlog(app: &TestApp) -> u64 {
    store(app).outbox_backlog().await.expect("backlog")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_contract() {
    let app = spawn_app(Engine::Embedded).await;
    let order = json!({"type": "order.placed", "data": {"order_id": 42}});

    // Idempotency: same key → 200 with the original id; another tenant is independent.
    let send = |key: &'static str, tenant_key: String| {
        let client = app.client.clone();
        let url = format!("{}/v1/events", app.api_url);
        let body = order.clone();
        async move {
            client
                .post(url)
                .bearer_auth(tenant_key)
                .header("Idempotency-Key", key)
                .json(&body)
                .send()
                .await
                .expect("send")
        }
    };
    let first = send("order-42", app.acme.key.clone()).await;
    assert_eq!(first.status(), 202);
    let first_id = json(first).await["event_id"].as_str().expect("id").to_owned();
    assert!(first_id.starts_with("evt_"));
    let again = send("order-42", app.acme.key.clone()).await;
    assert_eq!(again.status(), 200);
    assert_eq!(json(again).await["event_id"], first_id);
    let other = send("order-42", app.globex.key.clone()).await;
    assert_eq!(other.status(), 202);
    assert_ne!(json(other).await["event_id"], first_id);

    // Twenty concurrent requests with one key: exactly one 202, one event id.
    let responses = futures::future::join_all((0..20).map(|_| send("burst", app.acme.key.clone()))).await;
    let mut accepted = 0;
    let mut ids = HashSet::new();
    for response in responses {
        match response.status().as_u16() {
            202 => accepted += 1,
            200 => {}
            other => panic!("unexpected status {other}"),
        }
        ids.insert(json(response).await["event_id"].as_str().expect("id").to_owned());
    }
    assert_eq!(accepted, 1);
    assert_eq!(ids.len(), 1);

    // Reserved namespaces.
    for reserved in
        ["feedback.submitted", "email.sent", "analytics.track", "testflight.invited", "access_request.approved"]
    {
        let response = app.post_json("/v1/events", Some(&app.acme.key), &json!({"type": reserved, "data": {}})).await;
        let body = problem(response, 400).await;
        let prefix = reserved.split('.').next().expect("prefix");
        assert!(body["errors"][0]["detail"].as_str().expect("detail").contains(&format!("`{prefix}.`")), "{body}");
    }

    // Each failing field is listed; nothing is written.
    let before = backlog(&app).await;
    let body =
        problem(app.post_json("/v1/events", Some(&app.acme.key), &json!({"type": "Order", "data": [1]})).await, 400)
            .await;
    assert_eq!(failing_fields(&body), HashSet::from(["type".to_owned(), "data".to_owned()]));
    let body = problem(app.post_json("/v1/events", Some(&app.acme.key), &json!({})).await, 400).await;
    assert_eq!(failing_fields(&body), HashSet::from(["type".to_owned(), "data".to_owned()]));
    let long_type = format!("a.{}", "b".repeat(127));
    problem(app.post_json("/v1/events", Some(&app.acme.key), &json!({"type": long_type, "data": {}})).await, 400).await;
    let bad_key = app
        .client
        .post(format!("{}/v1/events", app.api_url))
        .bearer_auth(&app.acme.key)
        .header("Idempotency-Key", "has space")
        .json(&order)
        .send()
        .await
        .expect("send");
    assert_eq!(failing_fields(&problem(bad_key, 400).await), HashSet::from(["Idempotency-Key".to_owned()]));
    for ordering_key in [json!(""), json!(7), json!("a\nb"), json!("k".repeat(257))] {
        let body = json!({"type": "order.placed", "data": {}, "ordering_key": ordering_key});
        let response = app.post_json("/v1/events", Some(&app.acme.key), &body).await;
        assert_eq!(failing_fields(&problem(response, 400).await), HashSet::from(["ordering_key".to_owned()]));
    }
    assert_eq!(backlog(&app).await, before, "rejected requests change nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_and_body_errors() {
    let app = spawn_app(Engine::Embedded).await;
    let good = json!({"type": "order.placed", "data": {}});
    let url = format!("{}/v1/events", app.api_url);

    let body = problem(app.post_json("/v1/events", None, &good).await, 401).await;
    assert!(body["detail"].as_str().expect("detail").contains("Authorization"));
    problem(app.post_json("/v1/events", Some("sk_nope"), &good).await, 401).await;
    // The same key with its last hex digit changed (to a digit it cannot already be).
    let (head, last) = app.acme.key.split_at(app.acme.key.len() - 1);
    let forged = format!("{head}{}", if last == "0" { "1" } else { "0" });
    problem(app.post_json("/v1/events", Some(&forged), &good).await, 401).await;

    // Bad bodies are answered before the key is checked.
    let malformed = app
        .client
        .post(&url)
        .bearer_auth("sk_bad")
        .header("content-type", "application/json")
        .body("{\"type\":")
        .send()
        .await
        .expect("send");
    problem(malformed, 400).await;
    let huge = json!({"type": "order.placed", "data": {"blob": "x".repeat(262_145)}});
    problem(app.post_json("/v1/events", Some("sk_bad"), &huge).await, 413).await;
    let chunked = app
        .client
        .post(&url)
        .bearer_auth("sk_bad")
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(
            (0..70).map(|_| Ok::<_, std::io::Error>(vec![b' '; 4096])),
        )))
        .send()
        .await
        .expect("send");
    problem(chunked, 413).await;
    let text = app
        .client
        .post(&url)
        .bearer_auth(&app.acme.key)
        .header("content-type", "text/plain")
        .body("hi")
        .send()
        .await
        .expect("send");
    problem(text, 415).await;
    let invalid = app.post_json("/v1/events", Some("sk_bad"), &json!({"type": "nope"})).await;
    problem(invalid, 400).await;
    let array = app.post_json("/v1/events", Some(&app.acme.key), &json!([1, 2])).await;
    problem(array, 400).await;

    // Unknown routes are problems too.
    problem(app.get("/v2/nothing", &app.acme.key).await, 404).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feedback_validation_and_tenancy() {
    let app = spawn_app(Engine::Embedded).await;
    let before = backlog(&app).await;
    let body = problem(
        app.post_json(
            "/v1/feedback",
            Some(&app.acme.key),
            &json!({"rating": 9, "contact_email": "not-an-email", "metadata": "text"}),
        )
        .await,
        400,
    )
    .await;
    assert_eq!(
        failing_fields(&body),
        HashSet::from(["rating".into(), "message".into(), "contact_email".into(), "metadata".into()])
    );
    let too_long = json!({"message": "x".repeat(5_001)});
    let body = problem(app.post_json("/v1/feedback", Some(&app.acme.key), &too_long).await, 400).await;
    assert_eq!(failing_fields(&body), HashSet::from(["message".to_owned()]));
    let fractional = json!({"message": "ok", "rating": 4.5});
    problem(app.post_json("/v1/feedback", Some(&app.acme.key), &fractional).await, 400).await;
    assert_eq!(backlog(&app).await, before, "rejected feedback changes nothing");

    let minimal = app.post_json("/v1/feedback", Some(&app.acme.key), &json!({"message": "Just a message"})).await;
    assert_eq!(minimal.status(), 202);
    let id = json(minimal).await["id"].as_str().expect("id").to_owned();
    let mine = app.get(&format!("/v1/feedback/{id}"), &app.acme.key).await;
    assert_eq!(mine.status(), 200);
    let theirs = problem(app.get(&format!("/v1/feedback/{id}"), &app.globex.key).await, 404).await;
    assert!(!theirs.to_string().contains("Just a message"), "never another tenant's data");
    problem(app.get("/v1/feedback/not-an-id", &app.acme.key).await, 404).await;
    problem(app.get(&format!("/v1/feedback/{id}"), "sk_bad").await, 401).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_routes_answer() {
    let app: TestApp = spawn_app(Engine::Embedded).await;
    let api = app.client.get(format!("{}/health", app.api_url)).send().await.expect("send");
    assert_eq!(api.status(), 200);
    let console = app.client.get(format!("{}/health", app.console_url)).send().await.expect("send");
    assert_eq!(json(console).await["service"], "control-plane");
}

/// `{"a": {"a": … {"a": 1}}}`, `depth` objects deep.
fn nested(depth: usize) -> Value {
    (0..depth).fold(json!(1), |inner, _| json!({ "a": inner }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_unpublishable_is_accepted_on_either_store() {
    for engine in [Engine::Embedded, Engine::Postgres] {
        let app = spawn_app(engine).await;
        let key = app.acme.key.clone();

        // Too deep to read back once wrapped in the envelope: refused, naming the field.
        let deep = problem(
            app.post_json(
                "/v1/feedback",
                Some(&key),
                &json!({"rating": 5, "message": "deep", "metadata": nested(125)}),
            )
            .await,
            400,
        )
        .await;
        let field = deep["errors"][0]["field"].as_str().expect("field").to_owned();
        assert!(field.starts_with("metadata.a.a"), "{engine:?}: {deep}");
        assert!(deep["errors"][0]["detail"].as_str().expect("detail").contains("32 levels"), "{deep}");
        let fine = app
            .post_json("/v1/feedback", Some(&key), &json!({"rating": 5, "message": "fine", "metadata": nested(20)}))
            .await;
        assert_eq!(
            fine.status(),
            202,
            "{engine:?}: moderate nesting is fine: {}",
            fine.text().await.unwrap_or_default()
        );

        // NUL characters: the same 400 on both stores, never a 500.
        for (path, body, field) in [
            ("/v1/feedback", json!({"rating": 5, "message": "a\u{0}b"}), "message"),
            ("/v1/emails", json!({"to": "ana@example.com", "subject": "Hi\u{0}", "text": "x"}), "subject"),
            ("/v1/events", json!({"type": "order.placed", "data": {"list": ["ok", "\u{0}"]}}), "data.list[1]"),
            ("/v1/events", json!({"type": "order.placed", "data": {"k\u{0}": 1}}), "data.k\\u0000"),
        ] {
            let refused = problem(app.post_json(path, Some(&key), &body).await, 400).await;
            assert_eq!(failing_fields(&refused), HashSet::from([field.to_owned()]), "{engine:?} {path}: {refused}");
        }
        let reject = app
            .client
            .post(format!("{}/v1/access-requests/R00001/reject", app.console_url))
            .bearer_auth(crate::helpers::ADMIN_TOKEN)
            .json(&json!({"reason": "no\u{0}"}))
            .send()
            .await
            .expect("send");
        let refused = problem(reject, 400).await;
        assert_eq!(failing_fields(&refused), HashSet::from(["reason".to_owned()]), "{engine:?}: {refused}");

        // Under the body limit, but over the transport's once enveloped: refused before 202.
        // (Once the relay has published what came before, so the backlog stands still.)
        let before =
            shared::testkit::eventually(std::time::Duration::from_secs(10), "the relay catches up", || async {
                match backlog(&app).await {
                    0 => Ok(0),
                    pending => Err(pending),
                }
            })
            .await;
        let filler = "x".repeat(262_000);
        let large = problem(
            app.post_json("/v1/events", Some(&key), &json!({"type": "order.placed", "data": {"blob": filler}})).await,
            413,
        )
        .await;
        assert!(large["detail"].as_str().expect("detail").contains("262144"), "names the limit: {large}");
        assert_eq!(backlog(&app).await, before, "{engine:?}: nothing was stored");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn liveness_and_readiness_answer_while_the_store_is_up() {
    let app: TestApp = spawn_app(Engine::Embedded).await;
    for base in [&app.api_url, &app.console_url] {
        for path in ["/livez", "/readyz"] {
            let response = app.client.get(format!("{base}{path}")).send().await.expect("send");
            assert_eq!(response.status(), 200, "{base}{path}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framework_errors_are_problems_too() {
    let app: TestApp = spawn_app(Engine::Embedded).await;
    let tenant = app.acme.id;
    let webhook = app
        .client
        .post(format!("{}/v1/webhooks/stripe?tenant={tenant}&tenant={tenant}", app.api_url))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .expect("send");
    let duplicated = problem(webhook, 400).await;
    assert_eq!(failing_fields(&duplicated), HashSet::from(["(query)".to_owned()]), "{duplicated}");

    let admin = crate::helpers::ADMIN_TOKEN;
    let list = app
        .client
        .get(format!("{}/v1/access-requests?status=pending&status=approved", app.console_url))
        .bearer_auth(admin)
        .send()
        .await
        .expect("send");
    problem(list, 400).await;

    let huge = app
        .client
        .post(format!("{}/v1/access-requests/R00001/reject", app.console_url))
        .bearer_auth(admin)
        .header("content-type", "application/json")
        .body(format!("{{\"reason\": \"{}\"}}", "x".repeat(300_000)))
        .send()
        .await
        .expect("send");
    problem(huge, 413).await;
}
