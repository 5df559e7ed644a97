//! Reading requests: one field reader for JSON bodies, and the extractors every
//! handler starts from.
//!
//! The order of checks is the API's contract: a write's body is read and checked first
//! (size, media type, JSON, shape, then every field, all failing fields reported at
//! once), and only then is the key checked, the tenant's rate limit taken and the
//! request's span opened. So a bad body with a bad key is 400/413/415/422, never 401.
//!
//! - [`Fields`] reads the fields of a body, collecting a [`FieldError`] per problem.
//! - [`FromBody`] is what a write's validated body implements.
//! - [`Write`] extracts such a body, then authenticates ([`Caller`] for handlers with
//!   no body).
//! - [`by_id`] answers the tenant's resource named by a path id, or 404.

use std::fmt::Display;
use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload as DevPayload;
use actix_web::{web, FromRequest, HttpRequest};
use serde_json::{Map, Value};

use shared::events::Payload;
use shared::ports::StoreError;
use shared::{EventEnvelope, TenantId, TraceContext};

use crate::body::json_object;
use crate::problem::{ApiError, FieldError};
use crate::ApiState;

/// Reads the fields of a JSON object, collecting every problem.
pub struct Fields<'a> {
    body: &'a Map<String, Value>,
    errors: Vec<FieldError>,
}

impl<'a> Fields<'a> {
    pub fn new(body: &'a Map<String, Value>) -> Self {
        Self { body, errors: Vec::new() }
    }

    /// The raw value of `name`; `None` when absent or `null`.
    pub fn value(&self, name: &str) -> Option<&'a Value> {
        self.body.get(name).filter(|v| !v.is_null())
    }

    /// Whether the body names `name` at all (even as `null`).
    pub fn has(&self, name: &str) -> bool {
        self.body.contains_key(name)
    }

    /// Records a problem with `field`.
    pub fn error(&mut self, field: impl Into<String>, detail: impl Into<String>) {
        self.errors.push(FieldError::new(field, detail));
    }

    /// Records `result`'s error against `field`; the value when there was none.
    pub fn check<T, E: Display>(&mut self, field: &str, result: Result<T, E>) -> Option<T> {
        result.map_err(|detail| self.error(field, detail.to_string())).ok()
    }

    /// A required string, parsed by `parse`.
    pub fn required<T, E: Display>(&mut self, name: &str, parse: impl FnOnce(&str) -> Result<T, E>) -> Option<T> {
        match self.value(name) {
            None => {
                self.error(name, "is required");
                None
            }
            Some(_) => self.optional(name, parse),
        }
    }

    /// An optional string (absent or `null` is `None`), parsed by `parse`.
    pub fn optional<T, E: Display>(&mut self, name: &str, parse: impl FnOnce(&str) -> Result<T, E>) -> Option<T> {
        match self.value(name)? {
            Value::String(text) => self.check(name, parse(text)),
            _ => {
                self.error(name, "must be a string");
                None
            }
        }
    }

    /// An optional integer (absent or `null` is `None`), parsed by `parse`.
    pub fn optional_integer<T, E: Display>(
        &mut self,
        name: &str,
        parse: impl FnOnce(i64) -> Result<T, E>,
    ) -> Option<T> {
        match self.value(name)?.as_i64() {
            Some(number) => self.check(name, parse(number)),
            None => {
                self.error(name, "must be an integer");
                None
            }
        }
    }

    /// A required JSON object.
    pub fn required_object(&mut self, name: &str) -> Option<Map<String, Value>> {
        if self.value(name).is_none() {
            self.error(name, "is required");
            return None;
        }
        self.optional_object(name)
    }

    /// An optional JSON object (absent or `null` is `None`).
    pub fn optional_object(&mut self, name: &str) -> Option<Map<String, Value>> {
        match self.value(name)? {
            Value::Object(map) => Some(map.clone()),
            _ => {
                self.error(name, "must be a JSON object");
                None
            }
        }
    }

    /// The request `build` makes from the fields read, or the 422 naming every field
    /// that failed. `build` runs only when none did, so it may rely on every required
    /// field being there (returning `None` then is a bug, reported as such).
    pub fn finish<T>(self, build: impl FnOnce() -> Option<T>) -> Result<T, ApiError> {
        if !self.errors.is_empty() {
            return Err(ApiError::Validation(self.errors));
        }
        build().ok_or_else(|| ApiError::Validation(vec![FieldError::new("(body)", "could not be read")]))
    }
}

/// A write's validated body.
pub trait FromBody: Sized + 'static {
    /// Whether the body may be left out (read as an empty object).
    const OPTIONAL: bool = false;

    /// Reads the body; `request` for what travels in headers (the requester, the
    /// idempotency key) and for the server's state.
    fn from_body(body: &Map<String, Value>, request: &HttpRequest) -> Result<Self, ApiError>;
}

/// A body read and checked (size, media type, JSON, shape, fields), nothing else: the
/// first extractor of a handler that authenticates its caller in its own way (the
/// control plane's operators), so a bad body is answered before the credentials.
pub struct Body<B>(pub B);

async fn read_body<B: FromBody>(request: &HttpRequest, payload: &mut DevPayload) -> Result<B, ApiError> {
    let payload = web::Payload::from_request(request, payload)
        .into_inner()
        .map_err(|e| ApiError::MalformedJson(format!("could not read the body: {e}")))?;
    let body = if B::OPTIONAL {
        crate::body::optional_json_object(request, payload).await?
    } else {
        json_object(request, payload).await?
    };
    B::from_body(&body, request)
}

impl<B: FromBody> FromRequest for Body<B> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(request: &HttpRequest, payload: &mut DevPayload) -> Self::Future {
        let request = request.clone();
        let mut payload = payload.take();
        Box::pin(async move { read_body(&request, &mut payload).await.map(Body) })
    }
}

/// The authenticated caller of a handler with no body: its key is valid and its plan
/// allows another request.
pub struct Caller {
    pub tenant: TenantId,
}

fn state(request: &HttpRequest) -> Result<web::Data<ApiState>, ApiError> {
    request.app_data::<web::Data<ApiState>>().cloned().ok_or_else(|| {
        ApiError::Internal(StoreError::Database("the API state is not registered with the server".into()))
    })
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(request: &HttpRequest, _: &mut DevPayload) -> Self::Future {
        let request = request.clone();
        Box::pin(async move {
            let tenant = state(&request)?.authenticate(&request).await?;
            Ok(Caller { tenant })
        })
    }
}

/// An accepted write: its body read and valid, then its caller authenticated, and the
/// request's span (named after the route, `POST /v1/emails`) with the trace context to
/// stamp on the events it emits.
pub struct Write<B> {
    pub body: B,
    pub tenant: TenantId,
    pub span: tracing::Span,
    pub trace_context: Option<TraceContext>,
}

impl<B> Write<B> {
    /// The tenant's event carrying `payload`, in the request's trace.
    pub fn event<P: Payload>(&self, payload: P) -> EventEnvelope {
        let mut envelope = payload.into_envelope(self.tenant);
        envelope.trace_context = self.trace_context.clone();
        envelope
    }
}

impl<B: FromBody> FromRequest for Write<B> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(request: &HttpRequest, payload: &mut DevPayload) -> Self::Future {
        let request = request.clone();
        let mut payload = payload.take();
        Box::pin(async move {
            let body = read_body::<B>(&request, &mut payload).await?;
            let tenant = state(&request)?.authenticate(&request).await?;
            let route = request.match_pattern().unwrap_or_else(|| request.path().to_owned());
            let name = format!("{} {route}", request.method());
            let (span, trace_context) = crate::routes::request_span(
                &request,
                tracing::info_span!("api request", otel.name = %name, tenant_id = %tenant),
            );
            Ok(Write { body, tenant, span, trace_context })
        })
    }
}

/// The tenant's `kind` named by the path id `raw`, fetched by `fetch`: a malformed id,
/// another tenant's id and no such row all answer the same 404.
pub async fn by_id<I, E, T, F>(
    kind: &str,
    raw: &str,
    parse: impl FnOnce(&str) -> Result<I, E>,
    fetch: impl FnOnce(I) -> F,
) -> Result<T, ApiError>
where
    F: Future<Output = Result<Option<T>, StoreError>>,
{
    let not_found = || ApiError::NotFound(format!("{kind} {}", raw.chars().take(64).collect::<String>()));
    let id = parse(raw).map_err(|_| not_found())?;
    fetch(id).await?.ok_or_else(not_found)
}
