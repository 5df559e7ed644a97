//! Operators manage tenants and their API keys; a revoked or expired key is refused by
//! every API process within seconds.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::{json, spawn_app, spawn_app_for_several_processes, Engine, TestApp, ADMIN_TOKEN};

async fn send(app: &TestApp, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let url = format!("{}{path}", app.console_url);
    let request = match method {
        "POST" => app.client.post(url),
        "DELETE" => app.client.delete(url),
        _ => app.client.get(url),
    };
    let request = match body {
        Some(body) => request.json(&body),
        None => request,
    };
    let response = request.bearer_auth(ADMIN_TOKEN).send().await.expect("send");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The status `key` gets from the API at `api_url`.
async fn status_with(app: &TestApp, api_url: &str, key: &str) -> u16 {
    let response = app.client.get(format!("{api_url}/v1/webhooks/events")).bearer_auth(key).send().await;
    response.expect("send").status().as_u16()
}

/// Polls until `key` is refused by the API at `api_url`; how long that took.
async fn refused_within(app: &TestApp, api_url: &str, key: &str, limit: Duration) -> Duration {
    let start = Instant::now();
    while status_with(app, api_url, key).await != 401 {
        assert!(start.elapsed() < limit, "{key} still accepted by {api_url} after {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_key_is_refused_by_every_api_process_within_seconds() {
    let app = spawn_app_for_several_processes().await;
    let other = app.another_api_process().await;
    let tenant = app.acme.id.to_string();
    let (status, issued) = send(&app, "POST", &format!("/v1/tenants/{tenant}/keys"), None).await;
    assert_eq!(status, 201, "{issued}");
    let key = issued["key"].as_str().expect("the key, shown once").to_owned();
    // Both processes take it, and cache it.
    for api in [&app.api_url, &other.api_url] {
        assert_eq!(status_with(&app, api, &key).await, 200, "{api}");
    }
    let listed = json(app.operator_get(&format!("/v1/tenants/{tenant}/keys")).await).await;
    let keys = listed["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 2, "the setup key and the new one: {listed}");
    assert_eq!(keys[0]["id"], issued["id"], "newest first");
    assert!(keys.iter().all(|k| k.get("key").is_none() && k.get("secret_hash").is_none()), "never the secret");
    assert!(keys[0]["prefix"].as_str().expect("prefix").starts_with("sk_"));

    // Its use is recorded within a few seconds, without a write per request.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last_used = Value::Null;
    while last_used.is_null() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let listed = json(app.operator_get(&format!("/v1/tenants/{tenant}/keys")).await).await;
        last_used = listed["keys"][0]["last_used_at"].clone();
    }
    assert!(last_used.is_string(), "last used recorded: {last_used}");

    let key_id = issued["id"].as_str().expect("id");
    let (status, revoked) = send(&app, "DELETE", &format!("/v1/tenants/{tenant}/keys/{key_id}"), None).await;
    assert_eq!(status, 200, "{revoked}");
    assert!(revoked["revoked_at"].is_string() && revoked["active"] == false, "{revoked}");
    for api in [app.api_url.clone(), other.api_url.clone()] {
        let took = refused_within(&app, &api, &key, Duration::from_secs(5)).await;
        assert!(took < Duration::from_secs(5), "{api}: {took:?}");
    }
    let (status, _) = send(&app, "DELETE", &format!("/v1/tenants/{tenant}/keys/{key_id}"), None).await;
    assert_eq!(status, 409, "revoked once");
    let globex = app.globex.id.to_string();
    let (status, _) = send(&app, "DELETE", &format!("/v1/tenants/{globex}/keys/{key_id}"), None).await;
    assert_eq!(status, 404, "not Globex's key");
    assert_eq!(status_with(&app, &app.api_url, &app.acme.key).await, 200, "the tenant's other key still works");
    app.stop().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_expires_at_its_time_and_tenants_are_listed_and_created() {
    let app = spawn_app(Engine::Embedded).await;
    let tenant = app.acme.id.to_string();
    let expires = shared::Timestamp::now().plus(Duration::from_secs(2)).to_rfc3339();
    let (status, issued) =
        send(&app, "POST", &format!("/v1/tenants/{tenant}/keys"), Some(json!({"expires_at": expires}))).await;
    assert_eq!(status, 201, "{issued}");
    let key = issued["key"].as_str().expect("key").to_owned();
    assert_eq!(status_with(&app, &app.api_url, &key).await, 200);
    refused_within(&app, &app.api_url, &key, Duration::from_secs(5)).await;
    for body in [json!({"expires_at": "2020-01-01T00:00:00Z"}), json!({"expires_at": "soon"}), json!({"ttl": 5})] {
        let (status, problem) = send(&app, "POST", &format!("/v1/tenants/{tenant}/keys"), Some(body.clone())).await;
        assert_eq!(status, 400, "{body}: {problem}");
    }
    let nobody = shared::TenantId::new();
    assert_eq!(send(&app, "POST", &format!("/v1/tenants/{nobody}/keys"), None).await.0, 404);
    assert_eq!(send(&app, "GET", &format!("/v1/tenants/{nobody}/keys"), None).await.0, 404);

    // Tenants: created with a plan, listed with their plan and keys, searched by name.
    let (status, created) = send(&app, "POST", "/v1/tenants", Some(json!({"name": "Acme Labs", "plan": "tiny"}))).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!((created["plan"].as_str(), created["active_keys"].as_u64()), (Some("tiny"), Some(0)));
    for body in [json!({}), json!({"name": ""}), json!({"name": "X", "plan": "gold"}), json!({"name": "X", "id": "y"})]
    {
        assert_eq!(send(&app, "POST", "/v1/tenants", Some(body.clone())).await.0, 400, "{body}");
    }
    let all = json(app.operator_get("/v1/tenants").await).await;
    let names: Vec<&str> =
        all["tenants"].as_array().expect("tenants").iter().filter_map(|t| t["name"].as_str()).collect();
    assert_eq!(names, ["Acme", "Globex", "Acme Labs"], "in creation order");
    assert_eq!(all["tenants"][0]["active_keys"], 1, "the expired key does not count: {all}");
    let found = json(app.operator_get("/v1/tenants?search=acme").await).await;
    assert_eq!(found["tenants"].as_array().map(Vec::len), Some(2), "{found}");
    let first = json(app.operator_get("/v1/tenants?limit=1").await).await;
    let next = first["next_cursor"].as_str().expect("a next page");
    let second = json(app.operator_get(&format!("/v1/tenants?limit=1&cursor={next}")).await).await;
    assert_eq!(second["tenants"][0]["name"], "Globex");
    assert_eq!(app.operator_get("/v1/tenants?limit=500").await.status(), 400);
    assert_eq!(app.operator_get("/v1/tenants?cursor=abc").await.status(), 400);
    app.stop().await.expect("clean shutdown");
}
