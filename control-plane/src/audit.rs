//! Who is calling and what they may do, and the audit log of what operators did.
//!
//! Every operator handler takes one of [`Viewer`], [`Acting`] or [`Admin`] first: the
//! caller's token is resolved (the bootstrap `SWITCHYARD_ADMIN_TOKEN` is the admin
//! `admin`; any other token is looked up by its SHA-256 among active operators) and its
//! role checked. A role that may not is 403, and the refusal is audited. Each
//! state-changing handler runs its work through [`audited`], which appends who, when,
//! what (the route), the target or selection, the count and the outcome (`ok`,
//! `refused: …` for the caller's mistakes, `failed: …` for the platform's). `GET
//! /v1/audit?operator=&action=&tenant=&from=&to=&limit=&cursor=` lists it, newest first;
//! no route changes or deletes an entry.

use std::future::Future;
use std::pin::Pin;

use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use core_api::ApiError;
use shared::domain::operators::Role;
use shared::ports::{AuditFilter, NewAuditEntry};
use shared::{TenantId, Timestamp};

use crate::page;
use crate::ConsoleState;

/// The bootstrap admin's name in the audit log.
pub const BOOTSTRAP_ADMIN: &str = "admin";

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub name: String,
    pub role: Role,
    /// The route, as `METHOD /template`: what the audit log calls the action.
    pub action: String,
}

/// A new operator token: `opk_` and 64 random hex digits.
pub fn new_operator_token() -> String {
    format!("opk_{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple())
}

/// The SHA-256 under which an operator's token is stored.
pub fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

fn action_of(request: &HttpRequest) -> String {
    format!("{} {}", request.method(), request.match_pattern().unwrap_or_else(|| request.path().to_owned()))
}

async fn resolve(state: &ConsoleState, request: &HttpRequest) -> Result<Caller, ApiError> {
    let presented = request
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if presented.is_empty() {
        return Err(ApiError::Unauthorized("an operator's token is required (Authorization: Bearer …)"));
    }
    let action = action_of(request);
    if let Some(bootstrap) = &state.admin_token {
        if core_api::auth::constant_time_eq(presented.as_bytes(), bootstrap.expose().as_bytes()) {
            return Ok(Caller { name: BOOTSTRAP_ADMIN.to_owned(), role: Role::Admin, action });
        }
    }
    match state.operators.operator_by_token(&token_hash(presented)).await? {
        Some(operator) => Ok(Caller { name: operator.name.to_string(), role: operator.role, action }),
        None => Err(ApiError::Unauthorized("a valid operator's token is required")),
    }
}

/// Resolves the caller and checks that its role allows `needed`; a refusal is audited.
async fn authorize(request: HttpRequest, needed: Role) -> Result<Caller, ApiError> {
    let state = request
        .app_data::<web::Data<ConsoleState>>()
        .ok_or(ApiError::Unauthorized("the control plane has no state registered"))?
        .clone();
    let caller = resolve(&state, &request).await?;
    if caller.role.allows(needed) {
        return Ok(caller);
    }
    let refusal = ApiError::Forbidden(format!(
        "{} `{}` may not {}: it takes the {needed} role",
        caller.role, caller.name, caller.action
    ));
    record(&state, &caller, None, None, None, &outcome_of(Err(&refusal))).await;
    Err(refusal)
}

macro_rules! role_extractor {
    ($(#[$doc:meta])* $name:ident, $role:expr) => {
        $(#[$doc])*
        pub struct $name(pub Caller);

        impl actix_web::FromRequest for $name {
            type Error = ApiError;
            type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

            fn from_request(request: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
                let request = request.clone();
                Box::pin(async move { authorize(request, $role).await.map($name) })
            }
        }
    };
}

role_extractor!(
    /// Any operator: reading.
    Viewer,
    Role::Viewer
);
role_extractor!(
    /// An operator or an admin: redrives, retries, cancels, access-request decisions.
    Acting,
    Role::Operator
);
role_extractor!(
    /// An admin: purges, restores, discards, tenants, keys and operators.
    Admin,
    Role::Admin
);

fn outcome_of(result: Result<(), &ApiError>) -> String {
    match result {
        Ok(()) => "ok".to_owned(),
        Err(error) if error.status_code().is_client_error() => format!("refused: {error}"),
        Err(error) => format!("failed: {error}"),
    }
}

async fn record(
    state: &ConsoleState,
    caller: &Caller,
    target: Option<&Value>,
    tenant: Option<TenantId>,
    count: Option<u64>,
    outcome: &str,
) {
    let entry = NewAuditEntry {
        at: Timestamp::now(),
        operator: caller.name.clone(),
        role: caller.role,
        action: caller.action.clone(),
        target: target.map(Value::to_string),
        tenant,
        count,
        outcome: outcome.to_owned(),
    };
    if let Err(error) = state.audit.append_audit(&entry).await {
        tracing::error!(%error, operator = caller.name.as_str(), action = caller.action.as_str(), "could not write the audit log");
    }
}

/// Runs a state-changing handler's `work` and appends its outcome to the audit log:
/// `target` (the selection, the plan, the id), the tenant it concerned, and the count
/// `work` answers.
pub(crate) async fn audited<F>(
    state: &ConsoleState,
    caller: &Caller,
    target: Value,
    tenant: Option<TenantId>,
    work: F,
) -> Result<HttpResponse, ApiError>
where
    F: Future<Output = Result<(HttpResponse, Option<u64>), ApiError>>,
{
    match work.await {
        Ok((response, count)) => {
            record(state, caller, Some(&target), tenant, count, "ok").await;
            Ok(response)
        }
        Err(error) => {
            record(state, caller, Some(&target), tenant, None, &outcome_of(Err(&error))).await;
            Err(error)
        }
    }
}

#[derive(serde::Deserialize)]
pub(crate) struct AuditQuery {
    operator: Option<String>,
    action: Option<String>,
    tenant: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

pub(crate) async fn list(
    _caller: Viewer,
    query: web::Query<AuditQuery>,
    state: web::Data<ConsoleState>,
) -> Result<HttpResponse, ApiError> {
    let mut errors = Vec::new();
    let e = &mut errors;
    let time = |r: &str| Timestamp::parse_rfc3339(r).ok();
    let tenant =
        page::field(e, "tenant", query.tenant.as_deref(), "must be a tenant id (ten_…)", |r| TenantId::parse(r).ok());
    let from = page::field(e, "from", query.from.as_deref(), "must be an RFC 3339 time", time);
    let to = page::field(e, "to", query.to.as_deref(), "must be an RFC 3339 time", time);
    let limit = page::limit(e, query.limit.as_deref());
    let cursor = page::seq_cursor(e, query.cursor.as_deref());
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let filter = AuditFilter { operator: query.operator.clone(), action: query.action.clone(), tenant, from, to };
    let fetched = state.audit.audit(&filter, cursor, limit + 1).await?;
    let (entries, next) = page::split(fetched, limit, |e| e.id.to_string());
    let view: Vec<Value> = entries
        .iter()
        .map(|e| {
            let target = e.entry.target.as_deref().map(|t| serde_json::from_str(t).unwrap_or_else(|_| json!(t)));
            json!({
                "id": e.id.to_string(),
                "at": e.entry.at,
                "operator": e.entry.operator,
                "role": e.entry.role.as_str(),
                "action": e.entry.action,
                "target": target,
                "tenant_id": e.entry.tenant,
                "count": e.entry.count,
                "outcome": e.entry.outcome,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({"entries": view, "next_cursor": next})))
}
