//! Wiring: builds the store, transport and object store from configuration, binds the
//! API and console listeners, and runs the servers, the outbox relay and the workers
//! until the caller's shutdown token fires.

use std::net::TcpListener;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use shared::config::{BusForwarding, Config};
use shared::limits::{per_hour, per_second, Share, TenantRates};
use shared::ports::{EventBus, ObjectStore, StoreBackend, Transport};
use shared::topology::{Topology, UseCase};
use workers::access_requests::AccessRequestWorker;
use workers::alarms::AlarmForwarder;
use workers::alerts::{report_worker, Alerter, Monitor, MonitorPorts, TenantAlerts, TenantSinkFactory};
use workers::analytics::{AnalyticsWorker, AnalyticsWriter};
use workers::email::{EmailLimits, EmailWorker};
use workers::feedback::FeedbackWorker;
use workers::parking::Parker;
use workers::redrive::{RedriveConfig, Redriver};
use workers::testflight::TestflightWorker;
use workers::webhooks::WebhookWorker;
use workers::{Consumer, ConsumerConfig, ConsumerStats, Handler, OutboxRelay, RelayConfig};

/// How often each worker process reports its counts (the monitor checks every 30 s).
/// The role API processes report under (see `workers::alerts::report_worker`).
const API_ROLE: &str = "api";

/// Per queue: the most messages a minute a redrive may send it, so redriven messages
/// alone never outrun what its worker may ask of its providers: an email is one
/// provider send, a feedback one acknowledgement email, an invitation one App Store
/// Connect call. Queues whose workers call no rate-limited provider have none.
fn redrive_ceilings(config: &Config, topology: &Topology) -> std::collections::HashMap<String, u32> {
    let email = config.email.provider_rate.saturating_mul(60);
    let testflight = (config.testflight.rate_per_hour / 60).max(1);
    topology
        .queues
        .iter()
        .filter_map(|queue| {
            let ceiling = match queue.use_case {
                UseCase::Email | UseCase::Feedback => email,
                UseCase::Testflight => testflight,
                _ => return None,
            };
            Some((queue.name.clone(), ceiling))
        })
        .collect()
}

/// Repeats of one alert within this window are summarised, not posted.
const ALERT_WINDOW: Duration = Duration::from_secs(5 * 60);

/// Tenants' own alert webhooks: Discord, or the capture provider when the process
/// captures provider calls (`dev`).
fn tenant_sinks(config: &Config) -> TenantSinkFactory {
    match &config.capture_dir {
        Some(dir) => {
            let capture: Arc<dyn shared::ports::providers::AlertSink> =
                Arc::new(adapters::providers::CaptureProvider::new(dir.clone()));
            Box::new(move |_url| capture.clone())
        }
        None => Box::new(|url| Arc::new(adapters::providers::DiscordWebhook::new(shared::config::Secret::new(url)))),
    }
}

/// The backends a platform runs on.
#[derive(Clone)]
pub struct Backends {
    pub store: Arc<dyn StoreBackend>,
    pub transport: Arc<dyn Transport>,
    pub objects: Arc<dyn ObjectStore>,
    /// The event bus and what to forward to it, when the deployment has one.
    pub bus: Option<(Arc<dyn EventBus>, BusForwarding)>,
}

impl Backends {
    /// Opens the configured backends (and migrates the store).
    pub async fn open(config: &Config, topology: &Topology) -> anyhow::Result<Self> {
        let store = adapters::connect_store(&config.store).await.context("opening the store")?;
        let transport = adapters::open_transport(&config.transport, topology).await.context("opening the transport")?;
        let objects = adapters::open_object_store(&config.objects).await;
        let bus = adapters::open_bus(config)
            .await
            .map(|bus| (bus, config.bus.as_ref().map_or(BusForwarding::All, |b| b.forwarding)));
        Ok(Self { store, transport, objects, bus })
    }
}

/// One part of the platform that a process can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    Api,
    ControlPlane,
    Relay,
    Worker(UseCase),
    /// Dead-letter and outbox-lag alerts (needs an alert sink).
    Monitor,
    /// Forwards CloudWatch alarms from the alarms queue to Discord (needs
    /// `SWITCHYARD_ALARMS_QUEUE` and an alert sink).
    Alarms,
}

impl Component {
    /// The use cases that have a worker.
    pub const WORKERS: [UseCase; 6] = UseCase::ALL;

    /// Everything: API, console, relay and every worker.
    pub fn all() -> Vec<Component> {
        let mut all = vec![Component::Api, Component::ControlPlane, Component::Relay];
        all.extend(Self::WORKERS.iter().map(|u| Component::Worker(*u)));
        all.push(Component::Monitor);
        all.push(Component::Alarms);
        all
    }
}

/// A bound, ready-to-run platform: the chosen components on the configured backends.
pub struct Platform {
    backends: Backends,
    topology: Topology,
    config: Config,
    components: Vec<Component>,
    api_listener: Option<TcpListener>,
    console_listener: Option<TcpListener>,
    /// Who invites TestFlight testers, opened (and its key parsed) when the platform is
    /// built, so a bad key stops the start rather than the first invitation.
    beta_testers: Option<Arc<dyn shared::ports::providers::BetaTesters>>,
}

fn bind(wanted: bool, addr: std::net::SocketAddr, what: &str) -> anyhow::Result<Option<TcpListener>> {
    if !wanted {
        return Ok(None);
    }
    TcpListener::bind(addr).map(Some).with_context(|| format!("binding the {what} to {addr}"))
}

impl Platform {
    /// Opens the backends and binds the listeners of `components` (port 0 picks a free port).
    pub async fn build(config: Config, topology: Topology, components: Vec<Component>) -> anyhow::Result<Self> {
        let backends = Backends::open(&config, &topology).await?;
        Self::with_backends(config, topology, backends, components)
    }

    pub fn with_backends(
        config: Config,
        topology: Topology,
        backends: Backends,
        components: Vec<Component>,
    ) -> anyhow::Result<Self> {
        let beta_testers = if components.contains(&Component::Worker(UseCase::Testflight)) {
            adapters::open_beta_testers(&config).context("loading the App Store Connect key")?
        } else {
            None
        };
        let api_listener = bind(components.contains(&Component::Api), config.api_addr, "API")?;
        let console_listener = bind(components.contains(&Component::ControlPlane), config.console_addr, "console")?;
        Ok(Self { backends, topology, config, components, api_listener, console_listener, beta_testers })
    }

    /// The API's port, when this platform runs the API.
    pub fn api_port(&self) -> Option<u16> {
        self.api_listener.as_ref().and_then(|l| l.local_addr().ok()).map(|a| a.port())
    }

    /// The console's port, when this platform runs the console.
    pub fn console_port(&self) -> Option<u16> {
        self.console_listener.as_ref().and_then(|l| l.local_addr().ok()).map(|a| a.port())
    }

    pub fn backends(&self) -> &Backends {
        &self.backends
    }

    /// Starts the worker of `use_case`, its limits divided as `share` says; returns its
    /// stats for the monitor.
    async fn spawn_worker(
        &self,
        use_case: UseCase,
        share: &Share,
        tasks: &mut tokio::task::JoinSet<()>,
        shutdown: &CancellationToken,
    ) -> Option<Arc<ConsumerStats>> {
        let backends = &self.backends;
        let handler: Arc<dyn Handler> = match use_case {
            UseCase::Feedback => {
                let worker =
                    FeedbackWorker::new(backends.store.clone(), backends.store.clone(), backends.objects.clone());
                Arc::new(match adapters::open_ticket_desk(&self.config) {
                    Some(desk) => worker.with_tickets(desk),
                    None => worker,
                })
            }
            UseCase::Email => match adapters::open_email_sender(&self.config).await {
                Some(sender) => {
                    let email = &self.config.email;
                    let limits = EmailLimits {
                        tenants: TenantRates::new(backends.store.clone(), &self.config.plans, |plan| {
                            per_second(plan.email_per_second)
                        }),
                        provider: NonZeroU32::new(email.provider_rate).unwrap_or(NonZeroU32::MIN),
                    };
                    Arc::new(
                        EmailWorker::new(
                            backends.store.clone(),
                            backends.store.clone(),
                            backends.objects.clone(),
                            sender,
                            email.from.clone(),
                            limits,
                        )
                        .with_delivery(email.delivery)
                        .sharing(share),
                    )
                }
                None => {
                    tracing::info!(
                        "no email provider configured (SWITCHYARD_EMAIL_PROVIDER / SWITCHYARD_SENDGRID_API_KEY): the email worker is off"
                    );
                    return None;
                }
            },
            UseCase::Analytics => {
                let staged = Arc::new(tokio::sync::Notify::new());
                let writer = AnalyticsWriter::new(
                    backends.store.clone(),
                    backends.objects.clone(),
                    self.config.analytics,
                    staged.clone(),
                );
                tasks.spawn(writer.run(shutdown.clone()));
                Arc::new(AnalyticsWorker::new(backends.store.clone(), staged))
            }
            UseCase::AccessRequests => Arc::new(AccessRequestWorker::new(
                backends.store.clone(),
                backends.objects.clone(),
                adapters::open_alert_sink(&self.config),
                self.config.access_requests.support_email.clone(),
                Some(format!("http://{}", self.config.console_addr)),
            )),
            UseCase::Webhooks => Arc::new(WebhookWorker::new(backends.store.clone(), backends.objects.clone())),
            UseCase::Testflight => match self.beta_testers.clone() {
                Some(testers) => Arc::new(
                    TestflightWorker::new(
                        backends.store.clone(),
                        backends.store.clone(),
                        backends.objects.clone(),
                        testers,
                        NonZeroU32::new(self.config.testflight.rate_per_hour).unwrap_or(NonZeroU32::MIN),
                        TenantRates::new(backends.store.clone(), &self.config.plans, |plan| {
                            per_hour(plan.testflight_per_hour)
                        }),
                    )
                    .sharing(share),
                ),
                None => {
                    tracing::info!(
                        "App Store Connect is not configured (SWITCHYARD_ASC_KEY_ID, _ISSUER_ID, _PRIVATE_KEY_PATH): the TestFlight worker is off"
                    );
                    return None;
                }
            },
        };
        let queue = self.topology.queue(use_case);
        let mut consumer_config = ConsumerConfig::new(queue.name.clone());
        consumer_config.concurrency = self.config.worker_concurrency;
        consumer_config.outage_grace = self.config.outage_grace;
        let mut consumer = Consumer::new(backends.transport.clone(), handler, consumer_config)
            .recording_dead_letters(backends.store.clone());
        if let Some(sink) = adapters::open_alert_sink(&self.config) {
            consumer = consumer.alerting(sink);
        }
        let stats = consumer.stats();
        tasks.spawn(consumer.run(shutdown.clone()));
        Some(stats)
    }

    /// Starts the alarm forwarder when the deployment has an alarms queue and an alert sink.
    fn spawn_alarm_forwarder(&self, tasks: &mut tokio::task::JoinSet<()>, shutdown: &CancellationToken) {
        let (Some(queue), Some(sink)) = (&self.config.alarms_queue, adapters::open_alert_sink(&self.config)) else {
            tracing::info!(
                "no alarms queue (SWITCHYARD_ALARMS_QUEUE) or alert sink: CloudWatch alarms are not forwarded"
            );
            return;
        };
        let forwarder = Arc::new(AlarmForwarder::new(sink));
        let consumer = Consumer::new(self.backends.transport.clone(), forwarder, ConsumerConfig::new(queue.clone()));
        tasks.spawn(consumer.run(shutdown.clone()));
    }

    /// Runs the components until `shutdown` is cancelled, then stops receiving, lets
    /// in-flight requests and messages finish, and returns.
    pub async fn run_until_stopped(mut self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let mut tasks = tokio::task::JoinSet::new();
        // Names this process in worker reports.
        let process = uuid::Uuid::new_v4().simple().to_string();
        let api_share = Share::alone();
        for component in self.components.clone() {
            match component {
                Component::Relay => {
                    let mut relay = OutboxRelay::new(
                        self.backends.store.clone(),
                        self.backends.transport.clone(),
                        self.topology.clone(),
                        RelayConfig::default(),
                    );
                    if let Some((bus, forwarding)) = &self.backends.bus {
                        relay = relay.with_bus(bus.clone(), *forwarding);
                    }
                    tasks.spawn(relay.run(shutdown.clone()));
                }
                Component::Worker(use_case) => {
                    let share = Share::alone();
                    if let Some(stats) = self.spawn_worker(use_case, &share, &mut tasks, &shutdown).await {
                        tasks.spawn(report_worker(
                            self.backends.store.clone(),
                            use_case.as_str().to_owned(),
                            process.clone(),
                            stats,
                            share,
                            self.config.report_interval,
                            shutdown.clone(),
                        ));
                    }
                }
                Component::Api => {
                    // Reported like a worker (with no counts) so API processes divide the plans' limits.
                    tasks.spawn(report_worker(
                        self.backends.store.clone(),
                        API_ROLE.to_owned(),
                        process.clone(),
                        Arc::default(),
                        api_share.clone(),
                        self.config.report_interval,
                        shutdown.clone(),
                    ));
                }
                Component::Alarms => self.spawn_alarm_forwarder(&mut tasks, &shutdown),
                Component::ControlPlane => {
                    let parker =
                        Parker::new(self.backends.transport.clone(), self.backends.store.clone(), &self.topology);
                    tasks.spawn(parker.run(shutdown.clone()));
                    let config = RedriveConfig {
                        ceilings: redrive_ceilings(&self.config, &self.topology),
                        retention: self.config.dead_letters.retention,
                        ..RedriveConfig::default()
                    };
                    let redriver = Redriver::new(self.backends.transport.clone(), self.backends.store.clone(), config);
                    tasks.spawn(redriver.run(shutdown.clone()));
                }
                Component::Monitor => {}
            }
        }
        if self.components.contains(&Component::Monitor) {
            match adapters::open_alert_sink(&self.config) {
                Some(sink) => {
                    let mut monitor = Monitor::new(
                        self.backends.transport.clone(),
                        MonitorPorts::of(&self.backends.store),
                        self.topology.clone(),
                        Alerter::new(sink, ALERT_WINDOW),
                    );
                    monitor.tenant_alerts = Some(TenantAlerts::new(tenant_sinks(&self.config), ALERT_WINDOW));
                    let reminders = &self.config.access_requests;
                    monitor.access_reminders = Some((reminders.remind_after, reminders.remind_every));
                    tasks.spawn(monitor.run(Duration::from_secs(30), shutdown.clone()));
                }
                None => tracing::info!("no alert sink configured (SWITCHYARD_DISCORD_WEBHOOK_URL): alerts are off"),
            }
        }

        let journey = Arc::new(core_api::journey::JourneyContext {
            topology: self.topology.clone(),
            objects: Some(self.backends.objects.clone()),
        });
        // The servers run as their own tasks: a `Server` future must keep being polled
        // for its handle's `stop` to complete.
        let mut servers = tokio::task::JoinSet::new();
        let mut handles = Vec::new();
        if let Some(listener) = self.api_listener.take() {
            let mut state = core_api::ApiState::new(self.backends.store.clone(), &self.config.plans, &api_share);
            state.journey = Some(journey.clone());
            tasks.spawn(core_api::auth::watch_keys(state.keys.clone(), state.tenants.clone(), shutdown.clone()));
            let api = core_api::server(listener, state)?;
            handles.push(api.handle());
            servers.spawn(api);
        }
        if let Some(listener) = self.console_listener.take() {
            let store = &self.backends.store;
            let state = control_plane::ConsoleState {
                tenants: store.clone(),
                access: store.clone(),
                readiness: store.clone(),
                admin_token: self.config.admin_token.clone(),
                operators: store.clone(),
                audit: store.clone(),
                plans: self.config.plans.clone(),
                captures: adapters::open_captures(&self.config),
                webhooks: self.config.webhooks.clone(),
                parking: store.clone(),
                plans_store: store.clone(),
                redrive: control_plane::RedriveSettings {
                    default_rate_per_minute: self.config.dead_letters.redrive_rate_per_minute,
                    ceilings: redrive_ceilings(&self.config, &self.topology),
                    retention: self.config.dead_letters.retention,
                },
                topology: self.topology.clone(),
                transport: self.backends.transport.clone(),
                journeys: store.clone(),
                journey: journey.clone(),
                outbox: store.clone(),
                health: store.clone(),
                report_interval: self.config.report_interval,
            };
            let console = control_plane::server(listener, state)?;
            handles.push(console.handle());
            servers.spawn(console);
        }
        tokio::select! {
            Some(result) = servers.join_next(), if !servers.is_empty() => {
                shutdown.cancel();
                result.context("an HTTP server panicked")?.context("an HTTP server stopped unexpectedly")?;
            }
            () = shutdown.cancelled() => {
                tracing::info!("shutting down: finishing in-flight requests and messages");
            }
        }
        futures::future::join_all(handles.iter().map(|h| h.stop(true))).await;
        while let Some(result) = servers.join_next().await {
            result.context("an HTTP server panicked")?.context("stopping an HTTP server")?;
        }
        while let Some(result) = tasks.join_next().await {
            result.context("a background task panicked")?;
        }
        tracing::info!("stopped");
        Ok(())
    }
}
