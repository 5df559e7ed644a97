//! The redriver: a job's dead letters go back to their queue in their old order per
//! group, at the queue's rate, once each across a takeover, and a cancel stops it.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use shared::ports::{
    DedupId, Job, JobState, MessageId, NewParked, ParkedFilter, PlanAction, QueueName, Selection, Transport,
    DEAD_LETTER_REASON,
};
use shared::topology::UseCase;
use shared::{EventEnvelope, EventType, Service, TenantId, Timestamp};
use workers::redrive::{RedriveConfig, Redriver};

use crate::helpers::Env;

/// Parks `count` dead letters of the feedback queue, alternating between two groups of
/// one tenant; answers their event ids in parked order.
async fn park(env: &Env, tenant: TenantId, count: usize) -> Vec<String> {
    let queue = env.queue(UseCase::Feedback);
    let mut ids = Vec::new();
    for n in 0..count {
        let data = serde_json::json!({"n": n}).as_object().cloned().unwrap_or_default();
        let event = EventEnvelope::new(tenant, Service::CoreApi, EventType::parse("feedback.x").expect("type"), data);
        let group = format!("{tenant}:g{}", n % 2);
        env.store
            .park(&NewParked {
                queue: QueueName::new(queue.clone()),
                message_id: MessageId::new(format!("m-{n}")),
                group_id: group,
                dedup_id: DedupId::new(event.id.to_string()),
                body: event.to_json(),
                attributes: BTreeMap::from([("event_type".to_owned(), "feedback.x".to_owned())]),
                tenant: Some(tenant),
                event_id: Some(event.id),
                event_type: Some(event.event_type.clone()),
                error: "boom".into(),
                attempts: vec![],
                dead_lettered_at: Timestamp::now(),
            })
            .await
            .expect("park");
        ids.push(event.id.to_string());
    }
    ids
}

async fn start(env: &Env, rate_per_minute: u32) -> Job {
    let now = Timestamp::now();
    let selection = Selection::Filter(ParkedFilter::default());
    let plan = env.store.make_plan(PlanAction::Redrive, &selection, now, now.plus(Duration::from_secs(60))).await;
    env.store.start_job(plan.expect("plan").id, rate_per_minute, now).await.expect("start")
}

fn redriver(env: &Env, feedback_ceiling: u32) -> Redriver {
    let config = RedriveConfig {
        lease: Duration::from_secs(3),
        poll: Duration::from_millis(50),
        ceilings: HashMap::from([(env.queue(UseCase::Feedback), feedback_ceiling)]),
        ..RedriveConfig::default()
    };
    Redriver::new(env.embedded.clone(), env.store.clone(), config)
}

async fn until_finished(env: &Env, job: &Job) -> Job {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = env.store.job(job.id).await.expect("read").expect("present");
        if now.state.is_finished() || Instant::now() > deadline {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn visible(env: &Env) -> u64 {
    env.embedded.stats(&env.queue(UseCase::Feedback)).await.expect("stats").visible
}

fn event_id(body: &str) -> String {
    EventEnvelope::from_json(body).expect("envelope").id.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_groups_redriven_messages_arrive_in_their_old_order_at_the_queues_rate() {
    let env = Env::new().await;
    let tenant = env.tenant("Acme").await;
    let parked = park(&env, tenant, 12).await;
    // The job asks for 6,000 a minute; the queue's providers take 600 (10 a second).
    let job = start(&env, 6_000).await;
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(redriver(&env, 600).run(shutdown.clone()));

    let deadline = Instant::now() + Duration::from_secs(5);
    while visible(&env).await < 10 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(visible(&env).await, 10, "the first send");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(visible(&env).await, 10, "the next waits a second at the queue's rate, not 0.1 s at the job's");
    let done = until_finished(&env, &job).await;
    assert_eq!((done.state, done.done, done.skipped), (JobState::Completed, 12, 0), "{done:?}");
    shutdown.cancel();
    running.await.expect("redriver");

    let received = env.drain(&env.queue(UseCase::Feedback), Duration::from_millis(200)).await;
    assert_eq!(received.len(), 12);
    for group in 0..2 {
        let name = format!("{tenant}:g{group}");
        let got: Vec<String> = received.iter().filter(|m| m.group_id == name).map(|m| event_id(&m.body)).collect();
        let sent: Vec<String> = parked.iter().skip(group).step_by(2).cloned().collect();
        assert_eq!(got, sent, "group {name} arrives in its old order");
    }
    for message in &received {
        assert!(message.dedup_id.ends_with(&format!(":r{}", done.id.as_uuid().simple())), "{}", message.dedup_id);
        assert!(message.dedup_id.starts_with(&event_id(&message.body)), "{}", message.dedup_id);
        assert!(!message.attributes.contains_key(DEAD_LETTER_REASON));
        assert_eq!(message.attributes.get("event_type").map(String::as_str), Some("feedback.x"));
    }
    assert!(env.store.parked(&ParkedFilter::default(), None, 10).await.expect("list").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_worker_died_is_taken_over_and_sends_nothing_twice() {
    let env = Env::new().await;
    let tenant = env.tenant("Acme").await;
    park(&env, tenant, 6).await;
    let job = start(&env, 6_000).await;
    // A worker holds the job, sends its first messages and dies before recording them.
    let held = env.store.claim_job("dead", Timestamp::now(), Duration::from_millis(300)).await.expect("claim");
    let held = held.expect("the job");
    let first = env.store.job_batch(&held, 4).await.expect("batch");
    let messages: Vec<_> = first
        .iter()
        .map(|p| shared::ports::OutgoingMessage {
            group_id: p.message.group_id.clone(),
            dedup_id: shared::ports::redrive_dedup_id(p.message.dedup_id.as_str(), p.message.event_id, job.id),
            body: p.message.body.clone(),
            attributes: p.message.attributes.clone(),
        })
        .collect();
    let sent = env.embedded.send(&env.queue(UseCase::Feedback), &messages).await.expect("send");
    assert!(sent.iter().all(Result::is_ok));

    let shutdown = CancellationToken::new();
    let running = tokio::spawn(redriver(&env, 6_000).run(shutdown.clone()));
    let done = until_finished(&env, &job).await;
    assert_eq!((done.state, done.done), (JobState::Completed, 6), "taken over once the lease ran out: {done:?}");
    shutdown.cancel();
    running.await.expect("redriver");
    let received = env.drain(&env.queue(UseCase::Feedback), Duration::from_millis(200)).await;
    let mut ids: Vec<String> = received.iter().map(|m| event_id(&m.body)).collect();
    ids.sort();
    ids.dedup();
    assert_eq!((received.len(), ids.len()), (6, 6), "each once: the repeats kept their dedup ids");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_job_stops_before_its_next_send() {
    let env = Env::new().await;
    let tenant = env.tenant("Acme").await;
    park(&env, tenant, 20).await;
    // One a second: the first ten go at once, the next ten not for ten seconds.
    let job = start(&env, 60).await;
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(redriver(&env, 6_000).run(shutdown.clone()));
    let deadline = Instant::now() + Duration::from_secs(5);
    while visible(&env).await < 10 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cancelled = env.store.cancel_job(job.id, Timestamp::now()).await.expect("cancel").expect("present");
    assert_eq!(cancelled.state, JobState::Cancelled);
    // The redriver notices at its next lease renewal (a third of its 3 s lease).
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    shutdown.cancel();
    running.await.expect("redriver");
    assert_eq!(visible(&env).await, 10, "nothing more was sent");
    let after = env.store.job(job.id).await.expect("read").expect("present");
    assert_eq!((after.state, after.done), (JobState::Cancelled, 10), "{after:?}");
    assert_eq!(env.store.parked(&ParkedFilter::default(), None, 100).await.expect("list").len(), 10, "still parked");
}

/// The embedded transport, with its sends failing as in an outage while `down`.
struct Flaky {
    inner: std::sync::Arc<adapters::embedded::EmbeddedTransport>,
    down: std::sync::atomic::AtomicU32,
}

#[async_trait::async_trait]
impl Transport for Flaky {
    async fn publish(
        &self,
        topic: &str,
        batch: &[shared::ports::OutgoingMessage],
    ) -> Result<Vec<Result<(), shared::ports::TransportError>>, shared::ports::TransportError> {
        self.inner.publish(topic, batch).await
    }

    async fn send(
        &self,
        queue: &str,
        batch: &[shared::ports::OutgoingMessage],
    ) -> Result<Vec<Result<(), shared::ports::TransportError>>, shared::ports::TransportError> {
        let left = self.down.load(std::sync::atomic::Ordering::SeqCst);
        if left > 0 {
            self.down.store(left - 1, std::sync::atomic::Ordering::SeqCst);
            return Err(shared::ports::TransportError::Unavailable("the queue service is down".into()));
        }
        self.inner.send(queue, batch).await
    }

    async fn receive(
        &self,
        queue: &str,
        options: shared::ports::ReceiveOptions,
    ) -> Result<Vec<shared::ports::ReceivedMessage>, shared::ports::TransportError> {
        self.inner.receive(queue, options).await
    }

    async fn ack(&self, queue: &str, receipts: &[shared::ports::Receipt]) -> Result<(), shared::ports::TransportError> {
        self.inner.ack(queue, receipts).await
    }

    async fn change_visibility(
        &self,
        queue: &str,
        receipt: &shared::ports::Receipt,
        timeout: Duration,
    ) -> Result<(), shared::ports::TransportError> {
        self.inner.change_visibility(queue, receipt, timeout).await
    }

    async fn dead_letter(
        &self,
        queue: &str,
        message: &shared::ports::ReceivedMessage,
        failure: &shared::ports::Failure,
    ) -> Result<(), shared::ports::TransportError> {
        self.inner.dead_letter(queue, message, failure).await
    }

    async fn dead_letters(
        &self,
        dlq: &str,
        max: u32,
    ) -> Result<Vec<shared::ports::DeadLetter>, shared::ports::TransportError> {
        self.inner.dead_letters(dlq, max).await
    }

    async fn redrive(&self, dlq: &str) -> Result<u64, shared::ports::TransportError> {
        self.inner.redrive(dlq).await
    }

    async fn purge(&self, queue: &str) -> Result<u64, shared::ports::TransportError> {
        self.inner.purge(queue).await
    }

    async fn stats(&self, queue: &str) -> Result<shared::ports::QueueStats, shared::ports::TransportError> {
        self.inner.stats(queue).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_waits_out_a_transport_outage_and_goes_on() {
    let env = Env::new().await;
    let tenant = env.tenant("Acme").await;
    park(&env, tenant, 4).await;
    let job = start(&env, 6_000).await;
    let flaky = std::sync::Arc::new(Flaky { inner: env.embedded.clone(), down: std::sync::atomic::AtomicU32::new(4) });
    let config = RedriveConfig {
        lease: Duration::from_secs(3),
        poll: Duration::from_millis(50),
        backoff: Duration::from_millis(20),
        ..RedriveConfig::default()
    };
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(Redriver::new(flaky.clone(), env.store.clone(), config).run(shutdown.clone()));
    let done = until_finished(&env, &job).await;
    shutdown.cancel();
    running.await.expect("redriver");
    assert_eq!((done.state, done.done, done.skipped), (JobState::Completed, 4, 0), "{done:?}");
    assert_eq!(flaky.down.load(std::sync::atomic::Ordering::SeqCst), 0, "it went through the outage");
    assert_eq!(env.drain(&env.queue(UseCase::Feedback), Duration::from_millis(200)).await.len(), 4, "each once");
}
