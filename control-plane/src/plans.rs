//! Redrive, purge and restore of parked dead letters, each in two steps: a plan, then
//! its confirmation.
//!
//! - `POST /v1/dead-letters/redrive` (or `/purge`, `/restore`) with a selection —
//!   `{"ids": [...]}` (at most 1,000) or `{"filter": {"queue", "tenant", "type",
//!   "error", "from", "to"}}` (the listing's filters; `{}` is every one) — answers a
//!   dry-run plan: how many, per queue, per tenant and per ordering group, and a
//!   `plan_id` that freezes the selection for an hour. Nothing changes.
//! - The same route with `{"plan_id": "...", "confirm": ...}` carries it out, once:
//!   a redrive (`"confirm": true`, optional `"rate_per_minute"`) starts a job, 202 with
//!   the job (`GET /v1/jobs/{id}`, `POST /v1/jobs/{id}/cancel`); a purge or restore
//!   takes the plan's count (`"confirm": 120`) — any other number is 409 — and is done
//!   at once. Purged dead letters are restorable for the configured retention.
//! - Failed outbox rows the same way: `POST /v1/outbox/retry` and `/v1/outbox/discard`
//!   with `{"ids": [seq, ...]}` or `{"filter": {"tenant": "ten_…"}}`, confirmed with the
//!   plan's count (a discard also with a `"reason"`).

use std::collections::HashMap;
use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Map, Value};

use core_api::request::{Body, Fields, FromBody};
use core_api::ApiError;
use shared::ports::{Apply, Job, Plan, PlanAction, Selection, Tally};
use shared::{JobId, PlanId, TenantId, Timestamp};

use crate::audit::{audited, Acting, Admin, Caller, Viewer};
use crate::dead_letters::{filter_from, ListQuery};
use crate::ConsoleState;

/// How long a plan can be confirmed.
pub const PLAN_TTL: Duration = Duration::from_secs(3_600);
/// The most ids one selection names.
const MAX_IDS: usize = 1_000;
/// The fastest redrive a job may ask for.
const MAX_RATE_PER_MINUTE: i64 = 60_000;

/// How redrives and purges behave here.
#[derive(Debug, Clone)]
pub struct RedriveSettings {
    /// A job's rate when its confirmation names none.
    pub default_rate_per_minute: u32,
    /// Per queue name: the most messages a minute its worker's providers take.
    pub ceilings: HashMap<String, u32>,
    /// How long purged dead letters stay restorable.
    pub retention: Duration,
}

impl Default for RedriveSettings {
    fn default() -> Self {
        Self { default_rate_per_minute: 600, ceilings: HashMap::new(), retention: Duration::from_secs(7 * 86_400) }
    }
}

/// What a POST to a plan route asks for.
pub(crate) enum Request {
    Plan(Selection),
    Confirm { plan: PlanId, confirm: Value, rate_per_minute: Option<u32>, reason: Option<String> },
}

/// What a plan route's selection is over.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    DeadLetters,
    Outbox,
}

const SELECTION_FIELDS: [&str; 2] = ["ids", "filter"];
const CONFIRM_FIELDS: [&str; 4] = ["plan_id", "confirm", "rate_per_minute", "reason"];
/// The longest reason a discard keeps.
const MAX_REASON_CHARS: usize = 500;

/// A failed-outbox selection's filter: `{"tenant": "ten_…"}` or `{}`.
fn outbox_filter(fields: &mut Fields<'_>, filter: &Map<String, Value>) -> Option<Selection> {
    if let Some(unknown) = filter.keys().find(|k| k.as_str() != "tenant") {
        fields.error(format!("filter.{unknown}"), "is not a filter of failed outbox rows (tenant)");
        return None;
    }
    match filter.get("tenant") {
        None | Some(Value::Null) => Some(Selection::FailedOutbox { tenant: None }),
        Some(Value::String(raw)) => match TenantId::parse(raw) {
            Ok(tenant) => Some(Selection::FailedOutbox { tenant: Some(tenant) }),
            Err(_) => {
                fields.error("filter.tenant", "must be a tenant id (ten_…)");
                None
            }
        },
        Some(_) => {
            fields.error("filter.tenant", "must be a string");
            None
        }
    }
}

fn selection(
    fields: &mut Fields<'_>,
    body: &Map<String, Value>,
    state: &ConsoleState,
    target: Target,
) -> Option<Selection> {
    match (body.get("ids"), body.get("filter")) {
        (Some(_), Some(_)) => {
            fields.error("ids", "name ids or a filter, not both");
            None
        }
        (Some(Value::Array(ids)), None) => {
            if ids.is_empty() || ids.len() > MAX_IDS {
                fields.error("ids", format!("must hold 1 to {MAX_IDS} ids"));
                return None;
            }
            let parsed: Option<Vec<i64>> = ids
                .iter()
                .map(|id| match id {
                    Value::String(text) => text.parse::<i64>().ok(),
                    other => other.as_i64(),
                })
                .map(|id| id.filter(|n| *n > 0))
                .collect();
            if parsed.is_none() {
                fields.error("ids", "must be ids as the listing shows them");
            }
            parsed.map(Selection::Ids)
        }
        (Some(_), None) => {
            fields.error("ids", "must be an array of ids");
            None
        }
        (None, Some(Value::Object(filter))) if target == Target::Outbox => outbox_filter(fields, filter),
        (None, Some(Value::Object(filter))) => {
            let known = ["queue", "tenant", "type", "error", "from", "to"];
            if let Some(unknown) = filter.keys().find(|k| !known.contains(&k.as_str())) {
                fields.error(format!("filter.{unknown}"), format!("is not a filter ({})", known.join(", ")));
                return None;
            }
            let text = |name: &str| -> Result<Option<String>, ()> {
                match filter.get(name) {
                    None | Some(Value::Null) => Ok(None),
                    Some(Value::String(s)) => Ok(Some(s.clone())),
                    Some(_) => Err(()),
                }
            };
            let mut values = HashMap::new();
            for name in known {
                match text(name) {
                    Ok(value) => {
                        values.insert(name, value);
                    }
                    Err(()) => fields.error(format!("filter.{name}"), "must be a string"),
                }
            }
            let mut take = |name: &str| values.remove(name).flatten();
            let query = ListQuery {
                queue: take("queue"),
                tenant: take("tenant"),
                event_type: take("type"),
                error: take("error"),
                from: take("from"),
                to: take("to"),
                ..ListQuery::default()
            };
            match filter_from(state, &query) {
                Ok(filter) => Some(Selection::Filter(filter)),
                Err(errors) => {
                    for error in errors {
                        fields.error(format!("filter.{}", error.field), error.detail);
                    }
                    None
                }
            }
        }
        (None, Some(_)) => {
            fields.error("filter", "must be a JSON object");
            None
        }
        (None, None) => {
            fields.error("(body)", "name a selection (ids or filter) or a plan to confirm (plan_id, confirm)");
            None
        }
    }
}

impl Request {
    fn parse(body: &Map<String, Value>, request: &HttpRequest, target: Target) -> Result<Self, ApiError> {
        let state = request
            .app_data::<web::Data<ConsoleState>>()
            .ok_or(ApiError::Unauthorized("the control plane has no state registered"))?;
        let mut fields = Fields::new(body);
        let confirming = body.contains_key("plan_id") || body.contains_key("confirm");
        let allowed: &[&str] = if confirming { &CONFIRM_FIELDS } else { &SELECTION_FIELDS };
        if let Some(unknown) = body.keys().find(|k| !allowed.contains(&k.as_str())) {
            let detail = if confirming {
                "is not part of a confirmation (plan_id, confirm, rate_per_minute, reason)"
            } else {
                "is not part of a selection (ids, filter)"
            };
            fields.error(unknown.clone(), detail);
        }
        if !confirming {
            let selection = selection(&mut fields, body, state, target);
            return fields.finish(|| selection.map(Request::Plan));
        }
        let plan = fields.required("plan_id", |raw| PlanId::parse(raw).map_err(|_| "must be a plan id (pln_…)"));
        let confirm = fields.value("confirm").cloned();
        if confirm.is_none() {
            fields.error("confirm", "is required: true for a redrive, the plan's count for anything else");
        }
        let rate_per_minute = fields.optional_integer("rate_per_minute", |n| {
            if (1..=MAX_RATE_PER_MINUTE).contains(&n) {
                u32::try_from(n).map_err(|_| String::new())
            } else {
                Err(format!("must be 1 to {MAX_RATE_PER_MINUTE} messages a minute"))
            }
        });
        let reason = fields.optional("reason", |raw| {
            let reason = raw.trim();
            if reason.is_empty() || reason.chars().count() > MAX_REASON_CHARS {
                Err(format!("must be 1 to {MAX_REASON_CHARS} characters"))
            } else {
                Ok(reason.to_owned())
            }
        });
        fields.finish(|| Some(Request::Confirm { plan: plan?, confirm: confirm?, rate_per_minute, reason }))
    }
}

/// The body of the dead-letter plan routes.
pub(crate) struct DeadLetterRequest(Request);

impl FromBody for DeadLetterRequest {
    fn from_body(body: &Map<String, Value>, request: &HttpRequest) -> Result<Self, ApiError> {
        Request::parse(body, request, Target::DeadLetters).map(DeadLetterRequest)
    }
}

/// The body of the failed-outbox plan routes.
pub(crate) struct OutboxRequest(Request);

impl FromBody for OutboxRequest {
    fn from_body(body: &Map<String, Value>, request: &HttpRequest) -> Result<Self, ApiError> {
        Request::parse(body, request, Target::Outbox).map(OutboxRequest)
    }
}

fn invalid(field: &str, detail: &str) -> ApiError {
    ApiError::Validation(vec![core_api::problem::FieldError::new(field, detail)])
}

fn tallies(tallies: &[Tally], key: &str) -> Value {
    tallies.iter().map(|t| json!({ key: t.key, "count": t.count })).collect()
}

fn plan_view(plan: &Plan) -> Value {
    let confirm = match plan.action {
        PlanAction::Redrive => json!(true),
        _ => json!(plan.counts.total),
    };
    json!({
        "plan_id": plan.id,
        "action": plan.action.as_str(),
        "count": plan.counts.total,
        "queues": tallies(&plan.counts.queues, "queue"),
        "tenants": tallies(&plan.counts.tenants, "tenant_id"),
        "groups": tallies(&plan.counts.groups, "group_id"),
        "group_count": plan.counts.group_count,
        "created_at": plan.created_at,
        "expires_at": plan.expires_at,
        "confirmed_at": plan.confirmed_at,
        "job_id": plan.job,
        "to_confirm": {"plan_id": plan.id, "confirm": confirm},
    })
}

pub(crate) fn job_view(job: &Job) -> Value {
    json!({
        "id": job.id,
        "plan_id": job.plan,
        "action": job.action.as_str(),
        "state": job.state.as_str(),
        "total": job.total,
        "done": job.done,
        "skipped": job.skipped,
        "remaining": job.total.saturating_sub(job.done + job.skipped),
        "rate_per_minute": job.rate_per_minute,
        "error": job.error,
        "created_at": job.created_at,
        "updated_at": job.updated_at,
        "finished_at": job.finished_at,
    })
}

async fn make(
    state: &ConsoleState,
    action: PlanAction,
    selection: Selection,
) -> Result<(HttpResponse, Option<u64>), ApiError> {
    let now = Timestamp::now();
    let plan = state.plans_store.make_plan(action, &selection, now, now.plus(PLAN_TTL)).await?;
    tracing::info!(plan = %plan.id, action = action.as_str(), count = plan.counts.total, "plan made");
    Ok((HttpResponse::Ok().json(plan_view(&plan)), Some(plan.counts.total)))
}

/// The plan `id`, which must be `action`'s.
async fn plan_for(state: &ConsoleState, id: PlanId, action: PlanAction) -> Result<Plan, ApiError> {
    let plan = state.plans_store.plan(id).await?.ok_or_else(|| ApiError::NotFound(format!("plan {id}")))?;
    if plan.action != action {
        return Err(ApiError::Conflict {
            detail: format!("plan {id} is a {} plan; confirm it there", plan.action.as_str()),
            existing: Some(plan_view(&plan)),
        });
    }
    Ok(plan)
}

/// What an audit entry says a request was for.
fn target(request: &Request) -> Value {
    match request {
        Request::Plan(Selection::Ids(ids)) => json!({"ids": ids}),
        Request::Plan(Selection::Filter(f)) => json!({"filter": {
            "queue": f.queue.as_ref().map(|q| q.as_str()),
            "tenant": f.tenant,
            "type": f.event_type.as_ref().map(|t| t.as_str()),
            "error": f.error_group.as_ref().map(|g| g.as_str()),
            "from": f.from,
            "to": f.to,
        }}),
        Request::Plan(Selection::FailedOutbox { tenant }) => json!({"filter": {"tenant": tenant}}),
        Request::Confirm { plan, confirm, rate_per_minute, reason } => {
            json!({"plan_id": plan, "confirm": confirm, "rate_per_minute": rate_per_minute, "reason": reason})
        }
    }
}

/// The tenant a request names, for the audit log's tenant filter.
fn tenant_of(request: &Request) -> Option<TenantId> {
    match request {
        Request::Plan(Selection::Filter(filter)) => filter.tenant,
        Request::Plan(Selection::FailedOutbox { tenant }) => *tenant,
        _ => None,
    }
}

/// Plans or confirms `request` as `caller`, audited.
async fn handle(
    state: &ConsoleState,
    caller: &Caller,
    action: PlanAction,
    request: Request,
) -> Result<HttpResponse, ApiError> {
    let (target, tenant) = (target(&request), tenant_of(&request));
    audited(state, caller, target, tenant, carry_out(state, action, request)).await
}

async fn carry_out(
    state: &ConsoleState,
    action: PlanAction,
    request: Request,
) -> Result<(HttpResponse, Option<u64>), ApiError> {
    let (id, confirm, rate, reason) = match request {
        Request::Plan(selection) => return make(state, action, selection).await,
        Request::Confirm { plan, confirm, rate_per_minute, reason } => (plan, confirm, rate_per_minute, reason),
    };
    if rate.is_some() && action != PlanAction::Redrive {
        return Err(invalid("rate_per_minute", "only a redrive has a rate"));
    }
    match (action, &reason) {
        (PlanAction::DiscardOutbox, None) => return Err(invalid("reason", "is required: why the rows are discarded")),
        (PlanAction::DiscardOutbox, Some(_)) | (_, None) => {}
        (_, Some(_)) => return Err(invalid("reason", "only a discard has a reason")),
    }
    let plan = plan_for(state, id, action).await?;
    let now = Timestamp::now();
    if action == PlanAction::Redrive {
        if confirm != Value::Bool(true) {
            return Err(invalid("confirm", "must be true to start the redrive"));
        }
        let rate = rate.unwrap_or(state.redrive.default_rate_per_minute);
        let job = state.plans_store.start_job(id, rate, now).await?;
        tracing::info!(plan = %id, job = %job.id, total = job.total, rate, "redrive job started");
        let response =
            HttpResponse::Accepted().insert_header(("Location", format!("/v1/jobs/{}", job.id))).json(job_view(&job));
        return Ok((response, Some(job.total)));
    }
    if confirm.as_u64() != Some(plan.counts.total) {
        return Err(ApiError::Conflict {
            detail: format!("the plan holds {}; confirm with that count (got {confirm})", plan.counts.total),
            existing: Some(plan_view(&plan)),
        });
    }
    let apply = Apply { restorable_since: now.minus(state.redrive.retention), reason };
    let moved = state.plans_store.apply_plan(id, now, &apply).await?;
    tracing::info!(plan = %id, action = action.as_str(), moved, "plan applied");
    let response = HttpResponse::Ok().json(match action {
        PlanAction::Purge => json!({
            "plan_id": id,
            "purged": moved,
            "restorable_until": now.plus(state.redrive.retention),
        }),
        PlanAction::Restore => json!({"plan_id": id, "restored": moved}),
        PlanAction::RetryOutbox => json!({"plan_id": id, "retried": moved}),
        _ => json!({"plan_id": id, "discarded": moved}),
    });
    Ok((response, Some(moved)))
}

pub(crate) async fn redrive(
    Acting(caller): Acting,
    Body(DeadLetterRequest(request)): Body<DeadLetterRequest>,
    state: web::Data<ConsoleState>,
) -> Result<HttpResponse, ApiError> {
    handle(&state, &caller, PlanAction::Redrive, request).await
}

pub(crate) async fn purge(
    Admin(caller): Admin,
    Body(DeadLetterRequest(request)): Body<DeadLetterRequest>,
    state: web::Data<ConsoleState>,
) -> Result<HttpResponse, ApiError> {
    handle(&state, &caller, PlanAction::Purge, request).await
}

pub(crate) async fn restore(
    Admin(caller): Admin,
    Body(DeadLetterRequest(request)): Body<DeadLetterRequest>,
    state: web::Data<ConsoleState>,
) -> Result<HttpResponse, ApiError> {
    handle(&state, &caller, PlanAction::Restore, request).await
}

pub(crate) async fn retry_outbox(
    Acting(caller): Acting,
    Body(OutboxRequest(request)): Body<OutboxRequest>,
    state: web::Data<ConsoleState>,
) -> Result<HttpResponse, ApiError> {
    handle(&state, &caller, PlanAction::RetryOutbox, request).await
}

pub(crate) async fn discard_outbox(
    Admin(caller): Admin,
    Body(OutboxRequest(request)): Body<OutboxRequest>,
    state: web::Data<ConsoleState>,
) -> Result<HttpResponse, ApiError> {
    handle(&state, &caller, PlanAction::DiscardOutbox, request).await
}

fn job_id(raw: &str) -> Result<JobId, ApiError> {
    JobId::parse(raw).map_err(|_| ApiError::NotFound(format!("job {}", raw.chars().take(64).collect::<String>())))
}

pub(crate) async fn job(
    _caller: Viewer,
    path: web::Path<String>,
    state: web::Data<ConsoleState>,
) -> Result<HttpResponse, ApiError> {
    let id = job_id(&path)?;
    let job = state.plans_store.job(id).await?.ok_or_else(|| ApiError::NotFound(format!("job {id}")))?;
    Ok(HttpResponse::Ok().json(job_view(&job)))
}

pub(crate) async fn cancel(
    Acting(caller): Acting,
    path: web::Path<String>,
    state: web::Data<ConsoleState>,
) -> Result<HttpResponse, ApiError> {
    audited(&state, &caller, json!({"job_id": path.as_str()}), None, async {
        let id = job_id(&path)?;
        let job = state
            .plans_store
            .cancel_job(id, Timestamp::now())
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("job {id}")))?;
        tracing::info!(job = %id, state = job.state.as_str(), "redrive job cancel asked for");
        Ok((HttpResponse::Ok().json(job_view(&job)), None))
    })
    .await
}
