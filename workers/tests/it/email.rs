use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::json;

use adapters::object_store::FilesystemObjectStore;
use shared::config::{PlanLimits, Plans};
use shared::domain::{EmailAddress, EmailStatus, NewEmail};
use shared::events::types::EMAIL_REQUESTED;
use shared::limits::{per_second, TenantRates};
use shared::ports::providers::{Email, EmailReceipt, EmailSender, ProviderError};
use shared::ports::{SendStart, Transport};
use shared::{EmailId, EventEnvelope, Service, TenantId};
use workers::email::{EmailLimits, EmailWorker};
use workers::{Handler, HandlerError};

use crate::helpers::{delivery, Env};

/// Fails the first `failures` sends with `error`, then accepts.
struct ScriptedSender {
    failures: AtomicUsize,
    error: ProviderError,
    calls: AtomicUsize,
    sent: AtomicUsize,
    /// The `reference` (event id) of every call.
    references: std::sync::Mutex<Vec<String>>,
}

impl ScriptedSender {
    fn new(failures: usize, error: ProviderError) -> Arc<Self> {
        Arc::new(Self {
            failures: AtomicUsize::new(failures),
            error,
            calls: AtomicUsize::new(0),
            sent: AtomicUsize::new(0),
            references: std::sync::Mutex::default(),
        })
    }
}

#[async_trait]
impl EmailSender for ScriptedSender {
    async fn send(&self, email: &Email) -> Result<EmailReceipt, ProviderError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.references.lock().expect("lock").push(email.reference.clone());
        if self.failures.load(Ordering::SeqCst) > 0 {
            self.failures.fetch_sub(1, Ordering::SeqCst);
            return Err(self.error.clone());
        }
        let n = self.sent.fetch_add(1, Ordering::SeqCst);
        Ok(EmailReceipt { provider: "scripted", message_id: Some(format!("msg-{n}")) })
    }
}

/// `per_tenant` sends a second on the standard plan, and the plans of `plans`.
fn limits(env: &Env, per_tenant: u32, plans: &str) -> EmailLimits {
    let standard = PlanLimits { email_per_second: per_tenant, ..PlanLimits::default() };
    let plans = Plans::parse(plans, standard).expect("plans");
    EmailLimits {
        tenants: TenantRates::new(env.store.clone(), &plans, |plan| per_second(plan.email_per_second)),
        provider: NonZeroU32::new(1000).expect("rate"),
    }
}

fn worker(env: &Env, sender: Arc<ScriptedSender>, per_tenant: u32) -> EmailWorker {
    EmailWorker::new(
        env.store.clone(),
        env.store.clone(),
        Arc::new(FilesystemObjectStore::new(env.dir.path().join("objects"))),
        sender,
        EmailAddress::parse("no-reply@acme.example").expect("from"),
        limits(env, per_tenant, ""),
    )
}

/// Stores one email and returns its id and event.
async fn submit(env: &Env, tenant: TenantId) -> (EmailId, EventEnvelope) {
    let id = EmailId::new();
    let data = json!({"email_id": id, "to": "ana@example.com", "subject": "Hi", "text": "Hello"});
    let envelope =
        EventEnvelope::new(tenant, Service::CoreApi, EMAIL_REQUESTED, data.as_object().cloned().unwrap_or_default());
    let email = NewEmail {
        id,
        campaign_id: None,
        to: EmailAddress::parse("ana@example.com").expect("to"),
        subject: "Hi".into(),
    };
    env.store.submit_emails(envelope.tenant_id, &[(email, envelope.clone())]).await.expect("submit");
    (id, envelope)
}

#[tokio::test]
async fn a_provider_that_fails_twice_sends_exactly_once() {
    let env = Env::new().await;
    let tenant = env.tenant("Acme").await;
    let (id, envelope) = submit(&env, tenant).await;
    let sender = ScriptedSender::new(2, ProviderError::Unavailable { provider: "scripted", detail: "503".into() });
    let worker = worker(&env, sender.clone(), 100);
    for attempt in 1..=2 {
        let error = worker.handle(&delivery(&envelope, attempt)).await.expect_err("provider down");
        assert!(matches!(error, HandlerError::Transient(_)), "{error:?}");
        let status = env.store.email(tenant, id).await.expect("get").expect("present").status;
        assert_eq!(status, EmailStatus::Accepted, "put back for a retry");
    }
    worker.handle(&delivery(&envelope, 3)).await.expect("sent");
    worker.handle(&delivery(&envelope, 4)).await.expect("a duplicate is acknowledged");
    assert_eq!(sender.sent.load(Ordering::SeqCst), 1, "exactly one email left");
    let stored = env.store.email(tenant, id).await.expect("get").expect("present");
    assert_eq!((stored.status, stored.provider_message_id.as_deref()), (EmailStatus::Sent, Some("msg-0")));
    assert!(stored.result_key.as_deref().is_some_and(|k| k.starts_with(&format!("email/tenant={tenant}/"))));
}

#[tokio::test]
async fn a_permanent_rejection_fails_the_email_without_retrying() {
    let env = Env::new().await;
    let tenant = env.tenant("Acme").await;
    let (id, envelope) = submit(&env, tenant).await;
    let reason = "The to email does not contain a valid address.".to_owned();
    let sender = ScriptedSender::new(usize::MAX, ProviderError::Rejected { provider: "sendgrid", status: 400, reason });
    let worker = worker(&env, sender.clone(), 100);
    worker.handle(&delivery(&envelope, 1)).await.expect("recorded as failed, not retried");
    worker.handle(&delivery(&envelope, 2)).await.expect("a duplicate is acknowledged");
    assert_eq!(sender.calls.load(Ordering::SeqCst), 1, "no retry");
    let stored = env.store.email(tenant, id).await.expect("get").expect("present");
    assert_eq!(stored.status, EmailStatus::Failed);
    assert!(stored.failure_reason.as_deref().is_some_and(|r| r.contains("valid address")), "{stored:?}");
}

#[tokio::test]
async fn an_attempt_interrupted_mid_send_is_sent_again_with_its_event_id() {
    let env = Env::new().await;
    let tenant = env.tenant("Acme").await;
    let (id, envelope) = submit(&env, tenant).await;
    // A previous worker recorded `sending`, then died before recording the outcome.
    assert_eq!(env.store.start_email_send(tenant, id).await.expect("start"), SendStart::Started);
    let sender = ScriptedSender::new(0, ProviderError::Unavailable { provider: "scripted", detail: String::new() });
    worker(&env, sender.clone(), 100).handle(&delivery(&envelope, 2)).await.expect("sent");
    assert_eq!(sender.sent.load(Ordering::SeqCst), 1, "at least once: nothing is lost");
    assert_eq!(*sender.references.lock().expect("lock"), [envelope.id.to_string()], "a duplicate is traceable");
    let stored = env.store.email(tenant, id).await.expect("get").expect("present");
    assert_eq!((stored.status, stored.failure_reason), (EmailStatus::Sent, None));
}

#[tokio::test]
async fn at_most_once_an_interrupted_attempt_is_failed_and_never_sent_again() {
    let env = Env::new().await;
    let tenant = env.tenant("Acme").await;
    let (id, envelope) = submit(&env, tenant).await;
    assert_eq!(env.store.start_email_send(tenant, id).await.expect("start"), SendStart::Started);
    let sender = ScriptedSender::new(0, ProviderError::Unavailable { provider: "scripted", detail: String::new() });
    let worker = worker(&env, sender.clone(), 100).with_delivery(shared::config::EmailDelivery::AtMostOnce);
    worker.handle(&delivery(&envelope, 2)).await.expect("recorded");
    assert_eq!(sender.calls.load(Ordering::SeqCst), 0, "not sent a second time");
    let stored = env.store.email(tenant, id).await.expect("get").expect("present");
    assert_eq!(stored.status, EmailStatus::Failed);
    assert!(stored.failure_reason.as_deref().is_some_and(|r| r.contains("interrupted")));
}

#[tokio::test]
async fn a_sent_email_whose_record_could_not_be_written_is_not_sent_again() {
    use crate::helpers::CountingObjects;

    let env = Env::new().await;
    let tenant = env.tenant("Acme").await;
    let (id, envelope) = submit(&env, tenant).await;
    let sender = ScriptedSender::new(0, ProviderError::Unavailable { provider: "scripted", detail: String::new() });
    let objects = Arc::new(CountingObjects {
        inner: FilesystemObjectStore::new(env.dir.path().join("objects")),
        puts: AtomicUsize::new(0),
        fail_first: 1,
    });
    let worker = EmailWorker::new(
        env.store.clone(),
        env.store.clone(),
        objects.clone(),
        sender.clone(),
        EmailAddress::parse("no-reply@acme.example").expect("from"),
        limits(&env, 100, ""),
    );
    let error = worker.handle(&delivery(&envelope, 1)).await.expect_err("the object store is down");
    assert!(matches!(error, HandlerError::Unavailable(_)), "{error:?}");
    worker.handle(&delivery(&envelope, 1)).await.expect("the retry finishes the record");
    assert_eq!(sender.calls.load(Ordering::SeqCst), 1, "delivered once, and not labelled failed");
    let stored = env.store.email(tenant, id).await.expect("get").expect("present");
    assert_eq!(stored.status, EmailStatus::Sent);
    let key = shared::ObjectKey::parse(stored.result_key.as_deref().expect("key")).expect("key");
    let record: serde_json::Value = serde_json::from_slice(
        &shared::ports::ObjectStore::get(objects.as_ref(), &key).await.expect("get").expect("the delivery record"),
    )
    .expect("json");
    assert_eq!(record["status"], "sent");
}

#[tokio::test]
async fn a_burst_is_held_to_the_tenant_rate() {
    let env = Env::new().await;
    let acme = env.tenant("Acme").await;
    let mut emails = Vec::new();
    for _ in 0..30 {
        emails.push(submit(&env, acme).await.1);
    }
    let sender = ScriptedSender::new(0, ProviderError::Unavailable { provider: "scripted", detail: String::new() });
    let worker = worker(&env, sender.clone(), 20);
    let started = Instant::now();
    for (i, envelope) in emails.iter().enumerate() {
        worker.handle(&delivery(envelope, u32::try_from(i).unwrap_or(0) + 1)).await.expect("sent");
    }
    // 20 per second: the first 20 may go at once, the other 10 wait 50 ms each.
    assert!(started.elapsed() >= Duration::from_millis(400), "took {:?}", started.elapsed());
    assert_eq!(sender.sent.load(Ordering::SeqCst), 30);
}

#[tokio::test]
async fn two_email_worker_processes_each_take_half_of_the_tenant_rate() {
    let env = Env::new().await;
    let acme = env.tenant("Acme").await;
    let mut emails = Vec::new();
    for _ in 0..20 {
        emails.push(submit(&env, acme).await.1);
    }
    let sender = ScriptedSender::new(0, ProviderError::Unavailable { provider: "scripted", detail: String::new() });
    let share = shared::limits::Share::alone();
    share.set(2); // as the worker reports would say with another email worker live
    let worker = worker(&env, sender.clone(), 20).sharing(&share);
    let started = Instant::now();
    for (i, envelope) in emails.iter().enumerate() {
        worker.handle(&delivery(envelope, u32::try_from(i).unwrap_or(0) + 1)).await.expect("sent");
    }
    // This process's half of 20/s: a burst of 10, then 10 more at 10/s.
    assert!(started.elapsed() >= Duration::from_millis(900), "took {:?}", started.elapsed());
    assert_eq!(sender.sent.load(Ordering::SeqCst), 20);
}

#[tokio::test]
async fn each_tenant_sends_at_its_plan_rate() {
    use shared::domain::{PlanName, TenantSettings};

    let env = Env::new().await;
    let free = env.tenant("Free").await;
    let pro = env.tenant("Pro").await;
    for (tenant, plan) in [(free, "free"), (pro, "pro")] {
        let settings = TenantSettings { plan: PlanName::parse(plan).expect("plan"), alert_webhook_url: None };
        env.store.set_tenant_settings(tenant, &settings).await.expect("plan");
    }
    let sender = ScriptedSender::new(0, ProviderError::Unavailable { provider: "scripted", detail: String::new() });
    let worker = EmailWorker::new(
        env.store.clone(),
        env.store.clone(),
        Arc::new(FilesystemObjectStore::new(env.dir.path().join("objects"))),
        sender.clone(),
        EmailAddress::parse("no-reply@acme.example").expect("from"),
        limits(&env, 10, "free:email=5;pro:email=1000"),
    );
    let mut timings = Vec::new();
    for tenant in [pro, free] {
        let mut emails = Vec::new();
        for _ in 0..10 {
            emails.push(submit(&env, tenant).await.1);
        }
        let started = Instant::now();
        for (i, envelope) in emails.iter().enumerate() {
            worker.handle(&delivery(envelope, u32::try_from(i).unwrap_or(0) + 1)).await.expect("sent");
        }
        timings.push(started.elapsed());
    }
    // pro: 1,000/s, no wait; free: 5/s, the five after the first burst wait 200 ms each.
    assert!(timings[0] < Duration::from_millis(800), "pro took {:?}", timings[0]);
    assert!(timings[1] >= Duration::from_millis(900), "free took {:?}", timings[1]);
    assert_eq!(sender.sent.load(Ordering::SeqCst), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_is_always_down_dead_letters_the_email_and_alerts() {
    let env = Env::new().await;
    let tenant = env.tenant("Acme").await;
    let (id, envelope) = submit(&env, tenant).await;
    let sender =
        ScriptedSender::new(usize::MAX, ProviderError::Unavailable { provider: "scripted", detail: "503".into() });
    let worker = Arc::new(worker(&env, sender.clone(), 100));
    crate::helpers::assert_dead_lettered_and_alerted(&env, shared::topology::UseCase::Email, worker.clone(), &envelope)
        .await;
    assert_eq!(sender.sent.load(Ordering::SeqCst), 0);
    let stored = env.store.email(tenant, id).await.expect("get").expect("present");
    assert_eq!(stored.status, EmailStatus::Failed, "shown failed, as feedback is");
    assert!(stored.failure_reason.as_deref().is_some_and(|r| r.contains("503")), "with the reason: {stored:?}");

    // The provider is back and an operator redrives: the email is sent after all.
    sender.failures.store(0, Ordering::SeqCst);
    let dlq = env.topology.queue(shared::topology::UseCase::Email).dlq_name.clone();
    assert_eq!(env.embedded.redrive(&dlq).await.expect("redrive"), 1);
    let consumer = workers::Consumer::new(
        env.embedded.clone(),
        worker,
        workers::ConsumerConfig::new(env.queue(shared::topology::UseCase::Email)),
    );
    consumer.run_once(Duration::from_secs(1)).await.expect("run");
    assert_eq!(sender.sent.load(Ordering::SeqCst), 1);
    assert_eq!(env.store.email(tenant, id).await.expect("get").expect("present").status, EmailStatus::Sent);
}
