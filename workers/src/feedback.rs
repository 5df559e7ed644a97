//! The feedback worker: marks feedback processing, opens a help-desk ticket (when one
//! is configured; idempotent by event id), writes the result object at a
//! deterministic key, and marks the feedback completed in the same store transaction
//! as its inbox row, so a redelivered event is applied once.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::json;

use shared::domain::{FeedbackStatus, NewEmail, Rating};
use shared::events::{EmailRequested, FeedbackSubmitted};
use shared::ports::providers::{Ticket, TicketDesk};
use shared::ports::{Applied, ConsumerName, Effects, FeedbackStore, Inbox, ObjectStore};
use shared::{EventEnvelope, ObjectKey};

use crate::consumer::{EventHandler, HandlerError};

/// The inbox name of this worker.
pub const CONSUMER: ConsumerName = ConsumerName::new("feedback");

pub struct FeedbackWorker {
    feedback: Arc<dyn FeedbackStore>,
    inbox: Arc<dyn Inbox>,
    objects: Arc<dyn ObjectStore>,
    tickets: Option<Arc<dyn TicketDesk>>,
}

impl FeedbackWorker {
    pub fn new(feedback: Arc<dyn FeedbackStore>, inbox: Arc<dyn Inbox>, objects: Arc<dyn ObjectStore>) -> Self {
        Self { feedback, inbox, objects, tickets: None }
    }

    /// Also opens a help-desk ticket per feedback (idempotent by the event id).
    #[must_use]
    pub fn with_tickets(mut self, desk: Arc<dyn TicketDesk>) -> Self {
        self.tickets = Some(desk);
        self
    }

    /// The confirmation email to the contact address, when there is one: requested in
    /// the same transaction as the completion, so exactly once per feedback.
    fn confirmation(envelope: &EventEnvelope, feedback: &FeedbackSubmitted) -> Option<(NewEmail, EventEnvelope)> {
        let to = feedback.contact_email.clone()?;
        let email = EmailRequested {
            feedback_id: Some(feedback.feedback_id),
            ..crate::email::plain(
                to,
                "We received your feedback",
                "Thank you for your feedback. We read every message.",
            )
        };
        Some(crate::email::request(envelope, email))
    }

    fn ticket(envelope: &EventEnvelope, feedback: &FeedbackSubmitted) -> Ticket {
        let rating = feedback.rating.map(Rating::value);
        let mut tags = vec!["switchyard".to_owned(), "feedback".to_owned()];
        tags.extend(rating.map(|r| format!("rating_{r}")));
        Ticket {
            external_id: envelope.id.to_string(),
            requester_email: feedback.contact_email.clone(),
            requester_name: None,
            subject: match rating {
                Some(r) => format!("Feedback ({r}/5)"),
                None => "Feedback".to_owned(),
            },
            comment: feedback.message.as_str().to_owned(),
            tags,
        }
    }

    /// `feedback/tenant=<id>/year=…/month=…/day=…/hour=…/<event id>.json`, from the
    /// event's own time, so a redelivery writes the same key.
    pub fn result_key(envelope: &EventEnvelope) -> Result<ObjectKey, HandlerError> {
        ObjectKey::of_event("feedback", envelope).map_err(HandlerError::permanent)
    }
}

#[async_trait]
impl EventHandler for FeedbackWorker {
    type Event = FeedbackSubmitted;

    fn name(&self) -> &str {
        CONSUMER.as_str()
    }

    async fn handle(&self, envelope: &EventEnvelope, feedback: FeedbackSubmitted) -> Result<(), HandlerError> {
        self.process(envelope, &feedback).await
    }

    /// Whoever polls the feedback should see that it failed rather than `processing`;
    /// a redrive can still complete it.
    async fn dead_lettered(&self, envelope: &EventEnvelope, feedback: FeedbackSubmitted, reason: &str) {
        let (tenant, feedback_id) = (envelope.tenant_id, feedback.feedback_id);
        if let Err(error) = self.feedback.mark_feedback_failed(tenant, feedback_id).await {
            tracing::warn!(%error, tenant_id = %tenant, feedback_id = %feedback_id, reason, "could not mark feedback failed");
        }
    }
}

impl FeedbackWorker {
    async fn process(&self, envelope: &EventEnvelope, feedback: &FeedbackSubmitted) -> Result<(), HandlerError> {
        let (tenant, feedback_id) = (envelope.tenant_id, feedback.feedback_id);
        self.feedback.mark_feedback_processing(tenant, feedback_id).await.map_err(HandlerError::store)?;

        // Effects outside the database first, each idempotent for this event (the ticket
        // by external id, the object by its deterministic key), so that no database
        // transaction stays open across a network call and a redelivery repeats them
        // harmlessly.
        let ticket = match &self.tickets {
            Some(desk) => {
                Some(desk.create_ticket(&Self::ticket(envelope, feedback)).await.map_err(HandlerError::provider)?)
            }
            None => None,
        };
        let key = Self::result_key(envelope)?;
        let result = json!({
            "event_id": envelope.id,
            "tenant_id": tenant,
            "feedback_id": feedback_id,
            "submitted_at": envelope.occurred_at,
            "feedback": envelope.data,
            "ticket_id": ticket.map(|t| t.id),
        });
        let body = serde_json::to_vec_pretty(&result).map_err(HandlerError::permanent)?;
        self.objects.put(&key, body, "application/json").await.map_err(HandlerError::objects)?;

        // Then the database effects, once: the inbox row and the status commit together.
        let mut effects = Effects::new();
        effects.set_feedback_status(tenant, feedback_id, FeedbackStatus::Completed, Some(key.as_str()));
        effects.submit_emails(tenant, Self::confirmation(envelope, feedback).into_iter().collect());
        if self.inbox.apply_once(CONSUMER, tenant, envelope.id, effects).await.map_err(HandlerError::store)?
            == Applied::Before
        {
            tracing::debug!(tenant_id = %tenant, event_id = %envelope.id, "already applied; skipped");
            return Ok(());
        }
        tracing::info!(tenant_id = %tenant, feedback_id = %feedback_id, key = key.as_str(), "feedback completed");
        Ok(())
    }
}
