//! `GET /v1/queues`: each queue's visible, in-flight and delayed messages, its
//! dead-letter queue's depth and what was parked from it, the oldest message's age, and
//! the outbox's pending rows and the oldest one's age — for the console's overview and
//! for scripts.
//!
//! The oldest message's age comes from the transport where it can say (the embedded
//! engine: its oldest message's send time). SQS reports it only to CloudWatch
//! (`ApproximateAgeOfOldestMessage`), so there it is derived from the queue's workers:
//! each worker process reports, every report interval, how long the longest-waiting
//! message it received had been in the queue; the largest of the live processes'
//! reports is shown (`"oldest_age_source": "workers"`, as of that report). With no
//! live worker it is unknown (`null`), and messages are waiting if `visible` says so.

use actix_web::{web, HttpResponse};
use serde_json::{json, Value};

use core_api::ApiError;
use shared::ports::{QueueName, QueueStats, StoreError, TransportError};
use shared::Timestamp;

use crate::audit::Viewer;
use crate::ConsoleState;

fn transport_error(error: TransportError) -> ApiError {
    let error = if error.is_retryable() {
        StoreError::Unavailable(Box::new(error))
    } else {
        StoreError::Database(Box::new(error))
    };
    ApiError::from(error)
}

fn seconds(duration: std::time::Duration) -> f64 {
    (duration.as_secs_f64() * 1_000.0).round() / 1_000.0
}

pub(crate) async fn list(_caller: Viewer, state: web::Data<ConsoleState>) -> Result<HttpResponse, ApiError> {
    let now = Timestamp::now();
    let reports = state.health.worker_reports(now.minus(state.report_interval.saturating_mul(3))).await?;
    let mut queues = Vec::with_capacity(state.topology.queues.len());
    for queue in &state.topology.queues {
        let stats: QueueStats = state.transport.stats(&queue.name).await.map_err(transport_error)?;
        let dlq: QueueStats = state.transport.stats(&queue.dlq_name).await.map_err(transport_error)?;
        let parked = state.parking.parked_count(&QueueName::new(queue.name.clone())).await?;
        let workers: Vec<_> = reports.iter().filter(|r| r.worker == queue.use_case.as_str()).collect();
        let derived = workers.iter().filter_map(|r| r.longest_wait.map(|wait| (wait, r.reported_at))).max();
        let (oldest, source, as_of): (Option<f64>, Value, Value) = match (stats.oldest_age, derived) {
            (Some(age), _) => (Some(seconds(age)), json!("transport"), json!(now)),
            (None, Some((wait, at))) => (Some(seconds(wait)), json!("workers"), json!(at)),
            (None, None) => (None, Value::Null, Value::Null),
        };
        queues.push(json!({
            "name": queue.name,
            "use_case": queue.use_case.as_str(),
            "visible": stats.visible,
            "in_flight": stats.in_flight,
            "delayed": stats.delayed,
            "oldest_age_seconds": oldest,
            "oldest_age_source": source,
            "oldest_age_as_of": as_of,
            "dead_letter_queue": queue.dlq_name,
            "dead_letters": dlq.visible + dlq.in_flight,
            "parked": parked,
            "workers": workers.len(),
        }));
    }
    let pending = state.outbox.outbox_backlog().await?;
    let oldest = state.outbox.oldest_pending().await?;
    let failed = state.outbox.failed_outbox().await?;
    Ok(HttpResponse::Ok().json(json!({
        "queues": queues,
        "outbox": {
            "pending": pending,
            "oldest_pending_age_seconds": oldest.map(|at| seconds(at.until(now))),
            "failed": failed,
        },
        "at": now,
    })))
}
