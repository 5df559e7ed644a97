//! Analytics.

use std::sync::Arc;
use std::time::Duration;

use super::{event, tenant};
use crate::clock::Timestamp;
use crate::domain::analytics::{hour_of, NewAnalyticsBatch, StagedAnalytics};
use crate::ids::{AnalyticsBatchId, AnalyticsEventId, TenantId};
use crate::ports::StoreBackend;

const LEASE: Duration = Duration::from_secs(60);

fn staged(batch: AnalyticsBatchId, hour: Timestamp, n: usize) -> Vec<StagedAnalytics> {
    (0..n)
        .map(|i| {
            let event_id = AnalyticsEventId::new();
            StagedAnalytics {
                event_id,
                batch_id: batch,
                hour,
                line: format!("{{\"event_id\":\"{event_id}\",\"i\":{i}}}"),
            }
        })
        .collect()
}

async fn stage(store: &dyn StoreBackend, tenant: TenantId, rows: &[StagedAnalytics]) {
    let delivery = event(tenant, "analytics.events_accepted");
    let mut effects = crate::ports::Effects::new();
    effects.stage_analytics(tenant, rows.to_vec());
    let applied = store.apply_once(crate::ports::ConsumerName::new("analytics"), tenant, delivery.id, effects).await;
    assert_eq!(applied.expect("stage"), crate::ports::Applied::Now);
}

/// Batches are counted when accepted, staged rows are claimed per tenant and hour once
/// due (by count or by age), and written rows count once even when written twice.
pub async fn batches_staging_claims_and_writes(store: Arc<dyn StoreBackend>) {
    let acme = tenant(store.as_ref(), "Acme").await;
    let globex = tenant(store.as_ref(), "Globex").await;
    let batch = NewAnalyticsBatch { id: AnalyticsBatchId::new(), event_count: 4 };
    store.submit_analytics(acme.id, &batch, &[event(acme.id, "analytics.events_accepted")]).await.expect("submit");
    assert_eq!(store.outbox_backlog().await.expect("backlog"), 1, "the batch's event is in the outbox");
    let stored = store.analytics_batch(acme.id, batch.id).await.expect("get").expect("present");
    assert_eq!((stored.event_count, stored.written_count, stored.status()), (4, 0, "accepted"));
    assert_eq!(store.analytics_batch(globex.id, batch.id).await.expect("get"), None, "tenant-scoped");
    let counts = store.analytics_counts(acme.id).await.expect("counts");
    assert_eq!((counts.accepted, counts.staged, counts.written, counts.in_transit()), (4, 0, 0, 4));

    let ten = hour_of(Timestamp::parse_rfc3339("2026-11-27T10:15:00Z").expect("t"));
    let eleven = hour_of(Timestamp::parse_rfc3339("2026-11-27T11:15:00Z").expect("t"));
    let first_hour = staged(batch.id, ten, 3);
    stage(store.as_ref(), acme.id, &first_hour).await;
    stage(store.as_ref(), acme.id, &staged(batch.id, eleven, 1)).await;
    let other = NewAnalyticsBatch { id: AnalyticsBatchId::new(), event_count: 1 };
    store.submit_analytics(globex.id, &other, &[]).await.expect("submit");
    stage(store.as_ref(), globex.id, &staged(other.id, ten, 1)).await;
    assert_eq!(store.analytics_counts(acme.id).await.expect("counts").staged, 4);

    let long_ago = Timestamp::from_millis(0);
    assert_eq!(store.claim_analytics(10, long_ago, LEASE).await.expect("claim"), None, "nothing due yet");
    let full = store.claim_analytics(2, long_ago, LEASE).await.expect("claim").expect("due by count");
    assert_eq!((full.tenant, full.hour, full.rows.len()), (acme.id, ten, 2));
    let expected: Vec<String> = first_hour[..2].iter().map(|r| r.line.clone()).collect();
    assert_eq!(full.lines, expected, "in staging order");
    assert_eq!(store.claim_analytics(2, long_ago, LEASE).await.expect("claim"), None, "claimed rows are not due");

    // By age: every partition with unclaimed rows, one per claim, each once.
    let soon = Timestamp::now().plus(Duration::from_secs(1));
    let mut partitions = Vec::new();
    while let Some(chunk) = store.claim_analytics(10, soon, LEASE).await.expect("claim") {
        partitions.push((chunk.tenant, chunk.hour, chunk.rows.len()));
        assert!(partitions.len() <= 3, "each row is claimed once: {partitions:?}");
    }
    partitions.sort();
    let mut expected = vec![(acme.id, ten, 1), (acme.id, eleven, 1), (globex.id, ten, 1)];
    expected.sort();
    assert_eq!(partitions, expected);

    store.record_analytics_object(&full, "analytics/a.ndjson.gz").await.expect("record");
    let stored = store.analytics_batch(acme.id, batch.id).await.expect("get").expect("present");
    assert_eq!((stored.written_count, stored.status()), (2, "writing"));
    let counts = store.analytics_counts(acme.id).await.expect("counts");
    assert_eq!((counts.accepted, counts.staged, counts.written, counts.rows_in_objects), (4, 2, 2, 2));

    // A lapsed claim is claimed again; when both writers record, the rows count once as
    // written and twice in objects (a detectable duplicate), never as lost.
    let again = NewAnalyticsBatch { id: AnalyticsBatchId::new(), event_count: 2 };
    store.submit_analytics(globex.id, &again, &[]).await.expect("submit");
    stage(store.as_ref(), globex.id, &staged(again.id, eleven, 2)).await;
    let soon = Timestamp::now().plus(Duration::from_secs(1));
    let first = store.claim_analytics(10, soon, Duration::ZERO).await.expect("claim").expect("due");
    let second = store.claim_analytics(10, soon, Duration::ZERO).await.expect("claim").expect("lapsed");
    assert_eq!((first.tenant, first.hour, first.rows.len()), (globex.id, eleven, 2));
    assert_eq!(first.rows, second.rows, "the same rows, claimed again");
    store.record_analytics_object(&first, "analytics/g1.ndjson.gz").await.expect("record");
    store.record_analytics_object(&second, "analytics/g2.ndjson.gz").await.expect("record again");
    let counts = store.analytics_counts(globex.id).await.expect("counts");
    assert_eq!((counts.accepted, counts.staged, counts.written, counts.rows_in_objects), (3, 1, 2, 4));
    let done = store.analytics_batch(globex.id, again.id).await.expect("get").expect("present");
    assert_eq!(done.status(), "written");
}
