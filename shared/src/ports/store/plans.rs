//! Operators' plans over parked dead letters, and the jobs that carry them out.
//!
//! A plan freezes a selection: the parked dead letters it matched when it was made are
//! recorded with it, so confirming it later acts on those and on nothing that arrived
//! meanwhile. Purging and restoring a plan is one transaction. Redriving one is a job:
//! a worker holding the job's lease sends its messages back in the order they were
//! parked, records each batch as redriven together with the job's progress, and a job
//! whose worker died is taken over once its lease runs out.

use std::time::Duration;

use async_trait::async_trait;

use super::StoreError;
use crate::clock::Timestamp;
use crate::ids::{JobId, PlanId};
use crate::ports::{Parked, ParkedFilter};

/// What confirming a plan does to its selection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PlanAction {
    /// Parked → sent back to the queue it failed in (a job).
    Redrive,
    /// Parked → purged, restorable for the retention period.
    Purge,
    /// Purged → parked again.
    Restore,
}

impl PlanAction {
    pub fn as_str(self) -> &'static str {
        match self {
            PlanAction::Redrive => "redrive",
            PlanAction::Purge => "purge",
            PlanAction::Restore => "restore",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [PlanAction::Redrive, PlanAction::Purge, PlanAction::Restore].into_iter().find(|a| a.as_str() == text)
    }

    /// The state a dead letter must be in to be selected.
    pub fn selects(self) -> ParkedState {
        match self {
            PlanAction::Redrive | PlanAction::Purge => ParkedState::Parked,
            PlanAction::Restore => ParkedState::Purged,
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

/// Which dead letters a plan is over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// These, those of them in the action's state.
    Ids(Vec<i64>),
    /// Every dead letter the filter matches (its `state` is the action's).
    Filter(ParkedFilter),
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
    /// Freezes `selection` (only dead letters in `action.selects()`'s state) as a new
    /// plan, confirmable until `expires_at`, and counts it.
    async fn make_plan(
        &self,
        action: PlanAction,
        selection: &Selection,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> Result<Plan, StoreError>;

    async fn plan(&self, id: PlanId) -> Result<Option<Plan>, StoreError>;

    /// Confirms a purge or restore plan and applies it in one transaction: each frozen
    /// dead letter still in the action's state moves (purged ones stamped `now`);
    /// returns how many moved. A restore moves only those purged after
    /// `restorable_since`. `NotFound` for an unknown plan; `Conflict` for one that
    /// expired, was confirmed before, or is a redrive.
    async fn apply_plan(&self, id: PlanId, now: Timestamp, restorable_since: Timestamp) -> Result<u64, StoreError>;

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
