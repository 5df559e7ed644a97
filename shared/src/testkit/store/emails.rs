//! Emails.

use std::sync::Arc;

use super::{envelope, tenant};
use crate::domain::{EmailAddress, EmailOutcome, EmailStatus, NewEmail};
use crate::envelope::EventEnvelope;
use crate::ids::EmailId;
use crate::ports::{SendStart, StoreBackend, StoreError};

pub async fn campaigns_sends_and_outcomes(store: Arc<dyn StoreBackend>) {
    let acme = tenant(store.as_ref(), "Acme").await;
    let globex = tenant(store.as_ref(), "Globex").await;
    let campaign = EmailId::new();
    let batch: Vec<(NewEmail, EventEnvelope)> = ["a@example.com", "b@example.com", "c@example.com"]
        .iter()
        .map(|to| {
            let email = NewEmail {
                id: EmailId::new(),
                campaign_id: Some(campaign),
                to: EmailAddress::parse(to).expect("address"),
                subject: "Hello".into(),
            };
            (email, envelope(acme.id, "email.requested", None))
        })
        .collect();
    store.submit_emails(acme.id, &batch).await.expect("submit");
    assert_eq!(store.outbox_backlog().await.expect("backlog"), 3, "one event per recipient");
    let (first, event) = &batch[0];
    let stored = store.email(acme.id, first.id).await.expect("get").expect("present");
    assert_eq!((stored.status, stored.campaign_id, stored.event_id), (EmailStatus::Accepted, Some(campaign), event.id));
    assert_eq!(store.email(globex.id, first.id).await.expect("get"), None, "tenant-scoped");

    assert!(matches!(store.submit_emails(globex.id, &batch).await, Err(StoreError::WrongTenant { .. })));
    assert_eq!(store.start_email_send(acme.id, first.id).await.expect("start"), SendStart::Started);
    assert_eq!(store.start_email_send(acme.id, first.id).await.expect("start"), SendStart::Interrupted);
    store.retry_email_send(acme.id, first.id).await.expect("retry");
    assert_eq!(store.start_email_send(acme.id, first.id).await.expect("start"), SendStart::Started);
    assert_eq!(store.start_email_send(globex.id, first.id).await.expect("start"), SendStart::Missing);

    // Dead-lettered: shown failed with the reason; a redrive starts it again.
    store.mark_email_dead_lettered(globex.id, first.id, "not yours").await.expect("another tenant's: a no-op");
    store.mark_email_dead_lettered(acme.id, first.id, "provider down (after 3 attempts)").await.expect("mark");
    let dead = store.email(acme.id, first.id).await.expect("get").expect("present");
    assert_eq!(
        (dead.status, dead.failure_reason.as_deref()),
        (EmailStatus::Failed, Some("provider down (after 3 attempts)"))
    );
    assert_eq!(store.start_email_send(acme.id, first.id).await.expect("start"), SendStart::Started, "redriven");
    assert_eq!(store.email(acme.id, first.id).await.expect("get").expect("present").failure_reason, None);

    let outcome = EmailOutcome {
        status: EmailStatus::Sent,
        provider: "sendgrid".into(),
        provider_message_id: Some("msg-1".into()),
        failure_reason: None,
        result_key: Some("email/k.json".into()),
    };
    let mut effects = crate::ports::Effects::new();
    effects.set_email_outcome(acme.id, first.id, outcome);
    let applied = store.apply_once(crate::ports::ConsumerName::new("email"), acme.id, event.id, effects).await;
    assert_eq!(applied.expect("apply"), crate::ports::Applied::Now);
    let sent = store.email(acme.id, first.id).await.expect("get").expect("present");
    assert_eq!((sent.status, sent.provider_message_id.as_deref()), (EmailStatus::Sent, Some("msg-1")));
    assert_eq!(store.start_email_send(acme.id, first.id).await.expect("start"), SendStart::Finished);
    store.mark_email_dead_lettered(acme.id, first.id, "late").await.expect("mark");
    assert_eq!(
        store.email(acme.id, first.id).await.expect("get").expect("present").status,
        EmailStatus::Sent,
        "an email that ended keeps its outcome"
    );
}

fn new_email(to: &str) -> NewEmail {
    NewEmail {
        id: EmailId::new(),
        campaign_id: None,
        to: EmailAddress::parse(to).expect("address"),
        subject: "x".into(),
    }
}

/// A campaign with one row the database refuses (here a repeated email id) stores
/// nothing, not even its good rows.
pub async fn a_campaign_is_all_or_nothing(store: Arc<dyn StoreBackend>) {
    let acme = tenant(store.as_ref(), "Acme").await;
    let good = (new_email("e@example.com"), envelope(acme.id, "email.requested", None));
    let repeated = (
        NewEmail { to: EmailAddress::parse("f@example.com").expect("a"), ..good.0.clone() },
        envelope(acme.id, "email.requested", None),
    );
    assert!(store.submit_emails(acme.id, &[good.clone(), repeated]).await.is_err());
    assert_eq!(store.email(acme.id, good.0.id).await.expect("get"), None, "rolled back");
    assert_eq!(store.outbox_backlog().await.expect("backlog"), 0, "no event either");
    store.submit_emails(acme.id, std::slice::from_ref(&good)).await.expect("alone it is fine");
    assert!(store.email(acme.id, good.0.id).await.expect("get").is_some());
}

/// Sends starting together (what a group commit carries in one transaction): each
/// email starts once, whoever else tries it at the same time.
pub async fn concurrent_send_starts_are_each_once(store: Arc<dyn StoreBackend>) {
    let acme = tenant(store.as_ref(), "Acme").await;
    let batch: Vec<(NewEmail, EventEnvelope)> = (0..12)
        .map(|n| {
            let email = NewEmail {
                id: EmailId::new(),
                campaign_id: None,
                to: EmailAddress::parse(&format!("r{n}@example.com")).expect("address"),
                subject: "Hello".into(),
            };
            (email, envelope(acme.id, "email.requested", None))
        })
        .collect();
    store.submit_emails(acme.id, &batch).await.expect("submit");
    // Every email three times at once.
    let starts: Vec<_> = batch
        .iter()
        .flat_map(|(email, _)| [email.id; 3])
        .map(|id| {
            let store = store.clone();
            tokio::spawn(async move { (id, store.start_email_send(acme.id, id).await) })
        })
        .collect();
    let mut answers = Vec::new();
    for start in starts {
        answers.push(start.await.expect("start task"));
    }
    for (email, _) in &batch {
        let theirs: Vec<_> = answers.iter().filter(|(id, _)| *id == email.id).map(|(_, a)| a).collect();
        let started = theirs.iter().filter(|a| matches!(a, Ok(SendStart::Started))).count();
        assert_eq!(started, 1, "email {} starts once: {theirs:?}", email.id);
        let stored = store.email(acme.id, email.id).await.expect("get").expect("present");
        assert_eq!(stored.status, EmailStatus::Sending);
    }
}
