//! Operators' plans over parked dead letters and failed outbox rows, and the jobs that
//! carry out redrives.
//!
//! A plan freezes a selection: the parked dead letters it matched when it was made are
//! recorded with it, so confirming it later acts on those and on nothing that arrived
//! meanwhile. Purging and restoring a plan is one transaction. Redriving one is a job:
//! a worker holding the job's lease sends its messages back in the order they were
//! parked, records each batch as redriven together with the job's progress, and a job
//! whose worker died is taken over once its lease runs out.

use std::time::Duration;

use async_trait::async_trait;
use sha2::{Digest, Sha256};

use super::StoreError;
use crate::clock::Timestamp;
use crate::envelope::EventType;
use crate::ids::{EventId, JobId, PlanId, TenantId};
use crate::ports::{Parked, ParkedFilter};

/// The dedup id a redriven message is sent with: its event id (or, for a body that is
/// no envelope, its old dedup id) and the job's, so the queue's five-minute window does
/// not swallow it as a repeat of the failed copy, while a job that sends it twice (a
/// worker died between sending and recording) sends the same id. At most 128
/// characters, as SQS takes.
pub fn redrive_dedup_id(dedup_id: &str, event: Option<EventId>, job: JobId) -> String {
    let id = format!("{}:r{}", event.map_or_else(|| dedup_id.to_owned(), |e| e.to_string()), job.as_uuid().simple());
    if id.len() <= 128 {
        return id;
    }
    let digest = Sha256::digest(dedup_id.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{hex}:r{}", job.as_uuid().simple())
}

/// What confirming a plan does to its selection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PlanAction {
    /// Parked → sent back to the queue it failed in (a job).
    Redrive,
    /// Parked → purged, restorable for the retention period.
    Purge,
    /// Purged → parked again.
    Restore,
    /// Failed outbox rows → pending again, for the relay to publish.
    RetryOutbox,
    /// Failed outbox rows → discarded, with a reason (kept, never published).
    DiscardOutbox,
}

impl PlanAction {
    pub fn as_str(self) -> &'static str {
        match self {
            PlanAction::Redrive => "redrive",
            PlanAction::Purge => "purge",
            PlanAction::Restore => "restore",
            PlanAction::RetryOutbox => "retry",
            PlanAction::DiscardOutbox => "discard",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            PlanAction::Redrive,
            PlanAction::Purge,
            PlanAction::Restore,
            PlanAction::RetryOutbox,
            PlanAction::DiscardOutbox,
        ]
        .into_iter()
        .find(|a| a.as_str() == text)
    }

    /// The state a dead letter must be in to be selected; `None` for the actions on
    /// failed outbox rows.
    pub fn selects(self) -> Option<ParkedState> {
        match self {
            PlanAction::Redrive | PlanAction::Purge => Some(ParkedState::Parked),
            PlanAction::Restore => Some(ParkedState::Purged),
            PlanAction::RetryOutbox | PlanAction::DiscardOutbox => None,
        }
    }
}

/// Where a parked dead letter stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ParkedState {
    /// Waiting for an operator.
    #[default]
    Parked,
    /// Sent back to its queue by a job.
    Redriven,
    /// Purged by an operator; restorable until the retention runs out.
    Purged,
}

impl ParkedState {
    pub fn as_str(self) -> &'static str {
        match self {
            ParkedState::Parked => "parked",
            ParkedState::Redriven => "redriven",
            ParkedState::Purged => "purged",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [ParkedState::Parked, ParkedState::Redriven, ParkedState::Purged].into_iter().find(|s| s.as_str() == text)
    }
}

/// What a plan is over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// These dead letters (or, for the outbox actions, outbox rows), those of them the
    /// action may act on.
    Ids(Vec<i64>),
    /// Every dead letter the filter matches (its `state` is the action's).
    Filter(ParkedFilter),
    /// Every failed outbox row, or those of one tenant.
    FailedOutbox { tenant: Option<TenantId> },
}

/// An outbox row the relay gave up on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedOutboxRow {
    pub seq: i64,
    pub event_id: String,
    pub tenant: TenantId,
    /// From the stored envelope, when it can be read.
    pub event_type: Option<EventType>,
    /// The envelope as stored.
    pub envelope: String,
    /// Why the relay gave up.
    pub error: Option<String>,
    pub attempts: u32,
    pub created_at: Timestamp,
    pub failed_at: Timestamp,
}

/// How a purge, restore, retry or discard plan is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Apply {
    /// A restore moves only dead letters purged at or after this.
    pub restorable_since: Timestamp,
    /// Why rows are discarded (required for a discard).
    pub reason: Option<String>,
}

/// How many of a plan's dead letters share one value (a queue, a tenant, a group).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tally {
    pub key: String,
    pub count: u64,
}

/// What a plan holds, counted when it was made.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PlanCounts {
    pub total: u64,
    /// Largest first, each list at most [`MAX_TALLIES`] long.
    pub queues: Vec<Tally>,
    pub tenants: Vec<Tally>,
    /// By message group (a tenant's ordering key).
    pub groups: Vec<Tally>,
    /// How many distinct message groups in all.
    pub group_count: u64,
}

/// The longest list of tallies a plan answers.
pub const MAX_TALLIES: usize = 20;

/// A plan: a frozen selection and what confirming it does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub id: PlanId,
    pub action: PlanAction,
    pub selection: Selection,
    pub counts: PlanCounts,
    pub created_at: Timestamp,
    /// Not confirmable from then on.
    pub expires_at: Timestamp,
    /// When it was confirmed.
    pub confirmed_at: Option<Timestamp>,
    /// The redrive job confirming it started.
    pub job: Option<JobId>,
}

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobState {
    Running,
    /// An operator cancelled it; what it sent stays sent.
    Cancelled,
    Completed,
    /// It stopped on an error it could not get past (named in `Job::error`).
    Failed,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Running => "running",
            JobState::Cancelled => "cancelled",
            JobState::Completed => "completed",
            JobState::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [JobState::Running, JobState::Cancelled, JobState::Completed, JobState::Failed]
            .into_iter()
            .find(|s| s.as_str() == text)
    }

    pub fn is_finished(self) -> bool {
        self != JobState::Running
    }
}

/// A redrive job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: JobId,
    pub plan: PlanId,
    pub action: PlanAction,
    pub state: JobState,
    /// The plan's count when the job started.
    pub total: u64,
    /// Sent back so far.
    pub done: u64,
    /// Frozen in the plan but no longer parked when their turn came (purged or redriven
    /// by another plan meanwhile).
    pub skipped: u64,
    /// The highest parked id handled so far: the job goes on after it.
    pub cursor: i64,
    /// At most this many messages a minute.
    pub rate_per_minute: u32,
    pub error: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub finished_at: Option<Timestamp>,
}

/// What a job's worker records after a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobStep {
    /// The dead letters sent back, now redriven (only those still parked change).
    pub redriven: Vec<i64>,
    /// How many frozen dead letters of the batch were no longer parked.
    pub skipped: u64,
    /// The highest parked id this batch looked at.
    pub cursor: i64,
}

/// Operator-level: plans and jobs over the parked dead letters.
#[async_trait]
pub trait DeadLetterPlans: Send + Sync + 'static {
    /// Freezes `selection` (only dead letters in `action.selects()`'s state; for the
    /// outbox actions, only failed rows) as a new plan, confirmable until `expires_at`,
    /// and counts it. A selection of the wrong kind for the action is `Conflict`.
    async fn make_plan(
        &self,
        action: PlanAction,
        selection: &Selection,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> Result<Plan, StoreError>;

    async fn plan(&self, id: PlanId) -> Result<Option<Plan>, StoreError>;

    /// Confirms a purge, restore, retry or discard plan and applies it in one
    /// transaction: each frozen dead letter still in the action's state moves (purged
    /// ones stamped `now`), each frozen outbox row still failed is made pending again
    /// (relays are woken) or discarded with the reason; returns how many moved. `NotFound`
    /// for an unknown plan; `Conflict` for one that expired, was confirmed before, or
    /// is a redrive.
    async fn apply_plan(&self, id: PlanId, now: Timestamp, apply: &Apply) -> Result<u64, StoreError>;

    /// Failed (not discarded) outbox rows, newest first, of `tenant` when given,
    /// numbered below `before`, at most `limit`.
    async fn failed_rows(
        &self,
        tenant: Option<TenantId>,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<FailedOutboxRow>, StoreError>;

    /// Confirms a redrive plan by starting its job. `NotFound` / `Conflict` as
    /// [`DeadLetterPlans::apply_plan`] (a plan confirmed before names its job).
    async fn start_job(&self, plan: PlanId, rate_per_minute: u32, now: Timestamp) -> Result<Job, StoreError>;

    async fn job(&self, id: JobId) -> Result<Option<Job>, StoreError>;

    /// Cancels a running job (a finished one is left as it is); `None` when unknown.
    async fn cancel_job(&self, id: JobId, now: Timestamp) -> Result<Option<Job>, StoreError>;

    /// A running job nobody holds (its lease ran out, or `owner` holds it), now held by
    /// `owner` until `now + lease`; the oldest first.
    async fn claim_job(&self, owner: &str, now: Timestamp, lease: Duration) -> Result<Option<Job>, StoreError>;

    /// The job's next frozen dead letters after its cursor, in parked order, at most
    /// `limit`, whatever their state (the worker skips those no longer parked).
    async fn job_batch(&self, job: &Job, limit: u32) -> Result<Vec<Parked>, StoreError>;

    /// Records a batch as one transaction — the dead letters redriven, the job's
    /// progress and cursor, its lease renewed — and answers the job as it now is (a
    /// cancelled one stays cancelled). `Conflict` when `owner` no longer holds it.
    async fn job_step(
        &self,
        id: JobId,
        owner: &str,
        step: &JobStep,
        now: Timestamp,
        lease: Duration,
    ) -> Result<Job, StoreError>;

    /// Finishes a running job held by `owner` (completed, or failed with `error`).
    async fn finish_job(
        &self,
        id: JobId,
        owner: &str,
        state: JobState,
        error: Option<&str>,
        now: Timestamp,
    ) -> Result<Job, StoreError>;

    /// Deletes, a bounded number at a time, dead letters purged before `purged_before`
    /// and plans that expired unconfirmed before `now`; returns how many dead letters.
    async fn sweep(&self, purged_before: Timestamp, now: Timestamp) -> Result<u64, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::redrive_dedup_id;
    use crate::ids::{EventId, JobId};

    #[test]
    fn a_redriven_message_gets_a_new_dedup_id_per_job_and_the_same_within_one() {
        let (event, job, other) = (EventId::new(), JobId::new(), JobId::new());
        let id = redrive_dedup_id("whatever", Some(event), job);
        assert!(id.starts_with(&event.to_string()), "{id}");
        assert_eq!(id, redrive_dedup_id("whatever", Some(event), job), "the same job sends the same id");
        assert_ne!(id, redrive_dedup_id("whatever", Some(event), other));
        let long = "d".repeat(128);
        let hashed = redrive_dedup_id(&long, None, job);
        assert!(hashed.len() <= 128 && hashed.bytes().all(|b| b.is_ascii_graphic()), "{hashed}");
        assert_ne!(hashed, redrive_dedup_id(&"e".repeat(128), None, job));
        assert_eq!(redrive_dedup_id("short", None, job), format!("short:r{}", job.as_uuid().simple()));
    }
}
