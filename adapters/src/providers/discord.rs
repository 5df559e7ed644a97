//! Discord webhooks: one embed per alert; HTTP 429 is honoured by waiting the
//! `retry_after` Discord sends, a few times, before giving the error back.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;

use shared::config::Secret;
use shared::ports::providers::{Alert, AlertSink, ProviderError};

use super::{failure, http_client, network_failure};

const PROVIDER: &str = "discord";

pub struct DiscordWebhook {
    client: reqwest::Client,
    url: Secret,
    /// Waits on 429 before giving up, and the longest wait taken in-line.
    max_waits: u32,
    max_wait: Duration,
}

impl DiscordWebhook {
    pub fn new(url: Secret) -> Self {
        Self { client: http_client(), url, max_waits: 3, max_wait: Duration::from_secs(10) }
    }

    fn payload(alert: &Alert) -> serde_json::Value {
        let fields: Vec<serde_json::Value> =
            alert.fields.iter().map(|(name, value)| json!({"name": name, "value": value, "inline": false})).collect();
        let mut embed = json!({
            "title": alert.title,
            "description": alert.description,
            "color": alert.colour,
            "fields": fields,
        });
        if let Some(url) = &alert.url {
            embed["url"] = json!(url);
        }
        json!({"embeds": [embed]})
    }
}

#[async_trait]
impl AlertSink for DiscordWebhook {
    async fn post(&self, alert: &Alert) -> Result<(), ProviderError> {
        let payload = Self::payload(alert);
        let mut waits = 0;
        loop {
            let response = self
                .client
                .post(self.url.expose())
                .json(&payload)
                .send()
                .await
                .map_err(|e| network_failure(PROVIDER, e))?;
            if response.status().is_success() {
                return Ok(());
            }
            match failure(PROVIDER, response).await {
                ProviderError::RateLimited { retry_after: Some(wait), .. }
                    if waits < self.max_waits && wait <= self.max_wait =>
                {
                    waits += 1;
                    tokio::time::sleep(wait).await;
                }
                other => return Err(other),
            }
        }
    }
}
