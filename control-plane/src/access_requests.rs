//! Operators decide access requests: `GET /v1/access-requests[?status=pending]`,
//! `GET /v1/access-requests/{ticket}`, `POST …/{ticket}/approve` (creates the tenant)
//! and `POST …/{ticket}/reject` (optional `{"reason": "…"}`). Each decision emits
//! `access_request.approved` / `.rejected` on the control-plane topic.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Map, Value};

use core_api::problem::FieldError;
use core_api::request::{Body, Fields, FromBody};
use core_api::{access_request_view, ApiError};
use shared::domain::access::{parse_message, AccessRequest, AccessRequestStatus, Decision, TicketId};
use shared::events::{AccessDecision, AccessRequestApproved, AccessRequestRejected, Payload};
use shared::{EventEnvelope, TenantId};

use crate::audit::{audited, Acting, Viewer};
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
    _caller: Viewer,
    query: web::Query<ListQuery>,
    state: web::Data<ConsoleState>,
) -> Result<HttpResponse, ApiError> {
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
    _caller: Viewer,
    path: web::Path<String>,
    state: web::Data<ConsoleState>,
) -> Result<HttpResponse, ApiError> {
    let ticket = ticket(&path)?;
    let found = state.access.access_request(ticket).await?;
    let found = found.ok_or_else(|| ApiError::NotFound(format!("access request {ticket}")))?;
    Ok(HttpResponse::Ok().json(admin_view(&found)))
}

/// The decision's event: `.approved` or `.rejected` with what was decided.
fn decision_event(decided: &AccessRequest) -> EventEnvelope {
    let decision = AccessDecision {
        ticket_id: decided.ticket_id,
        requester: decided.requester.clone(),
        organization: decided.organization.clone(),
        decision_reason: decided.decision_reason.clone(),
        created_tenant_id: decided.created_tenant_id,
    };
    if decided.status == AccessRequestStatus::Approved {
        AccessRequestApproved(decision).into_envelope(decided.tenant_id)
    } else {
        AccessRequestRejected(decision).into_envelope(decided.tenant_id)
    }
}

async fn decide(raw: &str, decision: Decision, state: &ConsoleState) -> Result<HttpResponse, ApiError> {
    let ticket = ticket(raw)?;
    let decided = state.access.decide_access_request(ticket, &decision, &decision_event).await?;
    tracing::info!(ticket = %ticket, status = decided.status.as_str(), "access request decided");
    Ok(HttpResponse::Ok().json(admin_view(&decided)))
}

pub(crate) async fn approve(
    Acting(caller): Acting,
    path: web::Path<String>,
    state: web::Data<ConsoleState>,
) -> Result<HttpResponse, ApiError> {
    let tenant = TenantId::new();
    let target = serde_json::json!({"ticket": path.as_str()});
    audited(&state, &caller, target, None, async {
        Ok((decide(&path, Decision::Approve { tenant }, &state).await?, None))
    })
    .await
}

/// The optional body of a rejection: empty, or a JSON object with a `reason`.
pub(crate) struct Rejection {
    reason: Option<String>,
}

impl FromBody for Rejection {
    const OPTIONAL: bool = true;

    fn from_body(body: &Map<String, Value>, _: &HttpRequest) -> Result<Self, ApiError> {
        let mut fields = Fields::new(body);
        let reason = fields.optional("reason", parse_message).flatten();
        fields.finish(|| Some(Rejection { reason }))
    }
}

pub(crate) async fn reject(
    Acting(caller): Acting,
    Body(rejection): Body<Rejection>,
    path: web::Path<String>,
    state: web::Data<ConsoleState>,
) -> Result<HttpResponse, ApiError> {
    let target = serde_json::json!({"ticket": path.as_str(), "reason": rejection.reason});
    let decision = Decision::Reject { reason: rejection.reason };
    audited(&state, &caller, target, None, async { Ok((decide(&path, decision, &state).await?, None)) }).await
}
