//! Layered configuration: compiled-in defaults, then a TOML file, then `SWITCHYARD_*`
//! environment variables, then command-line flags. Validated into typed enums at load.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

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

/// Every setting, all optional: one layer of configuration. This struct is the one
/// place a setting is named: the file reads it by its name, the environment as
/// `SWITCHYARD_<NAME>` (both through serde), and layers merge generically.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Layer {
    pub instance: Option<String>,
    pub environment: Option<String>,
    pub data_dir: Option<PathBuf>,
    /// `postgres` or `sqlite`; defaults to `postgres` when `database_url` is set.
    pub store: Option<String>,
    pub database_url: Option<String>,
    #[serde(default, deserialize_with = "number")]
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
    #[serde(default, deserialize_with = "number")]
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
    #[serde(default, deserialize_with = "number")]
    pub email_rate_per_tenant: Option<u32>,
    #[serde(default, deserialize_with = "number")]
    pub email_rate: Option<u32>,
    /// `sendgrid` or `ses`; SendGrid when an API key is set.
    pub email_provider: Option<String>,
    pub sendgrid_api_key: Option<String>,
    pub sendgrid_url: Option<String>,
    /// Analytics: write an object per tenant and hour at this many events …
    #[serde(default, deserialize_with = "number")]
    pub analytics_batch_events: Option<u32>,
    /// … or when its oldest event waited this many seconds.
    #[serde(default, deserialize_with = "number")]
    pub analytics_batch_seconds: Option<u64>,
    /// App Store Connect API key (TestFlight invitations): key id, issuer id and the
    /// `.p8` private key file; all three or none.
    pub asc_key_id: Option<String>,
    pub asc_issuer_id: Option<String>,
    pub asc_private_key_path: Option<PathBuf>,
    pub asc_url: Option<String>,
    /// App Store Connect requests per hour (its documented limit is 3,600).
    #[serde(default, deserialize_with = "number")]
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
    #[serde(default, deserialize_with = "number")]
    pub access_request_remind_after_hours: Option<u64>,
    #[serde(default, deserialize_with = "number")]
    pub access_request_remind_every_hours: Option<u64>,
    pub api_addr: Option<String>,
    pub console_addr: Option<String>,
    #[serde(default, deserialize_with = "number")]
    pub worker_concurrency: Option<usize>,
    /// A redrive job's rate when the operator names none, in messages a minute.
    #[serde(default, deserialize_with = "number")]
    pub redrive_rate_per_minute: Option<u32>,
    /// Days purged dead letters stay restorable.
    #[serde(default, deserialize_with = "number")]
    pub dead_letter_retention_days: Option<u64>,
    /// Seconds a worker keeps a message while a platform dependency is down.
    #[serde(default, deserialize_with = "number")]
    pub worker_outage_grace_seconds: Option<u64>,
    /// `at-least-once` (default) or `at-most-once`: whether an interrupted send is sent again.
    pub email_delivery: Option<String>,
    /// Comma-separated hosts tenants' alert webhooks may point at (Discord's by default).
    pub alert_webhook_hosts: Option<String>,
    /// Milliseconds a caller waits for a PostgreSQL connection before a 503.
    #[serde(default, deserialize_with = "number")]
    pub database_acquire_timeout_ms: Option<u64>,
}

impl Layer {
    /// The names of the settings (the fields serde reads), from the struct itself.
    pub fn settings() -> &'static [&'static str] {
        setting_names()
    }

    /// `top` wins wherever it has a value.
    pub fn merged(self, top: Layer) -> Result<Layer, ConfigError> {
        let merge_error =
            |e: serde_json::Error| ConfigError::Parse { path: "the merged layers".into(), message: e.to_string() };
        let (mut merged, top) = match (serde_json::to_value(&self), serde_json::to_value(&top)) {
            (Ok(Value::Object(base)), Ok(Value::Object(top))) => (base, top),
            (Err(e), _) | (_, Err(e)) => return Err(merge_error(e)),
            _ => return Ok(top),
        };
        merged.extend(top.into_iter().filter(|(_, value)| !value.is_null()));
        serde_json::from_value(Value::Object(merged)).map_err(merge_error)
    }

    pub fn from_file(path: &Path) -> Result<Layer, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
        toml::from_str(&text)
            .map_err(|e| ConfigError::Parse { path: path.display().to_string(), message: e.to_string() })
    }

    /// Reads `SWITCHYARD_<SETTING>` variables through `get` (the process environment in
    /// production, a map in tests). A value that does not fit its setting is an error
    /// naming the setting.
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Layer, ConfigError> {
        let mut layer = Map::new();
        for &setting in setting_names() {
            let var = format!("SWITCHYARD_{}", setting.to_ascii_uppercase());
            let Some(value) = get(&var) else { continue };
            let one = Map::from_iter([(setting.to_owned(), Value::String(value.clone()))]);
            serde_json::from_value::<Layer>(Value::Object(one))
                .map_err(|e| ConfigError::Invalid { setting, message: format!("{var}={value}: {e}") })?;
            layer.insert(setting.to_owned(), Value::String(value));
        }
        serde_json::from_value(Value::Object(layer))
            .map_err(|e| ConfigError::Parse { path: "the environment".into(), message: e.to_string() })
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
                max_connections: in_range("database_max_connections", self.database_max_connections, (16, 1, 1_000))?,
                acquire_timeout: Duration::from_millis(in_range(
                    "database_acquire_timeout_ms",
                    self.database_acquire_timeout_ms,
                    (1_500, 1, 600_000),
                )?),
            },
            "sqlite" => {
                StoreConfig::Sqlite { path: self.sqlite_path.unwrap_or_else(|| data_dir.join("switchyard.db")) }
            }
            other => return Err(invalid("store", format!("`{other}` is not a store; use postgres or sqlite"))),
        };
        let aws = AwsSettings {
            region: self.aws_region,
            endpoint: self.aws_endpoint,
            max_attempts: in_range("aws_max_attempts", self.aws_max_attempts, (3, 1, 10))?,
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
            per_tenant_rate: in_range("email_rate_per_tenant", self.email_rate_per_tenant, (10, 1, u32::MAX))?,
            provider_rate: in_range("email_rate", self.email_rate, (100, 1, u32::MAX))?,
            provider: email_provider,
            delivery: self
                .email_delivery
                .as_deref()
                .map(str::parse)
                .transpose()
                .map_err(|m| invalid("email_delivery", m))?
                .unwrap_or_default(),
        };
        // Up to ten years.
        let hours = |setting, h: Option<u64>| -> Result<Duration, ConfigError> {
            Ok(Duration::from_secs(in_range(setting, h, (24, 1, 87_600))? * 3600))
        };
        let access_requests = AccessRequestConfig {
            support_email: self
                .support_email
                .as_deref()
                .map(EmailAddress::parse)
                .transpose()
                .map_err(|m| invalid("support_email", m))?,
            remind_after: hours("access_request_remind_after_hours", self.access_request_remind_after_hours)?,
            remind_every: hours("access_request_remind_every_hours", self.access_request_remind_every_hours)?,
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
            rate_per_hour: in_range("testflight_rate_per_hour", self.testflight_rate_per_hour, (3_600, 1, u32::MAX))?,
        };
        let standard = PlanLimits {
            email_per_second: email.per_tenant_rate,
            testflight_per_hour: testflight.rate_per_hour,
            ..PlanLimits::default()
        };
        let plans =
            Plans::parse(self.plans.as_deref().unwrap_or_default(), standard).map_err(|m| invalid("plans", m))?;
        let analytics = AnalyticsConfig {
            batch_events: in_range("analytics_batch_events", self.analytics_batch_events, (500, 1, 10_000))?,
            batch_age: Duration::from_secs(in_range(
                "analytics_batch_seconds",
                self.analytics_batch_seconds,
                (60, 1, 86_400),
            )?),
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
            worker_concurrency: in_range(
                "worker_concurrency",
                self.worker_concurrency,
                (shared::config::DEFAULT_WORKER_CONCURRENCY, 1, 1_024),
            )?,
            outage_grace: Duration::from_secs(in_range(
                "worker_outage_grace_seconds",
                self.worker_outage_grace_seconds,
                (60 * 60, 0, 7 * 24 * 3600),
            )?),
            report_interval: Duration::from_secs(15),
            bus,
            zendesk,
            capture_dir: self.capture_dir,
            data_dir,
            discord_webhook: self.discord_webhook_url.map(Secret::new),
            admin_token: self.admin_token.map(Secret::new),
            webhooks,
            alarms_queue: self.alarms_queue,
            access_requests,
            dead_letters: shared::config::DeadLetterConfig {
                redrive_rate_per_minute: in_range(
                    "redrive_rate_per_minute",
                    self.redrive_rate_per_minute,
                    (600, 1, 60_000),
                )?,
                retention: Duration::from_secs(
                    in_range("dead_letter_retention_days", self.dead_letter_retention_days, (7, 1, 365))? * 86_400,
                ),
            },
            email,
            analytics,
            testflight,
            plans,
        })
    }
}

/// A whole number, written as a number (the file) or as text (the environment).
fn number<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<u64> + std::fmt::Display,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Number(u64),
        Text(String),
    }
    let raw = Option::<Raw>::deserialize(deserializer)?;
    let Some(raw) = raw else { return Ok(None) };
    let value = match raw {
        Raw::Number(n) => n,
        Raw::Text(text) => text
            .trim()
            .parse::<u64>()
            .map_err(|_| serde::de::Error::custom(format!("`{text}` is not a whole number")))?,
    };
    T::try_from(value).map(Some).map_err(|_| serde::de::Error::custom(format!("{value} is out of range")))
}

/// The field names serde passes when it deserializes a [`Layer`].
fn setting_names() -> &'static [&'static str] {
    #[derive(Debug)]
    struct Fields(&'static [&'static str]);
    impl std::fmt::Display for Fields {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("setting names")
        }
    }
    impl std::error::Error for Fields {}
    impl serde::de::Error for Fields {
        fn custom<M: std::fmt::Display>(_: M) -> Self {
            Fields(&[])
        }
    }
    /// Answers `deserialize_struct` with the names it is given.
    struct Names;
    impl<'de> serde::Deserializer<'de> for Names {
        type Error = Fields;
        fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Fields> {
            Err(Fields(&[]))
        }
        fn deserialize_struct<V: serde::de::Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Fields> {
            Err(Fields(fields))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
            unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
        }
    }
    match Layer::deserialize(Names) {
        Err(Fields(names)) => names,
        Ok(_) => &[],
    }
}

/// `value` when it lies in `min..=max`; an error naming `setting` otherwise (never a
/// silent cap).
/// `(default, min, max)`.
fn in_range<T: PartialOrd + std::fmt::Display + Copy>(
    setting: &'static str,
    value: Option<T>,
    (default, min, max): (T, T, T),
) -> Result<T, ConfigError> {
    let value = value.unwrap_or(default);
    if value < min || value > max {
        return Err(ConfigError::Invalid { setting, message: format!("{value} is out of range ({min} to {max})") });
    }
    Ok(value)
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
        layer = layer.merged(Layer::from_file(path)?)?;
    }
    layer = layer.merged(Layer::from_env(|name| std::env::var(name).ok())?)?;
    layer.merged(flags)?.into_config()
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
            .unwrap()
            .merged(Layer::from_env(env(&[("SWITCHYARD_INSTANCE", "from-env")])).unwrap())
            .unwrap()
            .merged(Layer { console_addr: Some("127.0.0.1:9001".into()), ..Layer::default() })
            .unwrap();
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
        let config = Layer::default().merged(layer).unwrap().into_config().unwrap();
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
        let config = Layer::default().merged(layer).unwrap().into_config().unwrap();
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

    #[test]
    fn out_of_range_values_are_errors_naming_the_setting() {
        for (var, value, setting) in [
            ("SWITCHYARD_WORKER_CONCURRENCY", "0", "worker_concurrency"),
            ("SWITCHYARD_WORKER_CONCURRENCY", "5000", "worker_concurrency"),
            ("SWITCHYARD_DATABASE_MAX_CONNECTIONS", "99999999999", "database_max_connections"),
            ("SWITCHYARD_ANALYTICS_BATCH_EVENTS", "20000", "analytics_batch_events"),
            ("SWITCHYARD_ANALYTICS_BATCH_SECONDS", "0", "analytics_batch_seconds"),
            ("SWITCHYARD_AWS_MAX_ATTEMPTS", "0", "aws_max_attempts"),
            ("SWITCHYARD_EMAIL_RATE", "0", "email_rate"),
            ("SWITCHYARD_TESTFLIGHT_RATE_PER_HOUR", "-1", "testflight_rate_per_hour"),
            ("SWITCHYARD_ACCESS_REQUEST_REMIND_AFTER_HOURS", "0", "access_request_remind_after_hours"),
        ] {
            let error = Layer::from_env(env(&[(var, value)])).and_then(Layer::into_config).unwrap_err().to_string();
            assert!(error.contains(setting), "{var}={value}: {error}");
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("switchyard.toml");
        std::fs::write(&file, "worker_concurrency = 0\n").unwrap();
        let error = load(Some(&file), Layer::default()).unwrap_err().to_string();
        assert!(error.contains("worker_concurrency"), "{error}");
        std::fs::write(&file, "database_max_connections = 5000000000\n").unwrap();
        let error = Layer::from_file(&file).unwrap_err().to_string();
        assert!(error.contains("database_max_connections") || error.contains("out of range"), "{error}");
    }

    #[test]
    fn every_setting_reads_from_its_variable_and_numbers_stay_text_where_text_is_meant() {
        let settings = Layer::settings();
        assert!(settings.len() > 40 && settings.contains(&"database_acquire_timeout_ms"), "{settings:?}");
        let layer = Layer::from_env(env(&[
            ("SWITCHYARD_ADMIN_TOKEN", "12345"),
            ("SWITCHYARD_WORKER_CONCURRENCY", "16"),
            ("SWITCHYARD_NOT_A_SETTING", "ignored"),
        ]))
        .unwrap();
        assert_eq!(layer.admin_token.as_deref(), Some("12345"));
        assert_eq!(layer.worker_concurrency, Some(16));
        let merged =
            Layer { worker_concurrency: Some(2), email_rate: Some(7), ..Layer::default() }.merged(layer).unwrap();
        assert_eq!((merged.worker_concurrency, merged.email_rate), (Some(16), Some(7)), "the top layer wins where set");
    }

    #[test]
    fn the_data_dir_of_the_file_is_the_config_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("switchyard.toml");
        std::fs::write(&file, "data_dir = \"/srv/sy\"\n").unwrap();
        let config = Layer::from_file(&file).unwrap().into_config().unwrap();
        assert_eq!(config.data_dir, PathBuf::from("/srv/sy"));
    }
}
