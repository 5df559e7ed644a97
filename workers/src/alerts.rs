//! Alerts to the deployment's chat channel: messages arriving in a dead-letter queue,
//! a worker's failure rate over a threshold, and outbox lag over a threshold. De-duplicated and rate limited per alert key: the
//! first alert of a key goes out at once, repeats within the window are counted, and
//! when the window closes one summary reports how many there were — a storm produces
//! a summary, not a flood.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use shared::ports::providers::{Alert, AlertSink};
use shared::ports::{
    AccessRequestStore, DeadLetterParking, Outbox, QueueName, StoreBackend, TenantDirectory, Transport, WorkerHealth,
    WorkerReport,
};
use shared::topology::{Topology, MAX_RECEIVE_COUNT};
use shared::{TenantId, Timestamp};

use crate::consumer::ConsumerStats;

const RED: u32 = 0xE7_4C_3C;
const ORANGE: u32 = 0xE6_7E_22;

struct Window {
    opened: Instant,
    repeats: u64,
    last: Alert,
}

/// Rate-limits alerts per key.
pub struct Alerter {
    sink: Arc<dyn AlertSink>,
    window: Duration,
    open: HashMap<String, Window>,
}

impl Alerter {
    pub fn new(sink: Arc<dyn AlertSink>, window: Duration) -> Self {
        Self { sink, window, open: HashMap::new() }
    }

    async fn post(&self, alert: &Alert) {
        if let Err(error) = self.sink.post(alert).await {
            tracing::warn!(%error, title = alert.title.as_str(), "could not post an alert");
        }
    }

    /// Posts `alert` unless an alert with `key` went out within the window; then it is
    /// only counted.
    pub async fn raise(&mut self, key: &str, alert: Alert, now: Instant) {
        match self.open.get_mut(key) {
            Some(window) if now.duration_since(window.opened) < self.window => {
                window.repeats += 1;
                window.last = alert;
            }
            _ => {
                self.post(&alert).await;
                self.open.insert(key.to_owned(), Window { opened: now, repeats: 0, last: alert });
            }
        }
    }

    /// Closes windows that have run their course, posting one summary for each that
    /// saw repeats.
    pub async fn flush(&mut self, now: Instant) {
        let expired: Vec<String> = self
            .open
            .iter()
            .filter(|(_, w)| now.duration_since(w.opened) >= self.window)
            .map(|(k, _)| k.clone())
            .collect();
        for key in expired {
            if let Some(window) = self.open.remove(&key) {
                if window.repeats > 0 {
                    let mut summary = window.last;
                    summary.title = format!("{} (and {} more like it)", summary.title, window.repeats);
                    summary.fields.push(("suppressed".into(), window.repeats.to_string()));
                    self.post(&summary).await;
                }
            }
        }
    }
}

/// Reports `stats` of `worker` (a role: `email`, `api` …) in this `process` to the
/// store every `interval` (and once more at shutdown), so a monitor anywhere can see its
/// failure rate; and sets `share` to the number of processes of that role that reported
/// within three intervals, so their limits add up to the configured ones.
pub async fn report_worker(
    health: Arc<dyn WorkerHealth>,
    worker: String,
    process: String,
    stats: Arc<ConsumerStats>,
    share: shared::limits::Share,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let mut first = true;
    // The last report's longest wait: the final report (shutting down) repeats it
    // rather than claiming nothing waited.
    let mut longest_wait = None;
    loop {
        // The first report goes out at once, so other processes count this one early.
        let stopping = if std::mem::take(&mut first) {
            false
        } else {
            tokio::select! {
                () = shutdown.cancelled() => true,
                () = tokio::time::sleep(interval) => false,
            }
        };
        let report = WorkerReport {
            worker: worker.clone(),
            process: process.clone(),
            handled: stats.handled.load(Ordering::Relaxed),
            failed: stats.failed.load(Ordering::Relaxed),
            longest_wait: if stopping {
                longest_wait
            } else {
                longest_wait = match stats.longest_wait_ms.swap(0, Ordering::Relaxed) {
                    0 => None,
                    ms => Some(Duration::from_millis(ms)),
                };
                longest_wait
            },
            reported_at: Timestamp::now(),
        };
        if let Err(error) = health.report_worker(&report).await {
            tracing::warn!(%error, worker = worker.as_str(), "could not report worker counts");
        }
        if stopping {
            return;
        }
        let since = Timestamp::now().minus(interval.saturating_mul(3));
        match health.worker_reports(since).await {
            Ok(reports) => {
                let live = reports.iter().filter(|r| r.worker == worker).count();
                share.set(u32::try_from(live).unwrap_or(u32::MAX));
            }
            Err(error) => tracing::warn!(%error, worker = worker.as_str(), "could not count live processes"),
        }
    }
}

/// Makes the alert sink for a tenant's own webhook URL.
pub type TenantSinkFactory = Box<dyn Fn(&str) -> Arc<dyn AlertSink> + Send + Sync>;

/// Alerts to tenants' own webhooks about the dead letters workers record (see
/// `Consumer::recording_dead_letters`): how far they were read, and one de-duplicating
/// alerter per tenant and webhook.
pub struct TenantAlerts {
    sink_for: TenantSinkFactory,
    window: Duration,
    alerters: HashMap<TenantId, (String, Alerter)>,
    /// The last dead letter read, and the start: older ones were before this monitor.
    cursor: i64,
    since: Timestamp,
}

impl TenantAlerts {
    pub fn new(sink_for: TenantSinkFactory, window: Duration) -> Self {
        Self { sink_for, window, alerters: HashMap::new(), cursor: 0, since: Timestamp::now() }
    }

    /// The tenant's alerter for `url`, made anew when the tenant changed its webhook.
    fn alerter(&mut self, tenant: TenantId, url: &str) -> &mut Alerter {
        let make = || (url.to_owned(), Alerter::new((self.sink_for)(url), self.window));
        let entry = self.alerters.entry(tenant).or_insert_with(make);
        if entry.0 != url {
            *entry = make();
        }
        &mut entry.1
    }
}

/// The store ports the monitor reads.
#[derive(Clone)]
pub struct MonitorPorts {
    pub health: Arc<dyn WorkerHealth>,
    /// Tenants' own alert webhooks.
    pub tenants: Arc<dyn TenantDirectory>,
    /// Pending access requests to remind operators of.
    pub access: Arc<dyn AccessRequestStore>,
    /// Lag and failed rows.
    pub outbox: Arc<dyn Outbox>,
    /// Dead letters drained from their queues into the store.
    pub parking: Arc<dyn DeadLetterParking>,
}

impl MonitorPorts {
    /// Every port from one backend.
    pub fn of(store: &Arc<dyn StoreBackend>) -> Self {
        Self {
            health: store.clone(),
            tenants: store.clone(),
            access: store.clone(),
            outbox: store.clone(),
            parking: store.clone(),
        }
    }
}

/// Watches the dead-letter queues and the outbox and raises alerts.
pub struct Monitor {
    transport: Arc<dyn Transport>,
    store: MonitorPorts,
    topology: Topology,
    alerter: Alerter,
    /// Outbox rows pending above which lag is alerted.
    pub lag_threshold: u64,
    /// Dead letters seen per DLQ at the last check.
    seen: HashMap<String, u64>,
    /// Outbox rows given up on, at the last check.
    failed_rows: u64,
    /// Each worker process's counts at the last check (from the store's reports).
    worker_counts: HashMap<(String, String), (u64, u64)>,
    /// A worker failing more than this share of at least `min_samples` messages
    /// between two checks is alerted.
    pub failure_threshold: f64,
    pub min_samples: u64,
    /// Pending access requests older than `.0` get a reminder, again every `.1`.
    pub access_reminders: Option<(Duration, Duration)>,
    /// When set, a tenant with its own alert webhook also hears of its dead letters.
    pub tenant_alerts: Option<TenantAlerts>,
}

impl Monitor {
    pub fn new(transport: Arc<dyn Transport>, store: MonitorPorts, topology: Topology, alerter: Alerter) -> Self {
        Self {
            transport,
            store,
            topology,
            alerter,
            lag_threshold: 1_000,
            seen: HashMap::new(),
            failed_rows: 0,
            worker_counts: HashMap::new(),
            failure_threshold: 0.5,
            min_samples: 10,
            access_reminders: None,
            tenant_alerts: None,
        }
    }

    /// Failure rates per worker since the last check, summed over the processes that
    /// reported in the last ten minutes (wherever they run). A process seen for the first
    /// time sets a baseline; one whose counts went down restarted and counts from zero.
    async fn check_workers(&mut self, now: Instant) {
        let since = Timestamp::now().minus(Duration::from_secs(10 * 60));
        let reports = match self.store.health.worker_reports(since).await {
            Ok(reports) => reports,
            Err(error) => {
                tracing::warn!(%error, "could not read worker reports");
                return;
            }
        };
        let mut deltas: HashMap<String, (u64, u64)> = HashMap::new();
        for report in reports {
            let counts = (report.handled, report.failed);
            let key = (report.worker.clone(), report.process.clone());
            let Some(last) = self.worker_counts.insert(key, counts) else { continue };
            let restarted = counts.0 < last.0 || counts.1 < last.1;
            let base = if restarted { (0, 0) } else { last };
            let delta = deltas.entry(report.worker).or_default();
            delta.0 += counts.0 - base.0;
            delta.1 += counts.1 - base.1;
        }
        let mut alerts = Vec::new();
        for (name, (handled, failed)) in deltas {
            let total = handled + failed;
            if total >= self.min_samples && failed as f64 / total as f64 > self.failure_threshold {
                alerts.push((
                    format!("worker-failures:{name}"),
                    Alert {
                        title: format!("The {name} worker is failing"),
                        description: format!(
                            "{failed} of the last {total} messages failed (threshold {:.0} %).",
                            self.failure_threshold * 100.0
                        ),
                        fields: vec![
                            ("worker".into(), name.clone()),
                            ("instance".into(), self.topology.instance.as_str().to_owned()),
                        ],
                        colour: ORANGE,
                        url: None,
                    },
                ));
            }
        }
        for (key, alert) in alerts {
            self.alerter.raise(&key, alert, now).await;
        }
    }

    /// Tells each tenant with its own webhook about the dead letters recorded since the
    /// last check.
    async fn alert_tenants(&mut self, now: Instant) {
        let Some(tenants) = self.tenant_alerts.as_mut() else { return };
        loop {
            let letters = match self.store.health.dead_letters_since(tenants.cursor, tenants.since, 100).await {
                Ok(letters) => letters,
                Err(error) => {
                    tracing::warn!(%error, "could not read dead letters for tenant alerts");
                    return;
                }
            };
            let Some((last, _)) = letters.last() else { return };
            tenants.cursor = *last;
            for (_, letter) in &letters {
                let url = match self.store.tenants.tenant_settings(letter.tenant).await {
                    Ok(settings) => settings.and_then(|s| s.alert_webhook_url),
                    Err(error) => {
                        tracing::warn!(%error, tenant_id = %letter.tenant, "could not read the tenant's alert webhook");
                        None
                    }
                };
                let Some(url) = url else { continue };
                let event_type = letter.event_type.as_ref().map_or("(unknown)", shared::EventType::as_str);
                let alert = Alert {
                    title: format!("A {event_type} event could not be processed"),
                    description: format!(
                        "After {MAX_RECEIVE_COUNT} attempts the event moved to the dead-letter queue; the platform team can redrive it."
                    ),
                    fields: vec![
                        ("event id".into(), letter.dedup_id.to_string()),
                        ("tenant".into(), letter.tenant.to_string()),
                        ("queue".into(), letter.queue.to_string()),
                        ("last error".into(), letter.error.chars().take(500).collect()),
                    ],
                    colour: RED,
                    url: None,
                };
                tenants.alerter(letter.tenant, &url).raise(&format!("dlq:{}", letter.queue), alert, now).await;
            }
        }
    }

    async fn check_access_requests(&mut self, now: Instant) {
        let Some((after, every)) = self.access_reminders else { return };
        let ago = |d: Duration| {
            Timestamp::from_millis(Timestamp::now().as_millis() - i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        };
        let due = match self.store.access.due_access_reminders(ago(after), ago(every)).await {
            Ok(due) => due,
            Err(error) => {
                tracing::warn!(%error, "could not read pending access requests");
                return;
            }
        };
        for request in due {
            let waiting = request.created_at.until(Timestamp::now());
            let alert = Alert {
                title: format!("Access request {} is still pending", request.ticket_id),
                description: format!(
                    "{} asked for access for {} {} hour(s) ago.",
                    request.requester.as_str(),
                    request.organization,
                    waiting.as_secs() / 3600
                ),
                fields: vec![
                    ("ticket".into(), request.ticket_id.to_string()),
                    ("instance".into(), self.topology.instance.as_str().to_owned()),
                ],
                colour: ORANGE,
                url: None,
            };
            self.alerter.raise(&format!("access-request-reminder:{}", request.ticket_id), alert, now).await;
        }
    }

    /// One round of checks.
    pub async fn check(&mut self, now: Instant) {
        for queue in self.topology.queues.clone() {
            let stats = match self.transport.stats(&queue.dlq_name).await {
                Ok(stats) => stats,
                Err(error) => {
                    tracing::warn!(dlq = queue.dlq_name.as_str(), %error, "could not read a dead-letter queue");
                    continue;
                }
            };
            // The control plane drains each dead-letter queue into the store: what
            // reached it is what it holds plus what was parked from it.
            let parked = match self.store.parking.parked_count(&QueueName::new(queue.name.clone())).await {
                Ok(parked) => parked,
                Err(error) => {
                    tracing::warn!(queue = queue.name.as_str(), %error, "could not count parked dead letters");
                    continue;
                }
            };
            let count = stats.visible + stats.in_flight + parked;
            let before = self.seen.insert(queue.dlq_name.clone(), count).unwrap_or(0);
            if count > before {
                let alert = Alert {
                    title: format!("Dead letters in {}", queue.dlq_name),
                    description: format!(
                        "{} new message(s) could not be handled after {} attempts and moved to the dead-letter queue.",
                        count - before,
                        queue.max_receive_count
                    ),
                    fields: vec![
                        ("queue".into(), queue.name.clone()),
                        ("dead letters".into(), count.to_string()),
                        ("instance".into(), self.topology.instance.as_str().to_owned()),
                    ],
                    colour: RED,
                    url: None,
                };
                self.alerter.raise(&format!("dlq:{}", queue.dlq_name), alert, now).await;
            }
        }
        match self.store.outbox.outbox_backlog().await {
            Ok(backlog) if backlog > self.lag_threshold => {
                let alert = Alert {
                    title: "Outbox lag".into(),
                    description: format!(
                        "{backlog} events are waiting to be published (threshold {}).",
                        self.lag_threshold
                    ),
                    fields: vec![("instance".into(), self.topology.instance.as_str().to_owned())],
                    colour: ORANGE,
                    url: None,
                };
                self.alerter.raise("outbox-lag", alert, now).await;
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "could not read the outbox backlog"),
        }
        self.check_failed_rows(now).await;
        self.alert_tenants(now).await;
        self.check_workers(now).await;
        self.check_access_requests(now).await;
        self.alerter.flush(now).await;
        if let Some(tenants) = self.tenant_alerts.as_mut() {
            for (_, alerter) in tenants.alerters.values_mut() {
                alerter.flush(now).await;
            }
        }
    }

    /// Alerts when the relay gave up on more outbox rows since the last check: events
    /// that were accepted and will not be published unless an operator acts.
    async fn check_failed_rows(&mut self, now: Instant) {
        let count = match self.store.outbox.failed_outbox().await {
            Ok(count) => count,
            Err(error) => {
                tracing::warn!(%error, "could not count failed outbox rows");
                return;
            }
        };
        let before = std::mem::replace(&mut self.failed_rows, count);
        if count > before {
            let alert = Alert {
                title: "Events that cannot be published".into(),
                description: format!(
                    "{} accepted event(s) were given up on by the outbox relay (unreadable, or refused by the transport); \
                     they stay in the outbox, marked failed with the reason.",
                    count - before
                ),
                fields: vec![
                    ("failed rows".into(), count.to_string()),
                    ("instance".into(), self.topology.instance.as_str().to_owned()),
                ],
                colour: RED,
                url: None,
            };
            self.alerter.raise("outbox-failed", alert, now).await;
        }
    }

    /// Checks every `interval` until `shutdown`.
    pub async fn run(mut self, interval: Duration, shutdown: CancellationToken) {
        loop {
            self.check(Instant::now()).await;
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(interval) => {}
            }
        }
    }
}
