//! `POST /v1/testflight/invitations` end to end on the embedded engine, with App Store
//! Connect captured: invited, a second invitation of the same tester is "already
//! existed", bad requests are refused.

use std::time::Duration;

use serde_json::{json, Value};

use shared::testkit::eventually;

use crate::helpers::{json, spawn_app, Engine, TestApp};

async fn wait_for_status(app: &TestApp, id: &str, wanted: &str) -> Value {
    eventually(Duration::from_secs(8), &format!("invitation {id} reaches {wanted}"), || async {
        let invitation = json(app.get(&format!("/v1/testflight/invitations/{id}"), &app.acme.key).await).await;
        if invitation["status"] == wanted {
            Ok(invitation)
        } else {
            Err(invitation)
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tester_is_invited_once_and_a_second_invitation_finds_them() {
    let app = spawn_app(Engine::Embedded).await;
    let body =
        json!({"email": "tess@example.com", "first_name": "Tess", "last_name": "Ter", "beta_group_id": "group-1"});
    let mut ids = Vec::new();
    for _ in 0..2 {
        let response = app.post_json("/v1/testflight/invitations", Some(&app.acme.key), &body).await;
        assert_eq!(response.status(), 202);
        ids.push(json(response).await["id"].as_str().expect("id").to_owned());
    }
    let first = wait_for_status(&app, &ids[0], "invited").await;
    assert_eq!(first["already_existed"], false);
    assert!(first["result_key"]
        .as_str()
        .is_some_and(|k| k.starts_with(&format!("testflight/tenant={}/", app.acme.id))));
    let second = wait_for_status(&app, &ids[1], "invited").await;
    assert_eq!(
        (second["already_existed"].as_bool(), second["tester_id"].clone()),
        (Some(true), first["tester_id"].clone())
    );
    let captured = std::fs::read_to_string(app.captures.join("testflight.jsonl")).expect("captured calls");
    assert_eq!(captured.lines().count(), 2, "{captured}");
    assert_eq!(app.get(&format!("/v1/testflight/invitations/{}", ids[0]), &app.globex.key).await.status(), 404);
    app.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_invitations_are_refused() {
    let app = spawn_app(Engine::Embedded).await;
    let cases = [
        (json!({"first_name": "T", "last_name": "T", "beta_group_id": "g"}), "email"),
        (json!({"email": "nope", "first_name": "T", "last_name": "T", "beta_group_id": "g"}), "email"),
        (json!({"email": "t@example.com", "first_name": "", "last_name": "T", "beta_group_id": "g"}), "first_name"),
        (
            json!({"email": "t@example.com", "first_name": "T", "last_name": "T", "beta_group_id": "a/b"}),
            "beta_group_id",
        ),
    ];
    for (body, field) in cases {
        let response = app.post_json("/v1/testflight/invitations", Some(&app.acme.key), &body).await;
        assert_eq!(response.status(), 400, "{body}");
        let problem = json(response).await;
        assert!(
            problem["errors"].as_array().expect("errors").iter().any(|e| e["field"] == field),
            "{field}: {problem}"
        );
    }
    assert!(!app.captures.join("testflight.jsonl").exists(), "nothing was invited");
    app.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_store_connect_key_that_does_not_parse_stops_the_start() {
    use shared::config::{AppStoreConnectConfig, Config, ObjectStoreConfig, Secret, StoreConfig, TransportConfig};
    use shared::topology::{Environment, InstanceName, Topology, UseCase};
    use switchyard::platform::{Backends, Component, Platform};

    let dir = tempfile::tempdir().expect("tempdir");
    let topology = Topology::new(InstanceName::parse("asc").expect("name"), Environment::Production).expect("topology");
    let mut config = Config::minimal(
        &topology,
        StoreConfig::Sqlite { path: dir.path().join("store.db") },
        TransportConfig::Embedded { path: dir.path().join("transport.db") },
        ObjectStoreConfig::Filesystem { root: dir.path().join("objects") },
    );
    config.testflight.app_store_connect = Some(AppStoreConnectConfig {
        url: "https://api.appstoreconnect.apple.com".into(),
        key_id: "KEY123".into(),
        issuer_id: "issuer".into(),
        private_key: Secret::new("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n"),
    });
    let backends = Backends::open(&config, &topology).await.expect("backends");
    let error = Platform::with_backends(config, topology, backends, vec![Component::Worker(UseCase::Testflight)])
        .err()
        .expect("refused");
    assert!(format!("{error:#}").contains("App Store Connect"), "{error:#}");
}
