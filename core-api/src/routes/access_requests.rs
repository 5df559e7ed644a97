//! `POST /v1/access-requests` and `GET /v1/access-requests/mine`.
//!
//! The calling application signs its user in and names them in the
//! `X-Switchyard-Requester` header (their email address); requests are scoped to the
//! calling tenant and that requester. Ticket ids (`R00001`, …) are per deployment.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Map, Value};
use tracing::Instrument;

use shared::domain::access::{parse_message, AccessRequest, NewAccessRequest, Submitted, MAX_ORGANIZATION_CHARS};
use shared::domain::{EmailAddress, TenantName};
use shared::envelope::event_types::ACCESS_REQUEST_SUBMITTED;
use shared::{EventEnvelope, Service};

use crate::body::json_object;
use crate::problem::{ApiError, FieldError};
use crate::ApiState;

/// Names the signed-in user a request is made for.
pub const REQUESTER_HEADER: &str = "X-Switchyard-Requester";

/// The request as the API shows it.
pub fn view(request: &AccessRequest) -> Value {
    json!({
        "ticket_id": request.ticket_id,
        "status": request.status,
        "organization": request.organization.as_str(),
        "message": request.message,
        "requester": request.requester.as_str(),
        "decision_reason": request.decision_reason,
        "tenant_id": request.created_tenant_id,
        "created_at": request.created_at,
        "updated_at": request.updated_at,
    })
}

fn requester(request: &HttpRequest, errors: &mut Vec<FieldError>) -> Option<EmailAddress> {
    let header = request.headers().get(REQUESTER_HEADER).map(|v| v.to_str().unwrap_or_default());
    match header.map(EmailAddress::parse) {
        Some(Ok(address)) => Some(address),
        Some(Err(detail)) => {
            errors.push(FieldError::new(REQUESTER_HEADER, detail));
            None
        }
        None => {
            errors.push(FieldError::new(REQUESTER_HEADER, "is required: the email address of the signed-in user"));
            None
        }
    }
}

fn parse(request: &HttpRequest, body: &Map<String, Value>) -> Result<NewAccessRequest, ApiError> {
    let mut errors = Vec::new();
    let requester = requester(request, &mut errors);
    let organization = match body.get("organization") {
        Some(Value::String(name)) if name.trim().chars().count() <= MAX_ORGANIZATION_CHARS => {
            TenantName::parse(name).map_err(|_| errors.push(FieldError::new("organization", "must not be blank"))).ok()
        }
        Some(Value::String(_)) => {
            errors
                .push(FieldError::new("organization", format!("must be at most {MAX_ORGANIZATION_CHARS} characters")));
            None
        }
        _ => {
            errors.push(FieldError::new("organization", "is required (the organization's name)"));
            None
        }
    };
    let message = match body.get("message") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => parse_message(text).unwrap_or_else(|detail| {
            errors.push(FieldError::new("message", detail));
            None
        }),
        Some(_) => {
            errors.push(FieldError::new("message", "must be a string"));
            None
        }
    };
    match (requester, organization) {
        (Some(requester), Some(organization)) if errors.is_empty() => {
            Ok(NewAccessRequest { requester, organization, message })
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
    let new = parse(&request, &body)?;
    let super::Write { tenant, event_type, span, trace_context } =
        super::authorize_write(&request, &state, ACCESS_REQUEST_SUBMITTED).await?;
    let event = move |stored: &AccessRequest| {
        let mut data = Map::new();
        data.insert("ticket_id".into(), json!(stored.ticket_id));
        data.insert("requester".into(), json!(stored.requester.as_str()));
        data.insert("organization".into(), json!(stored.organization.as_str()));
        data.insert("message".into(), json!(stored.message));
        let mut envelope = EventEnvelope::new(tenant, Service::CoreApi, event_type.clone(), data);
        envelope.trace_context = trace_context.clone();
        envelope
    };
    match state.access.submit_access_request(tenant, &new, &event).instrument(span).await? {
        Submitted::Created(stored) => Ok(HttpResponse::Accepted().json(view(&stored))),
        Submitted::PendingExists(existing) => Err(ApiError::Conflict {
            detail: format!("{} already has a pending request: {}", existing.requester.as_str(), existing.ticket_id),
            existing: Some(view(&existing)),
        }),
    }
}

pub(crate) async fn mine(request: HttpRequest, state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let mut errors = Vec::new();
    let requester = requester(&request, &mut errors);
    let tenant = state.authenticate(&request).await?;
    let Some(requester) = requester else { return Err(ApiError::Validation(errors)) };
    let requests = state.access.access_requests_of(tenant, &requester).await?;
    Ok(HttpResponse::Ok().json(json!({"access_requests": requests.iter().map(view).collect::<Vec<_>>()})))
}
