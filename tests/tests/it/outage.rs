//! The transport goes down: the API keeps accepting (the outbox grows), and the relay
//! drains the outbox once the transport is back.
//!
//! The app reaches the AWS test server through a loopback TCP relay that this test
//! stops and restarts: to the app the server is gone (connections refused) and back,
//! while the server keeps its topics and queues as AWS would through an outage.

use std::time::Duration;

use serde_json::json;

use shared::ports::ReceiveOptions;
use shared::EventEnvelope;

use crate::helpers::{json, spawn_app_on_aws, store, Gateway};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_keeps_accepting_while_the_transport_is_down_and_the_relay_catches_up() {
    let server = std::env::var("SWITCHYARD_TEST_AWS_ENDPOINT")
        .expect("SWITCHYARD_TEST_AWS_ENDPOINT is not set: run scripts/test (it starts moto)");
    let target = server.trim_start_matches("http://").to_owned();
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").port();
    let gateway = Gateway::start(port, target.clone()).await;
    let app = spawn_app_on_aws(&gateway.endpoint()).await;

    let port = gateway.stop();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut sent = Vec::new();
    for n in 0..5 {
        let response =
            app.post_json("/v1/events", Some(&app.acme.key), &json!({"type": "order.placed", "data": {"n": n}})).await;
        assert_eq!(response.status(), 202, "accepted while the transport is down");
        sent.push(json(response).await["event_id"].as_str().expect("id").to_owned());
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(store(&app).outbox_backlog().await.expect("backlog"), 5, "the outbox holds them");

    let gateway = Gateway::start(port, target).await;
    let mut received = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while received.len() < sent.len() && tokio::time::Instant::now() < deadline {
        let options = ReceiveOptions { max_messages: 10, wait: Duration::from_secs(1), visibility_timeout: None };
        let batch = match app.backends.transport.receive(&app.order_queue, options).await {
            Ok(batch) => batch,
            Err(error) => {
                eprintln!("receive failed (retrying): {error:?}");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        for message in batch {
            received.push(EventEnvelope::from_json(&message.body).expect("envelope").id.to_string());
            app.backends.transport.ack(&app.order_queue, &[message.receipt]).await.expect("ack");
        }
    }
    assert_eq!(received, sent, "every accepted event arrives, in order, after the outage");
    assert_eq!(store(&app).outbox_backlog().await.expect("backlog"), 0);
    gateway.stop();
}
