//! `POST /v1/events`: a tenant publishes its own event.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Map, Value};
use tracing::Instrument;

use shared::ports::Appended;
use shared::topology::reserved_namespaces;
use shared::{EventEnvelope, EventType, Service, TenantId};

use crate::body::json_object;
use crate::problem::{ApiError, FieldError};
use crate::ApiState;

const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";
const MAX_IDEMPOTENCY_KEY: usize = 255;

/// The validated request.
struct NewEvent {
    event_type: EventType,
    data: Map<String, Value>,
    idempotency_key: Option<String>,
}

fn parse(body: &Map<String, Value>, request: &HttpRequest) -> Result<NewEvent, ApiError> {
    let mut errors = Vec::new();
    let event_type = match body.get("type") {
        None => {
            errors.push(FieldError::new("type", "is required"));
            None
        }
        Some(Value::String(raw)) => match EventType::parse(raw) {
            Ok(t) => match reserved_namespaces().find(|ns| t.namespace() == *ns) {
                Some(ns) => {
                    errors.push(FieldError::new(
                        "type",
                        format!("uses the reserved prefix `{ns}.`; it is for the platform's own events"),
                    ));
                    None
                }
                None => Some(t),
            },
            Err(e) => {
                errors.push(FieldError::new("type", e.to_string()));
                None
            }
        },
        Some(_) => {
            errors.push(FieldError::new("type", "must be a string"));
            None
        }
    };
    let data = match body.get("data") {
        None => {
            errors.push(FieldError::new("data", "is required"));
            None
        }
        Some(Value::Object(map)) => Some(map.clone()),
        Some(_) => {
            errors.push(FieldError::new("data", "must be a JSON object"));
            None
        }
    };
    let idempotency_key = match request.headers().get(IDEMPOTENCY_HEADER) {
        None => None,
        Some(value) => match value.to_str() {
            Ok(key) if key.starts_with(super::webhooks::KEY_PREFIX) => {
                errors.push(FieldError::new(
                    IDEMPOTENCY_HEADER,
                    format!(
                        "must not start with `{}`: it is reserved for inbound webhooks",
                        super::webhooks::KEY_PREFIX
                    ),
                ));
                None
            }
            Ok(key)
                if !key.is_empty() && key.len() <= MAX_IDEMPOTENCY_KEY && key.bytes().all(|b| b.is_ascii_graphic()) =>
            {
                Some(key.to_owned())
            }
            _ => {
                errors.push(FieldError::new(
                    IDEMPOTENCY_HEADER,
                    format!("must be 1 to {MAX_IDEMPOTENCY_KEY} printable ASCII characters without spaces"),
                ));
                None
            }
        },
    };
    match (event_type, data) {
        (Some(event_type), Some(data)) if errors.is_empty() => Ok(NewEvent { event_type, data, idempotency_key }),
        _ => Err(ApiError::Validation(errors)),
    }
}

pub(crate) async fn create(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let body = json_object(&request, payload).await?;
    let event = parse(&body, &request)?;
    let tenant = state.authenticate(&request).await?;
    refuse_forged_webhook(&state, tenant, &event.event_type).await?;
    let mut envelope = EventEnvelope::new(tenant, Service::CoreApi, event.event_type, event.data);
    envelope.idempotency_key = event.idempotency_key;
    let (span, trace_context) = super::request_span(
        &request,
        tracing::info_span!("POST /v1/events", tenant_id = %tenant, event_id = %envelope.id),
    );
    envelope.trace_context = trace_context;
    crate::publishable(&envelope)?;
    match state.events.append_event(tenant, &envelope).instrument(span).await? {
        Appended::Created => {
            tracing::info!(tenant_id = %tenant, event_id = %envelope.id, event_type = %envelope.event_type, "event accepted");
            Ok(HttpResponse::Accepted().json(json!({"event_id": envelope.id})))
        }
        Appended::Existing(event_id) => {
            // Stripe's rule: a key names one request; the same key with another body is
            // a client mistake, not a retry.
            let same = state
                .events
                .event(tenant, event_id)
                .await?
                .is_some_and(|first| first.event_type == envelope.event_type && first.data == envelope.data);
            if same {
                Ok(HttpResponse::Ok().json(json!({"event_id": event_id})))
            } else {
                Err(ApiError::IdempotencyKeyReused(event_id.to_string()))
            }
        }
    }
}

/// `<source>.received` is what a verified inbound webhook from `source` becomes: a
/// tenant that receives webhooks from `source` may not publish that type itself, so its
/// consumers can trust it. Other `*.received` types stay the tenant's own.
async fn refuse_forged_webhook(state: &ApiState, tenant: TenantId, event_type: &EventType) -> Result<(), ApiError> {
    let Some(source) = event_type.as_str().strip_suffix(".received") else {
        return Ok(());
    };
    if state.webhooks.webhook_secret(tenant, source).await?.is_some() {
        return Err(ApiError::Validation(vec![FieldError::new(
            "type",
            format!("`{event_type}` is reserved for verified webhooks from `{source}`, which this tenant receives"),
        )]));
    }
    Ok(())
}
