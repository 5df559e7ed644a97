//! Access requests: a tenant's user asks for access, an operator decides.

use async_trait::async_trait;

use super::StoreError;
use crate::clock::Timestamp;
use crate::domain::access::{
    AccessRequest, AccessRequestStatus, Decision, Imported, ImportedAccessRequest, NewAccessRequest, Submitted,
    TicketId,
};
use crate::domain::EmailAddress;
use crate::envelope::EventEnvelope;
use crate::ids::TenantId;

/// Makes the event a write emits from the row it wrote (the ticket id is only known
/// inside the transaction).
pub type EventFor<'a> = &'a (dyn for<'r> Fn(&'r AccessRequest) -> EventEnvelope + Send + Sync);

#[async_trait]
pub trait AccessRequestStore: Send + Sync + 'static {
    /// Stores an access request under the next ticket id, with the event `event` makes
    /// from it, in one transaction — unless the requester already has a pending request
    /// with this tenant, which is returned instead (nothing written).
    async fn submit_access_request(
        &self,
        tenant: TenantId,
        request: &NewAccessRequest,
        event: EventFor<'_>,
    ) -> Result<Submitted, StoreError>;
    /// A requester's requests with `tenant`, newest first.
    async fn access_requests_of(
        &self,
        tenant: TenantId,
        requester: &EmailAddress,
    ) -> Result<Vec<AccessRequest>, StoreError>;
    /// Operator-level: one request by ticket.
    async fn access_request(&self, ticket: TicketId) -> Result<Option<AccessRequest>, StoreError>;
    /// Operator-level: requests in `status` (all when `None`), oldest first.
    async fn list_access_requests(&self, status: Option<AccessRequestStatus>)
        -> Result<Vec<AccessRequest>, StoreError>;
    /// Operator-level: decides a pending request with the event `event` makes from the
    /// decided request, in one transaction; an approval creates the tenant named after
    /// the organization in that same transaction. `Conflict` when it is not pending.
    async fn decide_access_request(
        &self,
        ticket: TicketId,
        decision: &Decision,
        event: EventFor<'_>,
    ) -> Result<AccessRequest, StoreError>;
    /// Operator-level: stores `request` for `tenant` under its own ticket number and
    /// moves the ticket sequence past it, so new requests continue after the highest
    /// imported number. A ticket number already there is left as it is; a second
    /// pending request of one requester is refused. No event is emitted: these are
    /// history.
    async fn import_access_request(
        &self,
        tenant: TenantId,
        request: &ImportedAccessRequest,
    ) -> Result<Imported, StoreError>;
    /// Operator-level: pending requests created at or before `created_before` and not
    /// reminded about since `reminded_before`; marks them reminded now, so each is
    /// returned once per period even with several monitors.
    async fn due_access_reminders(
        &self,
        created_before: Timestamp,
        reminded_before: Timestamp,
    ) -> Result<Vec<AccessRequest>, StoreError>;
}
