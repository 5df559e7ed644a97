//! The operators' commands against a running control plane: `queues`, `dlq
//! list|show|groups|redrive|purge|restore`, `outbox failed`, `job show`, as tables and
//! as JSON, asking before acting.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use shared::config::{Config, ObjectStoreConfig, Secret, StoreConfig, TransportConfig, ZendeskConfig};
use shared::testkit::eventually;
use shared::topology::{Environment, InstanceName, Topology};
use switchyard::platform::{Backends, Component, Platform};

const TOKEN: &str = "operator-token-for-the-cli-test";

struct Running {
    tenant_id: String,
    console_url: String,
    api_url: String,
    api_key: String,
    stop: CancellationToken,
    _dir: tempfile::TempDir,
}

/// The platform on the embedded engine, feedback tickets going to `zendesk`.
async fn platform(zendesk: &str) -> Running {
    platform_in(tempfile::tempdir().expect("tempdir"), zendesk).await
}

/// The same, keeping its state in `dir` (its store where the CLI's default is).
async fn platform_in(dir: tempfile::TempDir, zendesk: &str) -> Running {
    let topology = Topology::new(InstanceName::parse("cli").expect("name"), Environment::Production).expect("topology");
    let mut config = Config::minimal(
        &topology,
        StoreConfig::Sqlite { path: dir.path().join("switchyard.db") },
        TransportConfig::Embedded { path: dir.path().join("transport.db") },
        ObjectStoreConfig::Filesystem { root: dir.path().join("objects") },
    );
    config.admin_token = Some(Secret::new(TOKEN));
    config.capture_dir = Some(dir.path().join("captures"));
    config.zendesk = Some(ZendeskConfig {
        url: zendesk.to_owned(),
        email: "agent@acme.example".into(),
        api_token: Secret::new("t"),
    });
    let backends = Backends::open(&config, &topology).await.expect("backends");
    let tenant = switchyard::dev::create_tenant(backends.store.as_ref(), "Acme").await.expect("tenant");
    let key = core_api::issue_api_key(backends.store.as_ref(), tenant.id).await.expect("key");
    let platform = Platform::with_backends(config, topology, backends, Component::all()).expect("platform");
    let console_url = format!("http://127.0.0.1:{}", platform.console_port().expect("console"));
    let api_url = format!("http://127.0.0.1:{}", platform.api_port().expect("api"));
    let stop = CancellationToken::new();
    tokio::spawn(platform.run_until_stopped(stop.clone()));
    Running { tenant_id: tenant.id.to_string(), console_url, api_url, api_key: key.plaintext, stop, _dir: dir }
}

fn operator(running: &Running, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .env("SWITCHYARD_CONTROL_PLANE_URL", &running.console_url)
        .env("SWITCHYARD_OPERATOR_TOKEN", TOKEN)
        .env("SWITCHYARD_DATA_DIR", "/nonexistent")
        .env_remove("SWITCHYARD_CONFIG")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("run switchyard")
}

fn text(output: &Output) -> (Option<i32>, String, String) {
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn json_of(output: &Output) -> Value {
    let (code, out, err) = text(output);
    assert_eq!(code, Some(0), "{out}\n{err}");
    serde_json::from_str(out.lines().last().expect("a line")).expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_see_redrive_and_purge_dead_letters_from_the_command_line() {
    let zendesk = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v2/tickets.json"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"tickets": [], "count": 0})))
        .mount(&zendesk)
        .await;
    let failing = Mock::given(method("POST"))
        .and(path("/api/v2/tickets.json"))
        .respond_with(ResponseTemplate::new(503))
        .mount_as_scoped(&zendesk)
        .await;
    let running = platform(&zendesk.uri()).await;
    let client = reqwest::Client::new();
    for message in ["one", "two"] {
        let response = client
            .post(format!("{}/v1/feedback", running.api_url))
            .bearer_auth(&running.api_key)
            .json(&json!({"message": message}))
            .send()
            .await
            .expect("post");
        assert_eq!(response.status(), 202);
    }
    let listed = eventually(Duration::from_secs(30), "two dead letters are parked", || async {
        let page = json_of(&operator(&running, &["dlq", "list", "--json"]));
        if page["dead_letters"].as_array().map(Vec::len) == Some(2) {
            Ok(page)
        } else {
            Err(page)
        }
    })
    .await;
    let id = listed["dead_letters"][0]["id"].as_str().expect("id").to_owned();

    // Tables for people.
    let (code, table, _) = text(&operator(&running, &["dlq", "list", "--queue", "feedback"]));
    assert_eq!(code, Some(0));
    assert!(table.starts_with("ID") && table.contains("feedback.submitted") && table.contains("503"), "{table}");
    let (code, shown, _) = text(&operator(&running, &["dlq", "show", &id]));
    assert_eq!(code, Some(0));
    assert!(shown.contains("attempts:") && shown.lines().filter(|l| l.contains("503")).count() >= 3, "{shown}");
    let (_, groups, _) = text(&operator(&running, &["dlq", "groups"]));
    assert!(groups.contains("ERROR GROUP") && groups.contains("  2  "), "{groups}");
    let (_, queues, _) = text(&operator(&running, &["queues"]));
    assert!(queues.contains("feedback") && queues.contains("outbox:"), "{queues}");
    let view = json_of(&operator(&running, &["queues", "--json"]));
    let feedback = view["queues"].as_array().expect("queues").iter().find(|q| q["use_case"] == "feedback");
    assert_eq!(feedback.expect("feedback")["parked"], 2);

    // Without a terminal to ask on, an action refuses and changes nothing.
    let (code, out, err) = text(&operator(&running, &["dlq", "redrive", "--queue", "feedback"]));
    assert_ne!(code, Some(0));
    assert!(out.contains("redrive 2 dead letter(s)"), "the plan is shown first: {out}");
    assert!(err.contains("--yes"), "{err}");
    assert_eq!(
        json_of(&operator(&running, &["dlq", "list", "--json"]))["dead_letters"].as_array().map(Vec::len),
        Some(2)
    );

    // The cause is fixed: one is redriven with --yes; the job runs to its end.
    drop(failing);
    Mock::given(method("POST"))
        .and(path("/api/v2/tickets.json"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"ticket": {"id": 7}})))
        .mount(&zendesk)
        .await;
    let (code, out, err) = text(&operator(&running, &["dlq", "redrive", "--id", &id, "--yes"]));
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains("completed: 1 of 1 sent"), "{out}");
    let left = json_of(&operator(&running, &["dlq", "list", "--json"]));
    assert_eq!(left["dead_letters"].as_array().map(Vec::len), Some(1), "{left}");

    // Purge and restore as scripts do them.
    let purged = operator(&running, &["dlq", "purge", "--yes", "--json"]);
    let (code, out, _) = text(&purged);
    assert_eq!(code, Some(0));
    let answers: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).expect("json")).collect();
    assert_eq!((answers[0]["count"].as_u64(), answers[1]["purged"].as_u64()), (Some(1), Some(1)), "{out}");
    assert_eq!(json_of(&operator(&running, &["dlq", "list", "--json"]))["dead_letters"], json!([]));
    let (code, out, _) = text(&operator(&running, &["dlq", "restore", "--yes"]));
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("restore: 1"), "{out}");
    assert_eq!(
        json_of(&operator(&running, &["dlq", "list", "--json"]))["dead_letters"].as_array().map(Vec::len),
        Some(1)
    );

    let event_id = listed["dead_letters"][0]["event_id"].as_str().expect("event id").to_owned();
    let journey = json_of(&operator(&running, &["events", "show", &event_id, "--json"]));
    assert_eq!(journey["event_id"], event_id.as_str(), "{journey}");
    let (code, steps, _) = text(&operator(&running, &["events", "show", &event_id]));
    assert_eq!(code, Some(0));
    assert!(steps.contains("STEP") && steps.contains("dead_lettered") && steps.contains("redriven"), "{steps}");
    assert_ne!(operator(&running, &["events", "show", "../queues"]).status.code(), Some(0));

    let failed = json_of(&operator(&running, &["outbox", "failed", "--json"]));
    assert_eq!(failed["rows"], json!([]));
    running.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_commands_say_what_is_wrong() {
    let zendesk = MockServer::start().await;
    let running = platform(&zendesk.uri()).await;
    let (code, _, err) = text(&operator(&running, &["dlq", "list", "--tenant", "acme"]));
    assert_ne!(code, Some(0));
    assert!(err.contains("400") && err.contains("tenant:"), "names the field: {err}");
    let (code, _, err) = text(&operator(&running, &["dlq", "show", "../tenants"]));
    assert_ne!(code, Some(0));
    assert!(err.contains("a number"), "{err}");
    let (code, _, err) = text(&operator(&running, &["job", "show", &shared::JobId::new().to_string()]));
    assert_ne!(code, Some(0));
    assert!(err.contains("404"), "{err}");

    let wrong_token = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["queues"])
        .env("SWITCHYARD_CONTROL_PLANE_URL", &running.console_url)
        .env("SWITCHYARD_OPERATOR_TOKEN", "nope")
        .output()
        .expect("run");
    let (code, _, err) = text(&wrong_token);
    assert_ne!(code, Some(0));
    assert!(err.contains("401"), "{err}");

    // Nothing configured and no `dev` credentials: say how to configure it.
    let empty = tempfile::tempdir().expect("tempdir");
    let unconfigured = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["queues"])
        .env_remove("SWITCHYARD_CONTROL_PLANE_URL")
        .env_remove("SWITCHYARD_OPERATOR_TOKEN")
        .env("SWITCHYARD_DATA_DIR", empty.path())
        .output()
        .expect("run");
    let (code, _, err) = text(&unconfigured);
    assert_ne!(code, Some(0));
    assert!(err.contains("SWITCHYARD_CONTROL_PLANE_URL"), "{err}");

    // With `dev`'s credentials file it needs nothing else.
    write_dev_credentials(empty.path(), &running.console_url);
    let from_dev = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["queues", "--json"])
        .env_remove("SWITCHYARD_CONTROL_PLANE_URL")
        .env_remove("SWITCHYARD_OPERATOR_TOKEN")
        .env("SWITCHYARD_DATA_DIR", empty.path())
        .output()
        .expect("run");
    assert!(json_of(&from_dev)["queues"].is_array());
    running.stop.cancel();
}

fn write_dev_credentials(dir: &Path, console_url: &str) {
    let credentials = json!({
        "tenant_id": shared::TenantId::new(),
        "api_key": "sk_x",
        "api_url": "http://127.0.0.1:1",
        "console_url": console_url,
        "admin_token": TOKEN,
    });
    std::fs::write(dir.join("dev-credentials.json"), credentials.to_string()).expect("write");
}

fn with_token(running: &Running, token: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .env("SWITCHYARD_CONTROL_PLANE_URL", &running.console_url)
        .env("SWITCHYARD_OPERATOR_TOKEN", token)
        .env_remove("SWITCHYARD_CONFIG")
        .stdin(Stdio::null())
        .output()
        .expect("run switchyard")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_operators_are_made_on_the_store_and_held_to_their_role() {
    let dir = tempfile::tempdir().expect("tempdir");
    let local = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(args)
            .env("SWITCHYARD_DATA_DIR", dir.path())
            .env_remove("SWITCHYARD_DATABASE_URL")
            .env_remove("SWITCHYARD_STORE")
            .env_remove("SWITCHYARD_CONFIG")
            .env("RUST_LOG", "warn")
            .output()
            .expect("run switchyard")
    };
    let created = local(&["operator", "create", "vera", "--role", "viewer", "--json"]);
    let vera = json_of(&created)["token"].as_str().expect("token").to_owned();
    let (code, token, err) = text(&local(&["operator", "create", "otto", "--role", "operator"]));
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("only this once"), "{err}");
    let otto = token.trim().to_owned();
    assert_ne!(vera, otto);
    let (code, _, err) = text(&local(&["operator", "create", "vera", "--role", "admin"]));
    assert_ne!(code, Some(0), "a name is taken once");
    assert!(err.contains("vera"), "{err}");
    let (code, _, err) = text(&local(&["operator", "create", "Bad Name", "--role", "admin"]));
    assert_ne!(code, Some(0));
    assert!(err.contains("lowercase"), "{err}");
    assert_ne!(local(&["operator", "create", "cy", "--role", "root"]).status.code(), Some(0));
    let listed = json_of(&local(&["operator", "list", "--json"]));
    let names: Vec<&str> =
        listed["operators"].as_array().expect("list").iter().filter_map(|o| o["name"].as_str()).collect();
    assert_eq!(names, ["otto", "vera"]);
    let stored = std::fs::read(dir.path().join("switchyard.db")).expect("store file");
    assert!(!String::from_utf8_lossy(&stored).contains(&vera), "tokens are stored hashed");

    let zendesk = MockServer::start().await;
    let running = platform_in(dir, &zendesk.uri()).await;
    assert!(json_of(&with_token(&running, &vera, &["queues", "--json"]))["queues"].is_array(), "a viewer reads");
    let (code, _, err) = text(&with_token(&running, &vera, &["dlq", "purge", "--yes"]));
    assert_ne!(code, Some(0));
    assert!(err.contains("403") && err.contains("admin"), "{err}");
    let (code, out, err) = text(&with_token(&running, &otto, &["dlq", "redrive", "--yes"]));
    assert_eq!(code, Some(0), "an operator redrives: {out}{err}");

    let audit = json_of(&operator(&running, &["audit", "--json", "--limit", "100"]));
    let entries = audit["entries"].as_array().expect("entries");
    let seen: Vec<(String, String, String)> = entries
        .iter()
        .map(|e| {
            let field = |k: &str| e[k].as_str().unwrap_or_default().to_owned();
            (field("operator"), field("action"), field("outcome").split(':').next().unwrap_or_default().to_owned())
        })
        .collect();
    for expected in [
        ("vera", "POST /v1/dead-letters/purge", "refused"),
        ("otto", "POST /v1/dead-letters/redrive", "ok"),
        ("cli", "operator create", "ok"),
        ("cli", "operator create", "refused"),
    ] {
        let expected = (expected.0.to_owned(), expected.1.to_owned(), expected.2.to_owned());
        assert!(seen.contains(&expected), "{expected:?} in {seen:?}");
    }
    let (code, table, _) = text(&operator(&running, &["audit", "--operator", "vera"]));
    assert_eq!(code, Some(0));
    assert!(table.starts_with("AT") && table.contains("refused"), "{table}");
    running.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_and_keys_from_the_command_line() {
    let zendesk = MockServer::start().await;
    let running = platform(&zendesk.uri()).await;
    let listed = json_of(&operator(&running, &["tenant", "list", "--search", "acm", "--json"]));
    assert_eq!(listed["tenants"][0]["id"], running.tenant_id.as_str(), "{listed}");
    let (code, table, _) = text(&operator(&running, &["tenant", "list"]));
    assert_eq!(code, Some(0));
    assert!(table.starts_with("ID") && table.contains("Acme") && table.contains("standard"), "{table}");
    let (code, shown, _) = text(&operator(&running, &["tenant", "show", &running.tenant_id]));
    assert_eq!(code, Some(0));
    assert!(shown.contains("Acme") && shown.contains("PREFIX"), "{shown}");
    let keys = json_of(&operator(&running, &["key", "list", &running.tenant_id, "--json"]));
    let key_id = keys["keys"][0]["id"].as_str().expect("the key").to_owned();

    let client = reqwest::Client::new();
    let status = |key: String| {
        let (client, url) = (client.clone(), format!("{}/v1/webhooks/events", running.api_url));
        async move { client.get(url).bearer_auth(key).send().await.expect("send").status().as_u16() }
    };
    assert_eq!(status(running.api_key.clone()).await, 200);
    let (code, _, err) = text(&operator(&running, &["key", "revoke", &running.tenant_id, &key_id]));
    assert_ne!(code, Some(0), "asks first, and there is no terminal");
    assert!(err.contains("--yes"), "{err}");
    let (code, out, err) = text(&operator(&running, &["key", "revoke", &running.tenant_id, &key_id, "--yes"]));
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("revoked"), "{out}");
    eventually(Duration::from_secs(5), "the revoked key is refused", || {
        let status = status(running.api_key.clone());
        async move {
            match status.await {
                401 => Ok(()),
                other => Err(other),
            }
        }
    })
    .await;
    let (code, _, err) = text(&operator(&running, &["key", "list", "../queues"]));
    assert_ne!(code, Some(0));
    assert!(err.contains("not a tenant id"), "{err}");
    running.stop.cancel();
}
