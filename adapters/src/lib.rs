//! Everything that touches the outside world: SQL stores (PostgreSQL, SQLite), the
//! embedded transport, the filesystem object store, and the AWS engine (SNS, SQS, S3). Each implements a port from
//! `shared::ports` and passes that port's conformance suite.
//!
//! Architecture invariant: nothing above this crate names a backend type; the wiring
//! picks one from configuration through [`connect_store`], [`open_transport`] and
//! [`open_object_store`] and hands out trait objects.

pub mod aws;
pub mod embedded;
pub mod object_store;
pub mod providers;
pub mod store;
pub mod testing;

use std::sync::Arc;

use shared::config::{ObjectStoreConfig, StoreConfig, TransportConfig};
use shared::ports::{ObjectStore, StoreBackend, Transport};
use shared::topology::Topology;
use shared::{Clock, SystemClock};

pub use store::SqlStore;

/// Connects to the configured store and applies pending migrations.
pub async fn connect_store(config: &StoreConfig) -> Result<Arc<dyn StoreBackend>, store::ConnectError> {
    let store = SqlStore::connect(config).await?;
    store.migrate().await?;
    Ok(Arc::new(store))
}

/// Why a transport could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenTransportError {
    #[error(transparent)]
    Embedded(#[from] embedded::EmbeddedError),
    #[error(transparent)]
    Topology(#[from] aws::provision::ProvisionError),
}

/// Opens the configured transport: the embedded engine provisions itself from
/// `topology`; on AWS, the topology is checked (read-only) and anything missing is an
/// error that names it.
pub async fn open_transport(
    config: &TransportConfig,
    topology: &Topology,
) -> Result<Arc<dyn Transport>, OpenTransportError> {
    match config {
        TransportConfig::Embedded { path } => {
            let clock: Arc<dyn Clock> = Arc::new(SystemClock);
            Ok(Arc::new(embedded::EmbeddedTransport::open(path, topology, clock).await?))
        }
        TransportConfig::Aws(settings) => {
            let sdk = aws::sdk_config(settings).await;
            aws::provision::check(&sdk, topology).await?;
            Ok(Arc::new(aws::AwsTransport::new(&sdk, topology)))
        }
    }
}

/// Opens the configured object store.
pub async fn open_object_store(config: &ObjectStoreConfig) -> Arc<dyn ObjectStore> {
    match config {
        ObjectStoreConfig::Filesystem { root } => Arc::new(object_store::FilesystemObjectStore::new(root.clone())),
        ObjectStoreConfig::S3 { bucket, aws } => {
            Arc::new(aws::S3ObjectStore::new(&aws::sdk_config(aws).await, bucket.clone()))
        }
    }
}

/// Opens the event bus when the deployment has one (AWS engine).
pub async fn open_bus(config: &shared::config::Config) -> Option<Arc<dyn shared::ports::EventBus>> {
    match (&config.bus, &config.transport) {
        (Some(bus), TransportConfig::Aws(settings)) => {
            Some(Arc::new(aws::EventBridgeBus::new(&aws::sdk_config(settings).await, bus.name.clone())))
        }
        _ => None,
    }
}

/// The help desk feedback tickets go to: Zendesk when configured, else the capture
/// provider when the process captures provider calls (`switchyard dev`), else none.
pub fn open_ticket_desk(config: &shared::config::Config) -> Option<Arc<dyn shared::ports::providers::TicketDesk>> {
    if let Some(z) = &config.zendesk {
        return Some(Arc::new(providers::Zendesk::new(z.url.clone(), z.email.clone(), z.api_token.clone())));
    }
    config.capture_dir.as_ref().map(|dir| {
        Arc::new(providers::CaptureProvider::new(dir.clone())) as Arc<dyn shared::ports::providers::TicketDesk>
    })
}

/// Where alerts go: the Discord webhook when configured, else the capture provider
/// when the process captures provider calls, else nowhere.
pub fn open_alert_sink(config: &shared::config::Config) -> Option<Arc<dyn shared::ports::providers::AlertSink>> {
    if let Some(url) = &config.discord_webhook {
        return Some(Arc::new(providers::DiscordWebhook::new(url.clone())));
    }
    config.capture_dir.as_ref().map(|dir| {
        Arc::new(providers::CaptureProvider::new(dir.clone())) as Arc<dyn shared::ports::providers::AlertSink>
    })
}

/// Who invites TestFlight testers: App Store Connect when configured (a key that does
/// not parse is an error at start-up), else the capture provider when the process
/// captures provider calls, else nobody (the TestFlight worker does not start).
pub fn open_beta_testers(
    config: &shared::config::Config,
) -> Result<Option<Arc<dyn shared::ports::providers::BetaTesters>>, providers::app_store_connect::KeyError> {
    if let Some(asc) = &config.testflight.app_store_connect {
        let client =
            providers::AppStoreConnect::new(asc.url.clone(), &asc.key_id, &asc.issuer_id, asc.private_key.expose())?;
        return Ok(Some(Arc::new(client)));
    }
    Ok(config.capture_dir.as_ref().map(|dir| {
        Arc::new(providers::CaptureProvider::new(dir.clone())) as Arc<dyn shared::ports::providers::BetaTesters>
    }))
}

/// The captured provider calls, when this process captures them (`dev`).
pub fn open_captures(config: &shared::config::Config) -> Option<Arc<dyn shared::ports::providers::CapturedCalls>> {
    config.capture_dir.as_ref().map(|dir| {
        Arc::new(providers::CaptureProvider::new(dir.clone())) as Arc<dyn shared::ports::providers::CapturedCalls>
    })
}

/// Where email goes: the configured provider (SendGrid or SES), else the capture
/// provider when the process captures provider calls, else nowhere (the email worker
/// does not start).
pub async fn open_email_sender(
    config: &shared::config::Config,
) -> Option<Arc<dyn shared::ports::providers::EmailSender>> {
    use shared::config::EmailProvider;
    match &config.email.provider {
        EmailProvider::SendGrid { url, api_key } => {
            Some(Arc::new(providers::SendGrid::new(url.clone(), api_key.clone())))
        }
        EmailProvider::Ses(settings) => Some(Arc::new(aws::SesEmailSender::new(&aws::sdk_config(settings).await))),
        EmailProvider::Unconfigured => config.capture_dir.as_ref().map(|dir| {
            Arc::new(providers::CaptureProvider::new(dir.clone())) as Arc<dyn shared::ports::providers::EmailSender>
        }),
    }
}
