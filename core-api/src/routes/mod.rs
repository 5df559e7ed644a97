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
