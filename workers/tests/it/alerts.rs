use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use shared::ports::providers::Alert;
use shared::ports::{ReceiveOptions, Transport};
use shared::testkit::transport::message;
use shared::topology::UseCase;
use workers::alerts::Alerter;

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
    let mut monitor = env.monitor(sink.clone());
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
async fn a_worker_failing_most_messages_in_other_processes_is_alerted() {
    use std::sync::atomic::Ordering as AtomicOrdering;
    use tokio_util::sync::CancellationToken;
    use workers::alerts::report_worker;

    let env = Env::new().await;
    let sink = Arc::new(Recorder::default());
    let mut monitor = env.monitor(sink.clone());
    // Two email worker processes report their counts through the store.
    let (one, two) = (Arc::new(workers::ConsumerStats::default()), Arc::new(workers::ConsumerStats::default()));
    let share = shared::limits::Share::alone();
    let report = |process: &str, stats: &Arc<workers::ConsumerStats>| {
        let stopped = CancellationToken::new();
        stopped.cancel();
        report_worker(
            env.store.clone(),
            "email".into(),
            process.into(),
            stats.clone(),
            share.clone(),
            Duration::from_secs(60),
            stopped,
        )
    };
    let start = Instant::now();
    one.failed.fetch_add(5, AtomicOrdering::Relaxed);
    report("p1", &one).await;
    assert_eq!(share.processes(), 1, "p1 alone");
    report("p2", &two).await;
    assert_eq!(share.processes(), 2, "p2 sees p1 too: the limits are divided by two");
    monitor.check(start).await;
    assert!(sink.posted.lock().expect("lock").is_empty(), "a first report is a baseline");

    // Since then: 4 handled and 16 failed across both processes, 80 % > 50 %.
    one.handled.fetch_add(4, AtomicOrdering::Relaxed);
    one.failed.fetch_add(6, AtomicOrdering::Relaxed);
    two.failed.fetch_add(10, AtomicOrdering::Relaxed);
    report("p1", &one).await;
    report("p2", &two).await;
    monitor.check(start + Duration::from_secs(30)).await;
    let posted = sink.posted.lock().expect("lock").clone();
    assert_eq!(posted.len(), 1);
    assert_eq!(posted[0].title, "The email worker is failing");
    assert!(posted[0].description.starts_with("16 of the last 20"), "{}", posted[0].description);

    // Healthy again (and p2 restarted, its counts from zero): nothing new.
    one.handled.fetch_add(50, AtomicOrdering::Relaxed);
    let restarted = Arc::new(workers::ConsumerStats::default());
    restarted.handled.fetch_add(10, AtomicOrdering::Relaxed);
    report("p1", &one).await;
    report("p2", &restarted).await;
    monitor.check(start + Duration::from_secs(60)).await;
    assert_eq!(sink.posted.lock().expect("lock").len(), 1);
}

/// A handler that always fails.
struct Broken;

#[async_trait::async_trait]
impl workers::Handler for Broken {
    fn name(&self) -> &str {
        "broken"
    }

    async fn handle(&self, _message: &shared::ports::ReceivedMessage) -> Result<(), workers::HandlerError> {
        Err(workers::HandlerError::transient("the provider is down"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_with_its_own_webhook_hears_of_its_dead_letters_and_others_do_not() {
    use shared::domain::{PlanName, TenantSettings};
    use shared::ports::providers::AlertSink;
    use workers::alerts::TenantAlerts;
    use workers::{Consumer, ConsumerConfig};

    let env = Env::new().await;
    let acme = env.tenant("Acme").await;
    let globex = env.tenant("Globex").await;
    let hook = "https://discord.com/api/webhooks/1/acme";
    let settings = TenantSettings { plan: PlanName::standard(), alert_webhook_url: Some(hook.into()) };
    env.store.set_tenant_settings(acme, &settings).await.expect("settings");
    let queue = env.queue(UseCase::Feedback);

    // The dead-letter queue already holds more old messages than one listing shows.
    let old: Vec<_> = (0..12).map(|i| message(&globex.to_string(), &format!("old-{i}"), "feedback.x")).collect();
    for chunk in old.chunks(10) {
        env.embedded.publish(&env.topic(), chunk).await.expect("publish");
    }
    let options =
        ReceiveOptions { max_messages: 10, wait: Duration::from_millis(200), visibility_timeout: Some(Duration::ZERO) };
    for _ in 0..8 {
        env.embedded.receive(&queue, options).await.expect("receive");
    }
    let dlq = env.topology.queue(UseCase::Feedback).dlq_name.clone();
    assert!(env.embedded.stats(&dlq).await.expect("stats").visible >= 10, "a backlog of old dead letters");

    let operators = Arc::new(Recorder::default());
    let tenant_sink = Arc::new(Recorder::default());
    let urls = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let (sink, seen) = (tenant_sink.clone(), urls.clone());
    let factory = Box::new(move |url: &str| {
        seen.lock().expect("lock").push(url.to_owned());
        sink.clone() as Arc<dyn AlertSink>
    });
    let mut monitor = env.monitor(operators.clone());
    monitor.tenant_alerts = Some(TenantAlerts::new(factory, Duration::from_secs(300)));
    let start = Instant::now();
    monitor.check(start).await;

    // One poison message per tenant, handled by a worker until it gives up on them;
    // their groups are the tenant and an ordering key, as the relay publishes them.
    let poison_acme = message(&format!("{acme}:fb_1"), "poison-acme", "feedback.x");
    let poison_globex = message(&format!("{globex}:fb_2"), "poison-globex", "feedback.x");
    env.embedded.publish(&env.topic(), &[poison_acme, poison_globex]).await.expect("publish");
    let config = ConsumerConfig { base_backoff: Duration::from_millis(10), ..ConsumerConfig::new(queue.clone()) };
    let consumer =
        Consumer::new(env.embedded.clone(), Arc::new(Broken), config).recording_dead_letters(env.store.clone());
    for _ in 0..4 {
        consumer.run_once(Duration::from_millis(300)).await.expect("run");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let recorded = env.store.dead_letters_since(0, shared::Timestamp::from_millis(0), 10).await.expect("recorded");
    let ids: Vec<&str> = recorded.iter().map(|(_, r)| r.dedup_id.as_str()).collect();
    assert_eq!(ids.len(), 2, "one record per message given up on, at its last attempt: {ids:?}");
    monitor.check(start + Duration::from_secs(1)).await;
    monitor.check(start + Duration::from_secs(2)).await;

    assert_eq!(operators.posted.lock().expect("lock").len(), 1, "the deployment hears once");
    let told = tenant_sink.posted.lock().expect("lock").clone();
    assert_eq!(told.len(), 1, "Acme hears of its own dead letter, once: {told:?}");
    assert_eq!(told[0].title, "A feedback.x event could not be processed");
    assert!(told[0].fields.iter().any(|(name, value)| name == "event id" && value == "poison-acme"));
    assert!(!told.iter().any(|a| a.fields.iter().any(|(_, v)| v == "poison-globex")), "Globex has no webhook");
    assert_eq!(*urls.lock().expect("lock"), [hook.to_owned()], "posted to Acme's own webhook");
}

#[tokio::test]
async fn an_event_the_relay_gives_up_on_is_alerted_once() {
    use crate::helpers::{Faults, FaultyTransport};
    use workers::{OutboxRelay, RelayConfig};

    let env = Env::new().await;
    let acme = env.tenant("Acme").await;
    let refused = env.append(acme, "feedback.x", 1).await;
    let faults = Faults { refused_entries: [refused.id.to_string()].into_iter().collect(), ..Faults::default() };
    let transport = Arc::new(FaultyTransport::new(env.embedded.clone(), faults));
    let relay = OutboxRelay::new(env.store.clone(), transport, env.topology.clone(), RelayConfig::default());
    relay.run_once().await.expect("round");

    let operators = Arc::new(Recorder::default());
    let mut monitor = env.monitor(operators.clone());
    monitor.check(Instant::now()).await;
    monitor.check(Instant::now() + Duration::from_secs(600)).await;
    let titles: Vec<String> = operators.posted.lock().expect("lock").iter().map(|a| a.title.clone()).collect();
    assert_eq!(titles, ["Events that cannot be published"], "once, not on every check");
}

/// A worker process reports how long the longest-waiting message it received had been
/// in the queue (SQS tells only CloudWatch its oldest message's age), once per report.
#[tokio::test]
async fn a_worker_reports_how_long_its_messages_waited() {
    use tokio_util::sync::CancellationToken;
    use workers::{Consumer, ConsumerConfig};

    let env = Env::new().await;
    let queue = env.queue(UseCase::Email);
    env.embedded.publish(&env.topic(), &[message("ten_1:a", "w1", "email.requested")]).await.expect("publish");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let config = ConsumerConfig { base_backoff: Duration::from_millis(10), ..ConsumerConfig::new(queue.clone()) };
    let consumer = Consumer::new(env.embedded.clone(), Arc::new(Broken), config);
    let stats = consumer.stats();
    consumer.run_once(Duration::from_millis(300)).await.expect("run");
    let report = || {
        let stopped = CancellationToken::new();
        stopped.cancel();
        workers::alerts::report_worker(
            env.store.clone(),
            "email".into(),
            "p1".into(),
            stats.clone(),
            shared::limits::Share::alone(),
            Duration::from_secs(60),
            stopped,
        )
    };
    report().await;
    let since = shared::Timestamp::now().minus(Duration::from_secs(60));
    let reports = env.store.worker_reports(since).await.expect("reports");
    let waited = reports[0].longest_wait.expect("a wait was reported");
    assert!(waited >= Duration::from_millis(300) && waited < Duration::from_secs(30), "{waited:?}");
    report().await;
    let reports = env.store.worker_reports(since).await.expect("reports");
    assert_eq!(reports[0].longest_wait, None, "nothing received since the previous report");
}
