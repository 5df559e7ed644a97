use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use shared::ports::{ReceivedMessage, Transport};
use shared::testkit::transport::message;
use shared::topology::UseCase;
use workers::{Consumer, ConsumerConfig, Handler, HandlerError};

use crate::helpers::Env;

/// Records what it handled; fails the dedup ids it is told to, a set number of times.
#[derive(Default)]
struct Recorder {
    handled: Mutex<Vec<String>>,
    failures: Mutex<BTreeMap<String, usize>>,
    permanent: bool,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    calls: AtomicUsize,
}

#[async_trait]
impl Handler for Recorder {
    fn name(&self) -> &str {
        "recorder"
    }

    async fn handle(&self, message: &ReceivedMessage) -> Result<(), HandlerError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
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
            return Err(if self.permanent {
                HandlerError::permanent("bad message")
            } else {
                HandlerError::transient("provider down")
            });
        }
        self.handled.lock().expect("lock").push(message.dedup_id.clone());
        Ok(())
    }
}

async fn publish(env: &Env, messages: &[(&str, &str)]) {
    let batch: Vec<_> = messages.iter().map(|(group, id)| message(group, id, "feedback.x")).collect();
    for chunk in batch.chunks(10) {
        env.embedded.publish(&env.topic(), chunk).await.expect("publish");
    }
}

fn consumer(env: &Env, handler: Arc<Recorder>, concurrency: usize) -> Consumer {
    let config = ConsumerConfig {
        concurrency,
        base_backoff: Duration::from_millis(300),
        ..ConsumerConfig::new(env.queue(UseCase::Feedback))
    };
    Consumer::new(env.embedded.clone(), handler, config)
}

fn position(list: &[String], id: &str) -> usize {
    list.iter().position(|x| x == id).unwrap_or_else(|| panic!("{id} not handled: {list:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_run_in_order_and_concurrently_up_to_the_limit() {
    let env = Env::new().await;
    publish(&env, &[("a", "a1"), ("b", "b1"), ("c", "c1"), ("a", "a2"), ("b", "b2"), ("c", "c2"), ("a", "a3")]).await;
    let handler = Arc::new(Recorder::default());
    let received = consumer(&env, handler.clone(), 2).run_once(Duration::from_secs(1)).await.expect("run");
    assert_eq!(received, 7, "one batch");
    let handled = handler.handled.lock().expect("lock").clone();
    assert_eq!(handled.len(), 7);
    assert!(position(&handled, "a1") < position(&handled, "a2") && position(&handled, "a2") < position(&handled, "a3"));
    assert!(position(&handled, "b1") < position(&handled, "b2"));
    assert_eq!(handler.max_in_flight.load(Ordering::SeqCst), 2, "two groups at a time, never more");
    assert_eq!(env.embedded.stats(&env.queue(UseCase::Feedback)).await.expect("stats").visible, 0, "all acked");

    let serial = Env::new().await;
    publish(&serial, &[("a", "a1"), ("b", "b1"), ("c", "c1")]).await;
    let one = Arc::new(Recorder::default());
    consumer(&serial, one.clone(), 1).run_once(Duration::from_secs(1)).await.expect("run");
    assert_eq!(one.max_in_flight.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_backs_off_and_its_group_waits_in_order() {
    let env = Env::new().await;
    publish(&env, &[("a", "a1"), ("a", "a2"), ("b", "b1")]).await;
    let handler = Arc::new(Recorder::default());
    handler.failures.lock().expect("lock").insert("a1".into(), 1);
    let consumer = consumer(&env, handler.clone(), 4);
    consumer.run_once(Duration::from_secs(1)).await.expect("run");
    assert_eq!(*handler.handled.lock().expect("lock"), vec!["b1".to_owned()], "a2 is not handled before a1");
    assert_eq!(consumer.run_once(Duration::ZERO).await.expect("run"), 0, "group a waits for a1's backoff");
    tokio::time::sleep(Duration::from_millis(350)).await;
    consumer.run_once(Duration::from_secs(1)).await.expect("run");
    assert_eq!(*handler.handled.lock().expect("lock"), vec!["b1".to_owned(), "a1".to_owned(), "a2".to_owned()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_keeps_failing_moves_to_the_dead_letter_queue_after_three_receives() {
    let env = Env::new().await;
    publish(&env, &[("a", "poison")]).await;
    let handler = Arc::new(Recorder { permanent: true, ..Recorder::default() });
    handler.failures.lock().expect("lock").insert("poison".into(), usize::MAX);
    let consumer = consumer(&env, handler.clone(), 4);
    for _ in 0..4 {
        consumer.run_once(Duration::from_millis(200)).await.expect("run");
    }
    assert_eq!(handler.calls.load(Ordering::SeqCst), 3, "three receives, then the DLQ");
    let dead = env.embedded.dead_letters(&env.topology.queue(UseCase::Feedback).dlq_name, 10).await.expect("dlq");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].dedup_id, "poison");
}

/// Takes longer than the visibility timeout.
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
    publish(&env, &[("a", "long")]).await;
    let handler = Arc::new(Slow { calls: AtomicUsize::new(0) });
    let config = ConsumerConfig {
        visibility_timeout: Some(Duration::from_secs(1)),
        ..ConsumerConfig::new(env.queue(UseCase::Feedback))
    };
    let consumer = Consumer::new(env.embedded.clone(), handler.clone(), config);
    let (handled, _) = tokio::join!(consumer.run_once(Duration::from_secs(1)), async {
        tokio::time::sleep(Duration::from_millis(1800)).await;
        let options = shared::ports::ReceiveOptions {
            max_messages: 10,
            wait: Duration::ZERO,
            visibility_timeout: Some(Duration::from_secs(30)),
        };
        let stolen = env.embedded.receive(&env.queue(UseCase::Feedback), options).await.expect("receive");
        assert!(stolen.is_empty(), "past its 1 s timeout, the message is still invisible");
    });
    assert_eq!(handled.expect("run"), 1);
    assert_eq!(handler.calls.load(Ordering::SeqCst), 1);
    let stats = env.embedded.stats(&env.queue(UseCase::Feedback)).await.expect("stats");
    assert_eq!((stats.visible, stats.in_flight), (0, 0), "handled once and deleted");
}
