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

pub(crate) fn announce(suite: &str, scenario: &str) {
    eprintln!("[{suite}] scenario: {scenario}");
}

pub(crate) fn skip(suite: &str, scenario: &str, why: &str) {
    eprintln!("[{suite}] SKIPPED scenario: {scenario} — {why}");
}
