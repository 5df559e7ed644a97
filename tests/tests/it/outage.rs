//! The transport goes down: the API keeps accepting (the outbox grows), and the relay
//! drains the outbox once the transport is back.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;

use shared::ports::ReceiveOptions;
use shared::EventEnvelope;

use crate::helpers::{json, spawn_app_on_aws, store};

/// A moto server of this test's own, so stopping it disturbs no other test.
struct Moto {
    port: u16,
    child: Child,
}

impl Moto {
    fn start(port: u16) -> Moto {
        let binary = std::env::var("SWITCHYARD_MOTO_SERVER")
            .expect("SWITCHYARD_MOTO_SERVER is not set: run scripts/test (it installs moto)");
        let mut child = Command::new(binary)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Moto { port, child };
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("moto did not start on port {port}");
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn stop(mut self) -> u16 {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.port
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_keeps_accepting_while_the_transport_is_down_and_the_relay_catches_up() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").port();
    let moto = Moto::start(port);
    let app = spawn_app_on_aws(&moto.endpoint()).await;

    let port = moto.stop();
    let mut sent = Vec::new();
    for n in 0..5 {
        let response =
            app.post_json("/v1/events", Some(&app.acme.key), &json!({"type": "order.placed", "data": {"n": n}})).await;
        assert_eq!(response.status(), 202, "accepted while the transport is down");
        sent.push(json(response).await["event_id"].as_str().expect("id").to_owned());
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(store(&app).outbox_backlog().await.expect("backlog"), 5, "the outbox holds them");

    // The server comes back (empty, as moto keeps nothing): the stack is re-created,
    // as Terraform would have it, and the relay drains the outbox.
    let moto = Moto::start(port);
    let sdk = adapters::aws::sdk_config(&shared::config::AwsSettings {
        region: Some("us-east-1".into()),
        endpoint: Some(moto.endpoint()),
        max_attempts: 2,
    })
    .await;
    adapters::aws::provision::apply(&sdk, &app.topology).await.expect("re-create the topology");
    let mut received = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while received.len() < sent.len() && tokio::time::Instant::now() < deadline {
        let options = ReceiveOptions { max_messages: 10, wait: Duration::from_secs(1), visibility_timeout: None };
        for message in app.backends.transport.receive(&app.order_queue, options).await.unwrap_or_default() {
            received.push(EventEnvelope::from_json(&message.body).expect("envelope").id.to_string());
            app.backends.transport.ack(&app.order_queue, &[message.receipt]).await.expect("ack");
        }
    }
    assert_eq!(received, sent, "every accepted event arrives, in order, after the outage");
    assert_eq!(store(&app).outbox_backlog().await.expect("backlog"), 0);
    drop(moto);
}
