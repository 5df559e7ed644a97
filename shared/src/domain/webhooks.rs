//! Inbound webhooks: where they come from, and what the platform keeps of each.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::ids::EventId;
use crate::topology::reserved_namespaces;

/// A webhook source (`stripe`, `github`): lowercase letters, digits and underscores,
/// starting with a letter, at most 32 characters, and not one of the platform's own
/// namespaces. Its webhooks become `<source>.received` events.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct WebhookSource(String);

impl WebhookSource {
    pub const MAX_LEN: usize = 32;

    pub fn parse(value: &str) -> Result<Self, String> {
        let well_formed = value.len() <= Self::MAX_LEN
            && value.starts_with(|c: char| c.is_ascii_lowercase())
            && value.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !well_formed {
            return Err(format!(
                "a source is 1 to {} lowercase letters, digits and underscores, starting with a letter",
                Self::MAX_LEN
            ));
        }
        if reserved_namespaces().any(|ns| ns == value) {
            return Err(format!("`{value}` is reserved for the platform's own events"));
        }
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for WebhookSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for WebhookSource {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        Self::parse(&value)
    }
}

impl From<WebhookSource> for String {
    fn from(source: WebhookSource) -> String {
        source.0
    }
}

/// A received webhook, as the webhooks worker records it (once per event).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReceivedWebhook {
    pub event_id: EventId,
    pub source: WebhookSource,
    /// The provider's message id (`X-Webhook-Id`).
    pub message_id: String,
    /// The result object holding the payload.
    pub result_key: String,
    /// When the API accepted it.
    pub received_at: Timestamp,
}
