//! The parker under faults: a process killed between parking a dead letter and
//! deleting it from its queue, and a store that is down.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use adapters::embedded::EmbeddedTransport;
use shared::clock::ManualClock;
use shared::ports::{
    DeadLetterParking, ErrorGroup, Failure, NewParked, Parked, ParkedFilter, QueueName, ReceiveOptions, StoreError,
    Transport,
};
use shared::testkit::transport::message;
use shared::topology::UseCase;
use workers::parking::Parker;

use crate::helpers::Env;

/// An embedded transport whose clock the test moves, so a visibility timeout of a
/// minute runs out at once.
async fn transport(env: &Env) -> (Arc<EmbeddedTransport>, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new());
    let path = env.dir.path().join("manual-transport.db");
    let transport = EmbeddedTransport::open(&path, &env.topology, clock.clone()).await.expect("transport");
    (Arc::new(transport), clock)
}

/// Puts one message in the feedback queue's dead-letter queue, as the consumer does.
async fn dead_letter(env: &Env, transport: &EmbeddedTransport) {
    let queue = env.queue(UseCase::Feedback);
    transport.publish(&env.topic(), &[message("ten_1:a", "d1", "feedback.submitted")]).await.expect("publish");
    let options = ReceiveOptions { max_messages: 1, wait: Duration::from_secs(1), visibility_timeout: None };
    let received = transport.receive(&queue, options).await.expect("receive");
    transport.dead_letter(&queue, &received[0], &Failure::new("boom")).await.expect("dead-letter");
}

fn parker(env: &Env, transport: &Arc<EmbeddedTransport>, parking: Arc<dyn DeadLetterParking>) -> Parker {
    let mut parker = Parker::new(transport.clone(), parking, &env.topology);
    parker.wait = Duration::from_millis(200);
    parker
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parker_killed_between_parking_and_deleting_parks_nothing_twice() {
    let env = Env::new().await;
    let (transport, clock) = transport(&env).await;
    dead_letter(&env, &transport).await;
    let source = QueueName::new(env.queue(UseCase::Feedback));
    let dlq = env.topology.queue(UseCase::Feedback).dlq_name.clone();
    // A parker receives and parks it, and is killed before the delete.
    let options = ReceiveOptions {
        max_messages: 1,
        wait: Duration::from_secs(1),
        visibility_timeout: Some(Duration::from_secs(60)),
    };
    let held = transport.receive(&dlq, options).await.expect("receive").pop().expect("the dead letter");
    assert!(env.store.park(&Parker::parked(&source, &held)).await.expect("park"));
    // Its visibility runs out; the next parker gets it again.
    clock.advance(Duration::from_secs(61));
    let parked = parker(&env, &transport, env.store.clone()).park_some(&source, &dlq).await.expect("park");
    assert_eq!(parked, 1, "received again and deleted");
    let listed = env.store.parked(&ParkedFilter::default(), None, 10).await.expect("list");
    assert_eq!(listed.len(), 1, "parked once");
    let stats = transport.stats(&dlq).await.expect("stats");
    assert_eq!((stats.visible, stats.in_flight), (0, 0), "gone from the dead-letter queue");
}

/// A store that refuses to park while `down`.
struct Flaky {
    inner: Arc<dyn shared::ports::StoreBackend>,
    down: AtomicBool,
}

#[async_trait]
impl DeadLetterParking for Flaky {
    async fn park(&self, message: &NewParked) -> Result<bool, StoreError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("the database is down".into()));
        }
        self.inner.park(message).await
    }

    async fn parked(&self, filter: &ParkedFilter, before: Option<i64>, limit: u32) -> Result<Vec<Parked>, StoreError> {
        self.inner.parked(filter, before, limit).await
    }

    async fn parked_message(&self, id: i64) -> Result<Option<Parked>, StoreError> {
        self.inner.parked_message(id).await
    }

    async fn parked_groups(&self, filter: &ParkedFilter, limit: u32) -> Result<Vec<ErrorGroup>, StoreError> {
        self.inner.parked_groups(filter, limit).await
    }

    async fn parked_count(&self, queue: &QueueName) -> Result<u64, StoreError> {
        self.inner.parked_count(queue).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_the_store_cannot_take_stays_in_its_queue() {
    let env = Env::new().await;
    let (transport, clock) = transport(&env).await;
    dead_letter(&env, &transport).await;
    let source = QueueName::new(env.queue(UseCase::Feedback));
    let dlq = env.topology.queue(UseCase::Feedback).dlq_name.clone();
    let flaky = Arc::new(Flaky { inner: env.store.clone(), down: AtomicBool::new(true) });
    let parker = parker(&env, &transport, flaky.clone());
    assert!(parker.park_some(&source, &dlq).await.is_err(), "the store's refusal is the parker's error");
    let stats = transport.stats(&dlq).await.expect("stats");
    assert_eq!(stats.visible + stats.in_flight, 1, "not deleted: it comes back after its visibility timeout");
    assert!(env.store.parked(&ParkedFilter::default(), None, 10).await.expect("list").is_empty());
    clock.advance(Duration::from_secs(30));
    assert_eq!(parker.park_some(&source, &dlq).await.expect("nothing yet"), 0, "hidden while its visibility lasts");

    // The store is back and the visibility ran out: parked and deleted.
    flaky.down.store(false, Ordering::SeqCst);
    clock.advance(Duration::from_secs(31));
    assert_eq!(parker.park_some(&source, &dlq).await.expect("park"), 1);
    assert_eq!(env.store.parked(&ParkedFilter::default(), None, 10).await.expect("list").len(), 1);
    let stats = transport.stats(&dlq).await.expect("stats");
    assert_eq!((stats.visible, stats.in_flight), (0, 0));
}
