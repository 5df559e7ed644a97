//! `POST /v1/webhooks/{source}?tenant=<tenant id>`: inbound webhooks from a tenant's
//! providers, published on the adapters topic.
//!
//! Each request is signed with the tenant's secret for that source:
//! `X-Switchyard-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`.
//! Timestamps more than five minutes away are refused (no replays). `X-Webhook-Id`
//! carries the provider's message id: a retry with the same id returns the first event.

use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::json;
use sha2::Sha256;

use shared::config::Secret;
use shared::domain::webhooks::WebhookSource;
use shared::events::{Payload, WebhookReceived};
use shared::ports::Appended;
use shared::{TenantId, Timestamp};

use crate::body::json_object_and_bytes;
use crate::problem::{ApiError, FieldError};
use crate::request::Caller;
use crate::ApiState;

pub const SIGNATURE_HEADER: &str = "X-Switchyard-Signature";
pub const MESSAGE_ID_HEADER: &str = "X-Webhook-Id";
pub const TOLERANCE: Duration = Duration::from_secs(5 * 60);

#[derive(Deserialize)]
pub(crate) struct Target {
    tenant: Option<String>,
}

/// Inbound webhooks are deduplicated by the provider's message id under idempotency
/// keys with this prefix, which tenants' own `Idempotency-Key`s may not use.
pub(crate) const KEY_PREFIX: &str = "webhook:";

const REFUSED: ApiError = ApiError::Unauthorized("unknown source, or the signature does not verify");

/// A new random secret, `whsec_<64 hex>`.
pub fn new_secret() -> Secret {
    let mut bytes = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut bytes);
    Secret::new(format!("whsec_{}", hex::encode(bytes)))
}

/// Hex HMAC-SHA256 of `<timestamp>.<body>` with `secret`.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

fn verify(secret: &str, header: &str, body: &[u8], now: Timestamp) -> Result<(), ApiError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => timestamp = value.parse::<i64>().ok(),
            Some(("v1", value)) => signatures.push(value.to_owned()),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(REFUSED)?;
    let age = (now.as_millis() / 1000 - timestamp).unsigned_abs();
    if age > TOLERANCE.as_secs() {
        return Err(ApiError::Unauthorized("the signature's timestamp is more than five minutes away"));
    }
    let expected = sign(secret, timestamp, body);
    let matches = |candidate: &String| crate::auth::constant_time_eq(candidate.as_bytes(), expected.as_bytes());
    if signatures.iter().any(matches) {
        Ok(())
    } else {
        Err(REFUSED)
    }
}

pub(crate) async fn receive(
    request: HttpRequest,
    path: web::Path<String>,
    target: web::Query<Target>,
    payload: web::Payload,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let (body, raw) = json_object_and_bytes(&request, payload).await?;
    let source = WebhookSource::parse(&path).map_err(|_| REFUSED)?;
    let tenant = target.tenant.as_deref().and_then(|t| TenantId::parse(t).ok()).ok_or(REFUSED)?;
    let secret = state.webhooks.webhook_secret(tenant, source.as_str()).await?.ok_or(REFUSED)?;
    let signature = request.headers().get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok()).ok_or(REFUSED)?.to_owned();
    verify(secret.expose(), &signature, &raw, Timestamp::now())?;
    let message_id = request
        .headers()
        .get(MESSAGE_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|id| !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| {
            ApiError::Validation(vec![FieldError::new(MESSAGE_ID_HEADER, "is required: the provider's message id")])
        })?
        .to_owned();
    let key = format!("{KEY_PREFIX}{source}:{message_id}");
    let mut envelope = WebhookReceived { source, message_id, payload: body }.into_envelope(tenant);
    envelope.idempotency_key = Some(key);
    crate::publishable(&envelope)?;
    match state.events.append_event(tenant, &envelope).await? {
        Appended::Created => Ok(HttpResponse::Accepted().json(json!({"event_id": envelope.id}))),
        Appended::Existing(event_id) => Ok(HttpResponse::Ok().json(json!({"event_id": event_id}))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_signatures_and_refuses_stale_or_forged_ones() {
        let now = Timestamp::now();
        let t = now.as_millis() / 1000;
        let body = br#"{"id":"evt_1"}"#;
        let good = format!("t={t},v1={}", sign("whsec", t, body));
        assert!(verify("whsec", &good, body, now).is_ok());
        assert!(verify("other", &good, body, now).is_err(), "wrong secret");
        assert!(verify("whsec", &good, br#"{"id":"evt_2"}"#, now).is_err(), "tampered body");
        let stale = t - 301;
        let old = format!("t={stale},v1={}", sign("whsec", stale, body));
        let error = verify("whsec", &old, body, now).unwrap_err();
        assert!(error.to_string().contains("five minutes"), "{error}");
        assert!(verify("whsec", "v1=abc", body, now).is_err(), "no timestamp");
        let rotated = format!("t={t},v1=deadbeef,v1={}", sign("whsec", t, body));
        assert!(verify("whsec", &rotated, body, now).is_ok(), "any v1 may match");
    }

    #[test]
    fn sources_are_plain_names_outside_the_platform_namespaces() {
        assert!(WebhookSource::parse("stripe").is_ok());
        assert!(WebhookSource::parse("app_store").is_ok());
        for bad in ["", "Stripe", "1x", "a-b", "feedback", "email", &"a".repeat(33)] {
            assert!(WebhookSource::parse(bad).is_err(), "{bad}");
        }
    }
}

/// The query of `GET /v1/webhooks/events`.
#[derive(Deserialize)]
pub(crate) struct Page {
    limit: Option<u32>,
    after: Option<String>,
}

/// The most events one page holds (and the default).
pub const MAX_PAGE: u32 = 100;

/// `GET /v1/webhooks/events?limit=&after=`: the tenant's received webhooks, oldest
/// first; `next` is the `after` of the next page (absent on the last).
pub(crate) async fn events(
    caller: Caller,
    page: web::Query<Page>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let mut errors = Vec::new();
    let limit = page.limit.unwrap_or(MAX_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        errors.push(FieldError::new("limit", format!("must be 1 to {MAX_PAGE}")));
    }
    let after = match page.after.as_deref().map(str::parse::<i64>) {
        None => None,
        Some(Ok(cursor)) if cursor > 0 => Some(cursor),
        Some(_) => {
            errors.push(FieldError::new("after", "must be the `next` of an earlier page"));
            None
        }
    };
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let found = state.webhooks.webhook_events(caller.tenant, after, limit).await?;
    Ok(HttpResponse::Ok().json(json!({
        "events": found.events,
        "next": found.next.map(|cursor| cursor.to_string()),
    })))
}
