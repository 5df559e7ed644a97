//! `GET /v1/events/{id}`: the journey of any tenant's event (see `core_api::journey`).

use actix_web::{web, HttpResponse};

use core_api::ApiError;
use shared::EventId;

use crate::audit::Viewer;
use crate::ConsoleState;

pub(crate) async fn journey(
    _caller: Viewer,
    path: web::Path<String>,
    state: web::Data<ConsoleState>,
) -> Result<HttpResponse, ApiError> {
    let records =
        core_api::request::by_id("event", &path, EventId::parse, |id| state.journeys.event_records(id, None)).await?;
    Ok(HttpResponse::Ok().json(core_api::journey::build(&records, Some(&state.journey)).await))
}
