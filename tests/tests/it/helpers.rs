//! `spawn_app`: a running platform on port 0 with temp dirs and a fresh database.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use shared::config::{Config, ObjectStoreConfig, Secret, StoreConfig, TransportConfig};
use shared::pattern::{FilterPolicy, FilterPolicyScope};
use shared::topology::{Environment, InstanceName, SubscriptionSpec, Topology, UseCase};
use shared::{Service, TenantId};
use switchyard::platform::{Backends, Platform};

#[derive(Debug, Clone, Copy)]
pub enum Engine {
    /// SQLite store + embedded transport + files.
    Embedded,
    /// PostgreSQL store (a fresh database) + embedded transport + files.
    Postgres,
}

pub struct Tenant {
    pub id: TenantId,
    pub key: String,
}

pub struct TestApp {
    pub api_url: String,
    pub console_url: String,
    pub client: reqwest::Client,
    pub backends: Backends,
    pub acme: Tenant,
    pub globex: Tenant,
    /// The queue that receives every `order.*` event published on the core-api topic.
    pub order_queue: String,
    shutdown: CancellationToken,
    running: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _dir: tempfile::TempDir,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A topology whose analytics queue also subscribes to tenants' `order.*` events, so
/// tests can see what the relay publishes on the core-api topic.
fn test_topology() -> (Topology, String) {
    let mut topology =
        Topology::new(InstanceName::parse("e2e").expect("instance"), Environment::Production).expect("topology");
    let queue = topology.queue(UseCase::Analytics).name.clone();
    let policy = json!({"event_type": [{"prefix": "order."}]});
    topology.subscriptions.push(SubscriptionSpec {
        topic: topology.topic(Service::CoreApi).name.clone(),
        queue: queue.clone(),
        filter_policy: FilterPolicy::parse(&policy, FilterPolicyScope::MessageAttributes).expect("policy"),
        filter_policy_json: policy,
        raw_delivery: true,
    });
    (topology, queue)
}

async fn tenant(backends: &Backends, name: &str) -> Tenant {
    let tenant = switchyard::dev::create_tenant(backends.store.as_ref(), name).await.expect("tenant");
    let key = core_api::issue_api_key(backends.store.as_ref(), tenant.id).await.expect("key");
    Tenant { id: tenant.id, key: key.plaintext }
}

pub async fn spawn_app(engine: Engine) -> TestApp {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = match engine {
        Engine::Embedded => StoreConfig::Sqlite { path: dir.path().join("switchyard.db") },
        Engine::Postgres => StoreConfig::Postgres {
            url: Secret::new(
                adapters::testing::fresh_postgres_database().await.expect("test database (is PostgreSQL running?)"),
            ),
            max_connections: 8,
        },
    };
    let (topology, order_queue) = test_topology();
    let config = Config {
        instance: topology.instance.clone(),
        environment: topology.environment,
        store,
        transport: TransportConfig::Embedded { path: dir.path().join("transport.db") },
        objects: ObjectStoreConfig::Filesystem { root: dir.path().join("objects") },
        api_addr: "127.0.0.1:0".parse().expect("addr"),
        console_addr: "127.0.0.1:0".parse().expect("addr"),
        worker_concurrency: 4,
    };
    let backends = Backends::open(&config, &topology).await.expect("backends");
    let platform = Platform::with_backends(config, topology.clone(), backends.clone()).expect("platform");
    let api_url = format!("http://127.0.0.1:{}", platform.api_port());
    let console_url = format!("http://127.0.0.1:{}", platform.console_port());
    let acme = tenant(&backends, "Acme").await;
    let globex = tenant(&backends, "Globex").await;
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(platform.run_until_stopped(shutdown.clone()));
    TestApp {
        api_url,
        console_url,
        client: reqwest::Client::new(),
        backends,
        acme,
        globex,
        order_queue,
        shutdown,
        running: Some(running),
        _dir: dir,
    }
}

impl TestApp {
    pub async fn post_json(&self, path: &str, key: Option<&str>, body: &Value) -> reqwest::Response {
        let mut request = self.client.post(format!("{}{path}", self.api_url)).json(body);
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        request.send().await.expect("request")
    }

    pub async fn get(&self, path: &str, key: &str) -> reqwest::Response {
        self.client.get(format!("{}{path}", self.api_url)).bearer_auth(key).send().await.expect("request")
    }

    /// Stops the platform the way Ctrl-C does and waits for it to exit.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        let running = self.running.take().expect("running");
        tokio::time::timeout(Duration::from_secs(15), running).await.expect("stops in time").expect("join")
    }
}

pub async fn json(response: reqwest::Response) -> Value {
    response.json().await.expect("json body")
}

pub fn store(app: &TestApp) -> Arc<dyn shared::ports::Store> {
    app.backends.store.clone()
}
