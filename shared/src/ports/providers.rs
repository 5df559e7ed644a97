//! Ports to third-party providers: email, a help desk, chat alerts. Each call is a
//! real effect outside Switchyard, so callers pass a stable idempotency reference
//! (the event id) wherever the provider can use one.

use std::time::Duration;

use async_trait::async_trait;

use crate::domain::EmailAddress;

/// Why a provider call did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// HTTP 429: try again no sooner than `retry_after` (when the provider said).
    #[error("{provider} is rate limiting{}", .retry_after.map(|d| format!("; retry after {} ms", d.as_millis())).unwrap_or_default())]
    RateLimited { provider: &'static str, retry_after: Option<Duration> },
    /// The network or a 5xx: may work later.
    #[error("{provider} is unavailable: {detail}")]
    Unavailable { provider: &'static str, detail: String },
    /// A 4xx other than 429: retrying the same request cannot help.
    #[error("{provider} rejected the request ({status}): {reason}")]
    Rejected { provider: &'static str, status: u16, reason: String },
}

impl ProviderError {
    pub fn is_retryable(&self) -> bool {
        !matches!(self, ProviderError::Rejected { .. })
    }
}

/// One email to one recipient: text and/or HTML, or a provider template.
#[derive(Debug, Clone, PartialEq)]
pub struct Email {
    pub to: EmailAddress,
    pub from: EmailAddress,
    pub subject: String,
    pub body: EmailBody,
    /// Sent as a custom argument / header so the provider's records name the event.
    pub reference: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum EmailBody {
    Content { text: Option<String>, html: Option<String> },
    Template { id: String, variables: serde_json::Map<String, serde_json::Value> },
}

/// What the provider answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailReceipt {
    pub provider: &'static str,
    pub message_id: Option<String>,
}

/// Sends transactional email.
#[async_trait]
pub trait EmailSender: Send + Sync + 'static {
    async fn send(&self, email: &Email) -> Result<EmailReceipt, ProviderError>;
}

/// A help-desk ticket. `external_id` (the event id) makes creation idempotent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    pub external_id: String,
    pub requester_email: Option<EmailAddress>,
    pub requester_name: Option<String>,
    pub subject: String,
    pub comment: String,
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TicketRef {
    pub id: u64,
    /// False when a ticket with this external id already existed.
    pub created: bool,
}

/// Creates help-desk tickets. Contract: a ticket whose `external_id` exists is not
/// created again; its reference is returned with `created: false`.
#[async_trait]
pub trait TicketDesk: Send + Sync + 'static {
    async fn create_ticket(&self, ticket: &Ticket) -> Result<TicketRef, ProviderError>;
}

/// A chat alert (a Discord embed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    pub title: String,
    pub description: String,
    pub fields: Vec<(String, String)>,
    /// 0xRRGGBB.
    pub colour: u32,
    pub url: Option<String>,
}

/// Posts alerts to a chat channel.
#[async_trait]
pub trait AlertSink: Send + Sync + 'static {
    async fn post(&self, alert: &Alert) -> Result<(), ProviderError>;
}

/// An invitation to test an app through TestFlight: a beta tester in a beta group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BetaInvite {
    pub email: EmailAddress,
    pub first_name: String,
    pub last_name: String,
    /// The App Store Connect id of the beta group.
    pub group_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BetaInviteReceipt {
    /// The App Store Connect id of the beta tester.
    pub tester_id: String,
    /// True when the tester already existed (they were added to the group).
    pub already_existed: bool,
}

/// Invites beta testers. Contract: inviting a tester who already exists is a success
/// (they end up in the group), so a retry never fails on its own first attempt.
#[async_trait]
pub trait BetaTesters: Send + Sync + 'static {
    async fn invite(&self, invite: &BetaInvite) -> Result<BetaInviteReceipt, ProviderError>;
}

/// The provider calls a capture provider stored instead of making them (`dev`).
#[async_trait]
pub trait CapturedCalls: Send + Sync + 'static {
    /// The kinds of call that can be captured (`emails`, `tickets`, …).
    fn kinds(&self) -> &'static [&'static str];
    /// Every captured call of one kind, oldest first.
    async fn captured(&self, kind: &str) -> Vec<serde_json::Value>;
}
