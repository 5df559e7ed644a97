//! Access requests end to end: a tenant application submits for its signed-in user,
//! operators approve or reject in the control plane, the tenant is created, and support
//! and the requester are emailed (captured), with an alert to the admins.

use std::time::Duration;

use serde_json::{json, Value};

use shared::testkit::eventually;

use crate::helpers::{json, spawn_app, store, Engine, TestApp, ADMIN_TOKEN};

const REQUESTER: &str = "X-Switchyard-Requester";

async fn submit(app: &TestApp, key: &str, requester: &str, body: &Value) -> reqwest::Response {
    app.client
        .post(format!("{}/v1/access-requests", app.api_url))
        .bearer_auth(key)
        .header(REQUESTER, requester)
        .json(body)
        .send()
        .await
        .expect("request")
}

async fn console(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> reqwest::Response {
    let mut request = app.client.request(method, format!("{}{path}", app.console_url));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.expect("request")
}

/// Waits until the capture file `kind` holds `count` lines containing `needle`.
async fn captured(app: &TestApp, kind: &str, needle: &str, count: usize) -> Vec<Value> {
    eventually(Duration::from_secs(8), &format!("{count} captured {kind} with {needle}"), || async {
        let text = std::fs::read_to_string(app.captures.join(format!("{kind}.jsonl"))).unwrap_or_default();
        let found: Vec<Value> =
            text.lines().filter(|l| l.contains(needle)).filter_map(|l| serde_json::from_str(l).ok()).collect();
        if found.len() >= count {
            Ok(found)
        } else {
            Err(found)
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_is_approved_into_a_tenant_and_everyone_is_told() {
    let app = spawn_app(Engine::Embedded).await;
    let body = json!({"organization": "Initech", "message": "We run 40 apps"});
    let response = submit(&app, &app.acme.key, "ana@initech.example", &body).await;
    assert_eq!(response.status(), 202);
    let first = json(response).await;
    assert_eq!((first["ticket_id"].as_str(), first["status"].as_str()), (Some("R00001"), Some("pending")));

    let again = submit(&app, &app.acme.key, "ana@initech.example", &json!({"organization": "Initech 2"})).await;
    assert_eq!(again.status(), 409);
    let problem = json(again).await;
    assert_eq!(
        (problem["type"].as_str(), problem["existing"]["ticket_id"].as_str()),
        (Some("/problems/conflict"), Some("R00001"))
    );

    let other = submit(&app, &app.globex.key, "bob@hooli.example", &json!({"organization": "Hooli"})).await;
    assert_eq!(json(other).await["ticket_id"], "R00002", "numbered per deployment");

    let mine = app
        .client
        .get(format!("{}/v1/access-requests/mine", app.api_url))
        .bearer_auth(&app.acme.key)
        .header(REQUESTER, "ana@initech.example")
        .send()
        .await
        .expect("mine");
    let mine = json(mine).await;
    assert_eq!(mine["access_requests"].as_array().map(Vec::len), Some(1));
    assert_eq!(mine["access_requests"][0]["ticket_id"], "R00001");

    // Operators only, with the token.
    assert_eq!(console(&app, reqwest::Method::GET, "/v1/access-requests", None, None).await.status(), 401);
    assert_eq!(console(&app, reqwest::Method::GET, "/v1/access-requests", Some("wrong"), None).await.status(), 401);
    let pending =
        json(console(&app, reqwest::Method::GET, "/v1/access-requests?status=pending", Some(ADMIN_TOKEN), None).await)
            .await;
    assert_eq!(pending["access_requests"].as_array().map(Vec::len), Some(2));

    let approved =
        console(&app, reqwest::Method::POST, "/v1/access-requests/R00001/approve", Some(ADMIN_TOKEN), None).await;
    assert_eq!(approved.status(), 200);
    let approved = json(approved).await;
    assert_eq!(approved["status"], "approved");
    let tenant_id: shared::TenantId = serde_json::from_value(approved["tenant_id"].clone()).expect("tenant id");
    let tenant = store(&app).tenant(tenant_id).await.expect("get").expect("the approval created the tenant");
    assert_eq!(tenant.name.as_str(), "Initech");
    let twice =
        console(&app, reqwest::Method::POST, "/v1/access-requests/R00001/approve", Some(ADMIN_TOKEN), None).await;
    assert_eq!(twice.status(), 409, "decided once");
    let rejected = console(
        &app,
        reqwest::Method::POST,
        "/v1/access-requests/R00002/reject",
        Some(ADMIN_TOKEN),
        Some(json!({"reason": "Not a fit yet"})),
    )
    .await;
    assert_eq!(json(rejected).await["status"], "rejected");
    assert_eq!(
        console(&app, reqwest::Method::POST, "/v1/access-requests/R00099/approve", Some(ADMIN_TOKEN), None)
            .await
            .status(),
        404
    );

    // Support hears of both, each requester of their decision, the admins of each request.
    captured(&app, "emails", r#""to":"support@acme.example""#, 2).await;
    let ana = captured(&app, "emails", r#""to":"ana@initech.example""#, 1).await;
    assert!(ana[0].to_string().contains("approved"), "{}", ana[0]);
    let bob = captured(&app, "emails", r#""to":"bob@hooli.example""#, 1).await;
    assert!(bob[0].to_string().contains("Not a fit yet"), "{}", bob[0]);
    captured(&app, "alerts", "New access request R0000", 2).await;

    // Operators see the captured calls in the console too.
    let kinds = json(console(&app, reqwest::Method::GET, "/v1/captures", Some(ADMIN_TOKEN), None).await).await;
    assert!(kinds["captures"]["emails"].as_u64().is_some_and(|n| n >= 4), "{kinds}");
    let emails = json(console(&app, reqwest::Method::GET, "/v1/captures/emails", Some(ADMIN_TOKEN), None).await).await;
    let calls = emails["calls"].as_array().expect("calls");
    assert!(calls.iter().any(|c| c["to"] == "bob@hooli.example"), "{emails}");
    assert_eq!(console(&app, reqwest::Method::GET, "/v1/captures/sms", Some(ADMIN_TOKEN), None).await.status(), 404);
    assert_eq!(console(&app, reqwest::Method::GET, "/v1/captures", None, None).await.status(), 401);
    app.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_access_requests_are_refused_and_change_nothing() {
    let app = spawn_app(Engine::Embedded).await;
    let cases = [
        ("ana@initech.example", json!({}), "organization"),
        ("ana@initech.example", json!({"organization": "x".repeat(201)}), "organization"),
        ("ana@initech.example", json!({"organization": "   "}), "organization"),
        ("ana@initech.example", json!({"organization": "Initech", "message": "m".repeat(2_001)}), "message"),
        ("not-an-email", json!({"organization": "Initech"}), REQUESTER),
    ];
    for (requester, body, field) in cases {
        let response = submit(&app, &app.acme.key, requester, &body).await;
        assert_eq!(response.status(), 400, "{body}");
        let problem = json(response).await;
        assert!(
            problem["errors"].as_array().expect("errors").iter().any(|e| e["field"] == field),
            "{field}: {problem}"
        );
    }
    let without_header =
        app.post_json("/v1/access-requests", Some(&app.acme.key), &json!({"organization": "Initech"})).await;
    assert_eq!(without_header.status(), 400);
    let ok = submit(
        &app,
        &app.acme.key,
        "ana@initech.example",
        &json!({"organization": "x".repeat(200), "message": "m".repeat(2_000)}),
    )
    .await;
    assert_eq!(json(ok).await["ticket_id"], "R00001", "the refused ones used no ticket");
    app.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_may_issue_the_new_tenants_first_key() {
    let app = spawn_app(Engine::Embedded).await;
    let submitted = submit(&app, &app.acme.key, "ana@initech.example", &json!({"organization": "Initech"})).await;
    assert_eq!(submitted.status(), 202);
    let bad = Some(json!({"issue_key": "yes"}));
    let refused =
        console(&app, reqwest::Method::POST, "/v1/access-requests/R00001/approve", Some(ADMIN_TOKEN), bad).await;
    assert_eq!(refused.status(), 400, "nothing decided on a bad body");
    let body = Some(json!({"issue_key": true}));
    let approved =
        console(&app, reqwest::Method::POST, "/v1/access-requests/R00001/approve", Some(ADMIN_TOKEN), body).await;
    assert_eq!(approved.status(), 200);
    let approved = json(approved).await;
    let tenant = approved["tenant_id"].as_str().expect("the new tenant").to_owned();
    let key = approved["api_key"]["key"].as_str().expect("its first key, shown once").to_owned();
    let events = app.client.get(format!("{}/v1/webhooks/events", app.api_url)).bearer_auth(&key).send().await;
    assert_eq!(events.expect("send").status(), 200, "the key works for the new tenant");
    let keys =
        json(console(&app, reqwest::Method::GET, &format!("/v1/tenants/{tenant}/keys"), Some(ADMIN_TOKEN), None).await)
            .await;
    assert_eq!(keys["keys"].as_array().map(Vec::len), Some(1), "{keys}");
    let audit = json(app.operator_get(&format!("/v1/audit?tenant={tenant}")).await).await;
    assert_eq!(audit["entries"][0]["action"], "POST /v1/access-requests/{ticket}/approve", "{audit}");
    assert!(audit["entries"][0]["target"].get("key").is_none(), "the key is not in the audit log");
    app.stop().await.expect("clean shutdown");
}
