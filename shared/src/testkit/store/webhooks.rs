//! Webhook secrets.

use std::sync::Arc;

use super::tenant;
use crate::config::Secret;
use crate::ports::StoreBackend;

pub async fn secrets_per_tenant_and_source(store: Arc<dyn StoreBackend>) {
    let acme = tenant(store.as_ref(), "Acme").await;
    let globex = tenant(store.as_ref(), "Globex").await;
    assert_eq!(store.webhook_secret(acme.id, "stripe").await.expect("get"), None);
    store.set_webhook_secret(acme.id, "stripe", &Secret::new("whsec_1")).await.expect("set");
    store.set_webhook_secret(acme.id, "stripe", &Secret::new("whsec_2")).await.expect("replace");
    assert_eq!(
        store.webhook_secret(acme.id, "stripe").await.expect("get").as_ref().map(Secret::expose),
        Some("whsec_2")
    );
    assert_eq!(store.webhook_secret(globex.id, "stripe").await.expect("get"), None, "per tenant");
    assert_eq!(store.webhook_secret(acme.id, "github").await.expect("get"), None, "per source");
}

/// Received webhooks are recorded through the inbox (once per event) and listed per
/// tenant, oldest first, a page at a time.
pub async fn received_webhooks_are_listed_per_tenant_in_pages(store: Arc<dyn StoreBackend>) {
    use crate::clock::Timestamp;
    use crate::domain::webhooks::{ReceivedWebhook, WebhookSource};
    use crate::ports::{Applied, ConsumerName, Effects};

    let acme = tenant(store.as_ref(), "Acme").await;
    let globex = tenant(store.as_ref(), "Globex").await;
    let consumer = ConsumerName::new("webhooks");
    let mut recorded = Vec::new();
    for (n, owner) in [acme.id, acme.id, globex.id, acme.id].into_iter().enumerate() {
        let event = super::event(owner, "stripe.received");
        let webhook = ReceivedWebhook {
            event_id: event.id,
            source: WebhookSource::parse("stripe").expect("source"),
            message_id: format!("msg_{n}"),
            result_key: format!("webhooks/{n}.json"),
            received_at: Timestamp::from_millis(1_000 + n as i64),
        };
        let mut effects = Effects::new();
        effects.record_webhook(owner, webhook.clone());
        assert_eq!(store.apply_once(consumer, owner, event.id, effects.clone()).await.expect("record"), Applied::Now);
        assert_eq!(
            store.apply_once(consumer, owner, event.id, effects).await.expect("again"),
            Applied::Before,
            "recorded once"
        );
        if owner == acme.id {
            recorded.push(webhook);
        }
    }
    let first = store.webhook_events(acme.id, None, 2).await.expect("page");
    assert_eq!(first.events, recorded[..2], "oldest first, the tenant's own");
    let next = first.next.expect("a next page");
    let second = store.webhook_events(acme.id, Some(next), 2).await.expect("page");
    assert_eq!((second.events.as_slice(), second.next), (&recorded[2..], None), "the last page says so");
    let theirs = store.webhook_events(globex.id, None, 10).await.expect("page");
    assert_eq!(theirs.events.iter().map(|w| w.message_id.as_str()).collect::<Vec<_>>(), ["msg_2"]);
}
