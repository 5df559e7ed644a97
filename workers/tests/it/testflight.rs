use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::json;

use adapters::object_store::FilesystemObjectStore;
use shared::config::Plans;
use shared::domain::testflight::InvitationStatus;
use shared::events::types::TESTFLIGHT_INVITATION_REQUESTED;
use shared::limits::{self, TenantRates};
use shared::ports::providers::{BetaInvite, BetaInviteReceipt, BetaTesters, ProviderError};
use shared::topology::UseCase;
use shared::{EventEnvelope, InvitationId, Service, TenantId};
use workers::testflight::TestflightWorker;
use workers::{Handler, HandlerError};

use crate::helpers::{assert_dead_lettered_and_alerted, delivery, Env};

/// Fails the first `failures` invitations with `error` (`usize::MAX`: always).
struct ScriptedTesters {
    failures: AtomicUsize,
    error: ProviderError,
    calls: AtomicUsize,
    invited: AtomicUsize,
}

impl ScriptedTesters {
    fn new(failures: usize, error: ProviderError) -> Arc<Self> {
        Arc::new(Self { failures: failures.into(), error, calls: AtomicUsize::new(0), invited: AtomicUsize::new(0) })
    }

    fn healthy() -> Arc<Self> {
        Self::new(0, ProviderError::Unavailable { provider: "scripted", detail: "unused".into() })
    }
}

#[async_trait]
impl BetaTesters for ScriptedTesters {
    async fn invite(&self, _invite: &BetaInvite) -> Result<BetaInviteReceipt, ProviderError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let left = self.failures.load(Ordering::SeqCst);
        if left > 0 {
            if left != usize::MAX {
                self.failures.fetch_sub(1, Ordering::SeqCst);
            }
            return Err(self.error.clone());
        }
        let n = self.invited.fetch_add(1, Ordering::SeqCst);
        Ok(BetaInviteReceipt { tester_id: format!("T{n}"), already_existed: false })
    }
}

fn worker(env: &Env, testers: Arc<ScriptedTesters>, per_hour: u32) -> TestflightWorker {
    TestflightWorker::new(
        env.store.clone(),
        env.store.clone(),
        Arc::new(FilesystemObjectStore::new(env.dir.path().join("objects"))),
        testers,
        NonZeroU32::new(per_hour).expect("rate"),
        TenantRates::new(env.store.clone(), &Plans::default(), |plan| {
            limits::per_hour(plan.testflight_per_hour.max(per_hour))
        }),
    )
}

async fn submit(env: &Env, tenant: TenantId) -> (InvitationId, EventEnvelope) {
    let invitation = shared::testkit::store::new_invitation();
    let data = json!({"invitation_id": invitation.id, "email": "tess@example.com", "first_name": "Tess",
                      "last_name": "Ter", "beta_group_id": "group-1"});
    let envelope = EventEnvelope::new(
        tenant,
        Service::CoreApi,
        TESTFLIGHT_INVITATION_REQUESTED,
        data.as_object().cloned().unwrap_or_default(),
    );
    env.store.submit_invitation(tenant, &invitation, &envelope).await.expect("submit");
    (invitation.id, envelope)
}

#[tokio::test]
async fn app_store_connect_failing_twice_invites_exactly_once() {
    let env = Env::new().await;
    let tenant = env.tenant("Acme").await;
    let (id, envelope) = submit(&env, tenant).await;
    let testers = ScriptedTesters::new(2, ProviderError::RateLimited { provider: "scripted", retry_after: None });
    let worker = worker(&env, testers.clone(), 3_600);
    for attempt in 1..=2 {
        let error = worker.handle(&delivery(&envelope, attempt)).await.expect_err("throttled");
        assert!(matches!(error, HandlerError::Transient(_)), "{error:?}");
        let status = env.store.invitation(tenant, id).await.expect("get").expect("present").status;
        assert_eq!(status, InvitationStatus::Accepted);
    }
    worker.handle(&delivery(&envelope, 3)).await.expect("invited");
    worker.handle(&delivery(&envelope, 4)).await.expect("a redelivery is acknowledged");
    assert_eq!(testers.invited.load(Ordering::SeqCst), 1, "one invitation");
    assert_eq!(testers.calls.load(Ordering::SeqCst), 3, "the redelivery does not call App Store Connect");
    let stored = env.store.invitation(tenant, id).await.expect("get").expect("present");
    assert_eq!((stored.status, stored.tester_id.as_deref()), (InvitationStatus::Invited, Some("T0")));
    assert!(stored.result_key.is_some_and(|k| k.starts_with(&format!("testflight/tenant={tenant}/"))));
}

#[tokio::test]
async fn a_rejection_fails_the_invitation_with_the_reason() {
    let env = Env::new().await;
    let tenant = env.tenant("Acme").await;
    let (id, envelope) = submit(&env, tenant).await;
    let rejection = ProviderError::Rejected { provider: "scripted", status: 409, reason: "group is full".into() };
    let testers = ScriptedTesters::new(1, rejection);
    worker(&env, testers.clone(), 3_600).handle(&delivery(&envelope, 1)).await.expect("recorded, not retried");
    let stored = env.store.invitation(tenant, id).await.expect("get").expect("present");
    assert_eq!(stored.status, InvitationStatus::Failed);
    assert!(stored.failure_reason.is_some_and(|r| r.contains("group is full")));
    assert_eq!(testers.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_burst_is_held_to_the_app_store_connect_rate() {
    let env = Env::new().await;
    let tenant = env.tenant("Acme").await;
    let testers = ScriptedTesters::healthy();
    // 72,000 an hour = 20 a second, with a burst of one second's share.
    let worker = worker(&env, testers.clone(), 72_000);
    let mut deliveries = Vec::new();
    for _ in 0..40 {
        deliveries.push(submit(&env, tenant).await.1);
    }
    let start = Instant::now();
    for (i, envelope) in deliveries.iter().enumerate() {
        worker.handle(&delivery(envelope, u32::try_from(i).expect("i") + 1)).await.expect("invited");
    }
    let elapsed = start.elapsed();
    assert_eq!(testers.invited.load(Ordering::SeqCst), 40);
    assert!(
        elapsed >= Duration::from_millis(900),
        "40 calls at 20/s after a burst of 20 take about a second: {elapsed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_store_connect_always_failing_dead_letters_the_invitation_and_alerts() {
    let env = Env::new().await;
    let tenant = env.tenant("Acme").await;
    let (id, envelope) = submit(&env, tenant).await;
    let down =
        ScriptedTesters::new(usize::MAX, ProviderError::Unavailable { provider: "scripted", detail: "503".into() });
    assert_dead_lettered_and_alerted(&env, UseCase::Testflight, Arc::new(worker(&env, down, 3_600)), &envelope).await;
    let stored = env.store.invitation(tenant, id).await.expect("get").expect("present");
    assert_eq!(stored.status, InvitationStatus::Failed, "shown failed, as feedback is");
    assert!(stored.failure_reason.as_deref().is_some_and(|r| r.contains("503")), "with the reason: {stored:?}");
    assert!(
        !env.store.applied(shared::ports::ConsumerName::new("testflight"), tenant, envelope.id).await.expect("applied"),
        "not applied, so a redrive still invites"
    );
}
