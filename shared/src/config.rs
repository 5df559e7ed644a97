//! Typed configuration, validated at load time (the loader lives in the CLI).

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::domain::PlanName;
use crate::pattern::PatternError;
use crate::topology::{Environment, InstanceName, Topology};

/// Message groups a worker handles at once unless configured: a handler mostly waits
/// (on the store, the object store, a provider), and the store's group commit turns
/// many finishing handlers into one transaction, so more in flight is more done. The
/// providers' rate limits bound the calls whatever this is.
pub const DEFAULT_WORKER_CONCURRENCY: usize = 32;
/// A secret value (database URL with a password, API keys). Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// Where the source of truth lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    /// `acquire_timeout`: how long a caller waits for a pooled connection before the
    /// store answers `Unavailable` (the API's 503 comes no later than this).
    Postgres {
        url: Secret,
        max_connections: u32,
        acquire_timeout: Duration,
    },
    Sqlite {
        path: PathBuf,
    },
}

/// How to reach AWS (or an AWS-compatible server). Unset values come from the SDK's
/// standard chain (`AWS_REGION`, `AWS_ENDPOINT_URL`, profiles, instance metadata).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AwsSettings {
    pub region: Option<String>,
    pub endpoint: Option<String>,
    /// Attempts per call, including the first (the SDK retries throttling and 5xx
    /// with exponential backoff).
    pub max_attempts: u32,
}

/// Which transport carries events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportConfig {
    /// The embedded engine: a SQLite file with the FIFO topic/queue semantics.
    Embedded { path: PathBuf },
    /// SNS FIFO topics and SQS FIFO queues.
    Aws(AwsSettings),
}

/// Where result objects are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectStoreConfig {
    Filesystem { root: PathBuf },
    S3 { bucket: String, aws: AwsSettings },
}

/// Which events the relay also puts on the event bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusForwarding {
    /// Every event.
    All,
    /// Only events that at least one of the bus's rules matches (the project's own
    /// matcher decides), which saves the cost of events nobody routes.
    Matching,
}

/// The EventBridge bus, when the deployment has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusConfig {
    pub name: String,
    pub forwarding: BusForwarding,
}

/// The Zendesk account feedback tickets go to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZendeskConfig {
    /// `https://<subdomain>.zendesk.com`.
    pub url: String,
    /// The agent the API token belongs to.
    pub email: String,
    pub api_token: Secret,
}

/// Outgoing email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailConfig {
    pub from: crate::domain::EmailAddress,
    /// Sends per second per tenant, and in all to the provider.
    pub per_tenant_rate: u32,
    pub provider_rate: u32,
    pub provider: EmailProvider,
    pub delivery: EmailDelivery,
}

/// What the email worker does with a send an earlier attempt started and never
/// recorded (its process died while calling the provider).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EmailDelivery {
    /// Send it again (the default): nothing is lost; a rare duplicate carries the same
    /// event id in the provider's records (SendGrid `custom_args`, SES message tags).
    #[default]
    AtLeastOnce,
    /// Record it `failed` instead: never a duplicate, sometimes an email not sent.
    AtMostOnce,
}

impl std::str::FromStr for EmailDelivery {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "at-least-once" => Ok(Self::AtLeastOnce),
            "at-most-once" => Ok(Self::AtMostOnce),
            other => Err(format!("`{other}` is not a delivery; use at-least-once or at-most-once")),
        }
    }
}

/// Which provider sends email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmailProvider {
    /// None: captured under `dev`, otherwise the email worker does not start.
    Unconfigured,
    SendGrid {
        url: String,
        api_key: Secret,
    },
    /// Amazon SES v2, with the deployment's AWS settings.
    Ses(AwsSettings),
}

impl EmailConfig {
    /// No provider, a placeholder sender, default limits (tests and tools).
    pub fn unconfigured() -> Self {
        Self {
            from: crate::domain::EmailAddress::parse("no-reply@switchyard.localhost")
                .expect("a valid constant address"),
            per_tenant_rate: 10,
            provider_rate: 100,
            provider: EmailProvider::Unconfigured,
            delivery: EmailDelivery::AtLeastOnce,
        }
    }
}

/// How the analytics worker batches events into objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnalyticsConfig {
    /// An object is written once a tenant's hour holds this many staged events …
    pub batch_events: u32,
    /// … or once its oldest staged event has waited this long.
    pub batch_age: std::time::Duration,
}

impl Default for AnalyticsConfig {
    fn default() -> Self {
        Self { batch_events: 500, batch_age: std::time::Duration::from_secs(60) }
    }
}

/// What operators' tools do with dead letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeadLetterConfig {
    /// A redrive job's rate when the operator names none (messages a minute; never
    /// faster than the queue's worker may call its providers).
    pub redrive_rate_per_minute: u32,
    /// How long purged dead letters stay restorable.
    pub retention: std::time::Duration,
}

impl Default for DeadLetterConfig {
    fn default() -> Self {
        Self { redrive_rate_per_minute: 600, retention: std::time::Duration::from_secs(7 * 24 * 3_600) }
    }
}

/// Access requests: who hears of new ones, and when pending ones are brought up again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRequestConfig {
    /// New requests are emailed here (none: only the Discord alert).
    pub support_email: Option<crate::domain::EmailAddress>,
    /// A pending request this old gets a reminder alert …
    pub remind_after: std::time::Duration,
    /// … and another one each period while it stays pending.
    pub remind_every: std::time::Duration,
}

impl Default for AccessRequestConfig {
    fn default() -> Self {
        let day = std::time::Duration::from_secs(24 * 3600);
        Self { support_email: None, remind_after: day, remind_every: day }
    }
}

/// An App Store Connect API key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppStoreConnectConfig {
    pub url: String,
    pub key_id: String,
    pub issuer_id: String,
    /// The `.p8` file's contents (PKCS#8 PEM).
    pub private_key: Secret,
}

/// TestFlight invitations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestflightConfig {
    /// None: captured under `dev`, otherwise the TestFlight worker does not start.
    pub app_store_connect: Option<AppStoreConnectConfig>,
    /// App Store Connect calls per hour, for the whole deployment.
    pub rate_per_hour: u32,
}

impl Default for TestflightConfig {
    fn default() -> Self {
        Self { app_store_connect: None, rate_per_hour: 3_600 }
    }
}

/// Rate limits of one plan, per tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanLimits {
    /// API requests per second.
    pub api_per_second: u32,
    /// Emails sent per second.
    pub email_per_second: u32,
    /// TestFlight invitations per hour.
    pub testflight_per_hour: u32,
}

impl Default for PlanLimits {
    fn default() -> Self {
        Self { api_per_second: 1_000, email_per_second: 10, testflight_per_hour: 3_600 }
    }
}

/// The deployment's plans: `standard` (every tenant starts on it) and any others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plans {
    standard: PlanLimits,
    others: std::collections::BTreeMap<PlanName, PlanLimits>,
}

impl Plans {
    /// `standard` with `limits`, plus the plans of `spec`:
    /// `free:api=5,email=1,testflight=60;pro:api=200` (unset limits are standard's).
    pub fn parse(spec: &str, standard: PlanLimits) -> Result<Self, String> {
        let mut plans = Self::single(standard);
        for entry in spec.split(';').map(str::trim).filter(|e| !e.is_empty()) {
            let (name, limits) = entry.split_once(':').unwrap_or((entry, ""));
            let name = PlanName::parse(name.trim())?;
            let mut plan = plans.limits(&name);
            for pair in limits.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                let (key, value) =
                    pair.split_once('=').ok_or_else(|| format!("`{pair}` in plan {name} is not key=value"))?;
                let value: u32 = value
                    .trim()
                    .parse()
                    .ok()
                    .filter(|v| *v > 0)
                    .ok_or_else(|| format!("`{pair}` in plan {name} needs a positive number"))?;
                match key.trim() {
                    "api" => plan.api_per_second = value,
                    "email" => plan.email_per_second = value,
                    "testflight" => plan.testflight_per_hour = value,
                    other => return Err(format!("`{other}` in plan {name} is not a limit (api, email, testflight)")),
                }
            }
            if name == PlanName::standard() {
                plans.standard = plan;
            } else {
                plans.others.insert(name, plan);
            }
        }
        Ok(plans)
    }

    /// One plan: standard's limits for every tenant.
    pub fn single(standard: PlanLimits) -> Self {
        Self { standard, others: std::collections::BTreeMap::new() }
    }

    /// A plan's limits; standard's for a plan the configuration does not know.
    pub fn limits(&self, plan: &PlanName) -> PlanLimits {
        self.others.get(plan).copied().unwrap_or(self.standard)
    }

    pub fn contains(&self, plan: &PlanName) -> bool {
        *plan == PlanName::standard() || self.others.contains_key(plan)
    }

    /// Every plan with its limits, standard first.
    pub fn iter(&self) -> impl Iterator<Item = (PlanName, PlanLimits)> + '_ {
        std::iter::once((PlanName::standard(), self.standard)).chain(self.others.iter().map(|(n, l)| (n.clone(), *l)))
    }
}

impl Default for Plans {
    fn default() -> Self {
        Self::single(PlanLimits::default())
    }
}

/// The whole runtime configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub instance: InstanceName,
    pub environment: Environment,
    pub store: StoreConfig,
    pub transport: TransportConfig,
    pub objects: ObjectStoreConfig,
    pub api_addr: SocketAddr,
    pub console_addr: SocketAddr,
    /// How many message groups a worker processes at once
    /// ([`DEFAULT_WORKER_CONCURRENCY`] unless set).
    pub worker_concurrency: usize,
    /// How long a worker keeps a message whose handler finds the store, the object
    /// store or the transport unavailable, without spending its attempts.
    pub outage_grace: Duration,
    /// How often each process reports itself to the store (worker counts, and the live
    /// processes a role's limits are divided among).
    pub report_interval: Duration,
    /// The event bus (AWS engine only).
    pub bus: Option<BusConfig>,
    /// Help-desk tickets for feedback; none when unset.
    pub zendesk: Option<ZendeskConfig>,
    pub email: EmailConfig,
    pub analytics: AnalyticsConfig,
    pub testflight: TestflightConfig,
    /// Rate limits per plan.
    pub plans: Plans,
    /// The deployment's Discord webhook for alerts.
    pub discord_webhook: Option<Secret>,
    /// The queue CloudWatch alarms arrive on (`serve alarms` forwards them to Discord).
    pub alarms_queue: Option<String>,
    /// Operators' bearer token for the control plane's JSON API; none refuses every call.
    pub admin_token: Option<Secret>,
    /// Which URLs tenants' alert webhooks may have.
    pub webhooks: crate::domain::WebhookPolicy,
    pub access_requests: AccessRequestConfig,
    pub dead_letters: DeadLetterConfig,
    /// Where the capture provider stores provider calls that have no real provider
    /// configured (`switchyard dev`); none in production.
    pub capture_dir: Option<PathBuf>,
    /// The directory local state lives under by default (`.switchyard`): the embedded
    /// engine's files, and under `dev` the captures and `dev-credentials.json`.
    pub data_dir: PathBuf,
}

impl Config {
    /// The given backends with every optional part off and default limits, listening
    /// on free loopback ports (tests, benchmarks and tools adjust the fields they need).
    pub fn minimal(
        topology: &Topology,
        store: StoreConfig,
        transport: TransportConfig,
        objects: ObjectStoreConfig,
    ) -> Self {
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        Self {
            instance: topology.instance.clone(),
            environment: topology.environment,
            store,
            transport,
            objects,
            api_addr: loopback,
            console_addr: loopback,
            worker_concurrency: DEFAULT_WORKER_CONCURRENCY,
            outage_grace: Duration::from_secs(60 * 60),
            report_interval: Duration::from_secs(15),
            bus: None,
            zendesk: None,
            email: EmailConfig::unconfigured(),
            analytics: AnalyticsConfig::default(),
            testflight: TestflightConfig::default(),
            plans: Plans::default(),
            discord_webhook: None,
            admin_token: None,
            webhooks: crate::domain::WebhookPolicy::default(),
            alarms_queue: None,
            access_requests: AccessRequestConfig::default(),
            dead_letters: DeadLetterConfig::default(),
            capture_dir: None,
            data_dir: PathBuf::from(".switchyard"),
        }
    }

    /// The deployment's topology.
    pub fn topology(&self) -> Result<Topology, PatternError> {
        let mut topology = Topology::new(self.instance.clone(), self.environment)?;
        topology.bus = self.bus.as_ref().map(|b| b.name.clone());
        Ok(topology)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_override_standard_limits() {
        let standard = PlanLimits::default();
        let plans = Plans::parse("free: api=5, email=1 ; pro:api=200,testflight=7200", standard).unwrap();
        let free = plans.limits(&PlanName::parse("free").unwrap());
        assert_eq!((free.api_per_second, free.email_per_second, free.testflight_per_hour), (5, 1, 3_600));
        assert_eq!(plans.limits(&PlanName::parse("pro").unwrap()).testflight_per_hour, 7_200);
        assert_eq!(plans.limits(&PlanName::parse("unknown").unwrap()), standard);
        assert!(plans.contains(&PlanName::standard()));
        assert_eq!(plans.iter().count(), 3, "standard, free and pro");
        let renamed = Plans::parse("standard:api=50", standard).unwrap();
        assert_eq!(renamed.limits(&PlanName::standard()).api_per_second, 50, "standard can be named too");
        for bad in ["Free:api=1", "free:api", "free:api=0", "free:sms=3"] {
            assert!(Plans::parse(bad, standard).is_err(), "{bad}");
        }
    }

    #[test]
    fn secrets_are_not_printed() {
        let secret = Secret::new("postgres://user:hunter2@db/app");
        assert!(!format!("{secret:?}").contains("hunter2"));
        assert_eq!(secret.expose(), "postgres://user:hunter2@db/app");
    }
}
