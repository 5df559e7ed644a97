//! `POST /v1/events`: a tenant publishes its own event.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Map, Value};
use tracing::Instrument;

use shared::envelope::parse_ordering_key;
use shared::ports::Appended;
use shared::topology::reserved_namespaces;
use shared::{EventEnvelope, EventType, Service, TenantId};

use crate::problem::{ApiError, FieldError};
use crate::request::{Fields, FromBody, Write};
use crate::ApiState;

const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";
const MAX_IDEMPOTENCY_KEY: usize = 255;

/// The validated request.
pub(crate) struct NewEvent {
    event_type: EventType,
    data: Map<String, Value>,
    idempotency_key: Option<String>,
    /// Events of the tenant with the same key are delivered in order; without one, all
    /// of the tenant's keyless events are.
    ordering_key: Option<String>,
}

/// A tenant's own event type: well-formed, outside the platform's namespaces.
fn tenant_event_type(raw: &str) -> Result<EventType, String> {
    let event_type = EventType::parse(raw).map_err(|e| e.to_string())?;
    match reserved_namespaces().find(|ns| event_type.namespace() == *ns) {
        Some(ns) => Err(format!("uses the reserved prefix `{ns}.`; it is for the platform's own events")),
        None => Ok(event_type),
    }
}

/// The `Idempotency-Key` header, when sent.
fn idempotency_key(request: &HttpRequest) -> Result<Option<String>, String> {
    let Some(value) = request.headers().get(IDEMPOTENCY_HEADER) else { return Ok(None) };
    match value.to_str() {
        Ok(key) if key.starts_with(super::webhooks::KEY_PREFIX) => {
            Err(format!("must not start with `{}`: it is reserved for inbound webhooks", super::webhooks::KEY_PREFIX))
        }
        Ok(key) if !key.is_empty() && key.len() <= MAX_IDEMPOTENCY_KEY && key.bytes().all(|b| b.is_ascii_graphic()) => {
            Ok(Some(key.to_owned()))
        }
        _ => Err(format!("must be 1 to {MAX_IDEMPOTENCY_KEY} printable ASCII characters without spaces")),
    }
}

impl FromBody for NewEvent {
    fn from_body(body: &Map<String, Value>, request: &HttpRequest) -> Result<Self, ApiError> {
        let mut fields = Fields::new(body);
        let event_type = fields.required("type", tenant_event_type);
        let data = fields.required_object("data");
        let ordering_key = fields.optional("ordering_key", parse_ordering_key);
        let idempotency_key = fields.check(IDEMPOTENCY_HEADER, idempotency_key(request)).flatten();
        fields.finish(|| Some(NewEvent { event_type: event_type?, data: data?, idempotency_key, ordering_key }))
    }
}

pub(crate) async fn create(write: Write<NewEvent>, state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let tenant = write.tenant;
    let event = &write.body;
    refuse_forged_webhook(&state, tenant, &event.event_type).await?;
    let mut envelope = EventEnvelope::new(tenant, Service::CoreApi, event.event_type.clone(), event.data.clone());
    envelope.idempotency_key = event.idempotency_key.clone();
    envelope.ordering_key = event.ordering_key.clone();
    envelope.trace_context = write.trace_context.clone();
    crate::publishable(&envelope)?;
    match state.events.append_event(tenant, &envelope).instrument(write.span.clone()).await? {
        Appended::Created => {
            tracing::info!(tenant_id = %tenant, event_id = %envelope.id, event_type = %envelope.event_type, "event accepted");
            Ok(HttpResponse::Accepted().json(json!({"event_id": envelope.id})))
        }
        Appended::Existing(event_id) => {
            // Stripe's rule: a key names one request; the same key with another body is
            // a client mistake, not a retry.
            let same = state.events.event(tenant, event_id).await?.is_some_and(|first| {
                first.event_type == envelope.event_type
                    && first.data == envelope.data
                    && first.ordering_key == envelope.ordering_key
            });
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

/// `GET /v1/events/{id}`: the journey of one of the caller's events (another tenant's
/// is 404, as a missing one).
pub(crate) async fn journey(
    caller: crate::request::Caller,
    path: actix_web::web::Path<String>,
    state: actix_web::web::Data<ApiState>,
) -> Result<actix_web::HttpResponse, ApiError> {
    let records = crate::request::by_id("event", &path, shared::EventId::parse, |id| {
        state.journeys.event_records(id, Some(caller.tenant))
    })
    .await?;
    Ok(actix_web::HttpResponse::Ok().json(crate::journey::build(&records, state.journey.as_deref()).await))
}
