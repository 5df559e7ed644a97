//! `spawn_app`: a running platform on port 0 with temp dirs and a fresh database.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

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
    pub topology: Topology,
    /// The platform's configuration, for starting more processes on the same backends.
    pub config: Config,
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
    spawn(engine, Backing::default(), Component::all()).await
}

/// A fresh PostgreSQL database reached through a [`Gateway`] the test can stop, and
/// the platform on it with the embedded transport (feedback tickets to the Zendesk at
/// `zendesk`): a store outage on demand. Also returns the database's address, for
/// starting the gateway again.
pub async fn spawn_app_behind_store_gateway(zendesk: &str) -> (TestApp, Gateway, String) {
    let url = adapters::testing::fresh_postgres_database().await.expect("test database (is PostgreSQL running?)");
    let mut via = reqwest::Url::parse(&url).expect("database url");
    let target = format!("{}:{}", via.host_str().expect("host"), via.port().unwrap_or(5432));
    let gateway = Gateway::start(free_port(), target.clone()).await;
    via.set_host(Some("127.0.0.1")).expect("host");
    via.set_port(Some(gateway.port)).expect("port");
    let app = spawn(
        Engine::Postgres,
        Backing { database: Some(via.to_string()), zendesk: Some(zendesk_config(zendesk)), ..Backing::default() },
        Component::all(),
    )
    .await;
    (app, gateway, target)
}

/// A Zendesk on loopback that has no tickets yet (every lookup by external id finds
/// none); the test mounts how it answers a create.
pub async fn empty_zendesk() -> wiremock::MockServer {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    let zendesk = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v2/tickets.json"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"tickets": [], "count": 0})))
        .mount(&zendesk)
        .await;
    zendesk
}

fn zendesk_config(url: &str) -> ZendeskConfig {
    ZendeskConfig { url: url.to_owned(), email: "agent@acme.example".into(), api_token: Secret::new("secret") }
}

/// PostgreSQL + the embedded transport, every process reporting itself every 100 ms, so
/// a test can start more processes with [`TestApp::another_api_process`] that learn of
/// each other quickly.
pub async fn spawn_app_for_several_processes() -> TestApp {
    let backing = Backing { report_interval: Some(Duration::from_millis(100)), ..Backing::default() };
    spawn(Engine::Postgres, backing, Component::all()).await
}

/// Another process of the platform: its own backends (pools, limiters) on the same store.
pub struct OtherProcess {
    pub api_url: String,
    shutdown: CancellationToken,
}

impl Drop for OtherProcess {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl TestApp {
    /// Starts another API process on this app's store.
    pub async fn another_api_process(&self) -> OtherProcess {
        let backends = Backends::open(&self.config, &self.topology).await.expect("backends");
        let platform =
            Platform::with_backends(self.config.clone(), self.topology.clone(), backends, vec![Component::Api])
                .expect("platform");
        let api_url = format!("http://127.0.0.1:{}", platform.api_port().expect("api"));
        let shutdown = CancellationToken::new();
        tokio::spawn(platform.run_until_stopped(shutdown.clone()));
        OtherProcess { api_url, shutdown }
    }
}

impl TestApp {
    /// Starts another process running `components` on this app's backends.
    pub async fn another_process(&self, components: Vec<Component>) -> OtherProcess {
        let backends = Backends::open(&self.config, &self.topology).await.expect("backends");
        let platform = Platform::with_backends(self.config.clone(), self.topology.clone(), backends, components)
            .expect("platform");
        let shutdown = CancellationToken::new();
        tokio::spawn(platform.run_until_stopped(shutdown.clone()));
        OtherProcess { api_url: String::new(), shutdown }
    }
}

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").port()
}

/// Every component but the analytics worker, so a test can read `order.*` events from
/// `order_queue` (the analytics queue) itself.
pub async fn spawn_app_reading_orders(engine: Engine) -> TestApp {
    spawn(engine, Backing::default(), without_analytics_worker()).await
}

/// Like [`spawn_app_reading_orders`], without a relay either: what the API accepts stays
/// in the outbox until the test starts one ([`TestApp::another_process`]).
pub async fn spawn_app_without_relay(engine: Engine) -> TestApp {
    let components = without_analytics_worker().into_iter().filter(|c| *c != Component::Relay).collect();
    spawn(engine, Backing::default(), components).await
}

fn without_analytics_worker() -> Vec<Component> {
    Component::all().into_iter().filter(|c| *c != Component::Worker(UseCase::Analytics)).collect()
}

/// The embedded engine with feedback tickets going to the Zendesk at `url`.
pub async fn spawn_app_with_zendesk(url: &str) -> TestApp {
    spawn_app_with_zendesk_on(Engine::Embedded, url).await
}

/// `engine` with feedback tickets going to the Zendesk at `url`.
pub async fn spawn_app_with_zendesk_on(engine: Engine, url: &str) -> TestApp {
    let zendesk = zendesk_config(url);
    spawn(engine, Backing { zendesk: Some(zendesk), ..Backing::default() }, Component::all()).await
}

/// PostgreSQL + the AWS engine on the AWS-compatible server at `endpoint`, reading
/// orders as [`spawn_app_reading_orders`] does.
pub async fn spawn_app_on_aws(endpoint: &str) -> TestApp {
    let aws = AwsSettings { region: Some("us-east-1".into()), endpoint: Some(endpoint.to_owned()), max_attempts: 2 };
    spawn(Engine::PostgresAws, Backing { aws: Some(aws), ..Backing::default() }, without_analytics_worker()).await
}

/// Where a platform's backends are when they are not the defaults: the AWS settings
/// of `PostgresAws`, the database URL of a PostgreSQL engine.
#[derive(Default)]
struct Backing {
    aws: Option<AwsSettings>,
    database: Option<String>,
    zendesk: Option<ZendeskConfig>,
    /// How often processes report themselves (the default is 15 s).
    report_interval: Option<Duration>,
}

async fn spawn(engine: Engine, backing: Backing, components: Vec<Component>) -> TestApp {
    let Backing { aws, database, zendesk, report_interval } = backing;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = match engine {
        Engine::Embedded => StoreConfig::Sqlite { path: dir.path().join("switchyard.db") },
        Engine::Postgres | Engine::PostgresAws => StoreConfig::Postgres {
            url: Secret::new(match database {
                Some(url) => url,
                None => {
                    adapters::testing::fresh_postgres_database().await.expect("test database (is PostgreSQL running?)")
                }
            }),
            max_connections: 8,
            acquire_timeout: Duration::from_millis(1500),
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
    config.plans = Plans::parse("tiny:api=2;twenty:api=20", config.plans.limits(&PlanName::standard())).expect("plans");
    if let Some(interval) = report_interval {
        config.report_interval = interval;
    }
    config.access_requests.support_email = Some(EmailAddress::parse("support@acme.example").expect("support"));
    let config_copy = config.clone();
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
        topology,
        config: config_copy,
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

    /// A GET of the control plane's `path`, as an operator.
    pub async fn operator_get(&self, path: &str) -> reqwest::Response {
        self.client.get(format!("{}{path}", self.console_url)).bearer_auth(ADMIN_TOKEN).send().await.expect("request")
    }

    /// A POST of `body` to the control plane's `path`, as an operator.
    pub async fn operator_post(&self, path: &str, body: &Value) -> reqwest::Response {
        let request = self.client.post(format!("{}{path}", self.console_url)).bearer_auth(ADMIN_TOKEN).json(body);
        request.send().await.expect("request")
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

pub fn store(app: &TestApp) -> Arc<dyn shared::ports::StoreBackend> {
    app.backends.store.clone()
}

/// Forwards 127.0.0.1:`port` to `target` (a test server) until stopped: stopping it
/// takes the server away from the app (connections cut, new ones refused) while the
/// server keeps its state, as through a network outage.
pub struct Gateway {
    port: u16,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Gateway {
    pub async fn start(port: u16, target: String) -> Gateway {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.expect("bind the gateway");
        let tasks: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let connections = tasks.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let target = target.clone();
                let forward = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                connections.lock().expect("lock").push(forward);
            }
        });
        tasks.lock().expect("lock").push(accept);
        Gateway { port, tasks }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Closes the listener and every connection: the server is unreachable.
    pub fn stop(self) -> u16 {
        for task in self.tasks.lock().expect("lock").drain(..) {
            task.abort();
        }
        self.port
    }
}
