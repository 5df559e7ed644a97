//! Provider calls captured under `dev` instead of leaving the machine:
//! `GET /v1/captures` (kinds and counts) and `GET /v1/captures/{kind}` (the calls,
//! newest first).

use actix_web::{web, HttpResponse};
use serde_json::{json, Map, Value};

use core_api::ApiError;

use crate::audit::Viewer;
use crate::ConsoleState;

fn not_capturing() -> ApiError {
    ApiError::NotFound("captured calls (this process makes real provider calls)".into())
}

pub(crate) async fn kinds(_caller: Viewer, state: web::Data<ConsoleState>) -> Result<HttpResponse, ApiError> {
    let captures = state.captures.as_ref().ok_or_else(not_capturing)?;
    let mut counts = Map::new();
    for kind in captures.kinds() {
        counts.insert((*kind).to_owned(), json!(captures.captured(kind).await.len()));
    }
    Ok(HttpResponse::Ok().json(json!({"captures": Value::Object(counts)})))
}

pub(crate) async fn list(
    _caller: Viewer,
    path: web::Path<String>,
    state: web::Data<ConsoleState>,
) -> Result<HttpResponse, ApiError> {
    let captures = state.captures.as_ref().ok_or_else(not_capturing)?;
    if !captures.kinds().contains(&path.as_str()) {
        return Err(ApiError::NotFound(format!(
            "capture kind {} (kinds: {})",
            path.chars().take(40).collect::<String>(),
            captures.kinds().join(", ")
        )));
    }
    let mut calls = captures.captured(&path).await;
    calls.reverse();
    Ok(HttpResponse::Ok().json(json!({"kind": path.as_str(), "calls": calls})))
}
