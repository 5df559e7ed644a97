use std::io::Read;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::Notify;

use adapters::object_store::FilesystemObjectStore;
use shared::config::AnalyticsConfig;
use shared::domain::analytics::NewAnalyticsBatch;
use shared::events::types::ANALYTICS_EVENTS_ACCEPTED;
use shared::ports::ObjectStore;
use shared::{AnalyticsBatchId, AnalyticsEventId, EventEnvelope, Service, TenantId};
use workers::analytics::{AnalyticsWorker, AnalyticsWriter};
use workers::Handler;

use crate::helpers::{delivery, CountingObjects, Env};

/// Accepts a batch of `n` events in one chunk, as the API would.
async fn accept(env: &Env, tenant: TenantId, n: usize) -> (EventEnvelope, Vec<AnalyticsEventId>) {
    let batch = NewAnalyticsBatch { id: AnalyticsBatchId::new(), event_count: u32::try_from(n).expect("n") };
    let ids: Vec<AnalyticsEventId> = (0..n).map(|_| AnalyticsEventId::new()).collect();
    let events: Vec<Value> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| json!({"id": id, "name": "screen_view", "timestamp": "2026-11-27T10:00:00.000Z", "user_id": format!("u{i}"), "properties": {"i": i}}))
        .collect();
    let data = json!({"batch_id": batch.id, "events": events});
    let envelope = EventEnvelope::new(
        tenant,
        Service::CoreApi,
        ANALYTICS_EVENTS_ACCEPTED,
        data.as_object().cloned().unwrap_or_default(),
    );
    env.store.submit_analytics(tenant, &batch, std::slice::from_ref(&envelope)).await.expect("submit");
    (envelope, ids)
}

fn config(batch_events: u32, batch_age: Duration) -> AnalyticsConfig {
    AnalyticsConfig { batch_events, batch_age }
}

/// The `event_id`s of every row of every analytics object of `tenant`, object by object.
async fn written_rows(objects: &dyn ObjectStore, tenant: TenantId) -> Vec<Vec<String>> {
    let mut keys = objects.list(&format!("analytics/tenant={tenant}/")).await.expect("list");
    keys.sort();
    let mut all = Vec::new();
    for key in keys {
        assert!(key.as_str().ends_with(".ndjson.gz"), "{key}");
        let body = objects.get(&key).await.expect("get").expect("present");
        let mut text = String::new();
        flate2::read::GzDecoder::new(body.as_slice()).read_to_string(&mut text).expect("gzip");
        let ids = text
            .lines()
            .map(|line| {
                let row: Value = serde_json::from_str(line).expect("one JSON object per line");
                assert_eq!(row["tenant_id"], json!(tenant));
                row["event_id"].as_str().expect("event id").to_owned()
            })
            .collect();
        all.push(ids);
    }
    all
}

#[tokio::test]
async fn events_are_staged_once_and_written_in_batches_of_n() {
    let env = Env::new().await;
    let tenant = env.tenant("Acme").await;
    let objects: Arc<dyn ObjectStore> = Arc::new(FilesystemObjectStore::new(env.dir.path().join("objects")));
    let staged = Arc::new(Notify::new());
    let worker = AnalyticsWorker::new(env.store.clone(), staged.clone());
    let (envelope, ids) = accept(&env, tenant, 7).await;
    worker.handle(&delivery(&envelope, 1)).await.expect("staged");
    worker.handle(&delivery(&envelope, 2)).await.expect("a redelivery is acknowledged");
    let counts = env.store.analytics_counts(tenant).await.expect("counts");
    assert_eq!((counts.accepted, counts.staged), (7, 7), "staged once despite the redelivery");

    let writer = AnalyticsWriter::new(env.store.clone(), objects.clone(), config(3, Duration::from_secs(3600)), staged);
    assert_eq!(writer.write_due().await.expect("write"), 2, "two full objects of 3");
    let rows = written_rows(objects.as_ref(), tenant).await;
    let expected: Vec<Vec<String>> = ids[..6].chunks(3).map(|c| c.iter().map(ToString::to_string).collect()).collect();
    assert_eq!(rows, expected, "in order, each once");
    let key = objects.list(&format!("analytics/tenant={tenant}/")).await.expect("list").remove(0);
    assert!(
        key.as_str().starts_with(&format!("analytics/tenant={tenant}/year=")) && key.as_str().contains("/hour="),
        "{key}"
    );
    let counts = env.store.analytics_counts(tenant).await.expect("counts");
    assert_eq!((counts.staged, counts.written, counts.rows_in_objects), (1, 6, 6));
    assert_eq!(writer.write_due().await.expect("write"), 0, "one event is not a batch yet");
}

#[tokio::test]
async fn a_partial_batch_is_written_after_the_age_limit() {
    let env = Env::new().await;
    let tenant = env.tenant("Acme").await;
    let objects: Arc<dyn ObjectStore> = Arc::new(FilesystemObjectStore::new(env.dir.path().join("objects")));
    let staged = Arc::new(Notify::new());
    let (envelope, ids) = accept(&env, tenant, 2).await;
    AnalyticsWorker::new(env.store.clone(), staged.clone()).handle(&delivery(&envelope, 1)).await.expect("staged");
    let writer = AnalyticsWriter::new(env.store.clone(), objects.clone(), config(500, Duration::from_secs(1)), staged);
    assert_eq!(writer.write_due().await.expect("write"), 0, "too young and too small");
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(writer.write_due().await.expect("write"), 1);
    let rows = written_rows(objects.as_ref(), tenant).await;
    assert_eq!(rows, [ids.iter().map(ToString::to_string).collect::<Vec<_>>()]);
    let counts = env.store.analytics_counts(tenant).await.expect("counts");
    assert_eq!((counts.accepted, counts.staged, counts.written, counts.in_transit()), (2, 0, 2, 0));
}

#[tokio::test]
async fn an_object_store_that_fails_twice_still_writes_each_event_once() {
    let env = Env::new().await;
    let tenant = env.tenant("Acme").await;
    let objects = Arc::new(CountingObjects {
        inner: FilesystemObjectStore::new(env.dir.path().join("objects")),
        puts: AtomicUsize::new(0),
        fail_first: 2,
    });
    let staged = Arc::new(Notify::new());
    let (envelope, ids) = accept(&env, tenant, 4).await;
    AnalyticsWorker::new(env.store.clone(), staged.clone()).handle(&delivery(&envelope, 1)).await.expect("staged");
    let writer = AnalyticsWriter::new(env.store.clone(), objects.clone(), config(4, Duration::from_secs(3600)), staged);
    assert_eq!(writer.write_due().await.expect("written after two failures"), 1);
    let rows = written_rows(objects.as_ref(), tenant).await;
    assert_eq!(rows, [ids.iter().map(ToString::to_string).collect::<Vec<_>>()], "one object, each event once");
    let counts = env.store.analytics_counts(tenant).await.expect("counts");
    assert_eq!((counts.written, counts.rows_in_objects), (4, 4));
}
