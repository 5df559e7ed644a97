//! Inbound webhooks: HMAC-signed per tenant and source, stale timestamps refused,
//! provider retries deduplicated by message id.

use serde_json::json;

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
    store(&app).set_webhook_secret(app.acme.id, "stripe", "whsec_acme").await.expect("secret");
    store(&app).set_webhook_secret(app.globex.id, "stripe", "whsec_globex").await.expect("secret");
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
