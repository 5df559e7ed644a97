pub(crate) mod events;
pub(crate) mod feedback;

use actix_web::HttpResponse;
use serde_json::json;

use crate::problem::ApiError;

pub(crate) async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

pub(crate) async fn not_found(request: actix_web::HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound(format!("route {} {}", request.method(), request.path())))
}

/// The W3C `traceparent` of the request, when it is well formed.
pub(crate) fn trace_context(request: &actix_web::HttpRequest) -> Option<shared::TraceContext> {
    let value = request.headers().get("traceparent")?.to_str().ok()?;
    let parts: Vec<&str> = value.split('-').collect();
    let hex =
        |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
    let valid = parts.len() == 4 && hex(parts[0], 2) && hex(parts[1], 32) && hex(parts[2], 16) && hex(parts[3], 2);
    valid.then(|| shared::TraceContext {
        traceparent: value.to_owned(),
        tracestate: request.headers().get("tracestate").and_then(|v| v.to_str().ok()).map(str::to_owned),
    })
}
