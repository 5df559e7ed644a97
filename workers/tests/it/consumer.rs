use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use shared::ports::providers::ProviderError;
use shared::ports::{ObjectStoreError, ReceiveOptions, ReceivedMessage, StoreError, Transport, TransportError};
use shared::testkit::eventually;
use shared::testkit::transport::message;
use shared::topology::{Environment, InstanceName, Topology, UseCase};
use shared::Service;
use workers::{Consumer, ConsumerConfig, Handler, HandlerError};

use crate::helpers::Env;

/// How a [`Recorder`] fails a message it is told to fail.
#[derive(Clone, Copy, Default)]
enum Failure {
    #[default]
    Transient,
    Permanent,
    Unavailable,
}

/// Records every handler run; fails the dedup ids it is told to, a set number of times.
#[derive(Default)]
struct Recorder {
    /// `(dedup id, receive count)` of each successful run, in order.
    handled: Mutex<Vec<(String, u32)>>,
    /// Handler runs per dedup id, failed or not.
    runs: Mutex<BTreeMap<String, usize>>,
    failures: Mutex<BTreeMap<String, usize>>,
    failure: Failure,
    dead_lettered: Mutex<Vec<(String, String)>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

impl Recorder {
    fn failing(failure: Failure, ids: &[(&str, usize)]) -> Arc<Self> {
        let recorder = Self { failure, ..Self::default() };
        recorder.failures.lock().expect("lock").extend(ids.iter().map(|(id, n)| ((*id).to_owned(), *n)));
        Arc::new(recorder)
    }

    fn handled(&self) -> Vec<String> {
        self.handled.lock().expect("lock").iter().map(|(id, _)| id.clone()).collect()
    }

    fn runs(&self, id: &str) -> usize {
        self.runs.lock().expect("lock").get(id).copied().unwrap_or(0)
    }
}

#[async_trait]
impl Handler for Recorder {
    fn name(&self) -> &str {
        "recorder"
    }

    async fn handle(&self, message: &ReceivedMessage) -> Result<(), HandlerError> {
        *self.runs.lock().expect("lock").entry(message.dedup_id.clone()).or_default() += 1;
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(30)).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        let fail = {
            let mut failures = self.failures.lock().expect("lock");
            match failures.get_mut(&message.dedup_id) {
                Some(left) if *left > 0 => {
                    *left -= 1;
                    true
                }
                _ => false,
            }
        };
        if fail {
            return Err(match self.failure {
                Failure::Transient => HandlerError::transient("provider down"),
                Failure::Permanent => HandlerError::permanent("not a valid message"),
                Failure::Unavailable => HandlerError::unavailable("the store did not answer"),
            });
        }
        self.handled.lock().expect("lock").push((message.dedup_id.clone(), message.receive_count));
        Ok(())
    }

    async fn dead_lettered(&self, message: &ReceivedMessage, reason: &str) {
        self.dead_lettered.lock().expect("lock").push((message.dedup_id.clone(), reason.to_owned()));
    }
}

async fn publish(transport: &dyn Transport, topology: &Topology, messages: &[(&str, &str)]) {
    let batch: Vec<_> = messages.iter().map(|(group, id)| message(group, id, "feedback.x")).collect();
    for chunk in batch.chunks(10) {
        for result in transport.publish(&topology.topic(Service::CoreApi).name, chunk).await.expect("publish") {
            result.expect("published");
        }
    }
}

fn quick_config(queue: String, concurrency: usize) -> ConsumerConfig {
    ConsumerConfig {
        concurrency,
        base_backoff: Duration::from_millis(100),
        max_outage_backoff: Duration::from_millis(100),
        ..ConsumerConfig::new(queue)
    }
}

fn consumer(env: &Env, handler: Arc<Recorder>, concurrency: usize) -> Consumer {
    Consumer::new(env.embedded.clone(), handler, quick_config(env.queue(UseCase::Feedback), concurrency))
}

fn position(list: &[String], id: &str) -> usize {
    list.iter().position(|x| x == id).unwrap_or_else(|| panic!("{id} not handled: {list:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_run_in_order_and_concurrently_up_to_the_limit() {
    let env = Env::new().await;
    let t = env.embedded.as_ref();
    publish(
        t,
        &env.topology,
        &[("a", "a1"), ("b", "b1"), ("c", "c1"), ("a", "a2"), ("b", "b2"), ("c", "c2"), ("a", "a3")],
    )
    .await;
    let handler = Arc::new(Recorder::default());
    let received = consumer(&env, handler.clone(), 2).run_once(Duration::from_secs(1)).await.expect("run");
    assert_eq!(received, 7, "one batch");
    let handled = handler.handled();
    assert_eq!(handled.len(), 7);
    assert!(position(&handled, "a1") < position(&handled, "a2") && position(&handled, "a2") < position(&handled, "a3"));
    assert!(position(&handled, "b1") < position(&handled, "b2"));
    assert_eq!(handler.max_in_flight.load(Ordering::SeqCst), 2, "two groups at a time, never more");
    assert_eq!(env.embedded.stats(&env.queue(UseCase::Feedback)).await.expect("stats").visible, 0, "all acked");

    let serial = Env::new().await;
    publish(serial.embedded.as_ref(), &serial.topology, &[("a", "a1"), ("b", "b1"), ("c", "c1")]).await;
    let one = Arc::new(Recorder::default());
    consumer(&serial, one.clone(), 1).run_once(Duration::from_secs(1)).await.expect("run");
    assert_eq!(one.max_in_flight.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_attempt_is_retried_in_process_while_its_group_waits_in_order() {
    let env = Env::new().await;
    publish(env.embedded.as_ref(), &env.topology, &[("a", "a1"), ("a", "a2"), ("b", "b1")]).await;
    let handler = Recorder::failing(Failure::Transient, &[("a1", 1)]);
    consumer(&env, handler.clone(), 4).run_once(Duration::from_secs(1)).await.expect("run");
    let handled = handler.handled();
    assert!(position(&handled, "a1") < position(&handled, "a2"), "a2 waits for a1: {handled:?}");
    assert_eq!((handler.runs("a1"), handler.runs("a2"), handler.runs("b1")), (2, 1, 1));
    assert!(
        handler.handled.lock().expect("lock").iter().all(|(_, count)| *count == 1),
        "nothing was received twice: the retry happened in process"
    );
    assert!(handler.dead_lettered.lock().expect("lock").is_empty());
    let stats = env.embedded.stats(&env.queue(UseCase::Feedback)).await.expect("stats");
    assert_eq!((stats.visible, stats.in_flight), (0, 0), "all acked");
}

/// The scenario every transport must pass with the consumer: a group of
/// [poison, a, b, c] puts poison in the DLQ after exactly 3 handler runs and
/// completes a, b and c, each with one run and one receive.
pub async fn poison_group(transport: Arc<dyn Transport>, topology: &Topology) {
    let queue = topology.queue(UseCase::Feedback);
    publish(transport.as_ref(), topology, &[("t1", "poison"), ("t1", "a"), ("t1", "b"), ("t1", "c"), ("t2", "other")])
        .await;
    let handler = Recorder::failing(Failure::Transient, &[("poison", usize::MAX)]);
    let consumer = Consumer::new(transport.clone(), handler.clone(), quick_config(queue.name.clone(), 4));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while handler.handled().len() < 4 && tokio::time::Instant::now() < deadline {
        consumer.run_once(Duration::from_secs(2)).await.expect("run");
    }
    assert_eq!(handler.runs("poison"), 3, "three handler runs, then the DLQ");
    for id in ["a", "b", "c", "other"] {
        assert_eq!(handler.runs(id), 1, "{id} ran once");
    }
    let handled = handler.handled.lock().expect("lock").clone();
    let ids: Vec<&str> = handled.iter().map(|(id, _)| id.as_str()).filter(|id| *id != "other").collect();
    assert_eq!(ids, ["a", "b", "c"], "the rest of the group completes, in order");
    assert!(handled.iter().all(|(_, count)| *count == 1), "held-back messages were received once: {handled:?}");
    let dead = transport.dead_letters(&queue.dlq_name, 10).await.expect("dlq");
    assert_eq!(dead.len(), 1, "only the guilty one: {dead:?}");
    assert_eq!(dead[0].dedup_id, "poison");
    let reason = dead[0].reason().expect("a reason");
    assert!(reason.contains("provider down") && reason.contains("3 attempts"), "{reason}");
    assert_eq!(handler.dead_lettered.lock().expect("lock").len(), 1, "the worker heard of it once");
    let left = transport
        .receive(&queue.name, ReceiveOptions { max_messages: 10, wait: Duration::ZERO, visibility_timeout: None })
        .await
        .expect("receive");
    assert!(left.is_empty(), "nothing left behind: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_poison_message_dead_letters_on_the_embedded_engine() {
    let env = Env::new().await;
    poison_group(env.embedded.clone(), &env.topology).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_poison_message_dead_letters_on_sqs() {
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let instance = InstanceName::parse(&format!("c{}", &suffix[..12])).expect("instance");
    let topology = Topology::new(instance, Environment::Production).expect("topology");
    let transport = adapters::testing::aws_test_transport(&topology).await;
    poison_group(Arc::new(transport), &topology).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_can_never_succeed_is_dead_lettered_at_once_with_its_reason() {
    let env = Env::new().await;
    publish(env.embedded.as_ref(), &env.topology, &[("a", "garbled"), ("a", "fine")]).await;
    let handler = Recorder::failing(Failure::Permanent, &[("garbled", usize::MAX)]);
    consumer(&env, handler.clone(), 4).run_once(Duration::from_secs(1)).await.expect("run");
    assert_eq!(handler.runs("garbled"), 1, "no retries for what cannot succeed");
    assert_eq!(handler.handled(), ["fine"]);
    let dead = env.embedded.dead_letters(&env.topology.queue(UseCase::Feedback).dlq_name, 10).await.expect("dlq");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].reason(), Some("permanent failure: not a valid message (after 1 attempt)"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unavailable_dependency_spends_no_attempts() {
    let env = Env::new().await;
    publish(env.embedded.as_ref(), &env.topology, &[("a", "during-outage"), ("a", "after")]).await;
    // Ten failed runs while "the store" is down: more than three, and still not the message's fault.
    let handler = Recorder::failing(Failure::Unavailable, &[("during-outage", 10)]);
    let consumer = consumer(&env, handler.clone(), 4);
    let stats = consumer.stats();
    consumer.run_once(Duration::from_secs(1)).await.expect("run");
    assert_eq!(handler.runs("during-outage"), 11);
    assert_eq!(handler.handled(), ["during-outage", "after"]);
    assert!(handler.handled.lock().expect("lock").iter().all(|(_, count)| *count == 1), "kept, never received again");
    assert!(env
        .embedded
        .dead_letters(&env.topology.queue(UseCase::Feedback).dlq_name, 10)
        .await
        .expect("dlq")
        .is_empty());
    assert_eq!(stats.unavailable.load(Ordering::Relaxed), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_outage_grace_an_unavailable_dependency_counts_again() {
    let env = Env::new().await;
    publish(env.embedded.as_ref(), &env.topology, &[("a", "stuck")]).await;
    let handler = Recorder::failing(Failure::Unavailable, &[("stuck", usize::MAX)]);
    let config =
        ConsumerConfig { outage_grace: Duration::from_millis(300), ..quick_config(env.queue(UseCase::Feedback), 4) };
    let consumer = Consumer::new(env.embedded.clone(), handler.clone(), config);
    tokio::time::timeout(Duration::from_secs(10), consumer.run_once(Duration::from_secs(1)))
        .await
        .expect("bounded by the grace")
        .expect("run");
    let dead = env.embedded.dead_letters(&env.topology.queue(UseCase::Feedback).dlq_name, 10).await.expect("dlq");
    assert_eq!(dead.len(), 1, "dead-lettered once the grace ran out");
    assert!(handler.runs("stuck") > 3, "the runs within the grace did not count: {}", handler.runs("stuck"));
}

#[test]
fn errors_are_classified_by_whose_fault_they_are() {
    let unavailable = |e: &HandlerError| matches!(e, HandlerError::Unavailable(_));
    let attempt = |e: &HandlerError| matches!(e, HandlerError::Transient(_));
    let permanent = |e: &HandlerError| matches!(e, HandlerError::Permanent(_));
    // The platform's own dependencies being down is not the message's fault.
    assert!(unavailable(&HandlerError::store(StoreError::Unavailable("connection refused".into()))));
    assert!(unavailable(&HandlerError::objects(ObjectStoreError::Unavailable("timeout".into()))));
    assert!(unavailable(&HandlerError::transport(TransportError::Throttled)));
    // The store refusing what it was given is: an attempt.
    assert!(attempt(&HandlerError::store(StoreError::Database("violates check constraint".into()))));
    assert!(attempt(&HandlerError::store(StoreError::Conflict("already decided".into()))));
    assert!(attempt(&HandlerError::objects(ObjectStoreError::Other("refused".into()))));
    // A provider down or throttling is an attempt; a provider rejecting the request is final.
    assert!(attempt(&HandlerError::provider(ProviderError::Unavailable { provider: "p", detail: "502".into() })));
    assert!(attempt(&HandlerError::provider(ProviderError::RateLimited { provider: "p", retry_after: None })));
    assert!(permanent(&HandlerError::provider(ProviderError::Rejected {
        provider: "p",
        status: 400,
        reason: "bad address".into()
    })));
}

/// Never finishes: stands in for a process that dies mid-handler.
struct Hangs {
    calls: AtomicUsize,
}

#[async_trait]
impl Handler for Hangs {
    fn name(&self) -> &str {
        "hangs"
    }

    async fn handle(&self, _message: &ReceivedMessage) -> Result<(), HandlerError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        std::future::pending().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_consumers_message_is_retried_within_one_lease() {
    let env = Env::new().await;
    publish(env.embedded.as_ref(), &env.topology, &[("a", "m1"), ("a", "m2")]).await;
    let queue = env.queue(UseCase::Feedback);
    let lease = Duration::from_secs(2);
    let hangs = Arc::new(Hangs { calls: AtomicUsize::new(0) });
    let doomed =
        Consumer::new(env.embedded.clone(), hangs.clone(), ConsumerConfig { lease, ..quick_config(queue.clone(), 4) });
    let task = tokio::spawn(doomed.run(tokio_util::sync::CancellationToken::new()));
    eventually(Duration::from_secs(5), "the doomed consumer gets the message", || async {
        if hangs.calls.load(Ordering::SeqCst) == 0 {
            Err("no call yet")
        } else {
            Ok(())
        }
    })
    .await;
    task.abort(); // no heartbeat, no ack: as after kill -9
    let killed = tokio::time::Instant::now();
    let handler = Arc::new(Recorder::default());
    let survivor =
        Consumer::new(env.embedded.clone(), handler.clone(), ConsumerConfig { lease, ..quick_config(queue, 4) });
    while handler.handled().len() < 2 && killed.elapsed() < Duration::from_secs(10) {
        survivor.run_once(Duration::from_secs(1)).await.expect("run");
    }
    assert_eq!(handler.handled(), ["m1", "m2"], "both came back, in order");
    assert!(
        killed.elapsed() < lease * 2,
        "within the lease, not the queue's visibility timeout: {:?}",
        killed.elapsed()
    );
    assert!(
        env.topology.queue(UseCase::Feedback).visibility_timeout > Duration::from_secs(60),
        "the queue's own timeout is longer than a minute; the lease is what brings the message back"
    );
    assert!(
        workers::consumer::DEFAULT_LEASE <= Duration::from_secs(30),
        "the default lease keeps a retry under a minute"
    );
}

/// Takes longer than the lease.
struct Slow {
    calls: AtomicUsize,
}

#[async_trait]
impl Handler for Slow {
    fn name(&self) -> &str {
        "slow"
    }

    async fn handle(&self, _message: &ReceivedMessage) -> Result<(), HandlerError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(2500)).await;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_handler_keeps_its_message_invisible_with_a_heartbeat() {
    let env = Env::new().await;
    publish(env.embedded.as_ref(), &env.topology, &[("a", "long")]).await;
    let handler = Arc::new(Slow { calls: AtomicUsize::new(0) });
    let config = ConsumerConfig { lease: Duration::from_secs(1), ..ConsumerConfig::new(env.queue(UseCase::Feedback)) };
    let consumer = Consumer::new(env.embedded.clone(), handler.clone(), config);
    let (handled, _) = tokio::join!(consumer.run_once(Duration::from_secs(1)), async {
        tokio::time::sleep(Duration::from_millis(1800)).await;
        let options = ReceiveOptions {
            max_messages: 10,
            wait: Duration::ZERO,
            visibility_timeout: Some(Duration::from_secs(30)),
        };
        let stolen = env.embedded.receive(&env.queue(UseCase::Feedback), options).await.expect("receive");
        assert!(stolen.is_empty(), "past its 1 s lease, the message is still invisible");
    });
    assert_eq!(handled.expect("run"), 1);
    assert_eq!(handler.calls.load(Ordering::SeqCst), 1);
    let stats = env.embedded.stats(&env.queue(UseCase::Feedback)).await.expect("stats");
    assert_eq!((stats.visible, stats.in_flight), (0, 0), "handled once and deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operators_hear_of_an_outage_while_it_lasts() {
    let env = Env::new().await;
    publish(env.embedded.as_ref(), &env.topology, &[("a", "during-outage")]).await;
    let handler = Recorder::failing(Failure::Unavailable, &[("during-outage", 5)]);
    let operators = Arc::new(crate::helpers::AlertRecorder::default());
    let consumer = consumer(&env, handler.clone(), 4).alerting(operators.clone());
    consumer.run_once(Duration::from_secs(1)).await.expect("run");
    assert_eq!(handler.handled(), ["during-outage"]);
    let alerts = operators.posted.lock().expect("lock").clone();
    assert_eq!(alerts.len(), 1, "one alert for the outage, repeats folded: {alerts:?}");
    assert!(alerts[0].title.contains("waiting for a dependency"), "{}", alerts[0].title);
    assert!(alerts[0].description.contains("the store did not answer"), "{}", alerts[0].description);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_gives_a_waiting_group_back_to_the_queue() {
    let env = Env::new().await;
    publish(env.embedded.as_ref(), &env.topology, &[("a", "flaky"), ("a", "behind")]).await;
    let handler = Recorder::failing(Failure::Transient, &[("flaky", 1)]);
    let config =
        ConsumerConfig { base_backoff: Duration::from_secs(60), ..quick_config(env.queue(UseCase::Feedback), 4) };
    let consumer = Consumer::new(env.embedded.clone(), handler.clone(), config);
    let shutdown = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(consumer.run(shutdown.clone()));
    eventually(Duration::from_secs(5), "the flaky message's first run", || async {
        if handler.runs("flaky") == 0 {
            Err("not run yet")
        } else {
            Ok(())
        }
    })
    .await;
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), running).await.expect("no waiting out a 60 s backoff").expect("join");
    let stats = env.embedded.stats(&env.queue(UseCase::Feedback)).await.expect("stats");
    assert_eq!((stats.visible, stats.in_flight), (2, 0), "both are back in the queue for the next process");
    assert!(handler.dead_lettered.lock().expect("lock").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_the_transport_cannot_dead_letter_comes_back_and_is_not_reported_dead() {
    use crate::helpers::{Faults, FaultyTransport};

    let env = Env::new().await;
    publish(env.embedded.as_ref(), &env.topology, &[("a", "garbled")]).await;
    let faults = Faults { dead_letters_unavailable: true, ..Faults::default() };
    let transport = Arc::new(FaultyTransport::new(env.embedded.clone(), faults));
    let handler = Recorder::failing(Failure::Permanent, &[("garbled", 1)]);
    let consumer = Consumer::new(transport.clone(), handler.clone(), quick_config(env.queue(UseCase::Feedback), 4));
    consumer.run_once(Duration::from_secs(1)).await.expect("run");
    assert!(handler.dead_lettered.lock().expect("lock").is_empty(), "not reported dead while it is not in the DLQ");
    // Back in the queue at once; the next delivery succeeds.
    consumer.run_once(Duration::from_secs(1)).await.expect("run");
    assert_eq!(handler.handled(), ["garbled"]);
    assert!(env
        .embedded
        .dead_letters(&env.topology.queue(UseCase::Feedback).dlq_name, 10)
        .await
        .expect("dlq")
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_groups_cost_one_receive_and_few_deletes_while_concurrency_holds() {
    use crate::helpers::{Faults, FaultyTransport};

    let env = Env::new().await;
    let groups: Vec<(String, String)> = (0..10).map(|i| (format!("g{i}"), format!("m{i}"))).collect();
    let pairs: Vec<(&str, &str)> = groups.iter().map(|(g, m)| (g.as_str(), m.as_str())).collect();
    publish(env.embedded.as_ref(), &env.topology, &pairs).await;
    let transport = Arc::new(FaultyTransport::new(env.embedded.clone(), Faults::default()));
    let handler = Arc::new(Recorder::default());
    let consumer = Consumer::new(transport.clone(), handler.clone(), quick_config(env.queue(UseCase::Feedback), 2));
    let shutdown = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(consumer.run(shutdown.clone()));
    eventually(Duration::from_secs(10), "ten messages handled", || async {
        let handled = handler.handled();
        if handled.len() >= 10 {
            Ok(())
        } else {
            Err(handled)
        }
    })
    .await;
    shutdown.cancel();
    running.await.expect("join");
    assert_eq!(handler.max_in_flight.load(Ordering::SeqCst), 2, "two groups at a time, the rest held");
    assert_eq!(transport.receives.load(Ordering::SeqCst), 1, "one full batch");
    let acks = transport.acks.load(Ordering::SeqCst);
    assert!(acks <= 5, "deletes are batched across groups: {acks} calls for 10 messages");
    let stats = env.embedded.stats(&env.queue(UseCase::Feedback)).await.expect("stats");
    assert_eq!((stats.visible, stats.in_flight), (0, 0), "all deleted");
}
