use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use shared::ports::providers::Alert;
use shared::ports::{ReceiveOptions, Transport};
use shared::testkit::transport::message;
use shared::topology::UseCase;
use workers::alerts::{Alerter, Monitor};

use crate::helpers::{AlertRecorder as Recorder, Env};

fn alert(title: &str) -> Alert {
    Alert { title: title.into(), description: "d".into(), fields: vec![], colour: 0, url: None }
}

#[tokio::test]
async fn a_storm_produces_one_alert_and_one_summary() {
    let sink = Arc::new(Recorder::default());
    let mut alerter = Alerter::new(sink.clone(), Duration::from_secs(60));
    let start = Instant::now();
    for i in 0..50 {
        alerter.raise("dlq:a", alert("Dead letters in a"), start + Duration::from_millis(i * 200)).await;
    }
    alerter.raise("dlq:b", alert("Dead letters in b"), start).await;
    alerter.flush(start + Duration::from_secs(30)).await;
    let titles: Vec<String> = sink.posted.lock().expect("lock").iter().map(|a| a.title.clone()).collect();
    assert_eq!(titles, vec!["Dead letters in a", "Dead letters in b"], "one per key, at once");
    alerter.flush(start + Duration::from_secs(61)).await;
    let posted = sink.posted.lock().expect("lock").clone();
    assert_eq!(posted.len(), 3, "b had no repeats: no summary for it");
    assert_eq!(posted[2].title, "Dead letters in a (and 49 more like it)");
    alerter.raise("dlq:a", alert("Dead letters in a"), start + Duration::from_secs(62)).await;
    assert_eq!(sink.posted.lock().expect("lock").len(), 4, "a new window alerts at once again");
}

#[tokio::test]
async fn a_message_reaching_a_dead_letter_queue_is_alerted_once() {
    let env = Env::new().await;
    let sink = Arc::new(Recorder::default());
    let mut monitor = Monitor::new(
        env.embedded.clone(),
        env.store.clone(),
        env.topology.clone(),
        Alerter::new(sink.clone(), Duration::from_secs(300)),
    );
    let start = Instant::now();
    monitor.check(start).await;
    assert!(sink.posted.lock().expect("lock").is_empty(), "nothing to say yet");

    env.embedded.publish(&env.topic(), &[message("g", "poison", "feedback.x")]).await.expect("publish");
    let queue = env.queue(UseCase::Feedback);
    let options =
        ReceiveOptions { max_messages: 1, wait: Duration::from_millis(200), visibility_timeout: Some(Duration::ZERO) };
    for _ in 0..4 {
        env.embedded.receive(&queue, options).await.expect("receive");
    }
    monitor.check(start + Duration::from_secs(1)).await;
    monitor.check(start + Duration::from_secs(2)).await;
    let posted = sink.posted.lock().expect("lock").clone();
    assert_eq!(posted.len(), 1, "alerted once: {posted:?}");
    assert_eq!(posted[0].title, format!("Dead letters in {}", env.topology.queue(UseCase::Feedback).dlq_name));
    assert!(posted[0].fields.iter().any(|(name, value)| name == "dead letters" && value == "1"));
}

#[tokio::test]
async fn a_worker_failing_most_messages_is_alerted() {
    use std::sync::atomic::Ordering as AtomicOrdering;

    let env = Env::new().await;
    let sink = Arc::new(Recorder::default());
    let mut monitor = Monitor::new(
        env.embedded.clone(),
        env.store.clone(),
        env.topology.clone(),
        Alerter::new(sink.clone(), Duration::from_secs(300)),
    );
    let stats = Arc::new(workers::ConsumerStats::default());
    monitor.watch_worker("email", stats.clone());
    let start = Instant::now();

    // Few messages, all failing: not enough to judge.
    stats.failed.fetch_add(5, AtomicOrdering::Relaxed);
    monitor.check(start).await;
    assert!(sink.posted.lock().expect("lock").is_empty());

    // Then 4 handled and 16 failed since the last check: 80 % > 50 %.
    stats.handled.fetch_add(4, AtomicOrdering::Relaxed);
    stats.failed.fetch_add(16, AtomicOrdering::Relaxed);
    monitor.check(start + Duration::from_secs(30)).await;
    let posted = sink.posted.lock().expect("lock").clone();
    assert_eq!(posted.len(), 1);
    assert_eq!(posted[0].title, "The email worker is failing");
    assert!(posted[0].description.starts_with("16 of the last 20"), "{}", posted[0].description);

    // Healthy again: nothing new.
    stats.handled.fetch_add(50, AtomicOrdering::Relaxed);
    monitor.check(start + Duration::from_secs(60)).await;
    assert_eq!(sink.posted.lock().expect("lock").len(), 1);
}
