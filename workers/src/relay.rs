//! The outbox relay: moves committed outbox rows to the transport.
//!
//! It claims pending rows (the store keeps claimers apart and each tenant in order),
//! publishes them to their service's FIFO topic in batches of up to 10 with the
//! event's group (tenant, then ordering key) and dedup id = event id, marks them
//! published, and schedules failed rows for a retry with exponential backoff. A tenant
//! whose row failed has its later rows in the same claim released too, so none of its
//! keys is ever published out of order (a released row the transport took anyway is
//! dropped as a duplicate when it is published again). The
//! relay sleeps until the store signals an insert (with a timer as a safety net).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use shared::config::BusForwarding;
use shared::pattern::EventPattern;
use shared::ports::{BusEvent, EventBus, Outbox, OutboxEntry, OutgoingMessage, StoreError, Transport, TransportError};
use shared::topology::Topology;
use shared::{EventEnvelope, TenantId, Timestamp};

#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Rows claimed per round.
    pub claim_limit: u32,
    /// How long a claim is exclusive; a crashed relay's rows are retried after it.
    pub lease: Duration,
    /// The safety-net wake-up when no insert notification arrives.
    pub idle_wake: Duration,
    /// First retry delay; doubles per failed attempt up to `max_backoff`.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// Failed attempts after which a row is given up on (kept in the outbox, marked
    /// failed, logged as an error) so that it no longer blocks its tenant.
    pub max_attempts: u32,
    /// After a round that found rows but fewer than `claim_limit`, how long rows may
    /// gather before the next claim: under a steady stream, rounds then carry many rows
    /// each instead of one or two, for at most this much latency. A round after an
    /// idle wait claims at once.
    pub linger: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            claim_limit: 100,
            lease: Duration::from_secs(30),
            idle_wake: Duration::from_secs(1),
            base_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(60),
            max_attempts: 25,
            linger: Duration::from_millis(5),
        }
    }
}

pub struct OutboxRelay {
    outbox: Arc<dyn Outbox>,
    transport: Arc<dyn Transport>,
    topology: Topology,
    config: RelayConfig,
    bus: Option<BusLink>,
}

/// How often the relay re-reads the bus's rules.
const RULE_REFRESH: Duration = Duration::from_secs(60);

struct BusLink {
    bus: Arc<dyn EventBus>,
    forwarding: BusForwarding,
    /// The bus's rules and when they were read. A std mutex, held only to copy or
    /// replace the pointer, never across the network call that reads them (clippy's
    /// `await_holding_lock` keeps it that way).
    rules: std::sync::Mutex<Option<(Arc<Vec<EventPattern>>, tokio::time::Instant)>>,
}

impl BusLink {
    /// The event as EventBridge presents it to rules.
    fn bus_view(envelope: &EventEnvelope) -> serde_json::Value {
        serde_json::json!({
            "version": "0",
            "id": envelope.id,
            "detail-type": envelope.event_type,
            "source": envelope.source,
            "time": envelope.occurred_at,
            "resources": [],
            "detail": envelope,
        })
    }

    /// The bus's rules, read again when older than [`RULE_REFRESH`].
    async fn patterns(&self) -> Result<Arc<Vec<EventPattern>>, TransportError> {
        let cached = self.rules.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        if let Some((patterns, at)) = cached {
            if at.elapsed() < RULE_REFRESH {
                return Ok(patterns);
            }
        }
        let patterns = Arc::new(self.bus.rule_patterns().await?);
        *self.rules.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some((patterns.clone(), tokio::time::Instant::now()));
        Ok(patterns)
    }

    async fn wanted(&self, envelope: &EventEnvelope) -> Result<bool, TransportError> {
        if self.forwarding == BusForwarding::All {
            return Ok(true);
        }
        let patterns = self.patterns().await?;
        let view = Self::bus_view(envelope);
        Ok(patterns.iter().any(|p| p.matches(&view)))
    }

    /// Puts the wanted ones of `entries` on the bus; answers per entry.
    async fn forward(&self, entries: &[&OutboxEntry]) -> Vec<Result<(), String>> {
        let mut results: Vec<Result<(), String>> = entries.iter().map(|_| Ok(())).collect();
        let mut events = Vec::new();
        let mut positions = Vec::new();
        for (i, entry) in entries.iter().enumerate() {
            match self.wanted(&entry.envelope).await {
                Ok(true) => {
                    positions.push(i);
                    events.push(BusEvent {
                        source: entry.envelope.source.to_string(),
                        detail_type: entry.envelope.event_type.to_string(),
                        detail: entry.envelope.to_json(),
                    });
                }
                Ok(false) => {}
                Err(error) => results[i] = Err(format!("reading the bus's rules: {error}")),
            }
        }
        // PutEvents takes at most ten entries.
        for (events, positions) in events.chunks(10).zip(positions.chunks(10)) {
            match self.bus.put_events(events).await {
                Ok(answers) => {
                    for (&i, answer) in positions.iter().zip(answers) {
                        results[i] = answer.map_err(|e| format!("event bus: {e}"));
                    }
                }
                Err(error) => {
                    for &i in positions {
                        results[i] = Err(format!("event bus: {error}"));
                    }
                }
            }
        }
        results
    }
}

/// What one round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RoundOutcome {
    /// Rows the round claimed.
    pub claimed: usize,
    pub published: usize,
    pub retried: usize,
}

/// The message the relay publishes for an event.
pub fn outgoing(envelope: &EventEnvelope) -> OutgoingMessage {
    envelope.to_message()
}

impl OutboxRelay {
    pub fn new(
        outbox: Arc<dyn Outbox>,
        transport: Arc<dyn Transport>,
        topology: Topology,
        config: RelayConfig,
    ) -> Self {
        Self { outbox, transport, topology, config, bus: None }
    }

    /// Also puts events on `bus` (after their topic accepted them). The bus does not
    /// order events; a row counts as published once both have it.
    #[must_use]
    pub fn with_bus(mut self, bus: Arc<dyn EventBus>, forwarding: BusForwarding) -> Self {
        self.bus = Some(BusLink { bus, forwarding, rules: std::sync::Mutex::new(None) });
        self
    }

    fn backoff(&self, attempts: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempts.min(16));
        self.config.base_backoff.saturating_mul(factor).min(self.config.max_backoff)
    }

    /// Claims and publishes one batch of rows.
    pub async fn run_once(&self) -> Result<RoundOutcome, StoreError> {
        let entries = self.outbox.claim_outbox(self.config.claim_limit, self.config.lease).await?;
        let mut outcome = RoundOutcome { claimed: entries.len(), ..RoundOutcome::default() };
        if entries.is_empty() {
            return Ok(outcome);
        }
        let mut failed_tenants: HashSet<TenantId> = HashSet::new();
        let mut published = Vec::new();
        let mut released = Vec::new();
        let mut by_topic: BTreeMap<&str, Vec<&OutboxEntry>> = BTreeMap::new();
        for entry in &entries {
            by_topic.entry(self.topology.topic(entry.envelope.source).name.as_str()).or_default().push(entry);
        }
        for (topic, rows) in by_topic {
            for chunk in rows.chunks(self.transport.publish_limit().max(1)) {
                // Later rows of a tenant that already failed wait for that tenant's retry.
                let (ready, held): (Vec<&OutboxEntry>, Vec<&OutboxEntry>) =
                    chunk.iter().partition(|e| !failed_tenants.contains(&e.envelope.tenant_id));
                released.extend(held.iter().map(|e| e.seq));
                if ready.is_empty() {
                    continue;
                }
                let messages: Vec<OutgoingMessage> = ready.iter().map(|e| outgoing(&e.envelope)).collect();
                // Which entries the transport refused for good (too large, invalid):
                // retrying cannot help, so those rows are failed at once.
                let mut refused: HashSet<i64> = HashSet::new();
                let results: Vec<Result<(), String>> = match self.transport.publish(topic, &messages).await {
                    Ok(results) => ready
                        .iter()
                        .zip(results)
                        .map(|(entry, result)| {
                            result.map_err(|error| {
                                if matches!(error, TransportError::Invalid(_)) {
                                    refused.insert(entry.seq);
                                }
                                error.to_string()
                            })
                        })
                        .collect(),
                    Err(error) => vec![Err(error.to_string()); ready.len()],
                };
                let results: Vec<Result<(), String>> = match &self.bus {
                    Some(link) => {
                        let accepted: Vec<&OutboxEntry> =
                            ready.iter().zip(&results).filter(|(_, r)| r.is_ok()).map(|(e, _)| *e).collect();
                        let mut forwarded = link.forward(&accepted).await.into_iter();
                        results.into_iter().map(|r| r.and_then(|()| forwarded.next().unwrap_or(Ok(())))).collect()
                    }
                    None => results,
                };
                for (entry, result) in ready.iter().zip(results) {
                    let tenant = entry.envelope.tenant_id;
                    if failed_tenants.contains(&tenant) {
                        // After its tenant's failure in this batch, rejected (same group)
                        // or accepted (another key): it waits without counting an attempt,
                        // and the transport's dedup drops the copy it may already have.
                        released.push(entry.seq);
                        continue;
                    }
                    match result {
                        Ok(()) => published.push(entry.seq),
                        Err(error) if refused.contains(&entry.seq) => {
                            // Its tenant's later rows in this batch wait for the next round
                            // (those of its group were refused with it: the group rule).
                            tracing::error!(tenant_id = %tenant, event_id = %entry.envelope.id, %error, "the transport refuses this event for good; it stays in the outbox marked failed");
                            failed_tenants.insert(tenant);
                            self.outbox.fail_outbox(entry.seq, &error).await?;
                            outcome.retried += 1;
                        }
                        Err(error) => {
                            tracing::warn!(tenant_id = %tenant, event_id = %entry.envelope.id, %error, attempts = entry.attempts + 1, "publish failed; will retry");
                            failed_tenants.insert(tenant);
                            self.retry(entry, &error).await?;
                            outcome.retried += 1;
                        }
                    }
                }
            }
        }
        self.outbox.release_outbox(&released).await?;
        outcome.retried += released.len();
        self.outbox.mark_published(&published).await?;
        outcome.published = published.len();
        Ok(outcome)
    }

    async fn retry(&self, entry: &OutboxEntry, error: &str) -> Result<(), StoreError> {
        if entry.attempts + 1 >= self.config.max_attempts {
            tracing::error!(
                tenant_id = %entry.envelope.tenant_id,
                event_id = %entry.envelope.id,
                attempts = entry.attempts + 1,
                error,
                "giving up on publishing an event; it stays in the outbox marked failed"
            );
            return self.outbox.fail_outbox(entry.seq, error).await;
        }
        let not_before = Timestamp::now().plus(self.backoff(entry.attempts));
        self.outbox.retry_outbox(entry.seq, not_before, error).await
    }

    /// Runs until `shutdown` is cancelled.
    pub async fn run(self, shutdown: CancellationToken) {
        tracing::info!("outbox relay started");
        while !shutdown.is_cancelled() {
            match self.run_once().await {
                Ok(outcome) if outcome.published + outcome.retried > 0 => {
                    if outcome.retried > 0 {
                        // Failed rows are due later; don't spin on them.
                        self.idle(&shutdown, self.config.base_backoff).await;
                    } else if outcome.claimed < self.config.claim_limit as usize {
                        tokio::select! {
                            () = shutdown.cancelled() => {}
                            () = tokio::time::sleep(self.config.linger) => {}
                        }
                    }
                    continue;
                }
                Ok(_) => self.idle(&shutdown, self.config.idle_wake).await,
                Err(error) => {
                    tracing::error!(%error, "outbox relay round failed");
                    self.idle(&shutdown, self.config.base_backoff).await;
                }
            }
        }
        tracing::info!("outbox relay stopped");
    }

    async fn idle(&self, shutdown: &CancellationToken, at_most: Duration) {
        tokio::select! {
            () = shutdown.cancelled() => {}
            () = self.outbox.wait_for_outbox() => {}
            () = tokio::time::sleep(at_most) => {}
        }
    }
}
