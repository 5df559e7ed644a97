//! Operators put tenants on plans in the control plane; the API holds each tenant to
//! its plan's request rate (429 with Retry-After), without touching other tenants.

use serde_json::{json, Value};

use crate::helpers::{json, spawn_app, Engine, TestApp, ADMIN_TOKEN};

async fn patch(app: &TestApp, tenant: &str, token: Option<&str>, body: &Value) -> reqwest::Response {
    let mut request = app.client.patch(format!("{}/v1/tenants/{tenant}", app.console_url)).json(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("request")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_is_held_to_its_plans_request_rate() {
    let app = spawn_app(Engine::Embedded).await;
    let acme = app.acme.id.to_string();
    let changed = patch(&app, &acme, Some(ADMIN_TOKEN), &json!({"plan": "tiny"})).await;
    assert_eq!(changed.status(), 200);
    assert_eq!(json(changed).await["plan"], "tiny");

    let mut statuses = Vec::new();
    let mut limited = None;
    for _ in 0..4 {
        let response = app.get("/v1/analytics/reconciliation", &app.acme.key).await;
        statuses.push(response.status().as_u16());
        if response.status() == 429 {
            let retry_after = response.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
            limited = Some((retry_after, json(response).await));
        }
    }
    assert_eq!(&statuses[..2], [200, 200], "the plan's burst of 2 passes: {statuses:?}");
    assert!(statuses[2..].contains(&429), "then the plan's rate holds: {statuses:?}");
    let (retry_after, problem) = limited.expect("a 429");
    assert!(retry_after.is_some_and(|s| s.parse::<u64>().is_ok_and(|s| s >= 1)), "Retry-After in seconds");
    assert_eq!(problem["type"], "/problems/rate-limited");
    for _ in 0..4 {
        assert_eq!(app.get("/v1/analytics/reconciliation", &app.globex.key).await.status(), 200, "others unaffected");
    }
    app.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_settings_are_validated_and_operator_only() {
    let app = spawn_app(Engine::Embedded).await;
    let acme = app.acme.id.to_string();
    assert_eq!(patch(&app, &acme, None, &json!({"plan": "tiny"})).await.status(), 401);
    assert_eq!(patch(&app, &acme, Some(&app.acme.key), &json!({"plan": "tiny"})).await.status(), 401);
    for (body, field) in [
        (json!({"plan": "gold"}), "plan"),
        (json!({"plan": 3}), "plan"),
        (json!({"alert_webhook_url": "ftp://example.com/hook"}), "alert_webhook_url"),
        (json!({"alert_webhook_url": "http://localhost@evil.example/hook"}), "alert_webhook_url"),
        (json!({"alert_webhook_url": "https://discord.com.evil.example/api/webhooks/1/t"}), "alert_webhook_url"),
        (json!({"colour": "blue"}), "colour"),
    ] {
        let response = patch(&app, &acme, Some(ADMIN_TOKEN), &body).await;
        assert_eq!(response.status(), 400, "{body}");
        let problem = json(response).await;
        assert!(problem["errors"].as_array().expect("errors").iter().any(|e| e["field"] == field), "{problem}");
    }
    let unknown =
        patch(&app, "ten_0192f3a4b5c6d7e8f9a0b1c2d3e4f5a6", Some(ADMIN_TOKEN), &json!({"plan": "tiny"})).await;
    assert_eq!(unknown.status(), 404);
    let hook = "https://discord.com/api/webhooks/1/token";
    let set = json(patch(&app, &acme, Some(ADMIN_TOKEN), &json!({"alert_webhook_url": hook})).await).await;
    assert_eq!(
        (set["plan"].as_str(), set["alert_webhook_url"].as_str()),
        (Some("standard"), Some(hook)),
        "unchanged plan"
    );
    let cleared = json(patch(&app, &acme, Some(ADMIN_TOKEN), &json!({"alert_webhook_url": null})).await).await;
    assert_eq!(cleared["alert_webhook_url"], Value::Null);
    app.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_api_processes_together_hold_a_tenant_to_its_plan() {
    use std::time::Duration;

    use shared::domain::{PlanName, TenantSettings};

    let app = crate::helpers::spawn_app_for_several_processes().await;
    let settings = TenantSettings { plan: PlanName::parse("twenty").expect("plan"), alert_webhook_url: None };
    crate::helpers::store(&app).set_tenant_settings(app.acme.id, &settings).await.expect("plan");
    let other = app.another_api_process().await;
    // Wait until both processes have reported and seen each other.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let since = shared::Timestamp::now().minus(Duration::from_millis(300));
        let reports = crate::helpers::store(&app).worker_reports(since).await.expect("reports");
        if reports.iter().filter(|r| r.worker == "api").count() == 2 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "both API processes report: {reports:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Both processes are hammered for the same few seconds.
    const SECONDS: u64 = 4;
    let hammer = |base: String| {
        let client = app.client.clone();
        let key = app.acme.key.clone();
        async move {
            let until = tokio::time::Instant::now() + Duration::from_secs(SECONDS);
            let (mut allowed, mut limited) = (0u64, 0u64);
            while tokio::time::Instant::now() < until {
                let response = client
                    .get(format!("{base}/v1/analytics/reconciliation"))
                    .bearer_auth(&key)
                    .send()
                    .await
                    .expect("send");
                match response.status().as_u16() {
                    200 => allowed += 1,
                    429 => limited += 1,
                    other => panic!("unexpected {other}"),
                }
            }
            (allowed, limited)
        }
    };
    let (a, b) = tokio::join!(hammer(app.api_url.clone()), hammer(other.api_url.clone()));
    let allowed = a.0 + b.0;
    // The plan allows 20/s and a burst of 20: over the run, 20 × 4 + 20 = 100 in all.
    let plan = 20 * SECONDS + 20;
    assert!(a.1 > 0 && b.1 > 0, "both processes were pushed past the limit: {a:?} {b:?}");
    assert!(allowed <= plan * 11 / 10, "{allowed} allowed by two processes; the plan allows {plan} (+10 %)");
    assert!(allowed >= 20 * SECONDS * 9 / 10, "{allowed} allowed: the plan's rate is still served");
}

/// Two operators changing different settings of one tenant at once both get their
/// change: the store applies each PATCH in one step, never read-modify-write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_patches_of_different_settings_both_land() {
    let app = spawn_app(Engine::Embedded).await;
    let acme = app.acme.id.to_string();
    for round in 0..20 {
        let plan = if round % 2 == 0 { "tiny" } else { "standard" };
        let hook = format!("https://discord.com/api/webhooks/{round}/token");
        let (by_plan, by_hook) = (json!({"plan": plan}), json!({"alert_webhook_url": hook}));
        let (a, b) = tokio::join!(
            patch(&app, &acme, Some(ADMIN_TOKEN), &by_plan),
            patch(&app, &acme, Some(ADMIN_TOKEN), &by_hook)
        );
        assert_eq!((a.status().as_u16(), b.status().as_u16()), (200, 200));
        let now = json(
            app.client
                .get(format!("{}/v1/tenants/{acme}", app.console_url))
                .bearer_auth(ADMIN_TOKEN)
                .send()
                .await
                .expect("get"),
        )
        .await;
        assert_eq!(
            (now["plan"].as_str(), now["alert_webhook_url"].as_str()),
            (Some(plan), Some(hook.as_str())),
            "round {round}: both changes landed"
        );
    }
    app.stop().await.expect("clean stop");
}
