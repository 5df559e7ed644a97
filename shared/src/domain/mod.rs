//! Domain records and the validated values they are made of.

pub mod access;
pub mod analytics;
pub mod operators;
pub mod testflight;
pub mod webhooks;

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::clock::Timestamp;
use crate::ids::{ApiKeyId, EmailId, EventId, FeedbackId, TenantId};

/// A tenant of the deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    pub id: TenantId,
    pub name: TenantName,
    pub created_at: Timestamp,
}

/// A plan's name (`standard`, `free`, `pro` …): 1 to 40 lowercase letters, digits or
/// dashes. Rate limits per plan come from the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PlanName(String);

impl PlanName {
    /// The plan a tenant is on until an operator says otherwise.
    pub const DEFAULT: &'static str = "standard";

    pub fn parse(value: &str) -> Result<Self, String> {
        let ok = !value.is_empty()
            && value.len() <= 40
            && value.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if ok {
            Ok(Self(value.to_owned()))
        } else {
            Err(format!(
                "plan `{}` must be 1 to 40 lowercase letters, digits or dashes",
                value.chars().take(40).collect::<String>()
            ))
        }
    }

    pub fn standard() -> Self {
        Self(Self::DEFAULT.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for PlanName {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<PlanName> for String {
    fn from(value: PlanName) -> Self {
        value.0
    }
}

impl fmt::Display for PlanName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which URLs a tenant's alert webhook may have: https to the allowed hosts (Discord's
/// unless configured otherwise), and plain http to a loopback host only where allowed
/// (`switchyard dev`). The URL is parsed, not matched by prefix, so
/// `http://localhost@evil.example/` is the host `evil.example`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookPolicy {
    /// Host names, exactly (no wildcards).
    pub allowed_hosts: Vec<String>,
    pub loopback_http: bool,
}

/// Discord's webhook hosts.
pub const DISCORD_WEBHOOK_HOSTS: [&str; 4] = ["discord.com", "discordapp.com", "ptb.discord.com", "canary.discord.com"];

impl Default for WebhookPolicy {
    fn default() -> Self {
        Self { allowed_hosts: DISCORD_WEBHOOK_HOSTS.iter().map(|h| (*h).to_owned()).collect(), loopback_http: false }
    }
}

impl WebhookPolicy {
    /// The URL as given when the policy admits it, else why not.
    pub fn parse(&self, value: &str) -> Result<String, String> {
        if value.len() > 2_000 {
            return Err("must be at most 2,000 characters".into());
        }
        let url = url::Url::parse(value).map_err(|e| format!("is not a URL: {e}"))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err("must not carry credentials before the host".into());
        }
        let loopback = match url.host() {
            Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        };
        match url.scheme() {
            "https" => {}
            "http" if loopback && self.loopback_http => return Ok(value.to_owned()),
            _ => return Err("must be an https:// URL".into()),
        }
        let host = url.host_str().unwrap_or_default();
        if self.allowed_hosts.iter().any(|allowed| allowed.eq_ignore_ascii_case(host)) {
            Ok(value.to_owned())
        } else {
            Err(format!("must point at one of {} (host `{host}` is not allowed)", self.allowed_hosts.join(", ")))
        }
    }
}

#[cfg(test)]
mod webhook_policy {
    use super::WebhookPolicy;

    #[test]
    fn only_allowed_hosts_over_https_and_loopback_http_only_where_allowed() {
        let policy = WebhookPolicy::default();
        assert!(policy.parse("https://discord.com/api/webhooks/1/t").is_ok());
        assert!(policy.parse("https://DISCORD.com/api/webhooks/1/t").is_ok());
        for bad in [
            "http://localhost@evil.example/hook",
            "https://localhost@evil.example/hook",
            "https://discord.com@evil.example/hook",
            "https://discord.com.evil.example/hook",
            "https://evil.example/hook",
            "http://discord.com/api/webhooks/1/t",
            "ftp://discord.com/x",
            "http://127.0.0.1:9/hook",
            "not a url",
        ] {
            assert!(policy.parse(bad).is_err(), "{bad}");
        }
        let dev = WebhookPolicy { loopback_http: true, ..WebhookPolicy::default() };
        assert!(dev.parse("http://127.0.0.1:9/hook").is_ok());
        assert!(dev.parse("http://[::1]:9/hook").is_ok());
        assert!(dev.parse("http://localhost@evil.example/hook").is_err(), "credentials are refused");
        assert!(dev.parse("http://evil.example/hook").is_err());
        let custom = WebhookPolicy { allowed_hosts: vec!["hooks.slack.com".into()], loopback_http: false };
        assert!(custom.parse("https://hooks.slack.com/services/x").is_ok());
        assert!(custom.parse("https://discord.com/api/webhooks/1/t").is_err());
    }
}

/// What operators set per tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TenantSettings {
    pub plan: PlanName,
    /// The tenant's own Discord webhook: alerts about its messages go there too.
    pub alert_webhook_url: Option<String>,
}

/// A change of some of a tenant's settings (what is `None` stays as it is), applied
/// by the store in one step so that concurrent changes of different settings all
/// land.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SettingsChange {
    pub plan: Option<PlanName>,
    /// `Some(None)` removes the webhook.
    pub alert_webhook_url: Option<Option<String>>,
}

impl SettingsChange {
    pub fn apply(&self, settings: &mut TenantSettings) {
        if let Some(plan) = &self.plan {
            settings.plan = plan.clone();
        }
        if let Some(url) = &self.alert_webhook_url {
            settings.alert_webhook_url = url.clone();
        }
    }
}

/// A tenant's display name: 1 to 200 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TenantName(String);

impl TenantName {
    pub fn parse(value: &str) -> Result<Self, String> {
        let trimmed = value.trim();
        if trimmed.is_empty() || trimmed.chars().count() > 200 {
            return Err("tenant name must be 1 to 200 characters".into());
        }
        if trimmed.chars().any(char::is_control) {
            return Err("tenant name must not contain control characters".into());
        }
        Ok(Self(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TenantName {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<TenantName> for String {
    fn from(value: TenantName) -> Self {
        value.0
    }
}

impl fmt::Display for TenantName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A stored API key: only the SHA-256 of the secret is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    pub id: ApiKeyId,
    pub tenant_id: TenantId,
    /// Lowercase hex SHA-256 of the full key as shown to the user.
    pub secret_hash: String,
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
    /// From then on the key is refused, as a revoked one.
    pub expires_at: Option<Timestamp>,
    /// When a request last used it, recorded at most once a minute per API process.
    pub last_used_at: Option<Timestamp>,
}

impl ApiKeyRecord {
    /// Whether a request at `now` may use it.
    pub fn usable_at(&self, now: Timestamp) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|at| now < at)
    }
}

/// A tenant as operators list it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantSummary {
    pub tenant: Tenant,
    pub plan: PlanName,
    /// Keys neither revoked nor expired.
    pub active_keys: u64,
}

/// A feedback rating from 1 to 5.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub struct Rating(u8);

impl Rating {
    pub fn parse(value: i64) -> Result<Self, String> {
        match u8::try_from(value) {
            Ok(v @ 1..=5) => Ok(Self(v)),
            _ => Err(format!("must be an integer from 1 to 5 (got {value})")),
        }
    }

    pub fn value(self) -> u8 {
        self.0
    }
}

impl TryFrom<u8> for Rating {
    type Error = String;
    fn try_from(value: u8) -> Result<Self, Self::Error> {
        Self::parse(i64::from(value))
    }
}

impl From<Rating> for u8 {
    fn from(value: Rating) -> Self {
        value.0
    }
}

/// A feedback message: 1 to 5,000 characters, not only white space.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct FeedbackMessage(String);

impl FeedbackMessage {
    pub const MAX_CHARS: usize = 5_000;

    pub fn parse(value: &str) -> Result<Self, String> {
        if value.trim().is_empty() {
            return Err("must not be empty".into());
        }
        let chars = value.chars().count();
        if chars > Self::MAX_CHARS {
            return Err(format!("must be at most {} characters (got {chars})", Self::MAX_CHARS));
        }
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for FeedbackMessage {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<FeedbackMessage> for String {
    fn from(value: FeedbackMessage) -> Self {
        value.0
    }
}

/// An email address: `local@domain` with a dotted domain, at most 254 characters.
/// Deliberately permissive about the local part; the provider has the final word.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EmailAddress(String);

impl EmailAddress {
    pub fn parse(value: &str) -> Result<Self, String> {
        let invalid = || format!("`{}` is not a valid email address", value.chars().take(80).collect::<String>());
        if value.len() > 254 || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid());
        }
        let (local, domain) = value.rsplit_once('@').ok_or_else(invalid)?;
        let domain_ok = domain.contains('.')
            && domain.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label.chars().all(|c| c.is_alphanumeric() || c == '-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            });
        if local.is_empty() || local.len() > 64 || local.contains('@') || !domain_ok {
            return Err(invalid());
        }
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for EmailAddress {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<EmailAddress> for String {
    fn from(value: EmailAddress) -> Self {
        value.0
    }
}

/// Where a piece of feedback is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FeedbackStatus {
    Accepted,
    Processing,
    Completed,
    Failed,
}

impl FeedbackStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            FeedbackStatus::Accepted => "accepted",
            FeedbackStatus::Processing => "processing",
            FeedbackStatus::Completed => "completed",
            FeedbackStatus::Failed => "failed",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        [Self::Accepted, Self::Processing, Self::Completed, Self::Failed].into_iter().find(|s| s.as_str() == value)
    }
}

/// Feedback as submitted, already validated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewFeedback {
    pub id: FeedbackId,
    pub rating: Option<Rating>,
    pub message: FeedbackMessage,
    pub contact_email: Option<EmailAddress>,
    pub metadata: Map<String, Value>,
}

/// Stored feedback and its processing status.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Feedback {
    pub id: FeedbackId,
    pub tenant_id: TenantId,
    pub event_id: EventId,
    pub rating: Option<Rating>,
    pub message: FeedbackMessage,
    pub contact_email: Option<EmailAddress>,
    pub metadata: Map<String, Value>,
    pub status: FeedbackStatus,
    pub result_key: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// Where an email is in its life. `sending` is recorded before the provider is called,
/// so a crash mid-call is never followed by a second send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EmailStatus {
    Accepted,
    Sending,
    Sent,
    Failed,
}

impl EmailStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            EmailStatus::Accepted => "accepted",
            EmailStatus::Sending => "sending",
            EmailStatus::Sent => "sent",
            EmailStatus::Failed => "failed",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        [Self::Accepted, Self::Sending, Self::Sent, Self::Failed].into_iter().find(|s| s.as_str() == value)
    }
}

/// An email as accepted (its content travels in the event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEmail {
    pub id: EmailId,
    /// The campaign it belongs to (the id of the request that fanned out).
    pub campaign_id: Option<EmailId>,
    pub to: EmailAddress,
    pub subject: String,
}

/// A stored email and what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EmailRecord {
    pub id: EmailId,
    pub tenant_id: TenantId,
    pub event_id: EventId,
    pub campaign_id: Option<EmailId>,
    pub to: EmailAddress,
    pub subject: String,
    pub status: EmailStatus,
    pub provider: Option<String>,
    pub provider_message_id: Option<String>,
    pub failure_reason: Option<String>,
    pub result_key: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// How a send ended, recorded with the inbox row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailOutcome {
    pub status: EmailStatus,
    pub provider: String,
    pub provider_message_id: Option<String>,
    pub failure_reason: Option<String>,
    pub result_key: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratings_are_one_to_five() {
        assert!(Rating::parse(1).is_ok());
        assert!(Rating::parse(5).is_ok());
        for bad in [0, 6, -1, 256] {
            assert!(Rating::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn feedback_message_limits() {
        assert!(FeedbackMessage::parse("great").is_ok());
        assert!(FeedbackMessage::parse("   ").is_err());
        assert!(FeedbackMessage::parse(&"é".repeat(5_000)).is_ok());
        assert!(FeedbackMessage::parse(&"é".repeat(5_001)).is_err());
    }

    #[test]
    fn email_addresses() {
        for ok in ["a@b.co", "first.last+tag@example.com", "x@sub.domain.org"] {
            assert!(EmailAddress::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a", "a@b", "@b.com", "a@.com", "a@b..com", "a b@c.com", "a@-b.com", "a@b.com\n"] {
            assert!(EmailAddress::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tenant_names() {
        assert_eq!(TenantName::parse("  Acme  ").unwrap().as_str(), "Acme");
        assert!(TenantName::parse("").is_err());
        assert!(TenantName::parse("a\u{0}b").is_err());
    }
}
