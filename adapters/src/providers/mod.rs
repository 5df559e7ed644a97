//! Provider clients (reqwest), each behind a port from `shared::ports::providers` and
//! tested against a mock server with the provider's documented request and response
//! shapes.

pub mod app_store_connect;
pub mod capture;
pub mod discord;
pub mod sendgrid;
pub mod zendesk;

use std::time::Duration;

use shared::ports::providers::ProviderError;

pub use app_store_connect::AppStoreConnect;
pub use capture::CaptureProvider;
pub use discord::DiscordWebhook;
pub use sendgrid::SendGrid;
pub use zendesk::Zendesk;

/// One HTTP client per provider: bounded connect and request times.
pub(crate) fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap_or_default()
}

pub(crate) fn network_failure(provider: &'static str, error: reqwest::Error) -> ProviderError {
    ProviderError::Unavailable { provider, detail: error.to_string() }
}

/// `Retry-After` in seconds (integer or fraction), when present.
fn retry_after_header(response: &reqwest::Response) -> Option<Duration> {
    let value = response.headers().get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<f64>().ok().filter(|s| s.is_finite() && *s >= 0.0).map(Duration::from_secs_f64)
}

/// Turns a non-success response into the matching error. A 429's wait comes from the
/// `Retry-After` header or a JSON body's `retry_after` (seconds), as Discord sends it.
pub(crate) async fn failure(provider: &'static str, response: reqwest::Response) -> ProviderError {
    let status = response.status().as_u16();
    let header_wait = retry_after_header(&response);
    let body = response.text().await.unwrap_or_default();
    let reason: String = body.chars().take(500).collect();
    match status {
        429 => {
            let body_wait = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["retry_after"].as_f64())
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map(Duration::from_secs_f64);
            ProviderError::RateLimited { provider, retry_after: body_wait.or(header_wait) }
        }
        500..=599 => ProviderError::Unavailable { provider, detail: format!("HTTP {status}: {reason}") },
        _ => ProviderError::Rejected { provider, status, reason },
    }
}
