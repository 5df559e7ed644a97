//! Reading request bodies: size limit, media type and JSON syntax are checked before
//! anything else (so a bad body with a bad key is 400/413/415, never 401).

use actix_web::http::header;
use actix_web::{web, HttpRequest};
use futures::StreamExt;
use serde_json::{Map, Value};

use crate::problem::{ApiError, FieldError};
use crate::MAX_BODY_BYTES;

fn is_json(request: &HttpRequest) -> bool {
    let Some(value) = request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Reads the body as a JSON object.
pub async fn json_object(request: &HttpRequest, payload: web::Payload) -> Result<Map<String, Value>, ApiError> {
    json_object_and_bytes(request, payload).await.map(|(map, _)| map)
}

/// Reads the body as a JSON object, keeping the exact bytes (for signatures).
pub(crate) async fn json_object_and_bytes(
    request: &HttpRequest,
    mut payload: web::Payload,
) -> Result<(Map<String, Value>, web::Bytes), ApiError> {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > MAX_BODY_BYTES) {
        return Err(ApiError::PayloadTooLarge { limit: MAX_BODY_BYTES });
    }
    let mut bytes = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::MalformedJson(format!("could not read the body: {e}")))?;
        if bytes.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(ApiError::PayloadTooLarge { limit: MAX_BODY_BYTES });
        }
        bytes.extend_from_slice(&chunk);
    }
    if !is_json(request) {
        return Err(ApiError::UnsupportedMediaType);
    }
    let bytes = bytes.freeze();
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok((map, bytes)),
        Ok(_) => Err(ApiError::Validation(vec![FieldError::new("(body)", "must be a JSON object")])),
        Err(error) => Err(ApiError::MalformedJson(error.to_string())),
    }
}
