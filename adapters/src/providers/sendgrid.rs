//! SendGrid v3 mail send.

use async_trait::async_trait;
use serde_json::json;

use shared::config::Secret;
use shared::ports::providers::{Email, EmailBody, EmailReceipt, EmailSender, ProviderError};

use super::{failure, http_client, network_failure};

const PROVIDER: &str = "sendgrid";

pub struct SendGrid {
    client: reqwest::Client,
    base_url: String,
    api_key: Secret,
}

impl SendGrid {
    /// `base_url` is `https://api.sendgrid.com` in production.
    pub fn new(base_url: impl Into<String>, api_key: Secret) -> Self {
        Self { client: http_client(), base_url: base_url.into().trim_end_matches('/').to_owned(), api_key }
    }

    fn payload(email: &Email) -> serde_json::Value {
        let mut personalization = json!({"to": [{"email": email.to.as_str()}]});
        let mut payload = json!({
            "from": {"email": email.from.as_str()},
            "subject": email.subject,
            "custom_args": {"switchyard_reference": email.reference},
        });
        match &email.body {
            EmailBody::Content { text, html } => {
                let mut content = Vec::new();
                if let Some(text) = text {
                    content.push(json!({"type": "text/plain", "value": text}));
                }
                if let Some(html) = html {
                    content.push(json!({"type": "text/html", "value": html}));
                }
                payload["content"] = json!(content);
            }
            EmailBody::Template { id, variables } => {
                payload["template_id"] = json!(id);
                personalization["dynamic_template_data"] = json!(variables);
            }
        }
        payload["personalizations"] = json!([personalization]);
        payload
    }
}

#[async_trait]
impl EmailSender for SendGrid {
    async fn send(&self, email: &Email) -> Result<EmailReceipt, ProviderError> {
        let response = self
            .client
            .post(format!("{}/v3/mail/send", self.base_url))
            .bearer_auth(self.api_key.expose())
            .json(&Self::payload(email))
            .send()
            .await
            .map_err(|e| network_failure(PROVIDER, e))?;
        if !response.status().is_success() {
            return Err(failure(PROVIDER, response).await);
        }
        let message_id = response.headers().get("x-message-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
        Ok(EmailReceipt { provider: PROVIDER, message_id })
    }
}
