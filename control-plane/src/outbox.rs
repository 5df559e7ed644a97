//! Outbox rows the relay gave up on (unreadable, refused by the transport, out of
//! attempts): `GET /v1/outbox/failed?tenant=&limit=&cursor=`, newest first, each with
//! why it failed. Retry and discard go through plans (`plans.rs`).

use actix_web::{web, HttpResponse};
use serde_json::json;

use core_api::ApiError;
use shared::ports::FailedOutboxRow;
use shared::TenantId;

use crate::audit::Viewer;
use crate::page;
use crate::ConsoleState;

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
    let tenant = page::field(&mut errors, "tenant", query.tenant.as_deref(), "must be a tenant id (ten_…)", |r| {
        TenantId::parse(r).ok()
    });
    let limit = page::limit(&mut errors, query.limit.as_deref());
    let cursor = page::seq_cursor(&mut errors, query.cursor.as_deref());
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let fetched = state.plans_store.failed_rows(tenant, cursor, limit + 1).await?;
    let (rows, next) = page::split(fetched, limit, |r| r.seq.to_string());
    Ok(HttpResponse::Ok().json(json!({
        "rows": rows.iter().map(view).collect::<Vec<_>>(),
        "next_cursor": next,
    })))
}
