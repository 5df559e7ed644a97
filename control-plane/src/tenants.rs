//! Operators read and change a tenant's settings: `GET /v1/tenants/{id}` and
//! `PATCH /v1/tenants/{id}` with `{"plan": "pro", "alert_webhook_url": "https://…" | null}`
//! (fields left out stay as they are; a plan must be one the configuration defines).

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Map, Value};

use core_api::request::{Body, Fields, FromBody};
use core_api::ApiError;
use shared::domain::{PlanName, SettingsChange};
use shared::TenantId;

use crate::audit::{audited, Admin, Viewer};
use crate::ConsoleState;

fn tenant_id(raw: &str) -> Result<TenantId, ApiError> {
    TenantId::parse(raw).map_err(|_| ApiError::NotFound(format!("tenant {}", raw.chars().take(64).collect::<String>())))
}

async fn view(state: &ConsoleState, id: TenantId) -> Result<Value, ApiError> {
    let tenant = state.tenants.tenant(id).await?.ok_or_else(|| ApiError::NotFound(format!("tenant {id}")))?;
    let settings =
        state.tenants.tenant_settings(id).await?.ok_or_else(|| ApiError::NotFound(format!("tenant {id}")))?;
    Ok(json!({
        "id": tenant.id,
        "name": tenant.name.as_str(),
        "created_at": tenant.created_at,
        "plan": settings.plan,
        "alert_webhook_url": settings.alert_webhook_url,
    }))
}

pub(crate) async fn get(
    _caller: Viewer,
    path: web::Path<String>,
    state: web::Data<ConsoleState>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(view(&state, tenant_id(&path)?).await?))
}

/// The change a PATCH body asks for, validated against the configured plans and the
/// webhook policy (it does not depend on the current settings).
fn change(body: &Map<String, Value>, state: &ConsoleState) -> Result<SettingsChange, ApiError> {
    let mut fields = Fields::new(body);
    let plan = fields.optional("plan", |name| {
        let plan = PlanName::parse(name)?;
        if state.plans.contains(&plan) {
            Ok(plan)
        } else {
            let known: Vec<String> = state.plans.iter().map(|(name, _)| name.to_string()).collect();
            Err(format!("`{plan}` is not a plan here (plans: {})", known.join(", ")))
        }
    });
    let alert_webhook_url = match body.get("alert_webhook_url") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(Value::String(url)) => fields.check("alert_webhook_url", state.webhooks.parse(url)).map(Some),
        Some(_) => {
            fields.error("alert_webhook_url", "must be a URL or null");
            None
        }
    };
    if let Some(unknown) = body.keys().find(|k| !["plan", "alert_webhook_url"].contains(&k.as_str())) {
        fields.error(unknown.clone(), "is not a tenant setting (plan, alert_webhook_url)");
    }
    fields.finish(|| Some(SettingsChange { plan, alert_webhook_url }))
}

/// The body of `PATCH /v1/tenants/{id}`.
pub(crate) struct Patch(SettingsChange);

impl FromBody for Patch {
    fn from_body(body: &Map<String, Value>, request: &HttpRequest) -> Result<Self, ApiError> {
        let state = request
            .app_data::<web::Data<ConsoleState>>()
            .ok_or(ApiError::Unauthorized("the control plane has no state registered"))?;
        change(body, state).map(Patch)
    }
}

pub(crate) async fn update(
    Admin(caller): Admin,
    Body(Patch(change)): Body<Patch>,
    path: web::Path<String>,
    state: web::Data<ConsoleState>,
) -> Result<HttpResponse, ApiError> {
    let tenant = TenantId::parse(&path).ok();
    let target = json!({
        "tenant_id": path.as_str(),
        "plan": change.plan.as_ref().map(ToString::to_string),
        // Not the URL itself: a webhook URL carries its credentials.
        "alert_webhook_url": change.alert_webhook_url.as_ref().map(|url| if url.is_some() { "set" } else { "removed" }),
    });
    audited(&state, &caller, target, tenant, async {
        let id = tenant_id(&path)?;
        let settings = state.tenants.change_tenant_settings(id, &change).await?;
        tracing::info!(tenant_id = %id, plan = %settings.plan, "tenant settings changed");
        Ok((HttpResponse::Ok().json(view(&state, id).await?), None))
    })
    .await
}
