//! Worker health.

use std::sync::Arc;

use super::tenant;
use crate::clock::Timestamp;
use crate::envelope::EventType;
use crate::ports::{DeadLetterRecord, DedupId, MessageId, QueueName, StoreBackend, WorkerReport};

pub async fn latest_report_per_process(store: Arc<dyn StoreBackend>) {
    let now = Timestamp::now();
    let report = |process: &str, handled, failed, at| WorkerReport {
        worker: "email".into(),
        process: process.into(),
        handled,
        failed,
        // The longest wait is kept as reported, and so is none.
        longest_wait: (handled > 1).then(|| std::time::Duration::from_millis(handled * 1_000)),
        reported_at: at,
    };
    store.report_worker(&report("p1", 1, 0, now)).await.expect("report");
    store.report_worker(&report("p1", 5, 2, now)).await.expect("replace");
    store.report_worker(&report("p2", 3, 3, now)).await.expect("report");
    store.report_worker(&report("old", 9, 9, Timestamp::from_millis(0))).await.expect("report");
    let recent = store.worker_reports(Timestamp::from_millis(now.as_millis() - 60_000)).await.expect("reports");
    assert_eq!(recent, vec![report("p1", 5, 2, now), report("p2", 3, 3, now)], "latest per process, recent only");
}

pub async fn dead_letters_after_a_cursor_since_a_time(store: Arc<dyn StoreBackend>) {
    let acme = tenant(store.as_ref(), "Acme").await;
    let record = |n: u32, at: Timestamp| DeadLetterRecord {
        tenant: acme.id,
        queue: QueueName::new("q.fifo"),
        message_id: MessageId::new(format!("m{n}")),
        dedup_id: DedupId::new(format!("evt{n}")),
        // One without an event type (a message that was not an envelope).
        event_type: (n != 2).then(|| EventType::parse("feedback.submitted").expect("type")),
        error: "provider down".into(),
        recorded_at: at,
    };
    let now = Timestamp::now();
    store.record_dead_letter(&record(0, Timestamp::from_millis(0))).await.expect("record");
    for n in 1..=3 {
        store.record_dead_letter(&record(n, now)).await.expect("record");
    }
    let recent = store.dead_letters_since(0, now, 2).await.expect("since");
    assert_eq!(
        recent.iter().map(|(_, r)| r.message_id.as_str()).collect::<Vec<_>>(),
        ["m1", "m2"],
        "recent, oldest first"
    );
    assert_eq!(recent[0].1, record(1, now));
    assert_eq!(recent[1].1, record(2, now), "a record without an event type reads back as such");
    let rest = store.dead_letters_since(recent[1].0, now, 10).await.expect("since");
    assert_eq!(rest.iter().map(|(_, r)| r.message_id.as_str()).collect::<Vec<_>>(), ["m3"], "after the cursor");
    assert!(store.dead_letters_since(rest[0].0, now, 10).await.expect("since").is_empty());
}
