//! Parked dead letters.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{envelope, tenant};
use crate::clock::Timestamp;
use crate::envelope::EventType;
use crate::ids::TenantId;
use crate::ports::{Attempt, DedupId, ErrorGroupKey, MessageId, NewParked, ParkedFilter, QueueName, StoreBackend};

/// A dead letter of `tenant` (none: a body that is not an envelope) from `queue`.
pub(super) fn letter(n: i64, queue: &str, tenant: Option<TenantId>, event_type: &str, error: &str) -> NewParked {
    let event = envelope(tenant.unwrap_or_else(TenantId::new), event_type, None);
    let at = Timestamp::from_millis(1_700_000_000_000 + n * 1_000);
    NewParked {
        queue: QueueName::new(queue),
        message_id: MessageId::new(format!("m-{n}")),
        group_id: format!("{}:g{n}", event.tenant_id),
        dedup_id: DedupId::new(event.id.to_string()),
        body: if tenant.is_some() { event.to_json() } else { "not an envelope".to_owned() },
        attributes: BTreeMap::from([("event_type".to_owned(), event_type.to_owned())]),
        tenant,
        event_id: tenant.map(|_| event.id),
        event_type: tenant.map(|_| EventType::parse(event_type).expect("type")),
        error: error.to_owned(),
        attempts: (1..=3)
            .map(|a| Attempt { at: at.minus(std::time::Duration::from_secs(4 - a)), error: format!("{error} #{a}") })
            .collect(),
        dead_lettered_at: at,
    }
}

fn ids(page: &[crate::ports::Parked]) -> Vec<String> {
    page.iter().map(|p| p.message.message_id.to_string()).collect()
}

pub async fn parks_once_and_lists_newest_first(store: Arc<dyn StoreBackend>) {
    let (acme, globex) = (tenant(store.as_ref(), "Acme").await, tenant(store.as_ref(), "Globex").await);
    let letters = [
        letter(1, "feedback.fifo", Some(acme.id), "feedback.submitted", "Zendesk answered 503"),
        letter(2, "email.fifo", Some(globex.id), "email.requested", "SendGrid answered 401"),
        letter(3, "feedback.fifo", Some(globex.id), "feedback.submitted", "Zendesk answered 502"),
        letter(4, "feedback.fifo", None, "feedback.submitted", "permanent failure: not an envelope"),
        letter(5, "email.fifo", Some(acme.id), "email.requested", "SendGrid answered 401"),
    ];
    for l in &letters {
        assert!(store.park(l).await.expect("park"), "parked {}", l.message_id);
    }
    assert!(!store.park(&letters[0]).await.expect("park again"), "the same message parks once");
    let mut moved_again = letters[0].clone();
    moved_again.queue = QueueName::new("email.fifo");
    assert!(store.park(&moved_again).await.expect("park"), "the same id in another queue is another message");

    let all = store.parked(&ParkedFilter::default(), None, 100).await.expect("list");
    assert_eq!(ids(&all), ["m-1", "m-5", "m-4", "m-3", "m-2", "m-1"], "newest first, each once");
    let first = store.parked(&ParkedFilter::default(), None, 2).await.expect("page");
    let next = store.parked(&ParkedFilter::default(), Some(first[1].id), 2).await.expect("next page");
    assert_eq!((ids(&first), ids(&next)), (vec!["m-1".into(), "m-5".into()], vec!["m-4".into(), "m-3".into()]));

    let listed = |filter: ParkedFilter| {
        let store = store.clone();
        async move { ids(&store.parked(&filter, None, 100).await.expect("list")) }
    };
    assert_eq!(
        listed(ParkedFilter { queue: Some(QueueName::new("feedback.fifo")), ..Default::default() }).await,
        ["m-4", "m-3", "m-1"]
    );
    assert_eq!(listed(ParkedFilter { tenant: Some(acme.id), ..Default::default() }).await, ["m-1", "m-5", "m-1"]);
    let email = EventType::parse("email.requested").expect("type");
    assert_eq!(
        listed(ParkedFilter { tenant: Some(globex.id), event_type: Some(email), ..Default::default() }).await,
        ["m-2"]
    );
    let zendesk = ErrorGroupKey::of("Zendesk answered 500").fingerprint;
    assert_eq!(
        listed(ParkedFilter { error_group: Some(zendesk), ..Default::default() }).await,
        ["m-1", "m-3", "m-1"],
        "the copy from the other queue failed the same way"
    );
    let (from, to) = (letters[1].dead_lettered_at, letters[3].dead_lettered_at);
    assert_eq!(
        listed(ParkedFilter { from: Some(from), to: Some(to), ..Default::default() }).await,
        ["m-3", "m-2"],
        "from is inclusive, to is not"
    );
    assert!(listed(ParkedFilter { tenant: Some(TenantId::new()), ..Default::default() }).await.is_empty());

    let one = store.parked_message(all[2].id).await.expect("get").expect("present");
    assert_eq!(one.message, letters[3], "kept as parked: body, attributes, attempts, times");
    assert_eq!(one.error_group, ErrorGroupKey::of(&letters[3].error));
    let detailed = store.parked_message(all[1].id).await.expect("get").expect("present");
    assert_eq!(detailed.message, letters[4]);
    assert_eq!(detailed.message.attempts.len(), 3);
    assert_eq!(store.parked_message(i64::MAX).await.expect("get"), None);

    assert_eq!(store.parked_count(&QueueName::new("feedback.fifo")).await.expect("count"), 3);
    assert_eq!(store.parked_count(&QueueName::new("email.fifo")).await.expect("count"), 3);
    assert_eq!(store.parked_count(&QueueName::new("other.fifo")).await.expect("count"), 0);
}

pub async fn groups_errors_that_differ_only_in_values(store: Arc<dyn StoreBackend>) {
    let acme = tenant(store.as_ref(), "Acme").await;
    let errors = [
        "attempt failed: SendGrid answered 503 for 'ana@example.com' (after 3 attempts)",
        "attempt failed: SendGrid answered 502 for 'bob@example.com' (after 3 attempts)",
        "permanent failure: field `rating` is 9",
        "attempt failed: SendGrid answered 500 for 'cy@example.com' (after 3 attempts)",
    ];
    for (n, error) in errors.iter().enumerate() {
        let n = i64::try_from(n).expect("small");
        store.park(&letter(n, "email.fifo", Some(acme.id), "email.requested", error)).await.expect("park");
    }
    let groups = store.parked_groups(&ParkedFilter::default(), 10).await.expect("groups");
    let summary: Vec<(u64, &str, &str)> =
        groups.iter().map(|g| (g.count, g.key.pattern.as_str(), g.example.as_str())).collect();
    assert_eq!(
        summary,
        vec![
            (3, "attempt failed: SendGrid answered # for '…'", errors[3]),
            (1, "permanent failure: field `…` is #", errors[2]),
        ]
    );
    assert_eq!(groups[0].first_at, Timestamp::from_millis(1_700_000_000_000), "the oldest of the group");
    assert_eq!(groups[0].last_at, Timestamp::from_millis(1_700_000_003_000), "the newest of the group");
    let narrowed = ParkedFilter { to: Some(Timestamp::from_millis(1_700_000_001_500)), ..Default::default() };
    let early = store.parked_groups(&narrowed, 10).await.expect("groups");
    assert_eq!(early.iter().map(|g| g.count).collect::<Vec<_>>(), [2], "groups of what the filter keeps");
    assert_eq!(store.parked_groups(&ParkedFilter::default(), 1).await.expect("groups").len(), 1, "at most limit");
}
