//! Reading request bodies: size limit, media type and JSON syntax are checked before
//! anything else (so a bad body with a bad key is 400/413/415, never 401).

use actix_web::http::header;
use actix_web::{web, HttpRequest};
use futures::StreamExt;
use serde_json::{Map, Value};

use crate::problem::{ApiError, FieldError};
use crate::MAX_BODY_BYTES;

/// The deepest nesting of objects and arrays a body may have (the body itself is
/// level 1). The platform wraps what it accepts in an envelope and reads it back later,
/// so a limit well below the JSON parser's own (128) keeps every accepted event
/// readable.
pub const MAX_JSON_DEPTH: usize = 32;

/// Refuses what no backend can keep or read back: nesting deeper than
/// [`MAX_JSON_DEPTH`], and NUL characters (PostgreSQL's text and JSON refuse them, so
/// both stores refuse them here alike), each named by its path. Every body read by
/// [`json_object`] passes this; a handler that parses its own body calls it.
pub fn check_shape(body: &Map<String, Value>) -> Result<(), ApiError> {
    let mut errors = Vec::new();
    collect_shape_errors(body, &mut errors);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Validation(errors))
    }
}

fn collect_shape_errors(body: &Map<String, Value>, errors: &mut Vec<FieldError>) {
    fn walk(value: &Value, path: &str, depth: usize, errors: &mut Vec<FieldError>) {
        if errors.len() >= 10 {
            return;
        }
        let nested = |key: &dyn std::fmt::Display, bracket: bool| {
            if bracket {
                format!("{path}[{key}]")
            } else if path.is_empty() {
                key.to_string()
            } else {
                format!("{path}.{key}")
            }
        };
        match value {
            Value::String(text) if text.contains('\0') => {
                errors.push(FieldError::new(path, "must not contain NUL characters (\\u0000)"));
            }
            Value::Object(_) | Value::Array(_) if depth > MAX_JSON_DEPTH => {
                errors.push(FieldError::new(path, format!("nests deeper than {MAX_JSON_DEPTH} levels")));
            }
            Value::Object(map) => {
                for (key, value) in map {
                    if key.contains('\0') {
                        errors.push(FieldError::new(
                            nested(&key.replace('\0', "\\u0000"), false),
                            "a key must not contain NUL characters (\\u0000)",
                        ));
                        continue;
                    }
                    walk(value, &nested(key, false), depth + 1, errors);
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    walk(item, &nested(&i, true), depth + 1, errors);
                }
            }
            _ => {}
        }
    }
    for (key, value) in body {
        if key.contains('\0') {
            errors
                .push(FieldError::new(key.replace('\0', "\\u0000"), "a key must not contain NUL characters (\\u0000)"));
            continue;
        }
        walk(value, key, 2, errors);
    }
}

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
    payload: web::Payload,
) -> Result<(Map<String, Value>, web::Bytes), ApiError> {
    let bytes = read_limited(request, payload).await?;
    if !is_json(request) {
        return Err(ApiError::UnsupportedMediaType);
    }
    parse_object(&bytes).map(|map| (map, bytes))
}

/// Reads an optional JSON object: an empty (or all-blank) body is an empty object.
pub async fn optional_json_object(
    request: &HttpRequest,
    payload: web::Payload,
) -> Result<Map<String, Value>, ApiError> {
    let bytes = read_limited(request, payload).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    if !is_json(request) {
        return Err(ApiError::UnsupportedMediaType);
    }
    parse_object(&bytes)
}

fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => check_shape(&map).map(|()| map),
        Ok(_) => Err(ApiError::Validation(vec![FieldError::new("(body)", "must be a JSON object")])),
        Err(error) => Err(ApiError::MalformedJson(error.to_string())),
    }
}

/// The body, up to [`MAX_BODY_BYTES`] (413 past it, without reading the rest).
async fn read_limited(request: &HttpRequest, mut payload: web::Payload) -> Result<web::Bytes, ApiError> {
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
    Ok(bytes.freeze())
}
