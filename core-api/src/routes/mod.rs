pub(crate) mod access_requests;
pub(crate) mod analytics;
pub(crate) mod emails;
pub(crate) mod events;
pub(crate) mod feedback;
pub(crate) mod testflight;
pub(crate) mod webhooks;

use actix_web::HttpResponse;
use serde_json::json;

use crate::problem::ApiError;

pub(crate) async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

pub(crate) async fn ready(state: actix_web::web::Data<crate::ApiState>) -> Result<HttpResponse, ApiError> {
    crate::readiness(state.readiness.as_ref()).await
}

pub(crate) async fn not_found(request: actix_web::HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound(format!("route {} {}", request.method(), request.path())))
}

/// The 404 for a path id that is malformed or not the tenant's (the two look the same).
pub(crate) fn not_found_id(kind: &str, raw: &str) -> ApiError {
    ApiError::NotFound(format!("{kind} {}", raw.chars().take(64).collect::<String>()))
}

/// What an accepted write needs once its body is valid: the authenticated tenant, the
/// event type it emits, and the request's span with the trace context to stamp on the
/// event.
pub(crate) struct Write {
    pub tenant: shared::TenantId,
    pub event_type: shared::EventType,
    pub span: tracing::Span,
    pub trace_context: Option<shared::TraceContext>,
}

/// Authenticates a write that emits `event_type` and opens its span (named after the
/// route, `POST /v1/emails`).
pub(crate) async fn authorize_write(
    request: &actix_web::HttpRequest,
    state: &crate::ApiState,
    event_type: &str,
) -> Result<Write, ApiError> {
    let tenant = state.authenticate(request).await?;
    let event_type =
        shared::EventType::parse(event_type).map_err(|_| ApiError::NotFound(format!("event type {event_type}")))?;
    let route = request.match_pattern().unwrap_or_else(|| request.path().to_owned());
    let name = format!("{} {route}", request.method());
    let (span, trace_context) =
        request_span(request, tracing::info_span!("api request", otel.name = %name, tenant_id = %tenant));
    Ok(Write { tenant, event_type, span, trace_context })
}

/// A span for the request, continuing the caller's trace when it sent a valid
/// `traceparent`, and the trace context to stamp on the event the request produces.
pub(crate) fn request_span(
    request: &actix_web::HttpRequest,
    span: tracing::Span,
) -> (tracing::Span, Option<shared::TraceContext>) {
    let header = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let incoming = header("traceparent").filter(|tp| shared::telemetry::parse_traceparent(tp).is_some());
    if let Some(traceparent) = &incoming {
        shared::telemetry::continue_trace(&span, traceparent);
    }
    let traceparent = shared::telemetry::traceparent_of(&span).or(incoming);
    let context = traceparent.map(|traceparent| shared::TraceContext { traceparent, tracestate: header("tracestate") });
    (span, context)
}
