//! The capture provider for `switchyard dev`: every outgoing provider call is stored
//! as a JSON line under a directory (`emails.jsonl`, `tickets.jsonl`, `alerts.jsonl`,
//! `testflight.jsonl`)
//! instead of leaving the machine, so it can be listed and inspected.

use std::path::PathBuf;

use async_trait::async_trait;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;

use shared::ports::providers::{
    Alert, AlertSink, BetaInvite, BetaInviteReceipt, BetaTesters, CapturedCalls, Email, EmailBody, EmailReceipt,
    EmailSender, ProviderError, Ticket, TicketDesk, TicketRef,
};
use shared::Timestamp;

const PROVIDER: &str = "capture";

pub struct CaptureProvider {
    dir: PathBuf,
    /// Serialises appends (and the ticket lookup that precedes one).
    lock: Mutex<()>,
}

fn io_failure(error: std::io::Error) -> ProviderError {
    ProviderError::Unavailable { provider: PROVIDER, detail: error.to_string() }
}

impl CaptureProvider {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir, lock: Mutex::new(()) }
    }

    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Every captured call of one kind (`emails`, `tickets`, `alerts`), oldest first.
    pub async fn list(&self, kind: &str) -> Vec<Value> {
        let text = tokio::fs::read_to_string(self.dir.join(format!("{kind}.jsonl"))).await.unwrap_or_default();
        text.lines().filter_map(|line| serde_json::from_str(line).ok()).collect()
    }

    async fn append(&self, kind: &str, record: Value) -> Result<(), ProviderError> {
        tokio::fs::create_dir_all(&self.dir).await.map_err(io_failure)?;
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{kind}.jsonl")))
            .await
            .map_err(io_failure)?;
        let mut line = record.to_string();
        line.push('\n');
        file.write_all(line.as_bytes()).await.map_err(io_failure)?;
        // tokio finishes file writes on a background thread: wait for it, or a read
        // right after could miss the line.
        file.flush().await.map_err(io_failure)
    }
}

#[async_trait]
impl CapturedCalls for CaptureProvider {
    fn kinds(&self) -> &'static [&'static str] {
        &["emails", "tickets", "alerts", "testflight"]
    }

    async fn captured(&self, kind: &str) -> Vec<Value> {
        if self.kinds().contains(&kind) {
            self.list(kind).await
        } else {
            Vec::new()
        }
    }
}

#[async_trait]
impl EmailSender for CaptureProvider {
    async fn send(&self, email: &Email) -> Result<EmailReceipt, ProviderError> {
        let _guard = self.lock.lock().await;
        let body = match &email.body {
            EmailBody::Content { text, html } => json!({"text": text, "html": html}),
            EmailBody::Template { id, variables } => json!({"template_id": id, "variables": variables}),
        };
        let id = uuid::Uuid::new_v4().to_string();
        self.append(
            "emails",
            json!({"at": Timestamp::now(), "message_id": id, "to": email.to.as_str(), "from": email.from.as_str(),
                   "subject": email.subject, "body": body, "reference": email.reference}),
        )
        .await?;
        Ok(EmailReceipt { provider: PROVIDER, message_id: Some(id) })
    }
}

#[async_trait]
impl TicketDesk for CaptureProvider {
    async fn create_ticket(&self, ticket: &Ticket) -> Result<TicketRef, ProviderError> {
        let _guard = self.lock.lock().await;
        let existing = self.list("tickets").await;
        if let Some(found) = existing.iter().find(|t| t["external_id"] == ticket.external_id.as_str()) {
            return Ok(TicketRef { id: found["id"].as_u64().unwrap_or_default(), created: false });
        }
        let id = existing.len() as u64 + 1;
        self.append(
            "tickets",
            json!({"at": Timestamp::now(), "id": id, "external_id": ticket.external_id, "subject": ticket.subject,
                   "comment": ticket.comment, "requester": ticket.requester_email.as_ref().map(|e| e.as_str()),
                   "tags": ticket.tags}),
        )
        .await?;
        Ok(TicketRef { id, created: true })
    }
}

#[async_trait]
impl AlertSink for CaptureProvider {
    async fn post(&self, alert: &Alert) -> Result<(), ProviderError> {
        let _guard = self.lock.lock().await;
        let fields: Vec<Value> =
            alert.fields.iter().map(|(name, value)| json!({"name": name, "value": value})).collect();
        self.append(
            "alerts",
            json!({"at": Timestamp::now(), "title": alert.title, "description": alert.description,
                   "fields": fields, "colour": alert.colour, "url": alert.url}),
        )
        .await
    }
}

#[async_trait]
impl BetaTesters for CaptureProvider {
    /// Like App Store Connect: an email already invited is the same tester.
    async fn invite(&self, invite: &BetaInvite) -> Result<BetaInviteReceipt, ProviderError> {
        let _guard = self.lock.lock().await;
        let existing = self.list("testflight").await;
        let found = existing.iter().find(|t| t["email"] == invite.email.as_str()).and_then(|t| t["tester_id"].as_str());
        let (tester_id, already_existed) = match found {
            Some(id) => (id.to_owned(), true),
            None => (format!("capture-tester-{}", existing.len() + 1), false),
        };
        self.append(
            "testflight",
            json!({"at": Timestamp::now(), "tester_id": tester_id, "email": invite.email.as_str(),
                   "first_name": invite.first_name, "last_name": invite.last_name, "group_id": invite.group_id}),
        )
        .await?;
        Ok(BetaInviteReceipt { tester_id, already_existed })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn captures_calls_and_keeps_tickets_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let capture = CaptureProvider::new(dir.path().join("captures"));
        let ticket = Ticket {
            external_id: "evt_1".into(),
            requester_email: None,
            requester_name: None,
            subject: "Feedback".into(),
            comment: "Hi".into(),
            tags: vec![],
        };
        assert_eq!(capture.create_ticket(&ticket).await.unwrap(), TicketRef { id: 1, created: true });
        assert_eq!(capture.create_ticket(&ticket).await.unwrap(), TicketRef { id: 1, created: false });
        let alert = Alert { title: "t".into(), description: "d".into(), fields: vec![], colour: 0, url: None };
        capture.post(&alert).await.unwrap();
        assert_eq!(capture.list("tickets").await.len(), 1);
        assert_eq!(capture.list("alerts").await[0]["title"], "t");
        assert!(capture.list("emails").await.is_empty());
    }
}
