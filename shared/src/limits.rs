//! Per-tenant rate limits by plan: one governor limiter per plan, keyed by tenant. A
//! tenant's plan is read from the store and cached for a minute, so an operator's change
//! takes effect within that time without a lookup per call.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::{PlanLimits, Plans};
use crate::domain::PlanName;
use crate::ids::TenantId;
use crate::ports::Store;

const PLAN_CACHE: Duration = Duration::from_secs(60);

/// Rate limits per tenant, by the tenant's plan.
pub struct TenantRates {
    store: Arc<dyn Store>,
    limiters: HashMap<PlanName, DefaultKeyedRateLimiter<TenantId>>,
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
    pub fn new(store: Arc<dyn Store>, plans: &Plans, quota: impl Fn(&PlanLimits) -> Quota) -> Self {
        let limiters = plans.iter().map(|(name, limits)| (name, RateLimiter::keyed(quota(&limits)))).collect();
        Self { store, limiters, plans: Mutex::default() }
    }

    async fn plan(&self, tenant: TenantId) -> PlanName {
        let now = Instant::now();
        if let Some((plan, at)) = self.plans.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(&tenant) {
            if now.duration_since(*at) < PLAN_CACHE {
                return plan.clone();
            }
        }
        let plan = match self.store.tenant_settings(tenant).await {
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

    fn limiter(&self, plan: &PlanName) -> Option<&DefaultKeyedRateLimiter<TenantId>> {
        self.limiters.get(plan).or_else(|| self.limiters.get(&PlanName::standard()))
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
