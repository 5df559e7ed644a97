//! Inbound webhooks: HMAC-signed per tenant and source, stale timestamps refused,
//! provider retries deduplicated by message id.

use std::time::Duration;

use serde_json::{json, Value};

use shared::testkit::eventually;
use shared::Timestamp;

use crate::helpers::{json, spawn_app, store, Engine, TestApp};

async fn post(
    app: &TestApp,
    source: &str,
    tenant: &str,
    body: &str,
    signature: Option<String>,
    id: Option<&str>,
) -> reqwest::Response {
    let mut request = app
        .client
        .post(format!("{}/v1/webhooks/{source}?tenant={tenant}", app.api_url))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(signature) = signature {
        request = request.header(core_api::SIGNATURE_HEADER, signature);
    }
    if let Some(id) = id {
        request = request.header(core_api::MESSAGE_ID_HEADER, id);
    }
    request.send().await.expect("send")
}

fn signed(secret: &str, body: &str, age_seconds: i64) -> String {
    let t = Timestamp::now().as_millis() / 1000 - age_seconds;
    format!("t={t},v1={}", core_api::sign_webhook(secret, t, body.as_bytes()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_webhooks_become_events_once() {
    let app = spawn_app(Engine::Embedded).await;
    store(&app)
        .set_webhook_secret(app.acme.id, "stripe", &shared::config::Secret::new("whsec_acme"))
        .await
        .expect("secret");
    store(&app)
        .set_webhook_secret(app.globex.id, "stripe", &shared::config::Secret::new("whsec_globex"))
        .await
        .expect("secret");
    let acme = app.acme.id.to_string();
    let body = json!({"id": "evt_stripe_1", "type": "invoice.paid"}).to_string();

    let first = post(&app, "stripe", &acme, &body, Some(signed("whsec_acme", &body, 0)), Some("msg-1")).await;
    assert_eq!(first.status(), 202);
    let event_id = json(first).await["event_id"].clone();
    let retry = post(&app, "stripe", &acme, &body, Some(signed("whsec_acme", &body, 10)), Some("msg-1")).await;
    assert_eq!(retry.status(), 200, "the provider's retry returns the first event");
    assert_eq!(json(retry).await["event_id"], event_id);
    let globex =
        post(&app, "stripe", &app.globex.id.to_string(), &body, Some(signed("whsec_globex", &body, 0)), Some("msg-1"))
            .await;
    assert_eq!(globex.status(), 202, "another tenant's message ids are its own");

    let refused = [
        post(&app, "stripe", &acme, &body, Some(signed("whsec_wrong", &body, 0)), Some("msg-2")).await,
        post(&app, "stripe", &acme, &body, Some(signed("whsec_acme", &body, 301)), Some("msg-2")).await,
        post(&app, "stripe", &acme, &body, None, Some("msg-2")).await,
        post(&app, "github", &acme, &body, Some(signed("whsec_acme", &body, 0)), Some("msg-2")).await,
        post(&app, "stripe", "nobody", &body, Some(signed("whsec_acme", &body, 0)), Some("msg-2")).await,
        post(&app, "feedback", &acme, &body, Some(signed("whsec_acme", &body, 0)), Some("msg-2")).await,
    ];
    for response in refused {
        assert_eq!(response.status(), 401);
    }
    let no_id = post(&app, "stripe", &acme, &body, Some(signed("whsec_acme", &body, 0)), None).await;
    assert_eq!(no_id.status(), 400);
    let malformed = post(&app, "stripe", &acme, "{not json", Some("t=1,v1=00".into()), Some("msg-3")).await;
    assert_eq!(malformed.status(), 400, "a bad body is answered before the signature");
    // Refused requests changed nothing: their message ids are still unused.
    for id in ["msg-2", "msg-3"] {
        let accepted = post(&app, "stripe", &acme, &body, Some(signed("whsec_acme", &body, 0)), Some(id)).await;
        assert_eq!(accepted.status(), 202, "{id} was not recorded by a refused request");
    }
    app.stop().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_cannot_pass_its_own_events_off_as_verified_webhooks() {
    let app = spawn_app(Engine::Embedded).await;
    store(&app)
        .set_webhook_secret(app.acme.id, "stripe", &shared::config::Secret::new("whsec_acme"))
        .await
        .expect("secret");
    let key = app.acme.key.clone();
    let publish = |event_type: &str, idempotency_key: Option<&str>, n: u32| {
        let mut request = app
            .client
            .post(format!("{}/v1/events", app.api_url))
            .bearer_auth(&key)
            .json(&json!({"type": event_type, "data": {"n": n}}));
        if let Some(k) = idempotency_key {
            request = request.header("Idempotency-Key", k);
        }
        request.send()
    };

    // The webhook dedup namespace is not the tenant's.
    let squatted = publish("order.placed", Some("webhook:stripe:m1"), 1).await.expect("send");
    assert_eq!(squatted.status(), 400);
    let problem = json(squatted).await;
    assert_eq!(problem["errors"][0]["field"], "Idempotency-Key", "{problem}");
    let body = json!({"id": "evt_stripe_1"}).to_string();
    let acme = app.acme.id.to_string();
    let real = post(&app, "stripe", &acme, &body, Some(signed("whsec_acme", &body, 0)), Some("m1")).await;
    assert_eq!(real.status(), 202, "the real webhook m1 is a new event");

    // The type a verified webhook source of the tenant produces is not the tenant's to publish.
    let forged = publish("stripe.received", None, 2).await.expect("send");
    assert_eq!(forged.status(), 400);
    let problem = json(forged).await;
    assert_eq!(problem["errors"][0]["field"], "type");
    assert!(problem["errors"][0]["detail"].as_str().expect("detail").contains("stripe"), "{problem}");
    let own = publish("github.received", None, 3).await.expect("send");
    assert_eq!(own.status(), 202, "other *.received types stay the tenant's own");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_reused_with_another_body_is_refused() {
    let app = spawn_app(Engine::Embedded).await;
    let send = |data: serde_json::Value| {
        app.client
            .post(format!("{}/v1/events", app.api_url))
            .bearer_auth(&app.acme.key)
            .header("Idempotency-Key", "order-7")
            .json(&json!({"type": "order.placed", "data": data}))
            .send()
    };
    let first = send(json!({"order_id": 7})).await.expect("send");
    assert_eq!(first.status(), 202);
    let event_id = json(first).await["event_id"].clone();
    let retry = send(json!({"order_id": 7})).await.expect("send");
    assert_eq!(retry.status(), 200);
    assert_eq!(json(retry).await["event_id"], event_id, "a true retry returns the first event");
    let other = send(json!({"order_id": 8})).await.expect("send");
    assert_eq!(other.status(), 422);
    assert_eq!(other.headers().get("content-type").and_then(|v| v.to_str().ok()), Some("application/problem+json"));
    let problem = json(other).await;
    assert!(problem["detail"].as_str().expect("detail").contains("different request"), "{problem}");
}

/// Each verified webhook is recorded once by the webhooks worker — its payload as an
/// object under `webhooks/tenant=…/…/<event id>.json` — and the tenant, and only the
/// tenant, lists it at `GET /v1/webhooks/events`, a page at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn received_webhooks_are_recorded_once_and_listed_by_their_tenant() {
    let app = spawn_app(Engine::Embedded).await;
    let secret = shared::config::Secret::new("whsec_acme");
    store(&app).set_webhook_secret(app.acme.id, "stripe", &secret).await.expect("secret");
    let acme = app.acme.id.to_string();
    let mut event_ids = Vec::new();
    for n in 0..3 {
        let body = json!({"id": format!("evt_stripe_{n}"), "type": "invoice.paid"}).to_string();
        let id = format!("msg-{n}");
        let accepted = post(&app, "stripe", &acme, &body, Some(signed("whsec_acme", &body, 0)), Some(&id)).await;
        assert_eq!(accepted.status(), 202);
        event_ids.push(json(accepted).await["event_id"].as_str().expect("event id").to_owned());
        // The provider retries: still one event, one record.
        let retried = post(&app, "stripe", &acme, &body, Some(signed("whsec_acme", &body, 0)), Some(&id)).await;
        assert_eq!(retried.status(), 200);
    }

    let listed = eventually(Duration::from_secs(10), "the worker records the three webhooks", || async {
        let page = json(app.get("/v1/webhooks/events", &app.acme.key).await).await;
        if page["events"].as_array().is_some_and(|events| events.len() == 3) {
            Ok(page)
        } else {
            Err(page)
        }
    })
    .await;
    let events = listed["events"].as_array().expect("events");
    let ids: Vec<&str> = events.iter().map(|e| e["event_id"].as_str().expect("id")).collect();
    assert_eq!(ids, event_ids, "once each, oldest first");
    assert_eq!(listed["next"], Value::Null, "one page holds them");
    assert_eq!((events[0]["source"].as_str(), events[0]["message_id"].as_str()), (Some("stripe"), Some("msg-0")));
    let key = events[0]["result_key"].as_str().expect("key");
    assert!(key.starts_with(&format!("webhooks/tenant={acme}/year=")), "{key}");
    assert!(key.ends_with(&format!("/{}.json", event_ids[0])), "{key}");
    let stored = app.backends.objects.get(&shared::ObjectKey::parse(key).expect("key")).await.expect("get");
    let object: Value = serde_json::from_slice(&stored.expect("the result object")).expect("json");
    assert_eq!(object["payload"], json!({"id": "evt_stripe_0", "type": "invoice.paid"}));

    let first = json(app.get("/v1/webhooks/events?limit=2", &app.acme.key).await).await;
    assert_eq!(first["events"].as_array().map(Vec::len), Some(2));
    let next = first["next"].as_str().expect("a next page");
    let second = json(app.get(&format!("/v1/webhooks/events?limit=2&after={next}"), &app.acme.key).await).await;
    assert_eq!(second["events"][0]["event_id"].as_str(), Some(event_ids[2].as_str()));
    assert_eq!(second["next"], Value::Null);

    let theirs = json(app.get("/v1/webhooks/events", &app.globex.key).await).await;
    assert_eq!(theirs["events"], json!([]), "another tenant sees none of them");
    for query in ["limit=0", "limit=101", "after=soon", "after=-1"] {
        let refused = app.get(&format!("/v1/webhooks/events?{query}"), &app.acme.key).await;
        assert_eq!(refused.status(), 400, "{query}");
    }
    assert_eq!(app.client.get(format!("{}/v1/webhooks/events", app.api_url)).send().await.expect("get").status(), 401);
    app.stop().await.expect("clean stop");
}
