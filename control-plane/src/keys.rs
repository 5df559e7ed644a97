//! Tenants and their API keys, for operators:
//!
//! - `GET /v1/tenants?search=&limit=&cursor=`: in creation order, `search` a part of
//!   the name (any case), each with its plan and active keys; `cursor` from the
//!   previous page's `next_cursor`;
//! - `POST /v1/tenants` with `{"name", "plan"?}` (admin): 201 with the tenant;
//! - `GET /v1/tenants/{id}/keys`: id, prefix, created, expires, last used, revoked;
//! - `POST /v1/tenants/{id}/keys` with `{"expires_at"?: RFC 3339}` (admin): 201 with
//!   the key, shown only in this answer;
//! - `DELETE /v1/tenants/{id}/keys/{key_id}` (admin): refused by every API process
//!   within seconds (see `core_api::auth::watch_keys`).

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Map, Value};

use core_api::problem::FieldError;
use core_api::request::{Body, Fields, FromBody};
use core_api::ApiError;
use shared::domain::{ApiKeyRecord, PlanName, SettingsChange, Tenant, TenantName, TenantSummary};
use shared::{ApiKeyId, TenantId, Timestamp};

use crate::audit::{audited, Admin, Viewer};
use crate::page;
use crate::ConsoleState;

fn not_found(what: &str, raw: &str) -> ApiError {
    ApiError::NotFound(format!("{what} {}", raw.chars().take(64).collect::<String>()))
}

fn summary_view(summary: &TenantSummary) -> Value {
    json!({
        "id": summary.tenant.id,
        "name": summary.tenant.name.as_str(),
        "created_at": summary.tenant.created_at,
        "plan": summary.plan,
        "active_keys": summary.active_keys,
    })
}

/// A key as operators see it: never its secret, nor its hash.
fn key_view(key: &ApiKeyRecord) -> Value {
    json!({
        "id": key.id,
        "prefix": format!("{}{}", core_api::auth::KEY_PREFIX, &key.id.as_uuid().simple().to_string()[..8]),
        "created_at": key.created_at,
        "expires_at": key.expires_at,
        "last_used_at": key.last_used_at,
        "revoked_at": key.revoked_at,
        "active": key.usable_at(Timestamp::now()),
    })
}

#[derive(serde::Deserialize)]
pub(crate) struct ListQuery {
    search: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

pub(crate) async fn list(
    _caller: Viewer,
    query: web::Query<ListQuery>,
    state: web::Data<ConsoleState>,
) -> Result<HttpResponse, ApiError> {
    let mut errors = Vec::new();
    let limit = page::limit(&mut errors, query.limit.as_deref());
    let cursor = page::field(
        &mut errors,
        "cursor",
        query.cursor.as_deref(),
        "must be the next_cursor of a previous page",
        |r| TenantId::parse(r).ok(),
    );
    let search = query.search.as_deref().map(str::trim).filter(|s| !s.is_empty());
    if search.is_some_and(|s| s.chars().count() > 100) {
        errors.push(FieldError::new("search", "must be at most 100 characters"));
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let fetched = state.tenants.tenant_page(search, cursor, limit + 1, Timestamp::now()).await?;
    let (page, next) = page::split(fetched, limit, |t| t.tenant.id.to_string());
    Ok(HttpResponse::Ok().json(json!({
        "tenants": page.iter().map(summary_view).collect::<Vec<_>>(),
        "next_cursor": next,
    })))
}

/// The body of `POST /v1/tenants`.
pub(crate) struct NewTenant {
    name: TenantName,
    plan: Option<PlanName>,
}

impl FromBody for NewTenant {
    fn from_body(body: &Map<String, Value>, request: &HttpRequest) -> Result<Self, ApiError> {
        let state = request
            .app_data::<web::Data<ConsoleState>>()
            .ok_or(ApiError::Unauthorized("the control plane has no state registered"))?;
        let mut fields = Fields::new(body);
        let name = fields.required("name", TenantName::parse);
        let plan = fields.optional("plan", |raw| {
            let plan = PlanName::parse(raw)?;
            if state.plans.contains(&plan) {
                Ok(plan)
            } else {
                Err(format!("`{plan}` is not a plan here"))
            }
        });
        if let Some(unknown) = body.keys().find(|k| !["name", "plan"].contains(&k.as_str())) {
            fields.error(unknown.clone(), "is not part of a new tenant (name, plan)");
        }
        fields.finish(|| Some(NewTenant { name: name?, plan }))
    }
}

pub(crate) async fn create(
    Admin(caller): Admin,
    Body(new): Body<NewTenant>,
    state: web::Data<ConsoleState>,
) -> Result<HttpResponse, ApiError> {
    let tenant = Tenant { id: TenantId::new(), name: new.name, created_at: Timestamp::now() };
    let target = json!({"tenant_id": tenant.id, "name": tenant.name.as_str(), "plan": new.plan});
    audited(&state, &caller, target, Some(tenant.id), async {
        state.tenants.create_tenant(&tenant).await?;
        let mut plan = PlanName::standard();
        if let Some(chosen) = new.plan {
            let change = SettingsChange { plan: Some(chosen), alert_webhook_url: None };
            plan = state.tenants.change_tenant_settings(tenant.id, &change).await?.plan;
        }
        tracing::info!(tenant_id = %tenant.id, "tenant created");
        let view = summary_view(&TenantSummary { tenant: tenant.clone(), plan, active_keys: 0 });
        Ok((HttpResponse::Created().insert_header(("Location", format!("/v1/tenants/{}", tenant.id))).json(view), None))
    })
    .await
}

async fn existing(state: &ConsoleState, raw: &str) -> Result<TenantId, ApiError> {
    let id = TenantId::parse(raw).map_err(|_| not_found("tenant", raw))?;
    state.tenants.tenant(id).await?.ok_or_else(|| not_found("tenant", raw))?;
    Ok(id)
}

pub(crate) async fn keys(
    _caller: Viewer,
    path: web::Path<String>,
    state: web::Data<ConsoleState>,
) -> Result<HttpResponse, ApiError> {
    let tenant = existing(&state, &path).await?;
    let keys = state.tenants.api_keys(tenant).await?;
    Ok(HttpResponse::Ok().json(json!({"keys": keys.iter().map(key_view).collect::<Vec<_>>()})))
}

/// The body of `POST /v1/tenants/{id}/keys`: empty, or `{"expires_at": …}`.
pub(crate) struct NewKey {
    expires_at: Option<Timestamp>,
}

impl FromBody for NewKey {
    const OPTIONAL: bool = true;

    fn from_body(body: &Map<String, Value>, _: &HttpRequest) -> Result<Self, ApiError> {
        let mut fields = Fields::new(body);
        let expires_at = fields.optional("expires_at", |raw| {
            let at = Timestamp::parse_rfc3339(raw).map_err(|_| "must be an RFC 3339 time".to_owned())?;
            if at <= Timestamp::now() {
                return Err("must be in the future".to_owned());
            }
            Ok(at)
        });
        if let Some(unknown) = body.keys().find(|k| k.as_str() != "expires_at") {
            fields.error(unknown.clone(), "is not part of a new key (expires_at)");
        }
        fields.finish(|| Some(NewKey { expires_at }))
    }
}

pub(crate) async fn create_key(
    Admin(caller): Admin,
    Body(new): Body<NewKey>,
    path: web::Path<String>,
    state: web::Data<ConsoleState>,
) -> Result<HttpResponse, ApiError> {
    let target = json!({"tenant_id": path.as_str(), "expires_at": new.expires_at});
    audited(&state, &caller, target, TenantId::parse(&path).ok(), async {
        let tenant = existing(&state, &path).await?;
        let issued = core_api::auth::issue_api_key_until(state.tenants.as_ref(), tenant, new.expires_at).await?;
        tracing::info!(tenant_id = %tenant, key_id = %issued.record.id, "API key issued");
        let mut view = key_view(&issued.record);
        view["key"] = json!(issued.plaintext);
        Ok((HttpResponse::Created().json(view), None))
    })
    .await
}

pub(crate) async fn revoke_key(
    Admin(caller): Admin,
    path: web::Path<(String, String)>,
    state: web::Data<ConsoleState>,
) -> Result<HttpResponse, ApiError> {
    let (tenant_raw, key_raw) = path.into_inner();
    let target = json!({"tenant_id": tenant_raw, "key_id": key_raw});
    audited(&state, &caller, target, TenantId::parse(&tenant_raw).ok(), async {
        let tenant = existing(&state, &tenant_raw).await?;
        let key = ApiKeyId::parse(&key_raw).map_err(|_| not_found("key", &key_raw))?;
        let now = Timestamp::now();
        if !state.tenants.revoke_api_key(tenant, key, now).await? {
            let found = state.tenants.api_keys(tenant).await?.into_iter().find(|k| k.id == key);
            return Err(match found {
                Some(revoked) => ApiError::Conflict {
                    detail: format!("key {key} was revoked already"),
                    existing: Some(key_view(&revoked)),
                },
                None => not_found("key", &key_raw),
            });
        }
        tracing::info!(tenant_id = %tenant, key_id = %key, "API key revoked");
        let revoked = state.tenants.api_key(key).await?.ok_or_else(|| not_found("key", &key_raw))?;
        Ok((HttpResponse::Ok().json(key_view(&revoked)), Some(1)))
    })
    .await
}
