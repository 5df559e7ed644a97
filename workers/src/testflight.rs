//! The TestFlight worker: invites each requested tester through App Store Connect
//! within its rate limit, writes a result object and records the outcome.
//!
//! Inviting is idempotent at the provider (an existing tester is a success), so a
//! retry after a crash cannot invite twice; an event already applied is skipped before
//! spending any of the rate limit. Throttling and outages are retried with backoff; a
//! rejection (a 4xx) fails the invitation with App Store Connect's reason.

use std::num::NonZeroU32;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::json;

use shared::domain::testflight::{InvitationOutcome, InvitationStatus};
use shared::events::TestflightInvitationRequested;
use shared::limits;
use shared::limits::{Share, SharedLimiter, TenantRates};
use shared::ports::providers::{BetaInvite, BetaTesters};
use shared::ports::{ConsumerName, Effects, Inbox, InvitationStore, ObjectStore};
use shared::{EventEnvelope, InvitationId, ObjectKey};

use crate::consumer::{EventHandler, HandlerError};

pub const CONSUMER: ConsumerName = ConsumerName::new("testflight");

pub struct TestflightWorker {
    invitations: Arc<dyn InvitationStore>,
    inbox: Arc<dyn Inbox>,
    objects: Arc<dyn ObjectStore>,
    testers: Arc<dyn BetaTesters>,
    /// App Store Connect's limit for the whole deployment (this process's share).
    limiter: SharedLimiter,
    /// Each tenant's share, by plan.
    tenants: TenantRates,
}

impl TestflightWorker {
    pub fn new(
        invitations: Arc<dyn InvitationStore>,
        inbox: Arc<dyn Inbox>,
        objects: Arc<dyn ObjectStore>,
        testers: Arc<dyn BetaTesters>,
        per_hour: NonZeroU32,
        tenants: TenantRates,
    ) -> Self {
        let limiter = SharedLimiter::new(limits::per_hour(per_hour.get()), Share::alone());
        Self { invitations, inbox, objects, testers, limiter, tenants }
    }

    /// Takes this process's share of the deployment's and the tenants' limits, as the
    /// live TestFlight worker processes divide them.
    #[must_use]
    pub fn sharing(mut self, share: &Share) -> Self {
        self.limiter = self.limiter.sharing(share);
        self.tenants = self.tenants.sharing(share);
        self
    }

    async fn record(
        &self,
        envelope: &EventEnvelope,
        id: InvitationId,
        mut outcome: InvitationOutcome,
    ) -> Result<(), HandlerError> {
        let tenant = envelope.tenant_id;
        let key = ObjectKey::of_event("testflight", envelope).map_err(HandlerError::permanent)?;
        let record = json!({
            "event_id": envelope.id,
            "tenant_id": tenant,
            "invitation_id": id,
            "status": outcome.status,
            "tester_id": outcome.tester_id,
            "already_existed": outcome.already_existed,
            "failure_reason": outcome.failure_reason,
            "request": envelope.data,
        });
        let body = serde_json::to_vec_pretty(&record).map_err(HandlerError::permanent)?;
        self.objects.put(&key, body, "application/json").await.map_err(HandlerError::objects)?;
        outcome.result_key = Some(key.to_string());
        let mut effects = Effects::new();
        effects.set_invitation_outcome(tenant, id, outcome.clone());
        self.inbox.apply_once(CONSUMER, tenant, envelope.id, effects).await.map_err(HandlerError::store)?;
        tracing::info!(tenant_id = %tenant, invitation_id = %id, status = outcome.status.as_str(), "invitation recorded");
        Ok(())
    }
}

#[async_trait]
impl EventHandler for TestflightWorker {
    type Event = TestflightInvitationRequested;

    fn name(&self) -> &str {
        CONSUMER.as_str()
    }

    async fn handle(
        &self,
        envelope: &EventEnvelope,
        requested: TestflightInvitationRequested,
    ) -> Result<(), HandlerError> {
        if self.inbox.applied(CONSUMER, envelope.tenant_id, envelope.id).await.map_err(HandlerError::store)? {
            return Ok(());
        }
        let id = requested.invitation_id;
        let invite = BetaInvite {
            email: requested.email,
            first_name: requested.first_name,
            last_name: requested.last_name,
            group_id: requested.group_id,
        };
        self.tenants.until_ready(envelope.tenant_id).await;
        self.limiter.until_ready().await;
        let outcome = match self.testers.invite(&invite).await {
            Ok(receipt) => InvitationOutcome {
                status: InvitationStatus::Invited,
                tester_id: Some(receipt.tester_id),
                already_existed: receipt.already_existed,
                failure_reason: None,
                result_key: None,
            },
            Err(error) if error.is_retryable() => return Err(HandlerError::provider(error)),
            Err(error) => InvitationOutcome {
                status: InvitationStatus::Failed,
                tester_id: None,
                already_existed: false,
                failure_reason: Some(error.to_string()),
                result_key: None,
            },
        };
        self.record(envelope, id, outcome).await
    }

    /// Whoever follows the invitation sees it failed, with the reason, rather than
    /// `accepted`; a redrive can still complete it.
    async fn dead_lettered(&self, envelope: &EventEnvelope, requested: TestflightInvitationRequested, reason: &str) {
        let id = requested.invitation_id;
        if let Err(error) = self.invitations.mark_invitation_dead_lettered(envelope.tenant_id, id, reason).await {
            tracing::warn!(%error, tenant_id = %envelope.tenant_id, invitation_id = %id, "could not mark a dead-lettered invitation failed");
        }
    }
}
