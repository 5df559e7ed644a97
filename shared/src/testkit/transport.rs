//! The transport conformance suite.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::{announce, skip};
use crate::clock::{ManualClock, Timestamp};
use crate::envelope::Service;
use crate::pattern::{FilterPolicy, FilterPolicyScope};
use crate::ports::{Attempt, Failure, OutgoingMessage, ReceiveOptions, ReceivedMessage, Transport};
use crate::topology::{Environment, InstanceName, Topology, UseCase};

const SUITE: &str = "transport";

/// What a backend can do beyond the contract every backend meets.
#[derive(Debug, Clone, Copy)]
pub struct Capabilities {
    /// The fixture's clock can be moved forward, so windows measured in minutes (dedup)
    /// can be tested without waiting.
    pub manual_clock: bool,
    /// The backend can be closed and opened again on the same durable state.
    pub restart: bool,
    /// Lanes ([`crate::ports::fairness_lane`]) are served in turn. SQS FIFO promises
    /// no order across groups, so only the embedded transport has this.
    pub fair_lanes: bool,
}

/// One provisioned topology on a backend.
pub struct Fixture {
    pub transport: Arc<dyn Transport>,
    pub topology: Topology,
    /// Present when `Capabilities::manual_clock`.
    pub clock: Option<Arc<ManualClock>>,
}

/// Makes fixtures for the suite.
pub trait Backend: Send + Sync {
    /// Provisions `topology` (its names are unique to this call) and returns a transport.
    fn open(&self, topology: Topology) -> impl Future<Output = Fixture> + Send;
    /// Drops `fixture`'s transport and opens the same durable state again, as after a
    /// process restart. Only called when `Capabilities::restart`.
    fn reopen(&self, fixture: Fixture) -> impl Future<Output = Fixture> + Send;
}

fn unique_topology() -> Topology {
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let instance = InstanceName::parse(&format!("t{}", &suffix[..12])).expect("instance");
    let mut topology = Topology::new(instance, Environment::Production).expect("topology");
    // Fan-out: feedback events also reach the analytics queue (one subscription per
    // topic and queue, as SNS allows).
    let analytics = topology.queue(UseCase::Analytics).name.clone();
    let policy = json!({"event_type": [{"prefix": "analytics."}, {"prefix": "feedback."}]});
    let subscription =
        topology.subscriptions.iter_mut().find(|s| s.queue == analytics).expect("the analytics subscription");
    subscription.filter_policy = FilterPolicy::parse(&policy, FilterPolicyScope::MessageAttributes).expect("policy");
    subscription.filter_policy_json = policy;
    topology
}

pub fn message(group: &str, dedup: &str, event_type: &str) -> OutgoingMessage {
    OutgoingMessage {
        group_id: group.to_owned(),
        dedup_id: dedup.to_owned(),
        body: json!({"dedup": dedup, "group": group}).to_string(),
        attributes: BTreeMap::from([
            ("event_type".to_owned(), event_type.to_owned()),
            ("tenant_id".to_owned(), group.to_owned()),
        ]),
    }
}

struct Names {
    topic: String,
    feedback: String,
    feedback_dlq: String,
    email: String,
    analytics: String,
}

fn names(topology: &Topology) -> Names {
    Names {
        topic: topology.topic(Service::CoreApi).name.clone(),
        feedback: topology.queue(UseCase::Feedback).name.clone(),
        feedback_dlq: topology.queue(UseCase::Feedback).dlq_name.clone(),
        email: topology.queue(UseCase::Email).name.clone(),
        analytics: topology.queue(UseCase::Analytics).name.clone(),
    }
}

fn quick(max: u32) -> ReceiveOptions {
    ReceiveOptions { max_messages: max, wait: Duration::from_millis(1500), visibility_timeout: None }
}

fn short_visibility(max: u32, seconds: u64) -> ReceiveOptions {
    ReceiveOptions {
        max_messages: max,
        wait: Duration::from_millis(1500),
        visibility_timeout: Some(Duration::from_secs(seconds)),
    }
}

async fn publish_all(transport: &dyn Transport, topic: &str, messages: &[OutgoingMessage]) {
    // As large as the transport takes (the relay's batches), so each scenario also
    // checks a whole batch's dedup, order and turns.
    for chunk in messages.chunks(transport.publish_limit()) {
        let results = transport.publish(topic, chunk).await.expect("publish");
        assert_eq!(results.len(), chunk.len());
        for result in results {
            result.expect("entry published");
        }
    }
}

/// Receives and acks until `expected` messages arrived or a receive came back empty.
async fn drain(transport: &dyn Transport, queue: &str, expected: usize) -> Vec<ReceivedMessage> {
    let mut all = Vec::new();
    while all.len() < expected {
        let batch = transport.receive(queue, quick(10)).await.expect("receive");
        if batch.is_empty() {
            break;
        }
        let receipts: Vec<_> = batch.iter().map(|m| m.receipt.clone()).collect();
        transport.ack(queue, &receipts).await.expect("ack");
        all.extend(batch);
    }
    all
}

fn dedups(messages: &[ReceivedMessage]) -> Vec<String> {
    messages.iter().map(|m| m.dedup_id.clone()).collect()
}

/// Runs every transport scenario against `backend`.
pub async fn run_suite<B: Backend>(capabilities: Capabilities, backend: B) {
    announce(SUITE, "FIFO order within a group");
    fifo_order(&backend.open(unique_topology()).await).await;
    announce(SUITE, "a group in flight does not hold back other groups");
    independent_groups(&backend.open(unique_topology()).await).await;
    announce(SUITE, "each key of a lane keeps its order while the lane's other keys are in flight");
    keys_of_one_lane(&backend.open(unique_topology()).await).await;
    if capabilities.fair_lanes {
        announce(SUITE, "a lane's backlog does not hold back another lane's new message");
        lanes_take_turns(&backend.open(unique_topology()).await).await;
    } else {
        skip(SUITE, "a lane's backlog does not hold back another lane's new message", "the backend orders no lanes");
    }
    announce(SUITE, "filter policies and fan-out");
    filtering_and_fan_out(&backend.open(unique_topology()).await).await;
    announce(SUITE, "dedup of a message still queued");
    dedup_while_queued(&backend.open(unique_topology()).await).await;
    if capabilities.manual_clock {
        announce(SUITE, "dedup id remembered for five minutes");
        dedup_window(&backend.open(unique_topology()).await).await;
        announce(SUITE, "a message older than its queue's retention is gone");
        retention(&backend.open(unique_topology()).await).await;
    } else {
        skip(SUITE, "dedup id remembered for five minutes", "the backend's clock cannot be moved");
        skip(SUITE, "a message older than its queue's retention is gone", "the backend's clock cannot be moved");
    }
    announce(SUITE, "redelivery after the visibility timeout, with receive counts");
    redelivery(&backend.open(unique_topology()).await).await;
    announce(SUITE, "dead-letter queue after 3 receives; list, redrive and purge");
    dead_letters(&backend.open(unique_topology()).await).await;
    announce(SUITE, "a received message moved to the dead-letter queue at once, with its reason");
    dead_letter_now(&backend.open(unique_topology()).await).await;
    announce(SUITE, "queue statistics: visible, in flight, the oldest message's age, send times");
    queue_statistics(&backend.open(unique_topology()).await).await;
    announce(SUITE, "messages sent straight to a queue: order, dedup, rejected entries");
    send_to_a_queue(&backend.open(unique_topology()).await).await;
    announce(SUITE, "unknown names, rejected entries and bad batches");
    errors(&backend.open(unique_topology()).await).await;
    if capabilities.restart {
        announce(SUITE, "nothing lost across a restart");
        restart(&backend, backend.open(unique_topology()).await).await;
    } else {
        skip(SUITE, "nothing lost across a restart", "the backend cannot be reopened in-process");
    }
}

async fn fifo_order(fixture: &Fixture) {
    let n = names(&fixture.topology);
    let t = fixture.transport.as_ref();
    let messages: Vec<_> = (0..25)
        .map(|i| message(if i % 2 == 0 { "g-a" } else { "g-b" }, &format!("m{i:02}"), "feedback.submitted"))
        .collect();
    publish_all(t, &n.topic, &messages).await;
    let received = drain(t, &n.feedback, 25).await;
    assert_eq!(received.len(), 25);
    for group in ["g-a", "g-b"] {
        let got: Vec<String> = received.iter().filter(|m| m.group_id == group).map(|m| m.dedup_id.clone()).collect();
        let sent: Vec<String> = messages.iter().filter(|m| m.group_id == group).map(|m| m.dedup_id.clone()).collect();
        assert_eq!(got, sent, "group {group} keeps publish order");
    }
    let first = &received[0];
    assert_eq!(first.attributes.get("event_type").map(String::as_str), Some("feedback.submitted"));
    assert_eq!(first.receive_count, 1);
    assert!(serde_json::from_str::<serde_json::Value>(&first.body).is_ok(), "raw delivery keeps the body");
}

async fn independent_groups(fixture: &Fixture) {
    let n = names(&fixture.topology);
    let t = fixture.transport.as_ref();
    publish_all(
        t,
        &n.topic,
        &[message("g-a", "a1", "feedback.x"), message("g-a", "a2", "feedback.x"), message("g-b", "b1", "feedback.x")],
    )
    .await;
    let first = t.receive(&n.feedback, short_visibility(1, 30)).await.expect("receive");
    assert_eq!(first.len(), 1);
    let second = t.receive(&n.feedback, short_visibility(1, 30)).await.expect("receive");
    assert_eq!(second.len(), 1, "another group is not held back");
    assert_ne!(second[0].group_id, first[0].group_id);
    let third = t.receive(&n.feedback, quick(10)).await.expect("receive");
    assert!(
        third.iter().all(|m| m.group_id != first[0].group_id && m.group_id != second[0].group_id),
        "groups with a message in flight are held back: {:?}",
        dedups(&third)
    );
    let group_a = if first[0].group_id == "g-a" { &first[0] } else { &second[0] };
    t.ack(&n.feedback, std::slice::from_ref(&group_a.receipt)).await.expect("ack");
    let next = t.receive(&n.feedback, quick(10)).await.expect("receive");
    assert_eq!(dedups(&next), vec!["a2".to_owned()], "the group continues once its message is deleted");
}

async fn keys_of_one_lane(fixture: &Fixture) {
    let n = names(&fixture.topology);
    let t = fixture.transport.as_ref();
    let groups = ["ten_1:k0", "ten_1:k1", "ten_1:k2", "ten_1:k3"];
    let messages: Vec<_> =
        (0..24).map(|i| message(groups[i % groups.len()], &format!("m{i:02}"), "feedback.submitted")).collect();
    publish_all(t, &n.topic, &messages).await;
    let mut received: Vec<ReceivedMessage> = Vec::new();
    for _ in 0..30 {
        // Two receives before any ack: the second must not take a group the first holds.
        let first = t.receive(&n.feedback, short_visibility(3, 30)).await.expect("receive");
        let second = t.receive(&n.feedback, short_visibility(3, 30)).await.expect("receive");
        for message in &second {
            assert!(
                first.iter().all(|held| held.group_id != message.group_id),
                "{} was handed out while its group was in flight",
                message.dedup_id
            );
        }
        if first.is_empty() && second.is_empty() {
            break;
        }
        for batch in [&first, &second] {
            if !batch.is_empty() {
                let receipts: Vec<_> = batch.iter().map(|m| m.receipt.clone()).collect();
                t.ack(&n.feedback, &receipts).await.expect("ack");
            }
        }
        received.extend(first.into_iter().chain(second));
    }
    assert_eq!(received.len(), messages.len(), "every message arrived once");
    for group in groups {
        let got: Vec<String> = received.iter().filter(|m| m.group_id == group).map(|m| m.dedup_id.clone()).collect();
        let sent: Vec<String> = messages.iter().filter(|m| m.group_id == group).map(|m| m.dedup_id.clone()).collect();
        assert_eq!(got, sent, "key {group} keeps publish order");
    }
}

async fn lanes_take_turns(fixture: &Fixture) {
    let n = names(&fixture.topology);
    let t = fixture.transport.as_ref();
    let burst: Vec<_> = (0..60).map(|i| message(&format!("ten_a:k{i}"), &format!("a{i:02}"), "feedback.x")).collect();
    publish_all(t, &n.topic, &burst).await;
    // The burst is being worked through when the other lane sends.
    let first = t.receive(&n.feedback, short_visibility(10, 30)).await.expect("receive");
    assert!(first.iter().all(|m| m.dedup_id.starts_with('a')));
    publish_all(t, &n.topic, &[message("ten_b:k0", "b0", "feedback.x")]).await;
    let next = t.receive(&n.feedback, short_visibility(10, 30)).await.expect("receive");
    assert!(
        dedups(&next).contains(&"b0".to_owned()),
        "the other lane's message is in the next batch, not behind the burst: {:?}",
        dedups(&next)
    );
    // And the burst still drains in its own order, behind nothing.
    let rest = drain(t, &n.feedback, 60).await;
    assert_eq!(first.len() + next.len() + rest.len(), 61);
}

async fn filtering_and_fan_out(fixture: &Fixture) {
    let n = names(&fixture.topology);
    let t = fixture.transport.as_ref();
    publish_all(
        t,
        &n.topic,
        &[
            message("g", "f1", "feedback.submitted"),
            message("g", "e1", "email.requested"),
            message("g", "o1", "order.placed"),
        ],
    )
    .await;
    assert_eq!(dedups(&drain(t, &n.feedback, 1).await), vec!["f1".to_owned()]);
    assert_eq!(dedups(&drain(t, &n.email, 1).await), vec!["e1".to_owned()]);
    assert_eq!(
        dedups(&drain(t, &n.analytics, 1).await),
        vec!["f1".to_owned()],
        "one publish fans out to every matching queue"
    );
    assert!(t.receive(&n.feedback, quick(10)).await.expect("receive").is_empty(), "no other copies");
}

async fn dedup_while_queued(fixture: &Fixture) {
    let n = names(&fixture.topology);
    let t = fixture.transport.as_ref();
    publish_all(t, &n.topic, &[message("g", "same", "feedback.x")]).await;
    publish_all(t, &n.topic, &[message("g", "same", "feedback.x"), message("g", "other", "feedback.x")]).await;
    assert_eq!(dedups(&drain(t, &n.feedback, 3).await), vec!["same".to_owned(), "other".to_owned()]);
}

async fn dedup_window(fixture: &Fixture) {
    let n = names(&fixture.topology);
    let t = fixture.transport.as_ref();
    let clock = fixture.clock.as_ref().expect("manual clock");
    publish_all(t, &n.topic, &[message("g", "d1", "feedback.x")]).await;
    assert_eq!(drain(t, &n.feedback, 1).await.len(), 1);
    clock.advance(Duration::from_secs(4 * 60));
    publish_all(t, &n.topic, &[message("g", "d1", "feedback.x")]).await;
    assert!(
        t.receive(&n.feedback, quick(10)).await.expect("receive").is_empty(),
        "deleted but still within five minutes"
    );
    clock.advance(Duration::from_secs(61));
    publish_all(t, &n.topic, &[message("g", "d1", "feedback.x")]).await;
    assert_eq!(drain(t, &n.feedback, 1).await.len(), 1, "after five minutes the id is new again");
}

async fn retention(fixture: &Fixture) {
    let n = names(&fixture.topology);
    let t = fixture.transport.as_ref();
    let clock = fixture.clock.as_ref().expect("manual clock");
    let retention = fixture.topology.queue(UseCase::Feedback).retention;
    publish_all(t, &n.topic, &[message("ten_1:old", "old", "feedback.x")]).await;
    clock.advance(retention - Duration::from_secs(60));
    publish_all(t, &n.topic, &[message("ten_1:young", "young", "feedback.x")]).await;
    clock.advance(Duration::from_secs(120));
    assert_eq!(dedups(&drain(t, &n.feedback, 2).await), vec!["young".to_owned()], "only the younger one is left");
}

async fn redelivery(fixture: &Fixture) {
    let n = names(&fixture.topology);
    let t = fixture.transport.as_ref();
    publish_all(t, &n.topic, &[message("g", "r1", "feedback.x")]).await;
    let first = t.receive(&n.feedback, short_visibility(1, 1)).await.expect("receive");
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].receive_count, 1);
    assert!(
        t.receive(&n.feedback, ReceiveOptions { wait: Duration::ZERO, ..quick(1) }).await.expect("receive").is_empty(),
        "invisible while in flight"
    );
    let again = t
        .receive(&n.feedback, ReceiveOptions { wait: Duration::from_secs(5), ..short_visibility(1, 30) })
        .await
        .expect("receive");
    assert_eq!(dedups(&again), vec!["r1".to_owned()], "visible again after the timeout (long poll waits for it)");
    assert_eq!(again[0].receive_count, 2);
    t.change_visibility(&n.feedback, &again[0].receipt, Duration::ZERO).await.expect("backoff to zero");
    let third = t.receive(&n.feedback, quick(1)).await.expect("receive");
    assert_eq!(third[0].receive_count, 3);
    t.ack(&n.feedback, std::slice::from_ref(&third[0].receipt)).await.expect("ack");
    t.ack(&n.feedback, std::slice::from_ref(&third[0].receipt)).await.expect("acking twice is fine");
    assert!(t
        .receive(&n.feedback, ReceiveOptions { wait: Duration::ZERO, ..quick(1) })
        .await
        .expect("receive")
        .is_empty());
}

async fn dead_letters(fixture: &Fixture) {
    let n = names(&fixture.topology);
    let t = fixture.transport.as_ref();
    publish_all(t, &n.topic, &[message("g", "p1", "feedback.x"), message("g", "p2", "feedback.x")]).await;
    for attempt in 1..=3 {
        let got = t.receive(&n.feedback, short_visibility(1, 0)).await.expect("receive");
        assert_eq!(dedups(&got), vec!["p1".to_owned()], "attempt {attempt}");
        assert_eq!(got[0].receive_count, attempt);
    }
    // The fourth receive moves p1 to the DLQ and hands out p2 instead.
    let fourth = t.receive(&n.feedback, short_visibility(1, 0)).await.expect("receive");
    assert_eq!(dedups(&fourth), vec!["p2".to_owned()]);
    let dead = t.dead_letters(&n.feedback_dlq, 10).await.expect("list");
    assert_eq!(dead.len(), 1);
    assert_eq!((dead[0].dedup_id.as_str(), dead[0].group_id.as_str()), ("p1", "g"));
    assert_eq!(t.dead_letters(&n.feedback_dlq, 10).await.expect("list").len(), 1, "listing does not consume");
    assert_eq!(t.stats(&n.feedback_dlq).await.expect("stats").visible, 1);

    // Redrive returns it to the source queue with its ids.
    drain(t, &n.feedback, 1).await;
    assert_eq!(t.redrive(&n.feedback_dlq).await.expect("redrive"), 1);
    let back = drain(t, &n.feedback, 1).await;
    assert_eq!(dedups(&back), vec!["p1".to_owned()]);
    assert_eq!(back[0].group_id, "g");
    assert!(t.dead_letters(&n.feedback_dlq, 10).await.expect("list").is_empty());

    // Purge empties a queue.
    publish_all(t, &n.topic, &[message("g", "q1", "feedback.x"), message("h", "q2", "feedback.x")]).await;
    assert_eq!(t.purge(&n.feedback).await.expect("purge"), 2);
    assert!(t
        .receive(&n.feedback, ReceiveOptions { wait: Duration::ZERO, ..quick(10) })
        .await
        .expect("receive")
        .is_empty());
}

async fn dead_letter_now(fixture: &Fixture) {
    let n = names(&fixture.topology);
    let t = fixture.transport.as_ref();
    publish_all(t, &n.topic, &[message("g", "bad", "feedback.x"), message("g", "next", "feedback.x")]).await;
    let got = t.receive(&n.feedback, short_visibility(1, 30)).await.expect("receive");
    assert_eq!(dedups(&got), vec!["bad".to_owned()]);
    let attempts: Vec<Attempt> = (1..=3)
        .map(|n| Attempt { at: Timestamp::from_millis(1_700_000_000_000 + n), error: format!("try {n}:\nrefused") })
        .collect();
    let failure = Failure { reason: "handler failed 3 times:\nprovider said no".into(), attempts };
    t.dead_letter(&n.feedback, &got[0], &failure).await.expect("dead-letter");
    let next = drain(t, &n.feedback, 1).await;
    assert_eq!(dedups(&next), vec!["next".to_owned()], "the group goes on at once, without the moved message");
    assert_eq!(next[0].receive_count, 1, "the next message was not received for nothing");
    let dead = t.dead_letters(&n.feedback_dlq, 10).await.expect("list");
    assert_eq!(dead.len(), 1);
    assert_eq!((dead[0].dedup_id.as_str(), dead[0].group_id.as_str()), ("bad", "g"));
    assert_eq!(dead[0].body, got[0].body, "the body is kept");
    assert_eq!(dead[0].attributes.get("event_type").map(String::as_str), Some("feedback.x"), "attributes are kept");
    assert_eq!(dead[0].reason(), Some("handler failed 3 times: provider said no"), "with its reason, on one line");
    let kept: Vec<(i64, String)> = dead[0].attempts().into_iter().map(|a| (a.at.as_millis(), a.error)).collect();
    assert_eq!(
        kept,
        (1..=3).map(|n| (1_700_000_000_000 + n, format!("try {n}: refused"))).collect::<Vec<_>>(),
        "with each attempt's time and error, oldest first"
    );
    assert!(
        t.dead_letter(&n.feedback, &got[0], &Failure::new("again")).await.is_err(),
        "a receipt whose message already moved is stale"
    );
    assert_eq!(t.dead_letters(&n.feedback_dlq, 10).await.expect("list").len(), 1, "and moves nothing twice");

    // Redrive brings it back without the reason.
    assert_eq!(t.redrive(&n.feedback_dlq).await.expect("redrive"), 1);
    let back = drain(t, &n.feedback, 1).await;
    assert_eq!(dedups(&back), vec!["bad".to_owned()]);
    assert_eq!(back[0].attributes.get(crate::ports::DEAD_LETTER_REASON), None, "redrive drops the reason");
    assert_eq!(back[0].attributes.get(crate::ports::DEAD_LETTER_ATTEMPTS), None, "and the attempts");

    // A reason never pushes a message over the size limit.
    let mut big = message("h", "big", "feedback.x");
    big.body = format!("\"{}\"", "x".repeat(crate::ports::MAX_MESSAGE_BYTES - 200));
    publish_all(t, &n.topic, &[big]).await;
    let got = t.receive(&n.feedback, short_visibility(1, 30)).await.expect("receive");
    let long = Failure {
        reason: "why ".repeat(500),
        attempts: vec![Attempt { at: Timestamp::now(), error: "because ".repeat(200) }; 3],
    };
    t.dead_letter(&n.feedback, &got[0], &long).await.expect("dead-letter a message near the limit");
    let dead = t.dead_letters(&n.feedback_dlq, 10).await.expect("list");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].body.len(), got[0].body.len());
}

async fn queue_statistics(fixture: &Fixture) {
    let n = names(&fixture.topology);
    let t = fixture.transport.as_ref();
    let empty = t.stats(&n.feedback).await.expect("stats");
    assert_eq!((empty.visible, empty.in_flight, empty.delayed, empty.oldest_age), (0, 0, 0, None));
    // The backend's clock: the manual one where there is one.
    let now = || fixture.clock.as_ref().map_or_else(Timestamp::now, |clock| crate::Clock::now(clock.as_ref()));
    let before = now();
    publish_all(t, &n.topic, &[message("g-a", "s1", "feedback.x"), message("g-b", "s2", "feedback.x")]).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let held = t.receive(&n.feedback, short_visibility(1, 30)).await.expect("receive");
    assert_eq!(held.len(), 1);
    // The send time, as the backend's clock has it (within a second).
    let sent = held[0].sent_at.as_millis();
    assert!(sent >= before.as_millis() - 1_000 && sent <= now().as_millis() + 1_000, "sent at {sent}");
    // SQS counts are approximate and catch up within moments.
    let mut stats = t.stats(&n.feedback).await.expect("stats");
    for _ in 0..20 {
        if (stats.visible, stats.in_flight) == (1, 1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        stats = t.stats(&n.feedback).await.expect("stats");
    }
    assert_eq!((stats.visible, stats.in_flight, stats.delayed), (1, 1, 0), "{stats:?}");
    if let Some(age) = stats.oldest_age {
        assert!(age >= Duration::from_millis(40) && age < Duration::from_secs(60), "{age:?}");
    }
}

async fn send_to_a_queue(fixture: &Fixture) {
    let n = names(&fixture.topology);
    let t = fixture.transport.as_ref();
    let first: Vec<_> = (0..6)
        .map(|i| message(if i % 2 == 0 { "ten_1:a" } else { "ten_1:b" }, &format!("s{i}"), "feedback.x"))
        .collect();
    let results = t.send(&n.feedback, &first).await.expect("send");
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    // A repeat of a message still queued is accepted and dropped.
    let results =
        t.send(&n.feedback, &[message("ten_1:a", "s0", "feedback.x"), message("ten_1:a", "s6", "feedback.x")]).await;
    assert!(results.expect("send").iter().all(Result::is_ok));
    let mut oversized = message("ten_1:a", "big", "feedback.x");
    oversized.body = "x".repeat(300_000);
    let results = t
        .send(
            &n.feedback,
            &[oversized, message("ten_2:c", "c0", "feedback.x"), message("ten_1:a", "after-big", "feedback.x")],
        )
        .await
        .expect("send");
    assert_eq!(results.iter().map(Result::is_ok).collect::<Vec<_>>(), vec![false, true, false]);
    let received = drain(t, &n.feedback, 9).await;
    let group =
        |g: &str| -> Vec<String> { received.iter().filter(|m| m.group_id == g).map(|m| m.dedup_id.clone()).collect() };
    assert_eq!(group("ten_1:a"), ["s0", "s2", "s4", "s6"], "a group keeps the order it was sent in, once each");
    assert_eq!(group("ten_1:b"), ["s1", "s3", "s5"]);
    assert_eq!(group("ten_2:c"), ["c0"]);
    assert_eq!(received.len(), 8, "{:?}", dedups(&received));
    assert_eq!(received[0].attributes.get("event_type").map(String::as_str), Some("feedback.x"));
    assert_eq!(received[0].body, first[0].body, "the body as it was sent");
    let elsewhere = t.receive(&n.analytics, ReceiveOptions { wait: Duration::ZERO, ..quick(10) }).await;
    assert!(elsewhere.expect("receive").is_empty(), "a send reaches its queue only, not the topic's subscribers");
    assert!(t.send("no-such-queue.fifo", &[message("g", "x", "a.b")]).await.is_err());
    assert!(t.send(&n.feedback, &[]).await.is_err(), "an empty batch");
    let over: Vec<_> = (0..=crate::ports::MAX_BATCH).map(|i| message("g", &format!("o{i}"), "a.b")).collect();
    assert!(t.send(&n.feedback, &over).await.is_err(), "at most ten a call, as SendMessageBatch");
}

async fn errors(fixture: &Fixture) {
    let n = names(&fixture.topology);
    let t = fixture.transport.as_ref();
    assert!(t.publish("no-such-topic.fifo", &[message("g", "x", "a.b")]).await.is_err());
    assert!(t.receive("no-such-queue.fifo", quick(1)).await.is_err());
    // A rejected entry takes its group's later entries with it; other groups go through.
    let mut oversized = message("g", "big", "feedback.x");
    oversized.body = "x".repeat(300_000);
    let batch = [
        message("g", "ok1", "feedback.x"),
        oversized,
        message("h", "other", "feedback.x"),
        message("g", "after", "feedback.x"),
    ];
    let results = t.publish(&n.topic, &batch).await.expect("publish");
    let accepted: Vec<bool> = results.iter().map(Result::is_ok).collect();
    assert_eq!(accepted, vec![true, false, true, false]);
    let mut got = dedups(&drain(t, &n.feedback, 2).await);
    got.sort();
    assert_eq!(got, vec!["ok1".to_owned(), "other".to_owned()]);
    assert!(t.publish_limit() >= crate::ports::MAX_BATCH, "a batch may hold SNS's ten messages");
    let over: Vec<_> = (0..=t.publish_limit()).map(|i| message("g", &format!("x{i}"), "a.b")).collect();
    assert!(t.publish(&n.topic, &over).await.is_err(), "a batch holds at most the transport's limit");
    assert!(t.receive(&n.feedback, quick(11)).await.is_err(), "at most 10 per receive");
}

async fn restart<B: Backend>(backend: &B, fixture: Fixture) {
    let n = names(&fixture.topology);
    publish_all(
        fixture.transport.as_ref(),
        &n.topic,
        &[message("g", "k1", "feedback.x"), message("h", "k2", "feedback.x")],
    )
    .await;
    let in_flight = fixture.transport.receive(&n.feedback, short_visibility(1, 1)).await.expect("receive");
    assert_eq!(in_flight.len(), 1);
    let fixture = backend.reopen(fixture).await;
    let t = fixture.transport.as_ref();
    let mut got = dedups(&drain(t, &n.feedback, 2).await);
    if got.len() < 2 {
        tokio::time::sleep(Duration::from_millis(1100)).await;
        got.extend(dedups(&drain(t, &n.feedback, 2).await));
    }
    got.sort();
    assert_eq!(got, vec!["k1".to_owned(), "k2".to_owned()], "queued and in-flight messages survive");
}
