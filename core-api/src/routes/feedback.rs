//! `POST /v1/feedback` and `GET /v1/feedback/{id}`.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Map, Value};
use tracing::Instrument;

use shared::domain::{EmailAddress, FeedbackMessage, NewFeedback, Rating};
use shared::events::FeedbackSubmitted;
use shared::FeedbackId;

use crate::problem::ApiError;
use crate::request::{by_id, Caller, Fields, FromBody, Write};
use crate::ApiState;

impl FromBody for NewFeedback {
    fn from_body(body: &Map<String, Value>, _: &HttpRequest) -> Result<Self, ApiError> {
        let mut fields = Fields::new(body);
        let rating = fields.optional_integer("rating", Rating::parse);
        let message = fields.required("message", FeedbackMessage::parse);
        let contact_email = fields.optional("contact_email", EmailAddress::parse);
        let metadata = fields.optional_object("metadata").unwrap_or_default();
        fields
            .finish(|| Some(NewFeedback { id: FeedbackId::new(), rating, message: message?, contact_email, metadata }))
    }
}

pub(crate) async fn create(write: Write<NewFeedback>, state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let (tenant, feedback) = (write.tenant, &write.body);
    let envelope = write.event(FeedbackSubmitted {
        feedback_id: feedback.id,
        rating: feedback.rating,
        message: feedback.message.clone(),
        contact_email: feedback.contact_email.clone(),
        metadata: feedback.metadata.clone(),
    });
    crate::publishable(&envelope)?;
    state.feedback.submit_feedback(tenant, feedback, &envelope).instrument(write.span.clone()).await?;
    tracing::info!(tenant_id = %tenant, feedback_id = %feedback.id, event_id = %envelope.id, "feedback accepted");
    Ok(HttpResponse::Accepted().json(json!({"id": feedback.id, "status": "accepted", "event_id": envelope.id})))
}

pub(crate) async fn get(
    caller: Caller,
    path: web::Path<String>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let feedback = by_id("feedback", &path, FeedbackId::parse, |id| state.feedback.feedback(caller.tenant, id)).await?;
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
