//! Operators read and change a tenant's settings: `GET /v1/tenants/{id}` and
//! `PATCH /v1/tenants/{id}` with `{"plan": "pro", "alert_webhook_url": "https://…" | null}`
//! (fields left out stay as they are; a plan must be one the configuration defines).

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Map, Value};

use core_api::problem::FieldError;
use core_api::ApiError;
use shared::domain::{PlanName, TenantSettings};
use shared::TenantId;

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
    request: HttpRequest,
    path: web::Path<String>,
    state: web::Data<ConsoleState>,
) -> Result<HttpResponse, ApiError> {
    state.authorize(&request)?;
    Ok(HttpResponse::Ok().json(view(&state, tenant_id(&path)?).await?))
}

fn apply(body: &Map<String, Value>, state: &ConsoleState, settings: &mut TenantSettings) -> Result<(), ApiError> {
    let mut errors = Vec::new();
    match body.get("plan") {
        None => {}
        Some(Value::String(name)) => match PlanName::parse(name) {
            Ok(plan) if state.plans.contains(&plan) => settings.plan = plan,
            Ok(plan) => {
                let known: Vec<String> = state.plans.iter().map(|(name, _)| name.to_string()).collect();
                errors.push(FieldError::new(
                    "plan",
                    format!("`{plan}` is not a plan here (plans: {})", known.join(", ")),
                ));
            }
            Err(detail) => errors.push(FieldError::new("plan", detail)),
        },
        Some(_) => errors.push(FieldError::new("plan", "must be a string")),
    }
    match body.get("alert_webhook_url") {
        None => {}
        Some(Value::Null) => settings.alert_webhook_url = None,
        Some(Value::String(url)) => match state.webhooks.parse(url) {
            Ok(url) => settings.alert_webhook_url = Some(url),
            Err(detail) => errors.push(FieldError::new("alert_webhook_url", detail)),
        },
        Some(_) => errors.push(FieldError::new("alert_webhook_url", "must be a URL or null")),
    }
    if let Some(unknown) = body.keys().find(|k| !["plan", "alert_webhook_url"].contains(&k.as_str())) {
        errors.push(FieldError::new(unknown.clone(), "is not a tenant setting (plan, alert_webhook_url)"));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Validation(errors))
    }
}

pub(crate) async fn update(
    request: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<ConsoleState>,
) -> Result<HttpResponse, ApiError> {
    let body = core_api::body::json_object(&request, payload).await?;
    state.authorize(&request)?;
    let id = tenant_id(&path)?;
    let mut settings =
        state.tenants.tenant_settings(id).await?.ok_or_else(|| ApiError::NotFound(format!("tenant {id}")))?;
    apply(&body, &state, &mut settings)?;
    state.tenants.set_tenant_settings(id, &settings).await?;
    tracing::info!(tenant_id = %id, plan = %settings.plan, "tenant settings changed");
    Ok(HttpResponse::Ok().json(view(&state, id).await?))
}
