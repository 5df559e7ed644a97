//! Per-tenant rate limits by plan: one governor limiter per plan, keyed by tenant. A
//! tenant's plan is read from the store and cached for a minute, so an operator's change
//! takes effect within that time without a lookup per call.
//!
//! Limits hold across processes: every process of a role (the API, the email worker …)
//! reports itself to the store, counts the live processes of its role from those
//! reports (a [`Share`]), and enforces its 1/N of each limit, so N processes together
//! stay within the configured rate with no store call per request. A process that
//! starts or dies changes the others' share at their next report.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::{PlanLimits, Plans};
use crate::domain::PlanName;
use crate::ids::TenantId;
use crate::ports::TenantDirectory;

const PLAN_CACHE: Duration = Duration::from_secs(60);

/// How many live processes share this process's limits (at least 1). Cheap to clone:
/// clones share one count.
#[derive(Debug, Clone)]
pub struct Share(Arc<AtomicU32>);

impl Share {
    /// A process on its own until it learns of others.
    pub fn alone() -> Self {
        Self(Arc::new(AtomicU32::new(1)))
    }

    /// Records how many live processes (this one included) share the limits.
    pub fn set(&self, processes: u32) {
        self.0.store(processes.max(1), Ordering::Relaxed);
    }

    pub fn processes(&self) -> u32 {
        self.0.load(Ordering::Relaxed).max(1)
    }
}

impl Default for Share {
    fn default() -> Self {
        Self::alone()
    }
}

/// One process's part of `quota` when `processes` share it: the rate and the burst
/// divided (a burst of at least one).
pub fn share_of(quota: Quota, processes: u32) -> Quota {
    let n = processes.max(1);
    let burst = NonZeroU32::new(quota.burst_size().get() / n).unwrap_or(NonZeroU32::MIN);
    Quota::with_period(quota.replenish_interval().saturating_mul(n)).map_or(quota, |q| q.allow_burst(burst))
}

/// Limiters built for one share, rebuilt (fresh) when the share changes.
struct Built<L> {
    processes: u32,
    limiters: L,
}

impl<L: Clone> Built<L> {
    /// The limiters for the current share, rebuilding them with `build` when it changed.
    fn current(lock: &RwLock<Self>, share: &Share, build: impl FnOnce(u32) -> L) -> L {
        let processes = share.processes();
        {
            let built = lock.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            if built.processes == processes {
                return built.limiters.clone();
            }
        }
        let mut built = lock.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if built.processes != processes {
            *built = Built { processes, limiters: build(processes) };
        }
        built.limiters.clone()
    }
}

/// A limit for the whole deployment (a provider's), of which this process takes its share.
pub struct SharedLimiter {
    quota: Quota,
    share: Share,
    built: RwLock<Built<Arc<DefaultDirectRateLimiter>>>,
}

impl SharedLimiter {
    pub fn new(quota: Quota, share: Share) -> Self {
        let processes = share.processes();
        let built = Built { processes, limiters: Arc::new(RateLimiter::direct(share_of(quota, processes))) };
        Self { quota, share, built: RwLock::new(built) }
    }

    /// The same limit, shared as `share` says.
    #[must_use]
    pub fn sharing(self, share: &Share) -> Self {
        Self::new(self.quota, share.clone())
    }

    /// Waits until this process may make its next call.
    pub async fn until_ready(&self) {
        let limiter =
            Built::current(&self.built, &self.share, |n| Arc::new(RateLimiter::direct(share_of(self.quota, n))));
        limiter.until_ready().await;
    }
}

type PlanLimiters = Arc<HashMap<PlanName, Arc<DefaultKeyedRateLimiter<TenantId>>>>;

/// Rate limits per tenant, by the tenant's plan.
pub struct TenantRates {
    tenants: Arc<dyn TenantDirectory>,
    quotas: HashMap<PlanName, Quota>,
    share: Share,
    built: RwLock<Built<PlanLimiters>>,
    plans: Mutex<HashMap<TenantId, (PlanName, Instant)>>,
}

/// `n` per second with a burst of one second's worth.
pub fn per_second(n: u32) -> Quota {
    Quota::per_second(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN))
}

/// `n` per hour, spread evenly (a burst of one second's share at most).
pub fn per_hour(n: u32) -> Quota {
    let hourly = NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
    Quota::per_hour(hourly).allow_burst(NonZeroU32::new(hourly.get() / 3_600).unwrap_or(NonZeroU32::MIN))
}

impl TenantRates {
    /// One limiter per plan of `plans`, each with the quota `quota` picks from its limits.
    pub fn new(tenants: Arc<dyn TenantDirectory>, plans: &Plans, quota: impl Fn(&PlanLimits) -> Quota) -> Self {
        let quotas: HashMap<PlanName, Quota> = plans.iter().map(|(name, limits)| (name, quota(&limits))).collect();
        let built = RwLock::new(Built { processes: 1, limiters: Self::build(&quotas, 1) });
        Self { tenants, quotas, share: Share::alone(), built, plans: Mutex::default() }
    }

    /// Enforces this process's part of each limit, as `share` says.
    #[must_use]
    pub fn sharing(mut self, share: &Share) -> Self {
        self.share = share.clone();
        self
    }

    fn build(quotas: &HashMap<PlanName, Quota>, processes: u32) -> PlanLimiters {
        Arc::new(
            quotas
                .iter()
                .map(|(name, q)| (name.clone(), Arc::new(RateLimiter::keyed(share_of(*q, processes)))))
                .collect(),
        )
    }

    async fn plan(&self, tenant: TenantId) -> PlanName {
        let now = Instant::now();
        if let Some((plan, at)) = self.plans.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(&tenant) {
            if now.duration_since(*at) < PLAN_CACHE {
                return plan.clone();
            }
        }
        let plan = match self.tenants.tenant_settings(tenant).await {
            Ok(Some(settings)) => settings.plan,
            Ok(None) => PlanName::standard(),
            Err(error) => {
                tracing::warn!(%error, tenant_id = %tenant, "could not read the tenant's plan; using standard limits");
                return PlanName::standard();
            }
        };
        self.plans.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(tenant, (plan.clone(), now));
        plan
    }

    fn limiter(&self, plan: &PlanName) -> Option<Arc<DefaultKeyedRateLimiter<TenantId>>> {
        let limiters = Built::current(&self.built, &self.share, |n| Self::build(&self.quotas, n));
        limiters.get(plan).or_else(|| limiters.get(&PlanName::standard())).cloned()
    }

    /// Waits until `tenant` may make its next call.
    pub async fn until_ready(&self, tenant: TenantId) {
        let plan = self.plan(tenant).await;
        if let Some(limiter) = self.limiter(&plan) {
            limiter.until_key_ready(&tenant).await;
        }
    }

    /// Takes a call for `tenant` now, or says how long until one is allowed.
    pub async fn check(&self, tenant: TenantId) -> Result<(), Duration> {
        let plan = self.plan(tenant).await;
        match self.limiter(&plan).map(|l| l.check_key(&tenant)) {
            Some(Err(not_until)) => Err(not_until.wait_time_from(DefaultClock::default().now())),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_share_divides_the_rate_and_the_burst() {
        let quota = per_second(100);
        let half = share_of(quota, 2);
        assert_eq!(half.burst_size().get(), 50);
        assert_eq!(half.replenish_interval(), quota.replenish_interval() * 2);
        assert_eq!(share_of(quota, 1), quota);
        assert_eq!(share_of(per_second(1), 4).burst_size().get(), 1, "a burst of at least one");
        assert_eq!(share_of(quota, 0), quota, "no process counted is this one alone");
    }

    #[test]
    fn a_shared_limiter_follows_the_share() {
        let share = Share::alone();
        let limiter = SharedLimiter::new(per_second(10), share.clone());
        let burst = |limiter: &SharedLimiter| {
            let current = Built::current(&limiter.built, &limiter.share, |_| unreachable!("built already"));
            (0..100).take_while(|_| current.check().is_ok()).count()
        };
        assert_eq!(burst(&limiter), 10);
        share.set(2);
        let rebuilt = Built::current(&limiter.built, &limiter.share, |n| {
            Arc::new(RateLimiter::direct(share_of(limiter.quota, n)))
        });
        assert_eq!((0..100).take_while(|_| rebuilt.check().is_ok()).count(), 5, "half, once another process is seen");
    }
}
