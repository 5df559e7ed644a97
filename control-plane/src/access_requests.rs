//! Operators decide access requests: `GET /v1/access-requests[?status=pending]`,
//! `GET /v1/access-requests/{ticket}`, `POST …/{ticket}/approve` (creates the tenant)
//! and `POST …/{ticket}/reject` (optional `{"reason": "…"}`). Each decision emits
//! `access_request.approved` / `.rejected` on the control-plane topic.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Map, Value};

use core_api::problem::FieldError;
use core_api::{access_request_view, ApiError};
use shared::domain::access::{parse_message, AccessRequest, AccessRequestStatus, Decision, TicketId};
use shared::envelope::event_types::{ACCESS_REQUEST_APPROVED, ACCESS_REQUEST_REJECTED};
use shared::{EventEnvelope, EventType, Service, TenantId};

use crate::ConsoleState;

#[derive(serde::Deserialize)]
pub(crate) struct ListQuery {
    status: Option<String>,
}

fn ticket(raw: &str) -> Result<TicketId, ApiError> {
    TicketId::parse(raw)
        .map_err(|_| ApiError::NotFound(format!("access request {}", raw.chars().take(40).collect::<String>())))
}

pub(crate) async fn list(
    request: HttpRequest,
    query: web::Query<ListQuery>,
    state: web::Data<ConsoleState>,
) -> Result<HttpResponse, ApiError> {
    state.authorize(&request)?;
    let status = match query.status.as_deref() {
        None => None,
        Some(raw) => Some(AccessRequestStatus::parse(raw).ok_or_else(|| {
            ApiError::Validation(vec![FieldError::new("status", "must be pending, approved or rejected")])
        })?),
    };
    let requests = state.access.list_access_requests(status).await?;
    Ok(HttpResponse::Ok().json(json!({"access_requests": requests.iter().map(admin_view).collect::<Vec<_>>()})))
}

/// What operators see: the public view plus the submitting tenant.
fn admin_view(request: &AccessRequest) -> Value {
    let mut view = access_request_view(request);
    view["submitted_by_tenant"] = json!(request.tenant_id);
    view
}

pub(crate) async fn get(
    request: HttpRequest,
    path: web::Path<String>,
    state: web::Data<ConsoleState>,
) -> Result<HttpResponse, ApiError> {
    state.authorize(&request)?;
    let ticket = ticket(&path)?;
    let found = state.access.access_request(ticket).await?;
    let found = found.ok_or_else(|| ApiError::NotFound(format!("access request {ticket}")))?;
    Ok(HttpResponse::Ok().json(admin_view(&found)))
}

fn decision_event(event_type: EventType) -> impl Fn(&AccessRequest) -> EventEnvelope + Send + Sync {
    move |decided: &AccessRequest| {
        let data: Map<String, Value> = [
            ("ticket_id".to_owned(), json!(decided.ticket_id)),
            ("requester".to_owned(), json!(decided.requester.as_str())),
            ("organization".to_owned(), json!(decided.organization.as_str())),
            ("decision_reason".to_owned(), json!(decided.decision_reason)),
            ("created_tenant_id".to_owned(), json!(decided.created_tenant_id)),
        ]
        .into_iter()
        .collect();
        EventEnvelope::new(decided.tenant_id, Service::ControlPlane, event_type.clone(), data)
    }
}

async fn decide(
    request: &HttpRequest,
    raw: &str,
    decision: Decision,
    state: &ConsoleState,
    event_type: &'static str,
) -> Result<HttpResponse, ApiError> {
    state.authorize(request)?;
    let ticket = ticket(raw)?;
    let event_type = EventType::parse(event_type).map_err(|_| ApiError::NotFound("event type".into()))?;
    let decided = state.access.decide_access_request(ticket, &decision, &decision_event(event_type)).await?;
    tracing::info!(ticket = %ticket, status = decided.status.as_str(), "access request decided");
    Ok(HttpResponse::Ok().json(admin_view(&decided)))
}

pub(crate) async fn approve(
    request: HttpRequest,
    path: web::Path<String>,
    state: web::Data<ConsoleState>,
) -> Result<HttpResponse, ApiError> {
    let decision = Decision::Approve { tenant: TenantId::new() };
    decide(&request, &path, decision, &state, ACCESS_REQUEST_APPROVED).await
}

pub(crate) async fn reject(
    request: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<ConsoleState>,
) -> Result<HttpResponse, ApiError> {
    // The body is optional: empty, or a JSON object with a `reason`.
    let body = core_api::body::optional_json_object(&request, payload).await?;
    let reason = match body.get("reason") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => {
            parse_message(text).map_err(|detail| ApiError::Validation(vec![FieldError::new("reason", detail)]))?
        }
        Some(_) => return Err(ApiError::Validation(vec![FieldError::new("reason", "must be a string")])),
    };
    decide(&request, &path, Decision::Reject { reason }, &state, ACCESS_REQUEST_REJECTED).await
}
