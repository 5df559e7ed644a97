//! The object-store conformance suite.

use std::sync::Arc;

use super::announce;
use crate::object_key::ObjectKey;
use crate::ports::ObjectStore;

/// Runs every object-store scenario against a fresh, empty store.
pub async fn run_suite(store: Arc<dyn ObjectStore>) {
    announce("object store", "put, get, overwrite and list by prefix");
    let key = |k: &str| ObjectKey::parse(k).expect("key");
    let a = key("feedback/tenant=ten_a/year=2026/month=11/day=26/hour=23/evt_1.json");
    let b = key("feedback/tenant=ten_a/year=2026/month=11/day=26/hour=23/evt_2.json");
    let c = key("feedback/tenant=ten_b/year=2026/month=11/day=26/hour=23/evt_3.json");
    assert_eq!(store.get(&a).await.expect("get"), None);
    for (k, body) in [(&b, "two"), (&a, "one"), (&c, "three")] {
        store.put(k, body.as_bytes().to_vec(), "application/json").await.expect("put");
    }
    assert_eq!(store.get(&a).await.expect("get").as_deref(), Some(&b"one"[..]));
    store.put(&a, b"uno".to_vec(), "application/json").await.expect("overwrite");
    assert_eq!(store.get(&a).await.expect("get").as_deref(), Some(&b"uno"[..]));
    assert_eq!(store.list("feedback/tenant=ten_a/").await.expect("list"), vec![a.clone(), b.clone()]);
    assert_eq!(store.list("feedback/").await.expect("list"), vec![a, b, c]);
    assert!(store.list("email/").await.expect("list").is_empty());
}
