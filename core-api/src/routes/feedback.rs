//! `POST /v1/feedback` and `GET /v1/feedback/{id}`.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Map, Value};
use tracing::Instrument;

use shared::domain::{EmailAddress, FeedbackMessage, NewFeedback, Rating};
use shared::envelope::event_types::FEEDBACK_SUBMITTED;
use shared::{EventEnvelope, EventType, FeedbackId, Service};

use crate::body::json_object;
use crate::problem::{ApiError, FieldError};
use crate::ApiState;

fn parse(body: &Map<String, Value>) -> Result<NewFeedback, ApiError> {
    let mut errors = Vec::new();
    let rating = match body.get("rating") {
        None | Some(Value::Null) => None,
        Some(value) => {
            match value.as_i64().ok_or_else(|| "must be an integer from 1 to 5".to_owned()).and_then(Rating::parse) {
                Ok(rating) => Some(rating),
                Err(detail) => {
                    errors.push(FieldError::new("rating", detail));
                    None
                }
            }
        }
    };
    let message = match body.get("message") {
        None | Some(Value::Null) => {
            errors.push(FieldError::new("message", "is required"));
            None
        }
        Some(Value::String(text)) => {
            FeedbackMessage::parse(text).map_err(|d| errors.push(FieldError::new("message", d))).ok()
        }
        Some(_) => {
            errors.push(FieldError::new("message", "must be a string"));
            None
        }
    };
    let contact_email = match body.get("contact_email") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => {
            EmailAddress::parse(text).map_err(|d| errors.push(FieldError::new("contact_email", d))).ok()
        }
        Some(_) => {
            errors.push(FieldError::new("contact_email", "must be a string"));
            None
        }
    };
    let metadata = match body.get("metadata") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(map)) => map.clone(),
        Some(_) => {
            errors.push(FieldError::new("metadata", "must be a JSON object"));
            Map::new()
        }
    };
    match message {
        Some(message) if errors.is_empty() => {
            Ok(NewFeedback { id: FeedbackId::new(), rating, message, contact_email, metadata })
        }
        _ => Err(ApiError::Validation(errors)),
    }
}

pub(crate) async fn create(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let body = json_object(&request, payload).await?;
    let feedback = parse(&body)?;
    let tenant = state.authenticate(&request).await?;
    let data = json!({
        "feedback_id": feedback.id,
        "rating": feedback.rating,
        "message": feedback.message,
        "contact_email": feedback.contact_email,
        "metadata": feedback.metadata,
    });
    let event_type = EventType::parse(FEEDBACK_SUBMITTED).map_err(|_| ApiError::NotFound("event type".into()))?;
    let mut envelope =
        EventEnvelope::new(tenant, Service::CoreApi, event_type, data.as_object().cloned().unwrap_or_default());
    let (span, trace_context) = super::request_span(
        &request,
        tracing::info_span!("POST /v1/feedback", tenant_id = %tenant, event_id = %envelope.id),
    );
    envelope.trace_context = trace_context;
    crate::publishable(&envelope)?;
    state.feedback.submit_feedback(tenant, &feedback, &envelope).instrument(span).await?;
    tracing::info!(tenant_id = %tenant, feedback_id = %feedback.id, event_id = %envelope.id, "feedback accepted");
    Ok(HttpResponse::Accepted().json(json!({"id": feedback.id, "status": "accepted", "event_id": envelope.id})))
}

pub(crate) async fn get(
    request: HttpRequest,
    path: web::Path<String>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let tenant = state.authenticate(&request).await?;
    let not_found = || super::not_found_id("feedback", &path);
    // A malformed id and another tenant's id look the same: not found.
    let id = FeedbackId::parse(&path).map_err(|_| not_found())?;
    let feedback = state.feedback.feedback(tenant, id).await?.ok_or_else(not_found)?;
    let mut body = json!({
        "id": feedback.id,
        "status": feedback.status,
        "event_id": feedback.event_id,
        "created_at": feedback.created_at,
        "updated_at": feedback.updated_at,
    });
    if let Some(key) = feedback.result_key {
        body["result_key"] = Value::String(key);
    }
    Ok(HttpResponse::Ok().json(body))
}
