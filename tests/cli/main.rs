//! The `switchyard` binary, driven as a user would: `pattern test`, `tenant create`,
//! `key create` and `dev` (first start, the feedback flow, Ctrl-C).

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use shared::testkit::eventually;

mod operator;

fn switchyard(data_dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_switchyard"));
    command
        .env("SWITCHYARD_DATA_DIR", data_dir)
        .env_remove("SWITCHYARD_DATABASE_URL")
        .env_remove("SWITCHYARD_STORE")
        .env_remove("SWITCHYARD_CONFIG")
        .env("RUST_LOG", "warn");
    command
}

fn run(command: &mut Command) -> Output {
    command.output().expect("run switchyard")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// `POST /v1/feedback` with `body`; the answer's JSON.
async fn post_feedback(client: &reqwest::Client, api_url: &str, key: &str, body: &Value) -> Value {
    let response =
        client.post(format!("{api_url}/v1/feedback")).bearer_auth(key).json(body).send().await.expect("post");
    response.json().await.expect("json")
}

/// Polls `GET /v1/feedback/{id}` until it is completed (10 s at most) and returns it.
async fn wait_until_completed(client: &reqwest::Client, api_url: &str, key: &str, id: &str) -> Value {
    eventually(Duration::from_secs(10), &format!("feedback {id} completes"), || async {
        let response = client.get(format!("{api_url}/v1/feedback/{id}")).bearer_auth(key).send().await.expect("get");
        let feedback: Value = response.json().await.expect("json");
        if feedback["status"] == "completed" {
            Ok(feedback)
        } else {
            Err(feedback)
        }
    })
    .await
}

#[test]
fn pattern_test_reports_match_no_match_and_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |name: &str, value: &Value| {
        let path = dir.path().join(name);
        std::fs::write(&path, value.to_string()).expect("write");
        path
    };
    let pattern = write("pattern.json", &json!({"source": ["shop"], "detail": {"total": [{"numeric": [">", 100]}]}}));
    let big = write("big.json", &json!({"source": "shop", "detail": {"total": 250}}));
    let small = write("small.json", &json!({"source": "shop", "detail": {"total": 5}}));
    let invalid = write("invalid.json", &json!({"source": "shop"}));

    let test = |pattern: &Path, event: &Path| {
        run(switchyard(dir.path()).args(["pattern", "test", "--pattern"]).arg(pattern).arg("--event").arg(event))
    };
    let matched = test(&pattern, &big);
    assert_eq!((matched.status.code(), stdout(&matched).as_str()), (Some(0), "match"));
    let missed = test(&pattern, &small);
    assert_eq!((missed.status.code(), stdout(&missed).as_str()), (Some(1), "no match"));
    let error = test(&invalid, &big);
    assert_eq!(error.status.code(), Some(2));
    let message = String::from_utf8_lossy(&error.stderr);
    assert!(message.contains("`source`") && message.contains("array"), "{message}");
    let missing = test(&dir.path().join("nope.json"), &big);
    assert_eq!(missing.status.code(), Some(2));
}

#[test]
fn tenant_and_key_commands_print_ids_for_scripts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let created = run(switchyard(dir.path()).args(["tenant", "create", "Acme Corp", "--json"]));
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let tenant: Value = serde_json::from_str(&stdout(&created)).expect("json");
    let tenant_id = tenant["tenant_id"].as_str().expect("tenant id");
    assert!(tenant_id.starts_with("ten_"));
    assert_eq!(tenant["name"], "Acme Corp");

    let key = run(switchyard(dir.path()).args(["key", "create", tenant_id]));
    assert!(key.status.success(), "{}", String::from_utf8_lossy(&key.stderr));
    assert!(stdout(&key).starts_with("sk_"));

    let unknown = run(switchyard(dir.path()).args(["key", "create", "ten_0192f3a4b5c6d7e8f9a0b1c2d3e4f5a6"]));
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no tenant"));
    let malformed = run(switchyard(dir.path()).args(["key", "create", "acme"]));
    assert!(!malformed.status.success());

    let secret = run(switchyard(dir.path()).args(["webhook", "secret", tenant_id, "stripe"]));
    assert!(secret.status.success(), "{}", String::from_utf8_lossy(&secret.stderr));
    assert!(stdout(&secret).starts_with("whsec_"), "{}", stdout(&secret));
    assert!(String::from_utf8_lossy(&secret.stderr).contains(&format!("/v1/webhooks/stripe?tenant={tenant_id}")));

    let migrate = run(switchyard(dir.path()).arg("migrate"));
    assert!(migrate.status.success());
    assert!(stdout(&migrate).contains("applied 0 migration"), "{}", stdout(&migrate));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_runs_the_feedback_flow_and_stops_cleanly_on_ctrl_c() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("data");
    let mut child = switchyard(&data_dir)
        .args(["dev", "--data-dir"])
        .arg(&data_dir)
        .args(["--api-addr", "127.0.0.1:0", "--console-addr", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn dev");

    let credentials_path = data_dir.join("dev-credentials.json");
    let credentials = dev_credentials(&data_dir).await;
    for field in ["tenant_id", "api_key", "api_url", "console_url", "admin_token"] {
        assert!(credentials[field].is_string(), "{field} in {credentials}");
    }
    let api_url = credentials["api_url"].as_str().expect("api url");
    let key = credentials["api_key"].as_str().expect("key");

    let client = reqwest::Client::new();
    let accepted =
        post_feedback(&client, api_url, key, &json!({"rating": 5, "message": "Hello from the CLI test"})).await;
    let id = accepted["id"].as_str().expect("id");
    let completed = wait_until_completed(&client, api_url, key, id).await;
    let object = data_dir.join("objects").join(completed["result_key"].as_str().expect("key"));
    assert!(object.is_file(), "result object at {}", object.display());
    // The operator token opens the control plane's JSON API.
    let console_url = credentials["console_url"].as_str().expect("console url");
    let admin = credentials["admin_token"].as_str().expect("admin token");
    let listed = client.get(format!("{console_url}/v1/access-requests")).bearer_auth(admin).send().await.expect("get");
    assert_eq!(listed.status(), 200);
    let refused = client.get(format!("{console_url}/v1/access-requests")).bearer_auth(key).send().await.expect("get");
    assert_eq!(refused.status(), 401, "a tenant key is not an operator token");
    let tickets = std::fs::read_to_string(data_dir.join("captures/tickets.jsonl")).expect("captured tickets");
    assert_eq!(tickets.lines().count(), 1, "dev captures the feedback's ticket instead of calling a help desk");
    assert!(tickets.contains(completed["event_id"].as_str().expect("event id")), "{tickets}");

    let interrupted = Command::new("kill").args(["-INT", &child.id().to_string()]).status().expect("kill");
    assert!(interrupted.success());
    let status = eventually(Duration::from_secs(15), "dev exits after Ctrl-C", || {
        let exited = child.try_wait().expect("wait").ok_or("still running");
        async move { exited }
    })
    .await;
    assert_eq!(status.code(), Some(0));
    let mut printed = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().expect("stdout"), &mut printed).expect("read");
    assert!(printed.contains(key), "prints the API key");
    assert!(printed.contains("curl"), "prints a ready-to-paste curl command");

    // A second start reuses the demo tenant.
    let mut second = switchyard(&data_dir)
        .args(["dev", "--data-dir"])
        .arg(&data_dir)
        .args(["--api-addr", "127.0.0.1:0", "--console-addr", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let again: Value = serde_json::from_str(&std::fs::read_to_string(&credentials_path).expect("read")).expect("json");
    assert_eq!(again["tenant_id"], credentials["tenant_id"]);
    assert_eq!(again["api_key"], credentials["api_key"]);
    assert_eq!(again["admin_token"], credentials["admin_token"], "the operator token survives a restart");
    Command::new("kill").args(["-INT", &second.id().to_string()]).status().expect("kill");
    assert_eq!(second.wait().expect("wait").code(), Some(0));
}

/// A free loopback port (bound and released at once).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn separate_processes_on_postgres_and_aws_carry_feedback_end_to_end() {
    let endpoint = std::env::var("SWITCHYARD_TEST_AWS_ENDPOINT")
        .expect("SWITCHYARD_TEST_AWS_ENDPOINT is not set: run scripts/test (it starts moto)");
    let dir = tempfile::tempdir().expect("tempdir");
    let database = adapters::testing::fresh_postgres_database().await.expect("test database");
    let instance = format!("cli-{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let bucket = format!("results-{instance}");
    let api_port = free_port();
    let configure = |command: &mut Command| {
        command
            .env("SWITCHYARD_DATABASE_URL", &database)
            .env("SWITCHYARD_TRANSPORT", "aws")
            .env("SWITCHYARD_OBJECTS", "s3")
            .env("SWITCHYARD_S3_BUCKET", &bucket)
            .env("SWITCHYARD_AWS_ENDPOINT", &endpoint)
            .env("SWITCHYARD_AWS_REGION", "us-east-1")
            .env("SWITCHYARD_INSTANCE", &instance)
            .env("SWITCHYARD_API_ADDR", format!("127.0.0.1:{api_port}"))
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing");
    };
    let cli = |args: &[&str]| {
        let mut command = switchyard(dir.path());
        configure(command.args(args));
        run(&mut command)
    };

    // The topology: missing, planned, applied, present.
    let check = cli(&["topology", "check"]);
    assert!(!check.status.success());
    let missing = String::from_utf8_lossy(&check.stderr).into_owned();
    assert!(missing.contains(&format!("+ queue {instance}-feedback.fifo")), "{missing}");
    assert!(missing.contains("topology apply"), "{missing}");
    let plan = stdout(&cli(&["topology", "plan"]));
    assert!(plan.contains(&format!("+ topic {instance}-core-api.fifo")), "{plan}");
    let apply = cli(&["topology", "apply"]);
    assert!(apply.status.success(), "{}", String::from_utf8_lossy(&apply.stderr));
    assert!(cli(&["topology", "check"]).status.success());
    assert!(stdout(&cli(&["topology", "plan"])).contains("up to date"));

    let settings = shared::config::AwsSettings {
        region: Some("us-east-1".into()),
        endpoint: Some(endpoint.clone()),
        max_attempts: 2,
    };
    let sdk = adapters::aws::loader(&settings)
        .credentials_provider(aws_sdk_sqs::config::Credentials::new("testing", "testing", None, None, "tests"))
        .load()
        .await;
    let objects = adapters::aws::S3ObjectStore::new(&sdk, bucket.clone());
    objects.ensure_bucket().await.expect("bucket");

    assert!(cli(&["migrate"]).status.success());
    let tenant = stdout(&cli(&["tenant", "create", "Acme"]));
    let key = stdout(&cli(&["key", "create", &tenant]));
    assert!(key.starts_with("sk_"), "{key}");

    let mut processes = Vec::new();
    for args in [&["serve", "api"][..], &["serve", "relay"][..], &["serve", "worker", "feedback"][..]] {
        let mut command = switchyard(dir.path());
        configure(command.args(args).stdout(Stdio::null()).stderr(Stdio::null()));
        processes.push(command.spawn().expect("spawn"));
    }
    let client = reqwest::Client::new();
    let api = format!("http://127.0.0.1:{api_port}");
    let mut accepted = Value::Null;
    for _ in 0..100 {
        if let Ok(response) = client
            .post(format!("{api}/v1/feedback"))
            .bearer_auth(&key)
            .json(&json!({"message": "Across three processes"}))
            .send()
            .await
        {
            accepted = response.json().await.expect("json");
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let id = accepted["id"].as_str().expect("feedback accepted").to_owned();
    let status = wait_until_completed(&client, &api, &key, &id).await;
    let result_key = shared::ObjectKey::parse(status["result_key"].as_str().expect("key")).expect("key");
    use shared::ports::ObjectStore;
    assert!(objects.get(&result_key).await.expect("get").is_some(), "the result object is in S3");

    for mut process in processes {
        Command::new("kill").args(["-INT", &process.id().to_string()]).status().expect("kill");
        assert_eq!(process.wait().expect("wait").code(), Some(0));
    }
}

/// Reads `dev`'s credentials file once the process wrote it.
async fn dev_credentials(data_dir: &Path) -> Value {
    let path = data_dir.join("dev-credentials.json");
    eventually(Duration::from_secs(30), &format!("dev writes {}", path.display()), || async {
        std::fs::read_to_string(&path).ok().and_then(|t| serde_json::from_str::<Value>(&t).ok()).ok_or("not yet")
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_held_by_a_killed_worker_is_retried_within_a_minute() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    // The help desk hangs on the first lookup (the worker is mid-handler when it is
    // killed), then answers.
    let zendesk = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v2/tickets.json"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(300)))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&zendesk)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v2/tickets.json"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"tickets": [], "count": 0})))
        .with_priority(2)
        .mount(&zendesk)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/v2/tickets.json"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"ticket": {"id": 9}})))
        .mount(&zendesk)
        .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("data");
    let start = || {
        switchyard(&data_dir)
            .args(["dev", "--data-dir"])
            .arg(&data_dir)
            .args(["--api-addr", "127.0.0.1:0", "--console-addr", "127.0.0.1:0"])
            .env("SWITCHYARD_ZENDESK_URL", zendesk.uri())
            .env("SWITCHYARD_ZENDESK_EMAIL", "agent@acme.example")
            .env("SWITCHYARD_ZENDESK_TOKEN", "secret")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn dev")
    };
    let mut first = start();
    let credentials = dev_credentials(&data_dir).await;
    let (api_url, key) = (credentials["api_url"].as_str().expect("url"), credentials["api_key"].as_str().expect("key"));
    let client = reqwest::Client::new();
    let accepted: Value = client
        .post(format!("{api_url}/v1/feedback"))
        .bearer_auth(key)
        .json(&json!({"rating": 3, "message": "in flight when the worker dies"}))
        .send()
        .await
        .expect("post")
        .json()
        .await
        .expect("json");
    let id = accepted["id"].as_str().expect("id").to_owned();
    // Wait until the worker is inside the handler (its lookup reached the help desk).
    eventually(Duration::from_secs(10), "the worker takes the message (its lookup reaches the help desk)", || async {
        if zendesk.received_requests().await.unwrap_or_default().is_empty() {
            Err("no lookup yet")
        } else {
            Ok(())
        }
    })
    .await;
    let killed = Command::new("kill").args(["-KILL", &first.id().to_string()]).status().expect("kill");
    assert!(killed.success());
    first.wait().expect("reaped");
    let at_kill = std::time::Instant::now();
    std::fs::remove_file(data_dir.join("dev-credentials.json")).ok();

    let mut second = start();
    let credentials = dev_credentials(&data_dir).await;
    let api_url = credentials["api_url"].as_str().expect("url").to_owned();
    let mut status = Value::Null;
    while at_kill.elapsed() < Duration::from_secs(60) {
        let response = client.get(format!("{api_url}/v1/feedback/{id}")).bearer_auth(key).send().await;
        if let Ok(response) = response {
            status = response.json::<Value>().await.unwrap_or_default()["status"].clone();
            if status == "completed" {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Command::new("kill").args(["-INT", &second.id().to_string()]).status().expect("kill");
    second.wait().expect("wait");
    assert_eq!(status, "completed", "not completed within a minute of kill -9 (the queue's visibility is minutes)");
    eprintln!("completed {:?} after kill -9", at_kill.elapsed());
}

/// `dev` keeps all its state under the data directory the layers name, the file
/// included: the store, the captures and `dev-credentials.json` alike; and a capture
/// directory set in the environment is where the captures go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_keeps_its_state_under_the_data_dir_of_the_config_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let from_file = dir.path().join("from-file");
    let config = dir.path().join("switchyard.toml");
    std::fs::write(&config, format!("data_dir = {:?}\n", from_file.display().to_string())).expect("config");
    let captures = dir.path().join("captures-from-env");
    for capture_dir in [None, Some(&captures)] {
        let mut command = switchyard(&from_file);
        command.env_remove("SWITCHYARD_DATA_DIR").env_remove("SWITCHYARD_CAPTURE_DIR").current_dir(dir.path());
        if let Some(path) = capture_dir {
            command.env("SWITCHYARD_CAPTURE_DIR", path);
        }
        let mut child = command
            .arg("--config")
            .arg(&config)
            .args(["dev", "--api-addr", "127.0.0.1:0", "--console-addr", "127.0.0.1:0"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn dev");
        let credentials = dev_credentials(&from_file).await;
        let (api_url, key) =
            (credentials["api_url"].as_str().expect("url"), credentials["api_key"].as_str().expect("key"));
        let client = reqwest::Client::new();
        let accepted = post_feedback(&client, api_url, key, &json!({"message": "Where do my files go?"})).await;
        wait_until_completed(&client, api_url, key, accepted["id"].as_str().expect("id")).await;
        let tickets = capture_dir.cloned().unwrap_or_else(|| from_file.join("captures")).join("tickets.jsonl");
        assert!(tickets.is_file(), "the captured ticket is at {}", tickets.display());
        assert!(from_file.join("switchyard.db").is_file(), "the store is under the file's data_dir");
        assert!(!dir.path().join(".switchyard").exists(), "nothing under ./.switchyard");
        Command::new("kill").args(["-INT", &child.id().to_string()]).status().expect("kill");
        assert_eq!(child.wait().expect("wait").code(), Some(0));
        std::fs::remove_file(from_file.join("dev-credentials.json")).ok();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_requests_of_the_old_backend_are_imported_once_and_tickets_continue() {
    let dir = tempfile::tempdir().expect("tempdir");
    let created = run(switchyard(dir.path()).args(["tenant", "create", "Acme", "--json"]));
    let tenant: Value = serde_json::from_str(&stdout(&created)).expect("json");
    let tenant_id = tenant["tenant_id"].as_str().expect("tenant id").to_owned();
    let export = dir.path().join("organization_access_requests.csv");
    std::fs::write(
        &export,
        "ticket_id,requester_id,requester_email,organization_name,request_message,status,created_at,decided_at\n\
         R00003,usr_1,ana@example.com,Initech,\"Hello, we'd like \"\"access\"\"\",approved,2024-05-01 10:00:00+00,2024-05-02 09:00:00+00\n\
         R00011,usr_2,bo@example.com,Hooli,,pending,2024-06-01T08:00:00Z,\n\
         R00003,usr_1,ana@example.com,Initech,again,approved,2024-05-01 10:00:00+00,\n\
         R00012,usr_3,not-an-email,Globex,,pending,2024-06-02T08:00:00Z,\n\
         R00013,usr_2,bo@example.com,Hooli,twice,pending,2024-06-03T08:00:00Z,\n\
         R00014,usr_4,cy@example.com,Umbrella,,closed,2024-06-04T08:00:00Z,\n",
    )
    .expect("write export");
    let import = || {
        run(switchyard(dir.path())
            .args(["import", "access-requests"])
            .arg(&export)
            .args(["--tenant", &tenant_id, "--json"]))
    };
    let first = import();
    assert_eq!(first.status.code(), Some(1), "some lines were refused");
    let report: Value = serde_json::from_str(&stdout(&first)).expect("json report");
    assert_eq!(
        (report["imported"].as_u64(), report["skipped"].as_u64(), report["refused"].as_u64()),
        (Some(2), Some(1), Some(3)),
        "{report}"
    );
    let lines: Vec<(u64, &str)> = report["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .map(|l| (l["line"].as_u64().unwrap_or(0), l["outcome"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(lines, [(4, "skipped"), (5, "refused"), (6, "refused"), (7, "refused")], "{report}");
    let reasons: Vec<&str> =
        report["lines"].as_array().expect("lines").iter().filter_map(|l| l["reason"].as_str()).collect();
    assert!(reasons[1].contains("requester_email"), "{reasons:?}");
    assert!(reasons[2].contains("pending request (R00011)"), "{reasons:?}");
    assert!(reasons[3].contains("status"), "{reasons:?}");

    let again = import();
    let report: Value = serde_json::from_str(&stdout(&again)).expect("json report");
    assert_eq!(
        (report["imported"].as_u64(), report["skipped"].as_u64()),
        (Some(0), Some(3)),
        "nothing twice: {report}"
    );
    let (code, human) = {
        let output =
            run(switchyard(dir.path()).args(["import", "access-requests"]).arg(&export).args(["--tenant", &tenant_id]));
        (output.status.code(), stdout(&output))
    };
    assert_eq!(code, Some(1));
    assert!(human.contains("line 5: R00012: refused") && human.contains("imported 0, skipped 3, refused 3"), "{human}");

    // A new request continues after the highest imported ticket.
    let store =
        adapters::SqlStore::connect(&shared::config::StoreConfig::Sqlite { path: dir.path().join("switchyard.db") })
            .await
            .expect("store");
    let request = shared::domain::access::NewAccessRequest {
        requester: shared::domain::EmailAddress::parse("dee@example.com").expect("email"),
        organization: shared::domain::TenantName::parse("Stark").expect("name"),
        message: None,
    };
    let tenant = shared::TenantId::parse(&tenant_id).expect("id");
    let event = |r: &shared::domain::access::AccessRequest| {
        shared::EventEnvelope::new(
            r.tenant_id,
            shared::Service::ControlPlane,
            shared::EventType::parse("access_request.submitted").expect("type"),
            serde_json::Map::new(),
        )
    };
    match shared::ports::AccessRequestStore::submit_access_request(&store, tenant, &request, &event)
        .await
        .expect("submit")
    {
        shared::domain::access::Submitted::Created(created) => assert_eq!(created.ticket_id.to_string(), "R00012"),
        other => panic!("{other:?}"),
    }
    let missing =
        run(switchyard(dir.path()).args(["import", "access-requests", "/nonexistent.csv", "--tenant", &tenant_id]));
    assert!(!missing.status.success());
}
