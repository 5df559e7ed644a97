//! `POST /v1/analytics/events` (a batch of up to 500 product events),
//! `GET /v1/analytics/batches/{id}` and `GET /v1/analytics/reconciliation`.
//!
//! A batch is stored with one `analytics.events_accepted` event per chunk of at most
//! [`CHUNK_EVENTS`] events and [`CHUNK_BYTES`] bytes, so every message stays well under
//! the transport's 256 KiB limit whatever the request held.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Map, Value};
use tracing::Instrument;

use shared::domain::analytics::{AnalyticsEvent, NewAnalyticsBatch, MAX_BATCH_EVENTS};
use shared::events::AnalyticsEventsAccepted;
use shared::{AnalyticsBatchId, EventEnvelope, Timestamp};

use crate::problem::{ApiError, FieldError};
use crate::request::{by_id, Caller, FromBody, Write};
use crate::ApiState;

const CHUNK_EVENTS: usize = 100;
const CHUNK_BYTES: usize = 160 * 1024;

fn parse(body: &Map<String, Value>, received: Timestamp) -> Result<Vec<AnalyticsEvent>, ApiError> {
    let list = match body.get("events") {
        Some(Value::Array(list)) if !list.is_empty() && list.len() <= MAX_BATCH_EVENTS => list,
        Some(Value::Array(list)) => {
            return Err(ApiError::Validation(vec![FieldError::new(
                "events",
                format!("must hold 1 to {MAX_BATCH_EVENTS} events (got {})", list.len()),
            )]))
        }
        _ => return Err(ApiError::Validation(vec![FieldError::new("events", "is required (an array of events)")])),
    };
    let mut events = Vec::with_capacity(list.len());
    let mut errors = Vec::new();
    for (i, value) in list.iter().enumerate() {
        match AnalyticsEvent::parse(value, received) {
            Ok(event) => events.push(event),
            Err(issues) => errors.extend(issues.into_iter().map(|(field, message)| {
                let path = if field.is_empty() { format!("events[{i}]") } else { format!("events[{i}].{field}") };
                FieldError::new(path, message)
            })),
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    Ok(events)
}

/// Splits the events into chunks bounded by count and serialized size.
fn chunks(events: &[AnalyticsEvent]) -> Vec<Vec<AnalyticsEvent>> {
    let mut chunks: Vec<Vec<AnalyticsEvent>> = Vec::new();
    let mut current = Vec::new();
    let mut bytes = 0;
    for event in events {
        let size = event.to_json().to_string().len();
        if !current.is_empty() && (current.len() == CHUNK_EVENTS || bytes + size > CHUNK_BYTES) {
            chunks.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += size;
        current.push(event.clone());
    }
    if !current.is_empty() {
        chunks.push(current);
    }
    chunks
}

/// A validated batch: its events, each with its id.
pub(crate) struct Batch(Vec<AnalyticsEvent>);

impl FromBody for Batch {
    fn from_body(body: &Map<String, Value>, _: &HttpRequest) -> Result<Self, ApiError> {
        parse(body, Timestamp::now()).map(Batch)
    }
}

pub(crate) async fn create(write: Write<Batch>, state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let events = &write.body.0;
    let batch =
        NewAnalyticsBatch { id: AnalyticsBatchId::new(), event_count: u32::try_from(events.len()).unwrap_or(u32::MAX) };
    let envelopes: Vec<EventEnvelope> = chunks(events)
        .into_iter()
        .map(|events| write.event(AnalyticsEventsAccepted { batch_id: batch.id, events }))
        .collect();
    state.analytics.submit_analytics(write.tenant, &batch, &envelopes).instrument(write.span.clone()).await?;
    let ids: Vec<Value> = events.iter().map(|e| json!(e.id)).collect();
    Ok(HttpResponse::Accepted().json(json!({
        "batch_id": batch.id,
        "status": "accepted",
        "accepted": events.len(),
        "event_ids": ids,
    })))
}

pub(crate) async fn batch(
    caller: Caller,
    path: web::Path<String>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let batch = by_id("analytics batch", &path, AnalyticsBatchId::parse, |id| {
        state.analytics.analytics_batch(caller.tenant, id)
    })
    .await?;
    Ok(HttpResponse::Ok().json(json!({
        "id": batch.id,
        "status": batch.status(),
        "event_count": batch.event_count,
        "written_count": batch.written_count,
        "created_at": batch.created_at,
        "updated_at": batch.updated_at,
    })))
}

pub(crate) async fn reconciliation(caller: Caller, state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let counts = state.analytics.analytics_counts(caller.tenant).await?;
    Ok(HttpResponse::Ok().json(json!({
        "accepted": counts.accepted,
        "in_transit": counts.in_transit(),
        "staged": counts.staged,
        "written": counts.written,
        "rows_in_objects": counts.rows_in_objects,
        "duplicate_rows": counts.rows_in_objects.saturating_sub(counts.written),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(size: usize) -> AnalyticsEvent {
        let value = json!({"name": "e", "properties": {"pad": "x".repeat(size)}});
        AnalyticsEvent::parse(&value, Timestamp::now()).unwrap()
    }

    #[test]
    fn chunks_are_bounded_by_count_and_size() {
        let small: Vec<AnalyticsEvent> = (0..250).map(|_| event(10)).collect();
        let sizes: Vec<usize> = chunks(&small).iter().map(Vec::len).collect();
        assert_eq!(sizes, [100, 100, 50]);
        let large: Vec<AnalyticsEvent> = (0..20).map(|_| event(30_000)).collect();
        let split = chunks(&large);
        assert!(split.len() > 1);
        for chunk in &split {
            assert!(serde_json::to_string(chunk).expect("json").len() <= CHUNK_BYTES + 200);
        }
        assert_eq!(split.iter().map(Vec::len).sum::<usize>(), 20);
    }
}
