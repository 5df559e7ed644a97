//! `POST /v1/testflight/invitations` and `GET /v1/testflight/invitations/{id}`.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Map, Value};
use tracing::Instrument;

use shared::domain::testflight::{parse_group_id, parse_name, NewInvitation};
use shared::domain::EmailAddress;
use shared::envelope::event_types::TESTFLIGHT_INVITATION_REQUESTED;
use shared::{EventEnvelope, InvitationId, Service};

use crate::body::json_object;
use crate::problem::{ApiError, FieldError};
use crate::ApiState;

/// A required string field, parsed; problems go to `errors`.
fn required<T>(
    body: &Map<String, Value>,
    name: &str,
    parse: impl Fn(&str) -> Result<T, String>,
    errors: &mut Vec<FieldError>,
) -> Option<T> {
    match body.get(name) {
        Some(Value::String(text)) => parse(text).map_err(|detail| errors.push(FieldError::new(name, detail))).ok(),
        _ => {
            errors.push(FieldError::new(name, "is required (a string)"));
            None
        }
    }
}

fn parse(body: &Map<String, Value>) -> Result<NewInvitation, ApiError> {
    let mut errors = Vec::new();
    let email = required(body, "email", EmailAddress::parse, &mut errors);
    let first_name = required(body, "first_name", parse_name, &mut errors);
    let last_name = required(body, "last_name", parse_name, &mut errors);
    let group_id = required(body, "beta_group_id", parse_group_id, &mut errors);
    match (email, first_name, last_name, group_id) {
        (Some(email), Some(first_name), Some(last_name), Some(group_id)) => {
            Ok(NewInvitation { id: InvitationId::new(), email, first_name, last_name, group_id })
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
    let invitation = parse(&body)?;
    let super::Write { tenant, event_type, span, trace_context } =
        super::authorize_write(&request, &state, TESTFLIGHT_INVITATION_REQUESTED).await?;
    let data = json!({
        "invitation_id": invitation.id,
        "email": invitation.email.as_str(),
        "first_name": invitation.first_name,
        "last_name": invitation.last_name,
        "beta_group_id": invitation.group_id,
    });
    let mut envelope =
        EventEnvelope::new(tenant, Service::CoreApi, event_type, data.as_object().cloned().unwrap_or_default());
    envelope.trace_context = trace_context;
    state.invitations.submit_invitation(tenant, &invitation, &envelope).instrument(span).await?;
    Ok(HttpResponse::Accepted().json(json!({"id": invitation.id, "status": "accepted"})))
}

pub(crate) async fn get(
    request: HttpRequest,
    path: web::Path<String>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let tenant = state.authenticate(&request).await?;
    let not_found = || super::not_found_id("invitation", &path);
    let id = InvitationId::parse(&path).map_err(|_| not_found())?;
    let invitation = state.invitations.invitation(tenant, id).await?.ok_or_else(not_found)?;
    Ok(HttpResponse::Ok().json(json!({
        "id": invitation.id,
        "status": invitation.status,
        "email": invitation.email.as_str(),
        "first_name": invitation.first_name,
        "last_name": invitation.last_name,
        "beta_group_id": invitation.group_id,
        "tester_id": invitation.tester_id,
        "already_existed": invitation.already_existed,
        "failure_reason": invitation.failure_reason,
        "result_key": invitation.result_key,
        "created_at": invitation.created_at,
        "updated_at": invitation.updated_at,
    })))
}
