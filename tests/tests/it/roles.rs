//! Named operators and roles on every control-plane route, and the audit log of what
//! they did and were refused.

use serde_json::{json, Value};

use shared::domain::operators::{OperatorName, OperatorRecord, Role};
use shared::ports::Operators;
use shared::Timestamp;

use crate::helpers::{json, spawn_app, store, Engine, TestApp, ADMIN_TOKEN};

/// Every operator route with a request it takes, and the least role that may call it.
/// The bodies only need to get past the role check: an allowed role may still get a
/// 400, 404 or 409 for them.
fn routes(app: &TestApp) -> Vec<(&'static str, String, Option<Value>, Role)> {
    let tenant = app.acme.id.to_string();
    let job = shared::JobId::new().to_string();
    let filter = Some(json!({"filter": {}}));
    vec![
        ("GET", "/v1/audit".into(), None, Role::Viewer),
        ("GET", "/v1/access-requests".into(), None, Role::Viewer),
        ("GET", "/v1/access-requests/R00001".into(), None, Role::Viewer),
        ("POST", "/v1/access-requests/R00001/approve".into(), None, Role::Operator),
        ("POST", "/v1/access-requests/R00001/reject".into(), Some(json!({})), Role::Operator),
        ("GET", "/v1/captures".into(), None, Role::Viewer),
        ("GET", "/v1/captures/tickets".into(), None, Role::Viewer),
        ("GET", "/v1/dead-letters".into(), None, Role::Viewer),
        ("GET", "/v1/dead-letters/groups".into(), None, Role::Viewer),
        ("POST", "/v1/dead-letters/redrive".into(), filter.clone(), Role::Operator),
        ("POST", "/v1/dead-letters/purge".into(), filter.clone(), Role::Admin),
        ("POST", "/v1/dead-letters/restore".into(), filter.clone(), Role::Admin),
        ("GET", "/v1/outbox/failed".into(), None, Role::Viewer),
        ("POST", "/v1/outbox/retry".into(), filter.clone(), Role::Operator),
        ("POST", "/v1/outbox/discard".into(), filter, Role::Admin),
        ("GET", "/v1/queues".into(), None, Role::Viewer),
        ("GET", format!("/v1/events/{}", shared::EventId::new()), None, Role::Viewer),
        ("GET", "/v1/operators".into(), None, Role::Admin),
        ("POST", "/v1/operators".into(), Some(json!({"name": "newbie", "role": "viewer"})), Role::Admin),
        ("DELETE", "/v1/operators/nobody".into(), None, Role::Admin),
        ("GET", format!("/v1/jobs/{job}"), None, Role::Viewer),
        ("POST", format!("/v1/jobs/{job}/cancel"), None, Role::Operator),
        ("GET", "/v1/dead-letters/1".into(), None, Role::Viewer),
        ("GET", "/v1/tenants".into(), None, Role::Viewer),
        ("POST", "/v1/tenants".into(), Some(json!({"name": "Initech"})), Role::Admin),
        ("GET", format!("/v1/tenants/{tenant}/keys"), None, Role::Viewer),
        ("POST", format!("/v1/tenants/{tenant}/keys"), Some(json!({})), Role::Admin),
        ("DELETE", format!("/v1/tenants/{tenant}/keys/{}", shared::ApiKeyId::new()), None, Role::Admin),
        ("GET", format!("/v1/tenants/{tenant}"), None, Role::Viewer),
        ("PATCH", format!("/v1/tenants/{tenant}"), Some(json!({"plan": "tiny"})), Role::Admin),
    ]
}

/// The routes the control plane declares (`.route("…", web::<method>()…)` under
/// `/v1`), so a new route cannot be left out of the table.
fn declared() -> Vec<(String, String)> {
    include_str!("../../../control-plane/src/lib.rs")
        .lines()
        .filter_map(|line| {
            let rest = line.trim().strip_prefix(".route(\"/")?;
            let (path, rest) = rest.split_once('"')?;
            let method = rest.split("web::").nth(1)?.split('(').next()?;
            Some((method.to_uppercase(), format!("/v1/{path}")))
        })
        .filter(|(_, path)| !["/v1/health", "/v1/livez", "/v1/readyz"].contains(&path.as_str()))
        .collect()
}

/// A route's template matches `path` when each segment is equal or a `{…}`.
fn matches(template: &str, path: &str) -> bool {
    let (t, p): (Vec<&str>, Vec<&str>) = (template.split('/').collect(), path.split('/').collect());
    t.len() == p.len() && t.iter().zip(&p).all(|(a, b)| a == b || a.starts_with('{'))
}

async fn operator(app: &TestApp, name: &str, role: Role) -> String {
    let token = format!("opt_{name}_{}", uuid::Uuid::new_v4().simple());
    let record = OperatorRecord {
        name: OperatorName::parse(name).expect("name"),
        role,
        token_hash: control_plane::audit::token_hash(&token),
        created_at: Timestamp::now(),
        revoked_at: None,
    };
    let operators: std::sync::Arc<dyn Operators> = store(app);
    operators.create_operator(&record).await.expect("create operator");
    token
}

async fn call(app: &TestApp, token: &str, method: &str, path: &str, body: &Option<Value>) -> (u16, Value) {
    let url = format!("{}{path}", app.console_url);
    let mut request = match method {
        "GET" => app.client.get(url),
        "POST" => app.client.post(url),
        "PATCH" => app.client.patch(url),
        "DELETE" => app.client.delete(url),
        other => panic!("method {other}"),
    };
    request = request.bearer_auth(token);
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request.send().await.expect("send");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_route_takes_its_role_and_every_refusal_is_audited() {
    let app = spawn_app(Engine::Embedded).await;
    let table = routes(&app);
    for (method, template) in declared() {
        assert!(
            table.iter().any(|(m, path, _, _)| *m == method && matches(&template, path)),
            "{method} {template} is not in the table"
        );
    }
    let tokens = [
        (Role::Viewer, operator(&app, "vera", Role::Viewer).await),
        (Role::Operator, operator(&app, "otto", Role::Operator).await),
        (Role::Admin, operator(&app, "ada", Role::Admin).await),
    ];
    for (role, token) in &tokens {
        for (method, path, body, needed) in &table {
            let (status, answer) = call(&app, token, method, path, body).await;
            if role.allows(*needed) {
                assert!(status != 403 && status != 401, "{role} {method} {path}: {status} {answer}");
            } else {
                assert_eq!(status, 403, "{role} {method} {path}: {answer}");
                assert_eq!(answer["type"], "/problems/forbidden", "problem+json: {answer}");
                assert!(answer["detail"].as_str().expect("detail").contains(needed.as_str()), "{answer}");
            }
        }
    }
    for token in ["", "not-a-token"] {
        assert_eq!(call(&app, token, "GET", "/v1/queues", &None).await.0, 401, "{token:?}");
    }

    // Every refusal is in the audit log, with who and what.
    let audit = |query: &str| {
        let app = &app;
        let query = query.to_owned();
        async move { json(app.operator_get(&format!("/v1/audit{query}")).await).await }
    };
    let refused = audit("?operator=vera&limit=100").await;
    let entries = refused["entries"].as_array().expect("entries");
    let forbidden_for_viewer = table.iter().filter(|(_, _, _, needed)| *needed > Role::Viewer).count();
    assert_eq!(entries.len(), forbidden_for_viewer, "{refused}");
    assert!(entries.iter().all(|e| e["outcome"].as_str().expect("outcome").starts_with("refused: ")), "{refused}");
    assert!(entries.iter().all(|e| e["role"] == "viewer"));
    assert!(entries.iter().any(|e| e["action"] == "POST /v1/dead-letters/purge"), "{refused}");
    let otto = audit("?operator=otto&limit=100").await;
    let otto = otto["entries"].as_array().expect("entries");
    let redrive = otto.iter().find(|e| e["action"] == "POST /v1/dead-letters/redrive").expect("otto's redrive plan");
    assert_eq!((redrive["outcome"].as_str(), redrive["count"].as_u64()), (Some("ok"), Some(0)), "{redrive}");
    assert_eq!(
        redrive["target"],
        json!({"filter": {"queue": null, "tenant": null, "type": null, "error": null, "from": null, "to": null}})
    );
    let purge = otto.iter().find(|e| e["action"] == "POST /v1/dead-letters/purge").expect("otto's refused purge");
    assert!(purge["outcome"].as_str().expect("outcome").starts_with("refused: "), "{purge}");
    let cancel = otto.iter().find(|e| e["action"] == "POST /v1/jobs/{id}/cancel").expect("otto's cancel");
    assert!(cancel["outcome"].as_str().expect("outcome").contains("not found"), "a 404 is a refusal too: {cancel}");
    let patched = audit(&format!("?tenant={}&action=PATCH%20/v1/tenants/%7Bid%7D", app.acme.id)).await;
    let patched = patched["entries"].as_array().expect("entries");
    assert_eq!(patched.len(), 1, "ada's change of Acme's plan: {patched:?}");
    assert_eq!((patched[0]["operator"].as_str(), patched[0]["outcome"].as_str()), (Some("ada"), Some("ok")));
    assert_eq!(patched[0]["target"]["plan"], "tiny");
    let page = audit("?limit=2").await;
    let next = page["next_cursor"].as_str().expect("a next page");
    let after = audit(&format!("?limit=2&cursor={next}")).await;
    assert!(
        after["entries"][0]["id"].as_str().expect("id").parse::<i64>().expect("n") < next.parse::<i64>().expect("n")
    );
    assert_eq!(app.operator_get("/v1/audit?from=yesterday").await.status(), 400);
    app.stop().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_operator_is_refused_at_once() {
    let app = spawn_app(Engine::Embedded).await;
    let token = operator(&app, "otto", Role::Operator).await;
    assert_eq!(call(&app, &token, "GET", "/v1/queues", &None).await.0, 200);
    let operators: std::sync::Arc<dyn Operators> = store(&app);
    assert!(operators
        .revoke_operator(&OperatorName::parse("otto").expect("name"), Timestamp::now())
        .await
        .expect("revoke"));
    assert_eq!(call(&app, &token, "GET", "/v1/queues", &None).await.0, 401, "no cache keeps a revoked token alive");
    assert_eq!(call(&app, ADMIN_TOKEN, "GET", "/v1/queues", &None).await.0, 200, "the bootstrap admin");
    app.stop().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_create_and_revoke_operators_through_the_api() {
    let app = spawn_app(Engine::Embedded).await;
    let body = Some(json!({"name": "otto", "role": "operator"}));
    let (status, created) = call(&app, ADMIN_TOKEN, "POST", "/v1/operators", &body).await;
    assert_eq!(status, 201, "{created}");
    let token = created["token"].as_str().expect("the token, shown once").to_owned();
    assert_eq!(call(&app, ADMIN_TOKEN, "POST", "/v1/operators", &body).await.0, 409, "a name is taken once");
    for bad in
        [json!({"name": "Otto", "role": "operator"}), json!({"name": "eve", "role": "root"}), json!({"name": "eve"})]
    {
        assert_eq!(call(&app, ADMIN_TOKEN, "POST", "/v1/operators", &Some(bad.clone())).await.0, 400, "{bad}");
    }
    let filter = Some(json!({"filter": {}}));
    assert_eq!(call(&app, &token, "POST", "/v1/dead-letters/redrive", &filter).await.0, 200, "an operator redrives");
    assert_eq!(call(&app, &token, "GET", "/v1/operators", &None).await.0, 403, "only admins see operators");
    let (_, listed) = call(&app, ADMIN_TOKEN, "GET", "/v1/operators", &None).await;
    assert_eq!(listed["operators"][0]["name"], "otto");
    assert!(listed["operators"][0].get("token").is_none() && listed["operators"][0].get("token_hash").is_none());
    assert_eq!(call(&app, ADMIN_TOKEN, "DELETE", "/v1/operators/otto", &None).await.0, 200);
    assert_eq!(call(&app, &token, "GET", "/v1/queues", &None).await.0, 401, "refused from the next request on");
    assert_eq!(call(&app, ADMIN_TOKEN, "DELETE", "/v1/operators/otto", &None).await.0, 404, "revoked once");
    let audit = json(app.operator_get("/v1/audit?action=POST%20/v1/operators").await).await;
    let entries = audit["entries"].as_array().expect("entries");
    assert!(entries.iter().all(|e| !e.to_string().contains(&token)), "the token is not in the audit log");
    assert_eq!(entries.iter().filter(|e| e["outcome"] == "ok").count(), 1, "{audit}");
    app.stop().await.expect("clean shutdown");
}
