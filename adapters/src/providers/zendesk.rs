//! Zendesk tickets, idempotent by `external_id`: looked up first, created only when
//! absent, so a retried event never opens a second ticket.

use async_trait::async_trait;
use serde_json::json;

use shared::config::Secret;
use shared::ports::providers::{ProviderError, Ticket, TicketDesk, TicketRef};

use super::{failure, http_client, network_failure};

const PROVIDER: &str = "zendesk";

pub struct Zendesk {
    client: reqwest::Client,
    base_url: String,
    email: String,
    api_token: Secret,
}

impl Zendesk {
    /// `base_url` is `https://<subdomain>.zendesk.com`; authentication is an agent's
    /// email with an API token.
    pub fn new(base_url: impl Into<String>, email: impl Into<String>, api_token: Secret) -> Self {
        Self {
            client: http_client(),
            base_url: base_url.into().trim_end_matches('/').to_owned(),
            email: email.into(),
            api_token,
        }
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.base_url))
            .basic_auth(format!("{}/token", self.email), Some(self.api_token.expose()))
    }

    async fn existing(&self, external_id: &str) -> Result<Option<u64>, ProviderError> {
        let response = self
            .request(reqwest::Method::GET, "/api/v2/tickets.json")
            .query(&[("external_id", external_id)])
            .send()
            .await
            .map_err(|e| network_failure(PROVIDER, e))?;
        if !response.status().is_success() {
            return Err(failure(PROVIDER, response).await);
        }
        let body: serde_json::Value = response.json().await.map_err(|e| network_failure(PROVIDER, e))?;
        Ok(body["tickets"].as_array().and_then(|tickets| tickets.first()).and_then(|t| t["id"].as_u64()))
    }
}

#[async_trait]
impl TicketDesk for Zendesk {
    async fn create_ticket(&self, ticket: &Ticket) -> Result<TicketRef, ProviderError> {
        if let Some(id) = self.existing(&ticket.external_id).await? {
            return Ok(TicketRef { id, created: false });
        }
        let mut body = json!({
            "subject": ticket.subject,
            "comment": {"body": ticket.comment},
            "tags": ticket.tags,
            "external_id": ticket.external_id,
        });
        if let Some(email) = &ticket.requester_email {
            let name = ticket.requester_name.clone().unwrap_or_else(|| email.as_str().to_owned());
            body["requester"] = json!({"email": email.as_str(), "name": name});
        }
        let response = self
            .request(reqwest::Method::POST, "/api/v2/tickets.json")
            .json(&json!({"ticket": body}))
            .send()
            .await
            .map_err(|e| network_failure(PROVIDER, e))?;
        if !response.status().is_success() {
            return Err(failure(PROVIDER, response).await);
        }
        let created: serde_json::Value = response.json().await.map_err(|e| network_failure(PROVIDER, e))?;
        let id = created["ticket"]["id"].as_u64().ok_or_else(|| ProviderError::Unavailable {
            provider: PROVIDER,
            detail: "the response has no ticket id".into(),
        })?;
        Ok(TicketRef { id, created: true })
    }
}
