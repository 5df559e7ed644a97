//! TestFlight invitations: requested by tenants, sent through App Store Connect.

use async_trait::async_trait;

use super::StoreError;
use crate::domain::testflight::{InvitationRecord, NewInvitation};
use crate::envelope::EventEnvelope;
use crate::ids::{InvitationId, TenantId};

/// The outcome is recorded through the inbox transaction
/// ([`super::Effects::set_invitation_outcome`]).
#[async_trait]
pub trait InvitationStore: Send + Sync + 'static {
    /// Stores a TestFlight invitation (status `accepted`) and its event.
    async fn submit_invitation(
        &self,
        tenant: TenantId,
        invitation: &NewInvitation,
        envelope: &EventEnvelope,
    ) -> Result<(), StoreError>;
    async fn invitation(&self, tenant: TenantId, id: InvitationId) -> Result<Option<InvitationRecord>, StoreError>;
    /// Shows an invitation the worker gave up on as `failed` with `reason`, unless it
    /// already ended; a redriven message can still complete it.
    async fn mark_invitation_dead_lettered(
        &self,
        tenant: TenantId,
        id: InvitationId,
        reason: &str,
    ) -> Result<(), StoreError>;
}
