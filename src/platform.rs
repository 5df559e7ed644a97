//! Wiring: builds the store, transport and object store from configuration, binds the
//! API and console listeners, and runs the servers, the outbox relay and the workers
//! until the caller's shutdown token fires.

use std::net::TcpListener;
use std::sync::Arc;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use shared::config::Config;
use shared::ports::{ObjectStore, Store, Transport};
use shared::topology::{Topology, UseCase};
use workers::feedback::FeedbackWorker;
use workers::{Consumer, ConsumerConfig, OutboxRelay, RelayConfig};

/// The backends a platform runs on.
#[derive(Clone)]
pub struct Backends {
    pub store: Arc<dyn Store>,
    pub transport: Arc<dyn Transport>,
    pub objects: Arc<dyn ObjectStore>,
}

impl Backends {
    /// Opens the configured backends (and migrates the store).
    pub async fn open(config: &Config, topology: &Topology) -> anyhow::Result<Self> {
        let store = adapters::connect_store(&config.store).await.context("opening the store")?;
        let transport = adapters::open_transport(&config.transport, topology).await.context("opening the transport")?;
        let objects = adapters::open_object_store(&config.objects).await;
        Ok(Self { store, transport, objects })
    }
}

/// A bound, ready-to-run platform: API, console, relay and workers.
pub struct Platform {
    backends: Backends,
    topology: Topology,
    config: Config,
    api_listener: TcpListener,
    console_listener: TcpListener,
}

impl Platform {
    /// Opens the backends and binds both listeners (port 0 picks a free port).
    pub async fn build(config: Config, topology: Topology) -> anyhow::Result<Self> {
        let backends = Backends::open(&config, &topology).await?;
        Self::with_backends(config, topology, backends)
    }

    pub fn with_backends(config: Config, topology: Topology, backends: Backends) -> anyhow::Result<Self> {
        let api_listener =
            TcpListener::bind(config.api_addr).with_context(|| format!("binding the API to {}", config.api_addr))?;
        let console_listener = TcpListener::bind(config.console_addr)
            .with_context(|| format!("binding the console to {}", config.console_addr))?;
        Ok(Self { backends, topology, config, api_listener, console_listener })
    }

    pub fn api_port(&self) -> u16 {
        self.api_listener.local_addr().map(|a| a.port()).unwrap_or_default()
    }

    pub fn console_port(&self) -> u16 {
        self.console_listener.local_addr().map(|a| a.port()).unwrap_or_default()
    }

    pub fn backends(&self) -> &Backends {
        &self.backends
    }

    /// Runs everything until `shutdown` is cancelled, then stops receiving, lets
    /// in-flight requests and messages finish, and returns.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Platform { backends, topology, config, api_listener, console_listener } = self;
        let api = core_api::server(api_listener, core_api::ApiState::new(backends.store.clone()))?;
        let console = control_plane::server(console_listener)?;
        let (api_handle, console_handle) = (api.handle(), console.handle());

        let mut tasks = tokio::task::JoinSet::new();
        let relay = OutboxRelay::new(
            backends.store.clone(),
            backends.transport.clone(),
            topology.clone(),
            RelayConfig::default(),
        );
        tasks.spawn(relay.run(shutdown.clone()));
        let feedback = FeedbackWorker::new(backends.store.clone(), backends.objects.clone());
        let mut consumer_config = ConsumerConfig::new(topology.queue(UseCase::Feedback).name.clone());
        consumer_config.concurrency = config.worker_concurrency;
        tasks.spawn(
            Consumer::new(backends.transport.clone(), Arc::new(feedback), consumer_config).run(shutdown.clone()),
        );

        // The servers run as their own tasks: a `Server` future must keep being polled
        // for its handle's `stop` to complete.
        let mut servers = tokio::task::JoinSet::new();
        servers.spawn(api);
        servers.spawn(console);
        tokio::select! {
            Some(result) = servers.join_next() => {
                shutdown.cancel();
                result.context("an HTTP server panicked")?.context("an HTTP server stopped unexpectedly")?;
            }
            () = shutdown.cancelled() => {
                tracing::info!("shutting down: finishing in-flight requests and messages");
            }
        }
        tokio::join!(api_handle.stop(true), console_handle.stop(true));
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
