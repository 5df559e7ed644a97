//! Conformance suites: one suite per port, run against every backend.
//!
//! A backend crate runs each suite with a factory that makes a fresh, isolated instance
//! of its backend per scenario (the store suite through `store_conformance!`, one test
//! per scenario). Scenarios a backend cannot support are
//! declared through capabilities and skipped loudly (printed), never silently.

pub mod object_store;
pub mod store;
pub mod transport;

use std::future::Future;
use std::time::Duration;

/// Fails the calling test when `future` does not finish within `limit`.
pub async fn within<T>(limit: Duration, what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, future).await {
        Ok(value) => value,
        Err(_) => panic!("timed out after {limit:?} waiting for {what}"),
    }
}

/// Checks `check` every 25 ms until it answers `Ok`, and returns that; fails the
/// calling test when it has not within `limit`, naming `what` and the last `Err` (the
/// state it was waiting on). The one way tests wait for something to happen.
pub async fn eventually<T, E, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    E: std::fmt::Debug,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(last) if tokio::time::Instant::now() >= deadline => {
                panic!("{what}: not within {limit:?}; last seen: {last:?}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(25)).await,
        }
    }
}

pub(crate) fn announce(suite: &str, scenario: &str) {
    eprintln!("[{suite}] scenario: {scenario}");
}

pub(crate) fn skip(suite: &str, scenario: &str, why: &str) {
    eprintln!("[{suite}] SKIPPED scenario: {scenario} — {why}");
}
