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

async fn decide(raw: &str, decision: Decision, state: &ConsoleState) -> Result<(HttpResponse, Value), ApiError> {
    let ticket = ticket(raw)?;
    let decided = state.access.decide_access_request(ticket, &decision, &decision_event).await?;
    tracing::info!(ticket = %ticket, status = decided.status.as_str(), "access request decided");
    let view = admin_view(&decided);
    Ok((HttpResponse::Ok().json(&view), view))
}

/// The optional body of an approval: `{"issue_key": true}` also issues the new
/// tenant's first API key, shown in the answer only.
pub(crate) struct Approval {
    issue_key: bool,
}

impl FromBody for Approval {
    const OPTIONAL: bool = true;

    fn from_body(body: &Map<String, Value>, _: &HttpRequest) -> Result<Self, ApiError> {
        let mut fields = Fields::new(body);
        let issue_key = match body.get("issue_key") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(issue)) => *issue,
            Some(_) => {
                fields.error("issue_key", "must be true or false");
                false
            }
        };
        if let Some(unknown) = body.keys().find(|k| k.as_str() != "issue_key") {
            fields.error(unknown.clone(), "is not part of an approval (issue_key)");
        }
        fields.finish(|| Some(Approval { issue_key }))
    }
}

pub(crate) async fn approve(
    Acting(caller): Acting,
    Body(approval): Body<Approval>,
    path: web::Path<String>,
    state: web::Data<ConsoleState>,
) -> Result<HttpResponse, ApiError> {
    let tenant = TenantId::new();
    let target = serde_json::json!({"ticket": path.as_str(), "tenant_id": tenant, "issue_key": approval.issue_key});
    audited(&state, &caller, target, Some(tenant), async {
        let (response, mut view) = decide(&path, Decision::Approve { tenant }, &state).await?;
        if !approval.issue_key {
            return Ok((response, None));
        }
        // The tenant exists from the approval's commit on; its first key, shown once.
        let key = core_api::auth::issue_api_key(state.tenants.as_ref(), tenant).await?;
        view["api_key"] = serde_json::json!({"id": key.record.id, "key": key.plaintext});
        Ok((HttpResponse::Ok().json(view), None))
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
    audited(&state, &caller, target, None, async { Ok((decide(&path, decision, &state).await?.0, None)) }).await
}
