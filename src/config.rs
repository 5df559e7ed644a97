//! Layered configuration: compiled-in defaults, then a TOML file, then `SWITCHYARD_*`
//! environment variables, then command-line flags. Validated into typed enums at load.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use shared::config::{
    AccessRequestConfig, AnalyticsConfig, AppStoreConnectConfig, AwsSettings, BusConfig, BusForwarding, Config,
    EmailConfig, EmailProvider, ObjectStoreConfig, PlanLimits, Plans, Secret, StoreConfig, TestflightConfig,
    TransportConfig, ZendeskConfig,
};
use shared::domain::EmailAddress;
use shared::topology::{Environment, InstanceName};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("could not read the config file {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the config file {path} is not valid: {message}")]
    Parse { path: String, message: String },
    #[error("invalid setting `{setting}`: {message}")]
    Invalid { setting: &'static str, message: String },
}

/// Every setting, all optional: one layer of configuration.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Layer {
    pub instance: Option<String>,
    pub environment: Option<String>,
    pub data_dir: Option<PathBuf>,
    /// `postgres` or `sqlite`; defaults to `postgres` when `database_url` is set.
    pub store: Option<String>,
    pub database_url: Option<String>,
    pub database_max_connections: Option<u32>,
    pub sqlite_path: Option<PathBuf>,
    /// `embedded` or `aws`.
    pub transport: Option<String>,
    pub transport_path: Option<PathBuf>,
    /// `filesystem` or `s3`.
    pub objects: Option<String>,
    pub objects_dir: Option<PathBuf>,
    pub s3_bucket: Option<String>,
    /// Overrides the SDK's region chain (`AWS_REGION`, profile).
    pub aws_region: Option<String>,
    /// Overrides `AWS_ENDPOINT_URL` (an AWS-compatible server).
    pub aws_endpoint: Option<String>,
    pub aws_max_attempts: Option<u32>,
    /// `off`, `all` or `matching`: which events also go to the EventBridge bus.
    pub eventbridge: Option<String>,
    /// The bus's name; `{instance}-events` by default.
    pub eventbridge_bus: Option<String>,
    /// Zendesk for feedback tickets: all three or none.
    pub zendesk_url: Option<String>,
    pub zendesk_email: Option<String>,
    pub zendesk_token: Option<String>,
    /// Capture provider calls here when no real provider is configured.
    pub capture_dir: Option<PathBuf>,
    /// The deployment's Discord webhook URL for alerts.
    pub discord_webhook_url: Option<String>,
    pub email_from: Option<String>,
    pub email_rate_per_tenant: Option<u32>,
    pub email_rate: Option<u32>,
    /// `sendgrid` or `ses`; SendGrid when an API key is set.
    pub email_provider: Option<String>,
    pub sendgrid_api_key: Option<String>,
    pub sendgrid_url: Option<String>,
    /// Analytics: write an object per tenant and hour at this many events …
    pub analytics_batch_events: Option<u32>,
    /// … or when its oldest event waited this many seconds.
    pub analytics_batch_seconds: Option<u64>,
    /// App Store Connect API key (TestFlight invitations): key id, issuer id and the
    /// `.p8` private key file; all three or none.
    pub asc_key_id: Option<String>,
    pub asc_issuer_id: Option<String>,
    pub asc_private_key_path: Option<PathBuf>,
    pub asc_url: Option<String>,
    /// App Store Connect requests per hour (its documented limit is 3,600).
    pub testflight_rate_per_hour: Option<u32>,
    /// Where new access requests are emailed.
    pub support_email: Option<String>,
    /// Plans and their per-tenant limits: `free:api=5,email=1,testflight=60;pro:api=200`
    /// (`standard` takes the other settings' values unless named).
    pub plans: Option<String>,
    /// The queue CloudWatch alarms arrive on (from Terraform's monitoring module).
    pub alarms_queue: Option<String>,
    /// The operators' bearer token for the control plane's JSON API.
    pub admin_token: Option<String>,
    /// Pending access requests older than this get a reminder alert, once per
    /// `access_request_remind_every_hours`.
    pub access_request_remind_after_hours: Option<u64>,
    pub access_request_remind_every_hours: Option<u64>,
    pub api_addr: Option<String>,
    pub console_addr: Option<String>,
    pub worker_concurrency: Option<usize>,
    /// Seconds a worker keeps a message while a platform dependency is down.
    pub worker_outage_grace_seconds: Option<u64>,
    /// `at-least-once` (default) or `at-most-once`: whether an interrupted send is sent again.
    pub email_delivery: Option<String>,
    /// Comma-separated hosts tenants' alert webhooks may point at (Discord's by default).
    pub alert_webhook_hosts: Option<String>,
    /// Milliseconds a caller waits for a PostgreSQL connection before a 503.
    pub database_acquire_timeout_ms: Option<u64>,
}

impl Layer {
    /// `top` wins wherever it has a value. The destructuring is exhaustive, so a new
    /// setting cannot be forgotten here.
    pub fn merged(self, top: Layer) -> Layer {
        let Layer {
            instance,
            environment,
            data_dir,
            store,
            database_url,
            database_max_connections,
            sqlite_path,
            transport,
            transport_path,
            objects,
            objects_dir,
            s3_bucket,
            aws_region,
            aws_endpoint,
            aws_max_attempts,
            eventbridge,
            eventbridge_bus,
            zendesk_url,
            zendesk_email,
            zendesk_token,
            capture_dir,
            discord_webhook_url,
            email_from,
            email_rate_per_tenant,
            email_rate,
            email_provider,
            sendgrid_api_key,
            sendgrid_url,
            analytics_batch_events,
            analytics_batch_seconds,
            asc_key_id,
            asc_issuer_id,
            asc_private_key_path,
            asc_url,
            testflight_rate_per_hour,
            support_email,
            admin_token,
            plans,
            alarms_queue,
            access_request_remind_after_hours,
            access_request_remind_every_hours,
            api_addr,
            console_addr,
            worker_concurrency,
            worker_outage_grace_seconds,
            database_acquire_timeout_ms,
            email_delivery,
            alert_webhook_hosts,
        } = top;
        Layer {
            instance: instance.or(self.instance),
            environment: environment.or(self.environment),
            data_dir: data_dir.or(self.data_dir),
            store: store.or(self.store),
            database_url: database_url.or(self.database_url),
            database_max_connections: database_max_connections.or(self.database_max_connections),
            sqlite_path: sqlite_path.or(self.sqlite_path),
            transport: transport.or(self.transport),
            transport_path: transport_path.or(self.transport_path),
            objects: objects.or(self.objects),
            objects_dir: objects_dir.or(self.objects_dir),
            s3_bucket: s3_bucket.or(self.s3_bucket),
            aws_region: aws_region.or(self.aws_region),
            aws_endpoint: aws_endpoint.or(self.aws_endpoint),
            aws_max_attempts: aws_max_attempts.or(self.aws_max_attempts),
            eventbridge: eventbridge.or(self.eventbridge),
            eventbridge_bus: eventbridge_bus.or(self.eventbridge_bus),
            zendesk_url: zendesk_url.or(self.zendesk_url),
            zendesk_email: zendesk_email.or(self.zendesk_email),
            zendesk_token: zendesk_token.or(self.zendesk_token),
            capture_dir: capture_dir.or(self.capture_dir),
            discord_webhook_url: discord_webhook_url.or(self.discord_webhook_url),
            email_from: email_from.or(self.email_from),
            email_rate_per_tenant: email_rate_per_tenant.or(self.email_rate_per_tenant),
            email_rate: email_rate.or(self.email_rate),
            email_provider: email_provider.or(self.email_provider),
            sendgrid_api_key: sendgrid_api_key.or(self.sendgrid_api_key),
            sendgrid_url: sendgrid_url.or(self.sendgrid_url),
            analytics_batch_events: analytics_batch_events.or(self.analytics_batch_events),
            analytics_batch_seconds: analytics_batch_seconds.or(self.analytics_batch_seconds),
            asc_key_id: asc_key_id.or(self.asc_key_id),
            asc_issuer_id: asc_issuer_id.or(self.asc_issuer_id),
            asc_private_key_path: asc_private_key_path.or(self.asc_private_key_path),
            asc_url: asc_url.or(self.asc_url),
            testflight_rate_per_hour: testflight_rate_per_hour.or(self.testflight_rate_per_hour),
            support_email: support_email.or(self.support_email),
            admin_token: admin_token.or(self.admin_token),
            plans: plans.or(self.plans),
            alarms_queue: alarms_queue.or(self.alarms_queue),
            access_request_remind_after_hours: access_request_remind_after_hours
                .or(self.access_request_remind_after_hours),
            access_request_remind_every_hours: access_request_remind_every_hours
                .or(self.access_request_remind_every_hours),
            api_addr: api_addr.or(self.api_addr),
            console_addr: console_addr.or(self.console_addr),
            worker_concurrency: worker_concurrency.or(self.worker_concurrency),
            worker_outage_grace_seconds: worker_outage_grace_seconds.or(self.worker_outage_grace_seconds),
            database_acquire_timeout_ms: database_acquire_timeout_ms.or(self.database_acquire_timeout_ms),
            email_delivery: email_delivery.or(self.email_delivery),
            alert_webhook_hosts: alert_webhook_hosts.or(self.alert_webhook_hosts),
        }
    }

    pub fn from_file(path: &Path) -> Result<Layer, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
        toml::from_str(&text)
            .map_err(|e| ConfigError::Parse { path: path.display().to_string(), message: e.to_string() })
    }

    /// Reads `SWITCHYARD_<SETTING>` variables through `get` (the process environment in
    /// production, a map in tests).
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Layer, ConfigError> {
        let number = |setting: &'static str, var: &str| -> Result<Option<u64>, ConfigError> {
            get(var)
                .map(|v| v.parse::<u64>().map_err(|e| ConfigError::Invalid { setting, message: format!("{var}: {e}") }))
                .transpose()
        };
        Ok(Layer {
            instance: get("SWITCHYARD_INSTANCE"),
            environment: get("SWITCHYARD_ENVIRONMENT"),
            data_dir: get("SWITCHYARD_DATA_DIR").map(PathBuf::from),
            store: get("SWITCHYARD_STORE"),
            database_url: get("SWITCHYARD_DATABASE_URL"),
            database_max_connections: number("database_max_connections", "SWITCHYARD_DATABASE_MAX_CONNECTIONS")?
                .map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
            sqlite_path: get("SWITCHYARD_SQLITE_PATH").map(PathBuf::from),
            transport: get("SWITCHYARD_TRANSPORT"),
            transport_path: get("SWITCHYARD_TRANSPORT_PATH").map(PathBuf::from),
            objects: get("SWITCHYARD_OBJECTS"),
            objects_dir: get("SWITCHYARD_OBJECTS_DIR").map(PathBuf::from),
            s3_bucket: get("SWITCHYARD_S3_BUCKET"),
            aws_region: get("SWITCHYARD_AWS_REGION"),
            aws_endpoint: get("SWITCHYARD_AWS_ENDPOINT"),
            aws_max_attempts: number("aws_max_attempts", "SWITCHYARD_AWS_MAX_ATTEMPTS")?
                .map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
            eventbridge: get("SWITCHYARD_EVENTBRIDGE"),
            eventbridge_bus: get("SWITCHYARD_EVENTBRIDGE_BUS"),
            zendesk_url: get("SWITCHYARD_ZENDESK_URL"),
            zendesk_email: get("SWITCHYARD_ZENDESK_EMAIL"),
            zendesk_token: get("SWITCHYARD_ZENDESK_TOKEN"),
            capture_dir: get("SWITCHYARD_CAPTURE_DIR").map(PathBuf::from),
            discord_webhook_url: get("SWITCHYARD_DISCORD_WEBHOOK_URL"),
            email_from: get("SWITCHYARD_EMAIL_FROM"),
            email_rate_per_tenant: number("email_rate_per_tenant", "SWITCHYARD_EMAIL_RATE_PER_TENANT")?
                .map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
            email_rate: number("email_rate", "SWITCHYARD_EMAIL_RATE")?.map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
            email_provider: get("SWITCHYARD_EMAIL_PROVIDER"),
            sendgrid_api_key: get("SWITCHYARD_SENDGRID_API_KEY"),
            sendgrid_url: get("SWITCHYARD_SENDGRID_URL"),
            analytics_batch_events: number("analytics_batch_events", "SWITCHYARD_ANALYTICS_BATCH_EVENTS")?
                .map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
            analytics_batch_seconds: number("analytics_batch_seconds", "SWITCHYARD_ANALYTICS_BATCH_SECONDS")?,
            asc_key_id: get("SWITCHYARD_ASC_KEY_ID"),
            asc_issuer_id: get("SWITCHYARD_ASC_ISSUER_ID"),
            asc_private_key_path: get("SWITCHYARD_ASC_PRIVATE_KEY_PATH").map(PathBuf::from),
            asc_url: get("SWITCHYARD_ASC_URL"),
            testflight_rate_per_hour: number("testflight_rate_per_hour", "SWITCHYARD_TESTFLIGHT_RATE_PER_HOUR")?
                .map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
            support_email: get("SWITCHYARD_SUPPORT_EMAIL"),
            admin_token: get("SWITCHYARD_ADMIN_TOKEN"),
            plans: get("SWITCHYARD_PLANS"),
            alarms_queue: get("SWITCHYARD_ALARMS_QUEUE"),
            access_request_remind_after_hours: number(
                "access_request_remind_after_hours",
                "SWITCHYARD_ACCESS_REQUEST_REMIND_AFTER_HOURS",
            )?,
            access_request_remind_every_hours: number(
                "access_request_remind_every_hours",
                "SWITCHYARD_ACCESS_REQUEST_REMIND_EVERY_HOURS",
            )?,
            api_addr: get("SWITCHYARD_API_ADDR"),
            console_addr: get("SWITCHYARD_CONSOLE_ADDR"),
            worker_concurrency: number("worker_concurrency", "SWITCHYARD_WORKER_CONCURRENCY")?
                .map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
            worker_outage_grace_seconds: number(
                "worker_outage_grace_seconds",
                "SWITCHYARD_WORKER_OUTAGE_GRACE_SECONDS",
            )?,
            database_acquire_timeout_ms: number(
                "database_acquire_timeout_ms",
                "SWITCHYARD_DATABASE_ACQUIRE_TIMEOUT_MS",
            )?,
            email_delivery: get("SWITCHYARD_EMAIL_DELIVERY"),
            alert_webhook_hosts: get("SWITCHYARD_ALERT_WEBHOOK_HOSTS"),
        })
    }

    /// Validates the merged layers into a [`Config`], filling in defaults.
    pub fn into_config(self) -> Result<Config, ConfigError> {
        let invalid = |setting, message: String| ConfigError::Invalid { setting, message };
        let data_dir = self.data_dir.unwrap_or_else(|| PathBuf::from(".switchyard"));
        let instance =
            InstanceName::parse(self.instance.as_deref().unwrap_or("dev")).map_err(|m| invalid("instance", m))?;
        let environment: Environment =
            self.environment.as_deref().unwrap_or("production").parse().map_err(|m| invalid("environment", m))?;
        let store_kind =
            self.store.unwrap_or_else(|| if self.database_url.is_some() { "postgres".into() } else { "sqlite".into() });
        let store = match store_kind.as_str() {
            "postgres" => StoreConfig::Postgres {
                url: Secret::new(self.database_url.ok_or_else(|| {
                    invalid(
                        "database_url",
                        "the postgres store needs SWITCHYARD_DATABASE_URL (or database_url in the file)".into(),
                    )
                })?),
                max_connections: self.database_max_connections.unwrap_or(16).max(1),
                acquire_timeout: Duration::from_millis(self.database_acquire_timeout_ms.unwrap_or(1_500).max(1)),
            },
            "sqlite" => {
                StoreConfig::Sqlite { path: self.sqlite_path.unwrap_or_else(|| data_dir.join("switchyard.db")) }
            }
            other => return Err(invalid("store", format!("`{other}` is not a store; use postgres or sqlite"))),
        };
        let aws = AwsSettings {
            region: self.aws_region,
            endpoint: self.aws_endpoint,
            max_attempts: self.aws_max_attempts.unwrap_or(3).max(1),
        };
        let transport = match self.transport.as_deref().unwrap_or("embedded") {
            "embedded" => {
                TransportConfig::Embedded { path: self.transport_path.unwrap_or_else(|| data_dir.join("transport.db")) }
            }
            "aws" => TransportConfig::Aws(aws.clone()),
            other => return Err(invalid("transport", format!("`{other}` is not a transport; use embedded or aws"))),
        };
        let objects = match self.objects.as_deref().unwrap_or("filesystem") {
            "filesystem" => {
                ObjectStoreConfig::Filesystem { root: self.objects_dir.unwrap_or_else(|| data_dir.join("objects")) }
            }
            "s3" => ObjectStoreConfig::S3 {
                bucket: self.s3_bucket.ok_or_else(|| {
                    invalid(
                        "s3_bucket",
                        "the s3 object store needs SWITCHYARD_S3_BUCKET (or s3_bucket in the file)".into(),
                    )
                })?,
                aws: aws.clone(),
            },
            other => return Err(invalid("objects", format!("`{other}` is not an object store; use filesystem or s3"))),
        };
        let forwarding = match self.eventbridge.as_deref().unwrap_or("off") {
            "off" => None,
            "all" => Some(BusForwarding::All),
            "matching" => Some(BusForwarding::Matching),
            other => return Err(invalid("eventbridge", format!("`{other}` is not one of off, all, matching"))),
        };
        let bus = match (forwarding, &transport) {
            (None, _) => None,
            (Some(forwarding), TransportConfig::Aws(_)) => Some(BusConfig {
                name: self.eventbridge_bus.unwrap_or_else(|| format!("{}-events", instance.as_str())),
                forwarding,
            }),
            (Some(_), TransportConfig::Embedded { .. }) => {
                return Err(invalid("eventbridge", "the EventBridge bus needs the aws transport".into()));
            }
        };
        let zendesk = match (self.zendesk_url, self.zendesk_email, self.zendesk_token) {
            (None, None, None) => None,
            (Some(url), Some(email), Some(token)) => Some(ZendeskConfig { url, email, api_token: Secret::new(token) }),
            _ => {
                return Err(invalid(
                    "zendesk",
                    "set all of SWITCHYARD_ZENDESK_URL, SWITCHYARD_ZENDESK_EMAIL and SWITCHYARD_ZENDESK_TOKEN, or none"
                        .into(),
                ))
            }
        };
        let sendgrid_url = self.sendgrid_url.unwrap_or_else(|| "https://api.sendgrid.com".into());
        let email_provider = match (self.email_provider.as_deref(), self.sendgrid_api_key) {
            (None, None) => EmailProvider::Unconfigured,
            (None | Some("sendgrid"), Some(key)) => {
                EmailProvider::SendGrid { url: sendgrid_url, api_key: Secret::new(key) }
            }
            (Some("sendgrid"), None) => {
                return Err(invalid(
                    "sendgrid_api_key",
                    "the sendgrid email provider needs SWITCHYARD_SENDGRID_API_KEY".into(),
                ))
            }
            (Some("ses"), _) => EmailProvider::Ses(aws.clone()),
            (Some(other), _) => {
                return Err(invalid(
                    "email_provider",
                    format!("`{other}` is not an email provider; use sendgrid or ses"),
                ))
            }
        };
        let email = EmailConfig {
            from: EmailAddress::parse(self.email_from.as_deref().unwrap_or("no-reply@switchyard.localhost"))
                .map_err(|m| invalid("email_from", m))?,
            per_tenant_rate: self.email_rate_per_tenant.unwrap_or(10).max(1),
            provider_rate: self.email_rate.unwrap_or(100).max(1),
            provider: email_provider,
            delivery: self
                .email_delivery
                .as_deref()
                .map(str::parse)
                .transpose()
                .map_err(|m| invalid("email_delivery", m))?
                .unwrap_or_default(),
        };
        let hours = |h: u64| std::time::Duration::from_secs(h.max(1).saturating_mul(3600));
        let access_requests = AccessRequestConfig {
            support_email: self
                .support_email
                .as_deref()
                .map(EmailAddress::parse)
                .transpose()
                .map_err(|m| invalid("support_email", m))?,
            remind_after: hours(self.access_request_remind_after_hours.unwrap_or(24)),
            remind_every: hours(self.access_request_remind_every_hours.unwrap_or(24)),
        };
        let app_store_connect = match (self.asc_key_id, self.asc_issuer_id, self.asc_private_key_path) {
            (None, None, None) => None,
            (Some(key_id), Some(issuer_id), Some(path)) => {
                let pem = std::fs::read_to_string(&path).map_err(|e| {
                    invalid("asc_private_key_path", format!("cannot read {}: {e}", path.display()))
                })?;
                Some(AppStoreConnectConfig {
                    url: self.asc_url.unwrap_or_else(|| "https://api.appstoreconnect.apple.com".into()),
                    key_id,
                    issuer_id,
                    private_key: Secret::new(pem),
                })
            }
            _ => {
                return Err(invalid(
                    "app_store_connect",
                    "set all of SWITCHYARD_ASC_KEY_ID, SWITCHYARD_ASC_ISSUER_ID and SWITCHYARD_ASC_PRIVATE_KEY_PATH, or none"
                        .into(),
                ))
            }
        };
        let testflight = TestflightConfig {
            app_store_connect,
            rate_per_hour: self.testflight_rate_per_hour.unwrap_or(3_600).max(1),
        };
        let standard = PlanLimits {
            email_per_second: email.per_tenant_rate,
            testflight_per_hour: testflight.rate_per_hour,
            ..PlanLimits::default()
        };
        let plans =
            Plans::parse(self.plans.as_deref().unwrap_or_default(), standard).map_err(|m| invalid("plans", m))?;
        let analytics = AnalyticsConfig {
            batch_events: self.analytics_batch_events.unwrap_or(500).clamp(1, 10_000),
            batch_age: std::time::Duration::from_secs(self.analytics_batch_seconds.unwrap_or(60).max(1)),
        };
        let addr = |setting: &'static str, value: Option<String>, default: &str| -> Result<SocketAddr, ConfigError> {
            let text = value.unwrap_or_else(|| default.to_owned());
            text.parse().map_err(|e| invalid(setting, format!("`{text}` is not an address like 127.0.0.1:8080 ({e})")))
        };
        let mut webhooks = shared::domain::WebhookPolicy::default();
        if let Some(hosts) = &self.alert_webhook_hosts {
            webhooks.allowed_hosts =
                hosts.split(',').map(|h| h.trim().to_ascii_lowercase()).filter(|h| !h.is_empty()).collect();
            if webhooks.allowed_hosts.is_empty() {
                return Err(invalid("alert_webhook_hosts", "names no host".into()));
            }
        }
        Ok(Config {
            instance,
            environment,
            store,
            transport,
            objects,
            api_addr: addr("api_addr", self.api_addr, "127.0.0.1:8080")?,
            console_addr: addr("console_addr", self.console_addr, "127.0.0.1:8081")?,
            worker_concurrency: self.worker_concurrency.unwrap_or(8).max(1),
            outage_grace: Duration::from_secs(self.worker_outage_grace_seconds.unwrap_or(60 * 60)),
            report_interval: Duration::from_secs(15),
            bus,
            zendesk,
            capture_dir: self.capture_dir,
            discord_webhook: self.discord_webhook_url.map(Secret::new),
            admin_token: self.admin_token.map(Secret::new),
            webhooks,
            alarms_queue: self.alarms_queue,
            access_requests,
            email,
            analytics,
            testflight,
            plans,
        })
    }
}

/// Loads the configuration: defaults, then `file` (if any), then the process
/// environment, then `flags`.
pub fn load(file: Option<&Path>, flags: Layer) -> Result<Config, ConfigError> {
    load_over(Layer::default(), file, flags)
}

/// Like [`load`], with `base` in place of the compiled-in defaults where it has values
/// (`dev` writes analytics objects sooner, for example); the file, the environment and
/// the flags still win.
pub fn load_over(base: Layer, file: Option<&Path>, flags: Layer) -> Result<Config, ConfigError> {
    let mut layer = base;
    if let Some(path) = file {
        layer = layer.merged(Layer::from_file(path)?);
    }
    layer = layer.merged(Layer::from_env(|name| std::env::var(name).ok())?);
    layer.merged(flags).into_config()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn defaults_run_everything_embedded_under_the_data_dir() {
        let config = Layer::default().into_config().unwrap();
        assert_eq!(config.store, StoreConfig::Sqlite { path: PathBuf::from(".switchyard/switchyard.db") });
        assert_eq!(config.transport, TransportConfig::Embedded { path: PathBuf::from(".switchyard/transport.db") });
        assert_eq!(config.objects, ObjectStoreConfig::Filesystem { root: PathBuf::from(".switchyard/objects") });
        assert_eq!(config.api_addr.to_string(), "127.0.0.1:8080");
        assert_eq!(config.console_addr.to_string(), "127.0.0.1:8081");
        assert_eq!(config.instance.as_str(), "dev");
    }

    #[test]
    fn environment_beats_file_and_flags_beat_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("switchyard.toml");
        std::fs::write(&file, "instance = \"from-file\"\napi_addr = \"127.0.0.1:9000\"\ndata_dir = \"/srv/sy\"\n")
            .unwrap();
        let layered = Layer::default()
            .merged(Layer::from_file(&file).unwrap())
            .merged(Layer::from_env(env(&[("SWITCHYARD_INSTANCE", "from-env")])).unwrap())
            .merged(Layer { console_addr: Some("127.0.0.1:9001".into()), ..Layer::default() });
        let config = layered.into_config().unwrap();
        assert_eq!(config.instance.as_str(), "from-env");
        assert_eq!(config.api_addr.to_string(), "127.0.0.1:9000");
        assert_eq!(config.console_addr.to_string(), "127.0.0.1:9001");
        assert_eq!(config.store, StoreConfig::Sqlite { path: PathBuf::from("/srv/sy/switchyard.db") });
    }

    #[test]
    fn email_delivery_is_at_least_once_unless_set() {
        let config = |vars: &[(&str, &str)]| Layer::from_env(env(vars)).unwrap().into_config();
        assert_eq!(config(&[]).unwrap().email.delivery, shared::config::EmailDelivery::AtLeastOnce);
        let set = config(&[("SWITCHYARD_EMAIL_DELIVERY", "at-most-once")]).unwrap();
        assert_eq!(set.email.delivery, shared::config::EmailDelivery::AtMostOnce);
        let error = config(&[("SWITCHYARD_EMAIL_DELIVERY", "twice")]).unwrap_err().to_string();
        assert!(error.contains("at-least-once"), "{error}");
    }

    #[test]
    fn a_database_url_selects_postgres() {
        let layer = Layer::from_env(env(&[("SWITCHYARD_DATABASE_URL", "postgres://db/app")])).unwrap();
        match layer.into_config().unwrap().store {
            StoreConfig::Postgres { url, max_connections, acquire_timeout } => {
                assert_eq!(url.expose(), "postgres://db/app");
                assert_eq!(max_connections, 16);
                assert_eq!(acquire_timeout, Duration::from_millis(1500), "fails fast by default");
            }
            other => panic!("expected postgres, got {other:?}"),
        }
    }

    #[test]
    fn the_aws_engine_is_chosen_by_configuration() {
        let layer = Layer::from_env(env(&[
            ("SWITCHYARD_TRANSPORT", "aws"),
            ("SWITCHYARD_OBJECTS", "s3"),
            ("SWITCHYARD_S3_BUCKET", "acme-results"),
            ("SWITCHYARD_AWS_ENDPOINT", "http://127.0.0.1:5000"),
            ("SWITCHYARD_AWS_REGION", "eu-west-1"),
        ]))
        .unwrap();
        let config = Layer::default().merged(layer).into_config().unwrap();
        let aws = AwsSettings {
            region: Some("eu-west-1".into()),
            endpoint: Some("http://127.0.0.1:5000".into()),
            max_attempts: 3,
        };
        assert_eq!(config.transport, TransportConfig::Aws(aws.clone()));
        assert_eq!(config.objects, ObjectStoreConfig::S3 { bucket: "acme-results".into(), aws });
        assert_eq!(config.bus, None, "no bus unless asked for");
        let ses =
            Layer { email_provider: Some("ses".into()), aws_region: Some("eu-west-1".into()), ..Layer::default() }
                .into_config()
                .unwrap();
        assert!(
            matches!(ses.email.provider, EmailProvider::Ses(AwsSettings { region: Some(ref r), .. }) if r == "eu-west-1")
        );
    }

    #[test]
    fn the_event_bus_is_opt_in_and_needs_aws() {
        let layer =
            Layer::from_env(env(&[("SWITCHYARD_TRANSPORT", "aws"), ("SWITCHYARD_EVENTBRIDGE", "matching")])).unwrap();
        let config = Layer::default().merged(layer).into_config().unwrap();
        assert_eq!(config.bus, Some(BusConfig { name: "dev-events".into(), forwarding: BusForwarding::Matching }));
        assert_eq!(config.topology().unwrap().bus.as_deref(), Some("dev-events"));
        let embedded = Layer { eventbridge: Some("all".into()), ..Layer::default() }.into_config().unwrap_err();
        assert!(embedded.to_string().contains("aws transport"), "{embedded}");
        let bad = Layer { eventbridge: Some("some".into()), ..Layer::default() }.into_config().unwrap_err();
        assert!(bad.to_string().contains("eventbridge"), "{bad}");
    }

    #[test]
    fn bad_values_are_named() {
        let cases = [
            (Layer { store: Some("mysql".into()), ..Layer::default() }, "store"),
            (Layer { store: Some("postgres".into()), ..Layer::default() }, "database_url"),
            (Layer { transport: Some("kafka".into()), ..Layer::default() }, "transport"),
            (Layer { objects: Some("s3".into()), ..Layer::default() }, "s3_bucket"),
            (Layer { objects: Some("gcs".into()), ..Layer::default() }, "objects"),
            (Layer { zendesk_url: Some("https://acme.zendesk.com".into()), ..Layer::default() }, "zendesk"),
            (Layer { email_provider: Some("sendgrid".into()), ..Layer::default() }, "sendgrid_api_key"),
            (Layer { email_provider: Some("mailgun".into()), ..Layer::default() }, "email_provider"),
            (Layer { api_addr: Some("localhost".into()), ..Layer::default() }, "api_addr"),
            (Layer { instance: Some("Bad Name".into()), ..Layer::default() }, "instance"),
            (Layer { environment: Some("qa".into()), ..Layer::default() }, "environment"),
            (Layer { asc_key_id: Some("KEY".into()), ..Layer::default() }, "app_store_connect"),
            (
                Layer {
                    asc_key_id: Some("KEY".into()),
                    asc_issuer_id: Some("issuer".into()),
                    asc_private_key_path: Some("/nonexistent/AuthKey.p8".into()),
                    ..Layer::default()
                },
                "asc_private_key_path",
            ),
            (Layer { support_email: Some("support".into()), ..Layer::default() }, "support_email"),
            (Layer { plans: Some("free:sms=1".into()), ..Layer::default() }, "plans"),
        ];
        for (layer, setting) in cases {
            let error = layer.into_config().unwrap_err();
            assert!(error.to_string().contains(setting), "{error}");
        }
        assert!(Layer::from_env(env(&[("SWITCHYARD_WORKER_CONCURRENCY", "many")])).is_err());
    }

    #[test]
    fn a_base_layer_sits_under_the_file() {
        let base = || Layer { analytics_batch_seconds: Some(5), ..Layer::default() };
        assert_eq!(load_over(base(), None, Layer::default()).unwrap().analytics.batch_age.as_secs(), 5);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("switchyard.toml");
        std::fs::write(&file, "analytics_batch_seconds = 30\n").unwrap();
        assert_eq!(load_over(base(), Some(&file), Layer::default()).unwrap().analytics.batch_age.as_secs(), 30);
        assert_eq!(load(None, Layer::default()).unwrap().analytics.batch_age.as_secs(), 60, "the compiled-in default");
    }

    #[test]
    fn flows_read_their_settings_from_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("AuthKey.p8");
        std::fs::write(&key, "-----BEGIN PRIVATE KEY-----\n…\n-----END PRIVATE KEY-----\n").unwrap();
        let key = key.display().to_string();
        let layer = Layer::from_env(env(&[
            ("SWITCHYARD_ANALYTICS_BATCH_EVENTS", "100"),
            ("SWITCHYARD_ANALYTICS_BATCH_SECONDS", "5"),
            ("SWITCHYARD_ASC_KEY_ID", "KEY123"),
            ("SWITCHYARD_ASC_ISSUER_ID", "issuer"),
            ("SWITCHYARD_ASC_PRIVATE_KEY_PATH", &key),
            ("SWITCHYARD_TESTFLIGHT_RATE_PER_HOUR", "1800"),
            ("SWITCHYARD_SUPPORT_EMAIL", "support@acme.example"),
            ("SWITCHYARD_ADMIN_TOKEN", "adm"),
            ("SWITCHYARD_ACCESS_REQUEST_REMIND_AFTER_HOURS", "48"),
        ]))
        .unwrap();
        let config = layer.into_config().unwrap();
        assert_eq!((config.analytics.batch_events, config.analytics.batch_age.as_secs()), (100, 5));
        let asc = config.testflight.app_store_connect.expect("App Store Connect");
        assert_eq!((asc.key_id.as_str(), asc.url.as_str()), ("KEY123", "https://api.appstoreconnect.apple.com"));
        assert!(asc.private_key.expose().contains("BEGIN PRIVATE KEY"));
        assert_eq!(config.testflight.rate_per_hour, 1800);
        assert_eq!(
            config.access_requests.support_email.map(|e| e.as_str().to_owned()).as_deref(),
            Some("support@acme.example")
        );
        assert_eq!(config.access_requests.remind_after.as_secs(), 48 * 3600);
        assert_eq!(config.admin_token.map(|t| t.expose().to_owned()).as_deref(), Some("adm"));
    }

    #[test]
    fn unknown_file_settings_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, "databse_url = \"typo\"\n").unwrap();
        let error = Layer::from_file(&file).unwrap_err();
        assert!(error.to_string().contains("databse_url"), "{error}");
    }
}
