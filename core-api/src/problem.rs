//! RFC 9457 problem details: every error the API returns is `application/problem+json`.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use shared::ports::StoreError;

/// When a 503 asks the client to come back: long enough for a failover or a restart
/// of the database, short enough that nobody waits long after it is back.
pub const UNAVAILABLE_RETRY_AFTER_SECONDS: u64 = 5;

/// One failing field of a request body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// JSON pointer-like path of the field (`data`, `metadata`, `type`).
    pub field: String,
    pub detail: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self { field: field.into(), detail: detail.into() }
    }
}

/// Errors at the HTTP edge. Internal causes are logged, never shown.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Unauthorized(&'static str),
    /// Authenticated, but the caller's role may not do this.
    #[error("{0}")]
    Forbidden(String),
    #[error("the request body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("the request has invalid fields")]
    Validation(Vec<FieldError>),
    #[error("the request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// The event the request would become is larger than the transport takes.
    #[error("as published (envelope and attributes) this event would be {size} bytes; the limit is {limit} bytes")]
    MessageTooLarge { size: usize, limit: usize },
    #[error("the request body must be JSON (Content-Type: application/json)")]
    UnsupportedMediaType,
    #[error("{0} not found")]
    NotFound(String),
    /// The request conflicts with the current state; `existing` shows that state.
    #[error("{detail}")]
    Conflict { detail: String, existing: Option<serde_json::Value> },
    /// An idempotency key reused with a different request.
    #[error("this Idempotency-Key was first used with a different request (event {0}); use a new key for a new event")]
    IdempotencyKeyReused(String),
    /// The tenant's plan allows no more requests right now.
    #[error("too many requests for this tenant's plan; retry after {} s", .retry_after.as_secs().max(1))]
    RateLimited { retry_after: std::time::Duration },
    #[error("the service is temporarily unavailable")]
    Unavailable(#[source] StoreError),
    #[error("internal error")]
    Internal(#[source] StoreError),
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Conflict(detail) => ApiError::Conflict { detail, existing: None },
            StoreError::NotFound(what) => ApiError::NotFound(what),
            error if error.is_retryable() => ApiError::Unavailable(error),
            error => ApiError::Internal(error),
        }
    }
}

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    title: &'a str,
    status: u16,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    errors: Option<&'a [FieldError]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    existing: Option<&'a serde_json::Value>,
}

impl ApiError {
    fn kind_and_title(&self) -> (&'static str, &'static str) {
        match self {
            ApiError::Unauthorized(_) => ("/problems/unauthorized", "Unauthorized"),
            ApiError::Forbidden(_) => ("/problems/forbidden", "Forbidden"),
            ApiError::MalformedJson(_) => ("/problems/malformed-json", "Malformed JSON"),
            ApiError::Validation(_) => ("/problems/validation", "Invalid request"),
            ApiError::PayloadTooLarge { .. } => ("/problems/payload-too-large", "Payload too large"),
            ApiError::MessageTooLarge { .. } => ("/problems/event-too-large", "Event too large"),
            ApiError::UnsupportedMediaType => ("/problems/unsupported-media-type", "Unsupported media type"),
            ApiError::NotFound(_) => ("/problems/not-found", "Not found"),
            ApiError::Conflict { .. } => ("/problems/conflict", "Conflict"),
            ApiError::IdempotencyKeyReused(_) => ("/problems/idempotency-key-reused", "Idempotency key reused"),
            ApiError::RateLimited { .. } => ("/problems/rate-limited", "Too many requests"),
            ApiError::Unavailable(_) => ("/problems/unavailable", "Service unavailable"),
            ApiError::Internal(_) => ("/problems/internal", "Internal server error"),
        }
    }

    fn detail(&self) -> String {
        match self {
            ApiError::Validation(errors) if errors.len() == 1 => {
                format!("`{}` {}", errors[0].field, errors[0].detail)
            }
            ApiError::Validation(errors) => format!("{} fields are invalid", errors.len()),
            other => other.to_string(),
        }
    }
}

/// Makes the errors of actix's own extractors problem+json like every other error:
/// a query string that does not parse (a duplicated parameter, a wrong type) is a 400
/// naming `(query)`, a path that does not parse is a 404.
pub fn extractor_errors(cfg: &mut actix_web::web::ServiceConfig) {
    use actix_web::web::{PathConfig, QueryConfig};
    cfg.app_data(
        QueryConfig::default()
            .error_handler(|error, _| ApiError::Validation(vec![FieldError::new("(query)", error.to_string())]).into()),
    )
    .app_data(PathConfig::default().error_handler(|error, _| ApiError::NotFound(format!("path: {error}")).into()));
}

/// Logs an error with its whole cause chain.
fn log_chain(error: &dyn std::error::Error) {
    let mut chain = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        chain.push_str(": ");
        chain.push_str(&cause.to_string());
        source = cause.source();
    }
    tracing::error!(error = %chain, "request failed");
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::MalformedJson(_) | ApiError::Validation(_) => StatusCode::BAD_REQUEST,
            ApiError::PayloadTooLarge { .. } | ApiError::MessageTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::IdempotencyKeyReused(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if matches!(self, ApiError::Internal(_) | ApiError::Unavailable(_)) {
            log_chain(self);
        }
        let (kind, title) = self.kind_and_title();
        let status = self.status_code();
        let errors = match self {
            ApiError::Validation(errors) => Some(errors.as_slice()),
            _ => None,
        };
        let existing = match self {
            ApiError::Conflict { existing, .. } => existing.as_ref(),
            _ => None,
        };
        let problem = Problem { kind, title, status: status.as_u16(), detail: self.detail(), errors, existing };
        let mut response = HttpResponse::build(status);
        response.content_type("application/problem+json");
        if matches!(self, ApiError::Unauthorized(_)) {
            response.insert_header(("WWW-Authenticate", "Bearer"));
        }
        if matches!(self, ApiError::Unavailable(_)) {
            response.insert_header(("Retry-After", UNAVAILABLE_RETRY_AFTER_SECONDS.to_string()));
        }
        if let ApiError::RateLimited { retry_after } = self {
            let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            response.insert_header(("Retry-After", seconds.max(1).to_string()));
        }
        if matches!(self, ApiError::PayloadTooLarge { .. }) {
            // The rest of the body was not read: the connection cannot carry another request.
            response.force_close();
        }
        response.body(serde_json::to_string(&problem).unwrap_or_default())
    }
}
