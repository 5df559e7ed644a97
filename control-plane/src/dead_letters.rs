//! Operators look at dead letters without consuming them. The control plane drains
//! every dead-letter queue into the store as messages arrive (`workers::parking`), and
//! these read the parked copies:
//!
//! - `GET /v1/dead-letters?queue=&tenant=&type=&error=&from=&to=&limit=&cursor=`: newest
//!   first, `limit` 1–100 (50), `cursor` from the previous page's `next_cursor`;
//!   `queue` is a queue's name or its use case (`feedback`), `error` an error group's
//!   fingerprint, `from` (inclusive) and `to` (exclusive) RFC 3339 times of the
//!   dead-lettering, `state` parked (the default), purged or redriven;
//! - `GET /v1/dead-letters/groups` with the same filters: the parked dead letters by
//!   error group (errors that differ only in ids, numbers and quoted values), largest
//!   first;
//! - `GET /v1/dead-letters/{id}`: one, with its envelope and every attempt.

use actix_web::{web, HttpResponse};
use serde_json::{json, Value};

use core_api::problem::FieldError;
use core_api::ApiError;
use shared::ports::{ErrorGroup, Fingerprint, Parked, ParkedFilter, ParkedState, QueueName};
use shared::topology::QueueSpec;
use shared::{EventType, TenantId, Timestamp};

use crate::audit::Viewer;
use crate::page::{self, field};
use crate::ConsoleState;

/// The most error groups answered.
const MAX_GROUPS: u32 = 100;

#[derive(serde::Deserialize, Default)]
pub(crate) struct ListQuery {
    pub(crate) queue: Option<String>,
    pub(crate) tenant: Option<String>,
    #[serde(rename = "type")]
    pub(crate) event_type: Option<String>,
    pub(crate) error: Option<String>,
    pub(crate) from: Option<String>,
    pub(crate) to: Option<String>,
    pub(crate) state: Option<String>,
    pub(crate) limit: Option<String>,
    pub(crate) cursor: Option<String>,
}

/// The queue `raw` names: a queue of the topology, by name or by use case.
fn queue_named<'t>(state: &'t ConsoleState, raw: &str) -> Option<&'t QueueSpec> {
    state.topology.queues.iter().find(|q| q.name == raw || q.use_case.as_str() == raw)
}

/// The filter a query (or a plan's selection) asks for; the problem with each
/// invalid parameter.
pub(crate) fn filter_from(state: &ConsoleState, query: &ListQuery) -> Result<ParkedFilter, Vec<FieldError>> {
    let mut errors = Vec::new();
    let e = &mut errors;
    let queue =
        field(e, "queue", query.queue.as_deref(), "must be a queue of this deployment, by name or use case", |r| {
            queue_named(state, r).map(|q| QueueName::new(q.name.clone()))
        });
    let tenant =
        field(e, "tenant", query.tenant.as_deref(), "must be a tenant id (ten_…)", |r| TenantId::parse(r).ok());
    let event_type =
        field(e, "type", query.event_type.as_deref(), "must be an event type", |r| EventType::parse(r).ok());
    let error_group =
        field(e, "error", query.error.as_deref(), "must be an error group's fingerprint (16 hex digits)", |r| {
            Fingerprint::parse(r).ok()
        });
    let time = |r: &str| Timestamp::parse_rfc3339(r).ok();
    let from = field(e, "from", query.from.as_deref(), "must be an RFC 3339 time", time);
    let to = field(e, "to", query.to.as_deref(), "must be an RFC 3339 time", time);
    let state = field(e, "state", query.state.as_deref(), "must be parked, purged or redriven", ParkedState::parse);
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(ParkedFilter { queue, tenant, event_type, error_group, from, to, state: state.unwrap_or_default() })
}

/// The filter, page size and cursor a query asks for; every invalid parameter named
/// in one validation problem.
fn read(state: &ConsoleState, query: &ListQuery) -> Result<(ParkedFilter, u32, Option<i64>), ApiError> {
    let filter = filter_from(state, query);
    let mut errors = filter.as_ref().err().cloned().unwrap_or_default();
    let limit = page::limit(&mut errors, query.limit.as_deref());
    let cursor = page::seq_cursor(&mut errors, query.cursor.as_deref());
    match filter {
        Ok(filter) if errors.is_empty() => Ok((filter, limit, cursor)),
        _ => Err(ApiError::Validation(errors)),
    }
}

/// A dead letter as listed: what it is, where from, why it failed.
fn summary(state: &ConsoleState, parked: &Parked) -> Value {
    let message = &parked.message;
    let use_case = queue_named(state, message.queue.as_str()).map(|q| q.use_case.as_str());
    json!({
        "id": parked.id.to_string(),
        "queue": message.queue.as_str(),
        "use_case": use_case,
        "tenant_id": message.tenant,
        "event_id": message.event_id,
        "event_type": message.event_type.as_ref().map(EventType::as_str),
        "group_id": message.group_id,
        "error": message.error,
        "error_group": {"fingerprint": parked.error_group.fingerprint.as_str(), "pattern": parked.error_group.pattern},
        "attempts": message.attempts.len(),
        "dead_lettered_at": message.dead_lettered_at,
        "parked_at": parked.parked_at,
        "state": parked.state.as_str(),
        "purged_at": parked.purged_at,
        "redriven_by": parked.redriven_by,
    })
}

/// Everything about one dead letter: the summary, its envelope (or its raw body when
/// it is not one), its attributes and every attempt.
fn detail(state: &ConsoleState, parked: &Parked) -> Value {
    let message = &parked.message;
    let mut view = summary(state, parked);
    view["attempts"] = json!(message.attempts);
    view["message_id"] = json!(message.message_id.as_str());
    view["dedup_id"] = json!(message.dedup_id.as_str());
    view["attributes"] = json!(message.attributes);
    match serde_json::from_str::<Value>(&message.body) {
        Ok(envelope) if message.event_id.is_some() => view["envelope"] = envelope,
        _ => view["body"] = json!(message.body),
    }
    view
}

fn group_view(group: &ErrorGroup) -> Value {
    json!({
        "fingerprint": group.key.fingerprint.as_str(),
        "pattern": group.key.pattern,
        "count": group.count,
        "example": group.example,
        "first_at": group.first_at,
        "last_at": group.last_at,
    })
}

pub(crate) async fn list(
    _caller: Viewer,
    query: web::Query<ListQuery>,
    state: web::Data<ConsoleState>,
) -> Result<HttpResponse, ApiError> {
    let (filter, limit, cursor) = read(&state, &query)?;
    // One more than the page: whether there is a next one.
    let fetched = state.parking.parked(&filter, cursor, limit + 1).await?;
    let (page, next) = page::split(fetched, limit, |p| p.id.to_string());
    Ok(HttpResponse::Ok().json(json!({
        "dead_letters": page.iter().map(|p| summary(&state, p)).collect::<Vec<_>>(),
        "next_cursor": next,
    })))
}

pub(crate) async fn groups(
    _caller: Viewer,
    query: web::Query<ListQuery>,
    state: web::Data<ConsoleState>,
) -> Result<HttpResponse, ApiError> {
    let (filter, _, _) = read(&state, &query)?;
    let groups = state.parking.parked_groups(&filter, MAX_GROUPS).await?;
    Ok(HttpResponse::Ok().json(json!({"groups": groups.iter().map(group_view).collect::<Vec<_>>()})))
}

pub(crate) async fn get(
    _caller: Viewer,
    path: web::Path<String>,
    state: web::Data<ConsoleState>,
) -> Result<HttpResponse, ApiError> {
    let missing = || ApiError::NotFound(format!("dead letter {}", path.chars().take(40).collect::<String>()));
    let id: i64 = path.parse().map_err(|_| missing())?;
    let parked = state.parking.parked_message(id).await?.ok_or_else(missing)?;
    Ok(HttpResponse::Ok().json(detail(&state, &parked)))
}
