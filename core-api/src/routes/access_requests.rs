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
use shared::events::AccessRequestSubmitted;

use crate::problem::{ApiError, FieldError};
use crate::request::{Caller, Fields, FromBody, Write};
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

/// The signed-in user the calling application names.
fn requester(request: &HttpRequest) -> Result<EmailAddress, String> {
    match request.headers().get(REQUESTER_HEADER).map(|v| v.to_str().unwrap_or_default()) {
        Some(header) => EmailAddress::parse(header),
        None => Err("is required: the email address of the signed-in user".to_owned()),
    }
}

fn organization(name: &str) -> Result<TenantName, String> {
    if name.trim().chars().count() > MAX_ORGANIZATION_CHARS {
        return Err(format!("must be at most {MAX_ORGANIZATION_CHARS} characters"));
    }
    TenantName::parse(name).map_err(|_| "must not be blank".to_owned())
}

impl FromBody for NewAccessRequest {
    fn from_body(body: &Map<String, Value>, request: &HttpRequest) -> Result<Self, ApiError> {
        let mut fields = Fields::new(body);
        let requester = fields.check(REQUESTER_HEADER, requester(request));
        let organization = fields.required("organization", organization);
        let message = fields.optional("message", parse_message).flatten();
        fields.finish(|| Some(NewAccessRequest { requester: requester?, organization: organization?, message }))
    }
}

pub(crate) async fn create(
    write: Write<NewAccessRequest>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let event = |stored: &AccessRequest| {
        write.event(AccessRequestSubmitted {
            ticket_id: stored.ticket_id,
            requester: stored.requester.clone(),
            organization: stored.organization.clone(),
            message: stored.message.clone(),
        })
    };
    match state.access.submit_access_request(write.tenant, &write.body, &event).instrument(write.span.clone()).await? {
        Submitted::Created(stored) => Ok(HttpResponse::Accepted().json(view(&stored))),
        Submitted::PendingExists(existing) => Err(ApiError::Conflict {
            detail: format!("{} already has a pending request: {}", existing.requester.as_str(), existing.ticket_id),
            existing: Some(view(&existing)),
        }),
    }
}

pub(crate) async fn mine(
    caller: Caller,
    request: HttpRequest,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let requester =
        requester(&request).map_err(|detail| ApiError::Validation(vec![FieldError::new(REQUESTER_HEADER, detail)]))?;
    let requests = state.access.access_requests_of(caller.tenant, &requester).await?;
    Ok(HttpResponse::Ok().json(json!({"access_requests": requests.iter().map(view).collect::<Vec<_>>()})))
}
