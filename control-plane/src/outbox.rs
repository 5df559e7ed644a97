//! Outbox rows the relay gave up on (unreadable, refused by the transport, out of
//! attempts): `GET /v1/outbox/failed?tenant=&limit=&cursor=`, newest first, each with
//! why it failed. Retry and discard go through plans (`plans.rs`).

use actix_web::{web, HttpResponse};
use serde_json::json;

use core_api::problem::FieldError;
use core_api::ApiError;
use shared::ports::FailedOutboxRow;
use shared::TenantId;

use crate::audit::Viewer;
use crate::ConsoleState;

const MAX_LIMIT: u32 = 100;
const DEFAULT_LIMIT: u32 = 50;

#[derive(serde::Deserialize)]
pub(crate) struct FailedQuery {
    tenant: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

fn view(row: &FailedOutboxRow) -> serde_json::Value {
    json!({
        "seq": row.seq.to_string(),
        "event_id": row.event_id,
        "tenant_id": row.tenant,
        "event_type": row.event_type.as_ref().map(|t| t.as_str()),
        "error": row.error,
        "attempts": row.attempts,
        "created_at": row.created_at,
        "failed_at": row.failed_at,
    })
}

pub(crate) async fn failed(
    _caller: Viewer,
    query: web::Query<FailedQuery>,
    state: web::Data<ConsoleState>,
) -> Result<HttpResponse, ApiError> {
    let mut errors = Vec::new();
    let tenant = match query.tenant.as_deref().map(TenantId::parse) {
        Some(Err(_)) => {
            errors.push(FieldError::new("tenant", "must be a tenant id (ten_…)"));
            None
        }
        other => other.and_then(Result::ok),
    };
    let limit = match query.limit.as_deref().map(|r| r.parse::<u32>().ok().filter(|n| (1..=MAX_LIMIT).contains(n))) {
        Some(None) => {
            errors.push(FieldError::new("limit", "must be a whole number from 1 to 100"));
            DEFAULT_LIMIT
        }
        other => other.flatten().unwrap_or(DEFAULT_LIMIT),
    };
    let cursor = match query.cursor.as_deref().map(|r| r.parse::<i64>().ok().filter(|n| *n > 0)) {
        Some(None) => {
            errors.push(FieldError::new("cursor", "must be the next_cursor of a previous page"));
            None
        }
        other => other.flatten(),
    };
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let mut rows = state.plans_store.failed_rows(tenant, cursor, limit + 1).await?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next = if more { rows.last().map(|r| r.seq.to_string()) } else { None };
    Ok(HttpResponse::Ok().json(json!({
        "rows": rows.iter().map(view).collect::<Vec<_>>(),
        "next_cursor": next,
    })))
}
