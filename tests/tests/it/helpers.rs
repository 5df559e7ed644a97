//! `spawn_app`: a running platform on port 0 with temp dirs and a fresh database.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use shared::config::Plans;
use shared::config::{AwsSettings, Config, ObjectStoreConfig, Secret, StoreConfig, TransportConfig, ZendeskConfig};
use shared::domain::{EmailAddress, PlanName};
use shared::pattern::{FilterPolicy, FilterPolicyScope};
use shared::topology::{Environment, InstanceName, Topology, UseCase};
use shared::TenantId;
use switchyard::platform::{Backends, Component, Platform};

#[derive(Debug, Clone, Copy)]
pub enum Engine {
    /// SQLite store + embedded transport + files.
    Embedded,
    /// PostgreSQL store (a fresh database) + embedded transport + files.
    Postgres,
    /// PostgreSQL store + SNS/SQS + S3 on the AWS test server (moto).
    PostgresAws,
}

pub fn aws_settings() -> AwsSettings {
    let endpoint = std::env::var("SWITCHYARD_TEST_AWS_ENDPOINT")
        .unwrap_or_else(|_| panic!("SWITCHYARD_TEST_AWS_ENDPOINT is not set: run scripts/test (it starts moto)"));
    AwsSettings { region: Some("us-east-1".into()), endpoint: Some(endpoint), max_attempts: 2 }
}

/// The operators' token of test platforms.
pub const ADMIN_TOKEN: &str = "admin-secret";

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
    /// Where provider calls are captured.
    pub captures: std::path::PathBuf,
    shutdown: CancellationToken,
    running: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _dir: tempfile::TempDir,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A topology (unique per app, so apps can share one AWS test server) whose analytics
/// queue also receives tenants' `order.*` events, so tests can see what the relay
/// publishes on the core-api topic.
fn test_topology() -> (Topology, String) {
    let instance = format!("e2e-{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let mut topology =
        Topology::new(InstanceName::parse(&instance).expect("instance"), Environment::Production).expect("topology");
    let queue = topology.queue(UseCase::Analytics).name.clone();
    let policy = json!({"event_type": [{"prefix": "analytics."}, {"prefix": "order."}]});
    let subscription = topology.subscriptions.iter_mut().find(|s| s.queue == queue).expect("analytics subscription");
    subscription.filter_policy = FilterPolicy::parse(&policy, FilterPolicyScope::MessageAttributes).expect("policy");
    subscription.filter_policy_json = policy;
    (topology, queue)
}

async fn tenant(backends: &Backends, name: &str) -> Tenant {
    let tenant = switchyard::dev::create_tenant(backends.store.as_ref(), name).await.expect("tenant");
    let key = core_api::issue_api_key(backends.store.as_ref(), tenant.id).await.expect("key");
    Tenant { id: tenant.id, key: key.plaintext }
}

pub async fn spawn_app(engine: Engine) -> TestApp {
    spawn(engine, None, None, Component::all()).await
}

/// Every component but the analytics worker, so a test can read `order.*` events from
/// `order_queue` (the analytics queue) itself.
pub async fn spawn_app_reading_orders(engine: Engine) -> TestApp {
    spawn(engine, None, None, without_analytics_worker()).await
}

fn without_analytics_worker() -> Vec<Component> {
    Component::all().into_iter().filter(|c| *c != Component::Worker(UseCase::Analytics)).collect()
}

/// The embedded engine with feedback tickets going to the Zendesk at `url`.
pub async fn spawn_app_with_zendesk(url: &str) -> TestApp {
    let zendesk =
        ZendeskConfig { url: url.to_owned(), email: "agent@acme.example".into(), api_token: Secret::new("secret") };
    spawn(Engine::Embedded, None, Some(zendesk), Component::all()).await
}

/// PostgreSQL + the AWS engine on the AWS-compatible server at `endpoint`, reading
/// orders as [`spawn_app_reading_orders`] does.
pub async fn spawn_app_on_aws(endpoint: &str) -> TestApp {
    let aws = AwsSettings { region: Some("us-east-1".into()), endpoint: Some(endpoint.to_owned()), max_attempts: 2 };
    spawn(Engine::PostgresAws, Some(aws), None, without_analytics_worker()).await
}

async fn spawn(
    engine: Engine,
    aws: Option<AwsSettings>,
    zendesk: Option<ZendeskConfig>,
    components: Vec<Component>,
) -> TestApp {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = match engine {
        Engine::Embedded => StoreConfig::Sqlite { path: dir.path().join("switchyard.db") },
        Engine::Postgres | Engine::PostgresAws => StoreConfig::Postgres {
            url: Secret::new(
                adapters::testing::fresh_postgres_database().await.expect("test database (is PostgreSQL running?)"),
            ),
            max_connections: 8,
            acquire_timeout: std::time::Duration::from_secs(2),
        },
    };
    let (topology, order_queue) = test_topology();
    let (transport, objects) = match engine {
        Engine::Embedded | Engine::Postgres => (
            TransportConfig::Embedded { path: dir.path().join("transport.db") },
            ObjectStoreConfig::Filesystem { root: dir.path().join("objects") },
        ),
        Engine::PostgresAws => {
            let aws = aws.unwrap_or_else(aws_settings);
            let sdk = adapters::aws::sdk_config(&aws).await;
            adapters::aws::provision::apply(&sdk, &topology).await.expect("apply the topology");
            let bucket = format!("results-{}", topology.instance.as_str());
            adapters::aws::S3ObjectStore::new(&sdk, bucket.clone()).ensure_bucket().await.expect("bucket");
            (TransportConfig::Aws(aws.clone()), ObjectStoreConfig::S3 { bucket, aws })
        }
    };
    let mut config = Config::minimal(&topology, store, transport, objects);
    config.worker_concurrency = 4;
    config.zendesk = zendesk;
    config.capture_dir = Some(dir.path().join("captures"));
    config.analytics.batch_age = Duration::from_millis(300);
    config.admin_token = Some(Secret::new(ADMIN_TOKEN));
    // A plan small enough for a test to exceed.
    config.plans = Plans::parse("tiny:api=2", config.plans.limits(&PlanName::standard())).expect("plans");
    config.access_requests.support_email = Some(EmailAddress::parse("support@acme.example").expect("support"));
    let backends = Backends::open(&config, &topology).await.expect("backends");
    let platform = Platform::with_backends(config, topology.clone(), backends.clone(), components).expect("platform");
    let api_url = format!("http://127.0.0.1:{}", platform.api_port().expect("api"));
    let console_url = format!("http://127.0.0.1:{}", platform.console_port().expect("console"));
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
        captures: dir.path().join("captures"),
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
