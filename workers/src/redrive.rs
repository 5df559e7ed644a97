//! The redriver: runs operators' redrive jobs ([`DeadLetterPlans`]). It holds a job's
//! lease, sends the job's frozen dead letters back to the queues they failed in, in the
//! order they were parked (so each ordering group's messages arrive in their old
//! order), at the job's rate and never faster than the queue's worker may call its
//! providers, and records each batch as redriven together with the job's progress.
//!
//! A redriven message keeps its group id and body and gets a new dedup id
//! ([`redrive_dedup_id`]): the job's, so the queue's five-minute window does not drop
//! it as a repeat of the copy that failed. Crashes: a worker that dies after sending a
//! batch and before recording it leaves the job's cursor before that batch; whoever
//! takes the job over once the lease runs out sends it again with the same dedup ids
//! (dropped within five minutes; after that, the consumers' inbox applies each event
//! once). A cancelled job stops at its next batch.
//!
//! The redriver also sweeps: purged dead letters past their retention, and plans that
//! expired unconfirmed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use shared::ports::{
    redrive_dedup_id, DeadLetterPlans, Job, JobState, JobStep, OutgoingMessage, Parked, ParkedState, StoreError,
    Transport, TransportError, MAX_BATCH,
};
use shared::Timestamp;

/// How the redriver runs.
#[derive(Debug, Clone)]
pub struct RedriveConfig {
    /// How long a job stays ours without a batch recorded.
    pub lease: Duration,
    /// How often to look for a job when none is running.
    pub poll: Duration,
    /// Per queue name: the most messages a minute its worker's providers take
    /// (absent: the job's own rate is the limit).
    pub ceilings: HashMap<String, u32>,
    /// How long purged dead letters are kept, restorable.
    pub retention: Duration,
    /// How often to sweep.
    pub sweep_every: Duration,
    /// The first pause after a send the transport refused for now (throttled, down);
    /// it doubles with each one in a row, up to 16 times this.
    pub backoff: Duration,
}

impl Default for RedriveConfig {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(30),
            poll: Duration::from_secs(1),
            ceilings: HashMap::new(),
            retention: Duration::from_secs(7 * 24 * 3_600),
            sweep_every: Duration::from_secs(60),
            backoff: Duration::from_secs(1),
        }
    }
}

/// Runs redrive jobs until shut down.
pub struct Redriver {
    transport: Arc<dyn Transport>,
    plans: Arc<dyn DeadLetterPlans>,
    config: RedriveConfig,
    /// Names this process in job leases.
    owner: String,
}

/// Why a job stopped being ours.
enum Stop {
    /// Finished, cancelled, or taken over: nothing more to do with it.
    Done,
    /// Shutting down; the lease runs out and someone goes on.
    Shutdown,
}

/// Spaces sends out to a rate.
struct Pacer {
    next: Instant,
}

impl Pacer {
    /// Counts `count` messages sent now at `per_minute`.
    fn take(&mut self, count: usize, per_minute: u32) {
        let each = Duration::from_secs(60) / per_minute.max(1);
        self.next = self.next.max(Instant::now()) + each * u32::try_from(count).unwrap_or(u32::MAX);
    }
}

/// The message a parked dead letter is sent back as.
fn outgoing(parked: &Parked, job: &Job) -> OutgoingMessage {
    let message = &parked.message;
    OutgoingMessage {
        group_id: message.group_id.clone(),
        dedup_id: redrive_dedup_id(message.dedup_id.as_str(), message.event_id, job.id),
        body: message.body.clone(),
        attributes: message.attributes.clone(),
    }
}

impl Redriver {
    pub fn new(transport: Arc<dyn Transport>, plans: Arc<dyn DeadLetterPlans>, config: RedriveConfig) -> Self {
        let owner = format!("{}-{}", std::process::id(), uuid::Uuid::new_v4().simple());
        Self { transport, plans, config, owner }
    }

    /// The rate for messages of `queue` in `job`: the job's, capped by the queue's.
    fn rate(&self, job: &Job, queue: &str) -> u32 {
        let ceiling = self.config.ceilings.get(queue).copied().unwrap_or(u32::MAX);
        job.rate_per_minute.min(ceiling).max(1)
    }

    pub async fn run(self, shutdown: CancellationToken) {
        let mut last_sweep: Option<Instant> = None;
        let mut failures = 0u32;
        while !shutdown.is_cancelled() {
            if last_sweep.is_none_or(|at| at.elapsed() >= self.config.sweep_every) {
                last_sweep = Some(Instant::now());
                self.sweep().await;
            }
            let wait = match self.plans.claim_job(&self.owner, Timestamp::now(), self.config.lease).await {
                Ok(Some(job)) => {
                    failures = 0;
                    if let Stop::Shutdown = self.run_job(job, &shutdown).await {
                        return;
                    }
                    continue;
                }
                Ok(None) => {
                    failures = 0;
                    self.config.poll
                }
                Err(error) => {
                    failures += 1;
                    tracing::warn!(%error, "could not look for redrive jobs");
                    Duration::from_secs(1 << failures.min(5))
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    async fn sweep(&self) {
        let now = Timestamp::now();
        match self.plans.sweep(now.minus(self.config.retention), now).await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "deleted purged dead letters past their retention"),
            Err(error) => tracing::warn!(%error, "could not sweep purged dead letters"),
        }
    }

    /// Works on `job` until it is finished, cancelled, taken over, or we shut down.
    async fn run_job(&self, mut job: Job, shutdown: &CancellationToken) -> Stop {
        tracing::info!(job = %job.id, done = job.done, total = job.total, "running a redrive job");
        let mut pacer = Pacer { next: Instant::now() };
        let mut failures = 0u32;
        loop {
            let (step, trouble) = match self.batch(&mut job, &mut pacer, shutdown).await {
                Batch::Empty => return self.finish(&job, JobState::Completed, None).await,
                Batch::Fatal(error) => return self.finish(&job, JobState::Failed, Some(&error)).await,
                Batch::Lost => return Stop::Done,
                Batch::Shutdown => return Stop::Shutdown,
                Batch::Sent(step, trouble) => (step, trouble),
            };
            match self.record(&job, &step).await {
                Ok(now) => job = now,
                Err(StoreError::Conflict(_)) => {
                    tracing::warn!(job = %job.id, "another redriver took the job over");
                    return Stop::Done;
                }
                // Not recorded: sent again after the pause, with the same dedup ids.
                Err(error) => tracing::warn!(job = %job.id, %error, "could not record a redrive batch"),
            }
            if job.state != JobState::Running {
                tracing::info!(job = %job.id, state = job.state.as_str(), "redrive job stopped");
                return Stop::Done;
            }
            if let Some(trouble) = trouble {
                failures += 1;
                let wait = self.config.backoff * (1u32 << failures.min(5).saturating_sub(1));
                tracing::warn!(job = %job.id, error = trouble, retry_in_ms = wait.as_millis(), "redrive paused");
                tokio::select! {
                    () = shutdown.cancelled() => return Stop::Shutdown,
                    () = tokio::time::sleep(wait) => {}
                }
            } else {
                failures = 0;
            }
        }
    }

    async fn record(&self, job: &Job, step: &JobStep) -> Result<Job, StoreError> {
        self.plans.job_step(job.id, &self.owner, step, Timestamp::now(), self.config.lease).await
    }

    async fn finish(&self, job: &Job, state: JobState, error: Option<&str>) -> Stop {
        match self.plans.finish_job(job.id, &self.owner, state, error, Timestamp::now()).await {
            Ok(job) => tracing::info!(
                job = %job.id, state = job.state.as_str(), done = job.done, skipped = job.skipped, error,
                "redrive job finished"
            ),
            // Left running: whoever holds it next finishes it.
            Err(error) => tracing::warn!(job = %job.id, %error, "could not finish a redrive job"),
        }
        Stop::Done
    }

    /// Waits until `pacer` lets the next send go, renewing the job's lease meanwhile;
    /// `None` when the send may go, a stop when the job is no longer ours to run.
    async fn wait_turn(&self, job: &mut Job, pacer: &Pacer, shutdown: &CancellationToken) -> Option<Batch> {
        loop {
            let wait = pacer.next.saturating_duration_since(Instant::now());
            if wait.is_zero() {
                return None;
            }
            let nap = wait.min(self.config.lease / 3);
            tokio::select! {
                () = shutdown.cancelled() => return Some(Batch::Shutdown),
                () = tokio::time::sleep(nap) => {}
            }
            // Renews the lease, and sees a cancel before the next send rather than after.
            let renewal = JobStep { redriven: Vec::new(), skipped: 0, cursor: job.cursor };
            match self.record(job, &renewal).await {
                Ok(now) if now.state == JobState::Running => *job = now,
                Ok(_) | Err(StoreError::Conflict(_)) => return Some(Batch::Lost),
                Err(error) => tracing::warn!(job = %job.id, %error, "could not renew a redrive job's lease"),
            }
        }
    }

    /// Sends the job's next run of dead letters bound for one queue (at most a send's
    /// worth), stopping at the first that could not go.
    async fn batch(&self, job: &mut Job, pacer: &mut Pacer, shutdown: &CancellationToken) -> Batch {
        let limit = u32::try_from(MAX_BATCH).unwrap_or(10);
        let items = match self.plans.job_batch(job, limit).await {
            Ok(items) if items.is_empty() => return Batch::Empty,
            Ok(items) => items,
            Err(error) => {
                return Batch::Sent(
                    JobStep { redriven: vec![], skipped: 0, cursor: job.cursor },
                    Some(error.to_string()),
                )
            }
        };
        let mut step = JobStep { redriven: Vec::new(), skipped: 0, cursor: job.cursor };
        // Purged or redriven by another plan since this one was made: passed over.
        let gone = items.iter().take_while(|p| p.state != ParkedState::Parked).count();
        for parked in &items[..gone] {
            step.skipped += 1;
            step.cursor = parked.id;
        }
        let rest = &items[gone..];
        let Some(first) = rest.first() else {
            return Batch::Sent(step, None);
        };
        let queue = first.message.queue.as_str();
        let run =
            rest.iter().take_while(|p| p.state == ParkedState::Parked && p.message.queue.as_str() == queue).count();
        if let Some(stop) = self.wait_turn(job, pacer, shutdown).await {
            return stop;
        }
        pacer.take(run, self.rate(job, queue));
        let messages: Vec<OutgoingMessage> = rest[..run].iter().map(|p| outgoing(p, job)).collect();
        let results = match self.transport.send(queue, &messages).await {
            Ok(results) => results,
            Err(error) if error.is_retryable() => return Batch::Sent(step, Some(error.to_string())),
            Err(error) => return Batch::Fatal(format!("sending to {queue}: {error}")),
        };
        for (parked, result) in rest[..run].iter().zip(results) {
            match result {
                Ok(()) => {
                    step.redriven.push(parked.id);
                    step.cursor = parked.id;
                }
                Err(TransportError::Invalid(reason)) if !reason.contains("an earlier message of group") => {
                    // The queue will never take it: left parked, passed over.
                    tracing::warn!(job = %job.id, dead_letter = parked.id, reason, "could not redrive a dead letter");
                    step.skipped += 1;
                    step.cursor = parked.id;
                    return Batch::Sent(step, None);
                }
                // The rest of the run goes again after a pause.
                Err(error) => return Batch::Sent(step, Some(error.to_string())),
            }
        }
        Batch::Sent(step, None)
    }
}

/// What one batch came to.
enum Batch {
    /// Nothing left after the cursor.
    Empty,
    /// What went, and why it stopped early (to pause before going on).
    Sent(JobStep, Option<String>),
    /// The job cannot go on (a queue that does not exist).
    Fatal(String),
    /// Cancelled or taken over meanwhile.
    Lost,
    Shutdown,
}
