//! The platform's own events: one payload type per event type, so that the API builds
//! `data` from typed values and a worker receives a typed value, and renaming a field
//! fails to compile instead of dead-lettering at run time.
//!
//! The JSON of each payload is the `data` of its envelope; it is pinned by the tests at
//! the bottom of this file (the wire form never changes without a new schema version).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::domain::access::TicketId;
use crate::domain::analytics::AnalyticsEvent;
use crate::domain::webhooks::WebhookSource;
use crate::domain::{EmailAddress, FeedbackMessage, Rating, TenantName};
use crate::envelope::{EventEnvelope, EventType, Service};
use crate::ids::{AnalyticsBatchId, EmailId, FeedbackId, InvitationId, TenantId};

/// Event types the platform itself emits, as constants (checked when compiled).
pub mod types {
    use crate::envelope::EventType;

    /// Emitted by `POST /v1/feedback`; consumed by the feedback worker.
    pub const FEEDBACK_SUBMITTED: EventType = EventType::known("feedback.submitted");
    /// Emitted per recipient by `POST /v1/emails` and by workers (confirmations,
    /// notices); consumed by the email worker.
    pub const EMAIL_REQUESTED: EventType = EventType::known("email.requested");
    /// Emitted by `POST /v1/analytics/events`, one per chunk of a batch (a chunk stays
    /// well under the transport's message size); consumed by the analytics worker.
    pub const ANALYTICS_EVENTS_ACCEPTED: EventType = EventType::known("analytics.events_accepted");
    /// Emitted by `POST /v1/access-requests`; consumed by the access-requests worker.
    pub const ACCESS_REQUEST_SUBMITTED: EventType = EventType::known("access_request.submitted");
    /// Emitted by the control plane when an operator approves (the tenant exists by then)
    /// or rejects a request; consumed by the access-requests worker.
    pub const ACCESS_REQUEST_APPROVED: EventType = EventType::known("access_request.approved");
    pub const ACCESS_REQUEST_REJECTED: EventType = EventType::known("access_request.rejected");
    /// Emitted by `POST /v1/testflight/invitations`; consumed by the TestFlight worker.
    pub const TESTFLIGHT_INVITATION_REQUESTED: EventType = EventType::known("testflight.invitation_requested");
}

/// The `data` of one platform event type. Optional fields read back as absent when an
/// older producer left them out; they are always written.
pub trait Payload: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The service that publishes it (its topic).
    const SOURCE: Service;
    /// Its name, for error messages.
    const NAME: &'static str;

    /// The type of the event that carries this payload.
    fn event_type(&self) -> EventType;

    /// Whether events of `event_type` carry this payload.
    fn carried_by(event_type: &EventType) -> bool;

    /// What events of this payload are ordered by within their tenant: events with the
    /// same key are handled one after another, in order; others in parallel. The
    /// choice per type is in ARCHITECTURE.md ("Ordering").
    fn ordering_key(&self) -> String;

    /// An envelope of `tenant` carrying this payload.
    fn into_envelope(self, tenant: TenantId) -> EventEnvelope {
        let event_type = self.event_type();
        let key = self.ordering_key();
        let mut envelope = EventEnvelope::new(tenant, Self::SOURCE, event_type, data_of(&self));
        envelope.ordering_key = Some(key);
        envelope
    }
}

/// How many partitions a tenant's analytics batches are spread over: batches of one
/// partition are written one after another, partitions in parallel.
pub const ANALYTICS_PARTITIONS: u32 = 8;

/// A stable partition of `key` among `partitions` (FNV-1a, the same in every build).
fn partition_of(key: &str, partitions: u32) -> u32 {
    let hash = key.bytes().fold(0x811c_9dc5_u32, |hash, byte| (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193));
    hash % partitions
}

/// Implements [`Payload`] for a type carried by exactly one event type.
/// `ordering key` is a closure from the payload to its key.
macro_rules! carried_by {
    ($payload:ty, $event_type:expr, $source:expr, ordering key $key:expr) => {
        impl Payload for $payload {
            const SOURCE: Service = $source;
            const NAME: &'static str = stringify!($payload);

            fn event_type(&self) -> EventType {
                $event_type
            }

            fn carried_by(event_type: &EventType) -> bool {
                *event_type == $event_type
            }

            fn ordering_key(&self) -> String {
                let key: fn(&Self) -> String = $key;
                key(self)
            }
        }
    };
}

/// The JSON object a payload serializes to. Every payload is a struct of plain fields,
/// so it always serializes to an object; anything else would be a bug caught by the
/// wire-form tests, and yields an empty object rather than a panic.
fn data_of<P: Serialize>(payload: &P) -> Map<String, Value> {
    match serde_json::to_value(payload) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    }
}

/// Why an envelope does not carry the payload a worker expects.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    #[error("a {found} event is not a {expected}")]
    WrongType { found: EventType, expected: &'static str },
    #[error("the data of this {event_type} event does not read back: {source}")]
    Invalid {
        event_type: EventType,
        #[source]
        source: serde_json::Error,
    },
}

/// Something a worker can decode from an envelope: one payload, or one of several
/// (an enum over the event types a worker consumes).
pub trait Decode: Sized + Send + 'static {
    /// What the worker expects, for error messages.
    const EXPECTED: &'static str;

    fn decode(envelope: &EventEnvelope) -> Result<Self, PayloadError>;
}

impl<P: Payload> Decode for P {
    const EXPECTED: &'static str = P::NAME;

    fn decode(envelope: &EventEnvelope) -> Result<Self, PayloadError> {
        if !P::carried_by(&envelope.event_type) {
            return Err(PayloadError::WrongType { found: envelope.event_type.clone(), expected: Self::EXPECTED });
        }
        decode_data(envelope)
    }
}

fn decode_data<P: DeserializeOwned>(envelope: &EventEnvelope) -> Result<P, PayloadError> {
    P::deserialize(&Value::Object(envelope.data.clone()))
        .map_err(|source| PayloadError::Invalid { event_type: envelope.event_type.clone(), source })
}

/// `feedback.submitted`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeedbackSubmitted {
    pub feedback_id: FeedbackId,
    #[serde(default)]
    pub rating: Option<Rating>,
    pub message: FeedbackMessage,
    #[serde(default)]
    pub contact_email: Option<EmailAddress>,
    #[serde(default)]
    pub metadata: Map<String, Value>,
}
// Each feedback is its own key: nothing orders one feedback against another.
carried_by!(FeedbackSubmitted, types::FEEDBACK_SUBMITTED, Service::CoreApi, ordering key |f| f.feedback_id.to_string());

/// `email.requested`: one email to one recipient.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmailRequested {
    pub email_id: EmailId,
    pub to: EmailAddress,
    pub subject: String,
    #[serde(flatten)]
    pub content: EmailContent,
    /// The campaign (the request that fanned out) it belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign_id: Option<EmailId>,
    /// The feedback it confirms, for a feedback confirmation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feedback_id: Option<FeedbackId>,
}
// One recipient's emails arrive in the order they were requested.
carried_by!(EmailRequested, types::EMAIL_REQUESTED, Service::CoreApi, ordering key |e| e.to.as_str().to_ascii_lowercase());

/// What an email says: text and/or HTML, or a provider template with its variables.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EmailContent {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variables: Option<Map<String, Value>>,
}

/// `analytics.events_accepted`: one chunk of an accepted batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnalyticsEventsAccepted {
    pub batch_id: AnalyticsBatchId,
    pub events: Vec<AnalyticsEvent>,
}
// A batch's chunks stay together, in one of the tenant's partitions.
carried_by!(AnalyticsEventsAccepted, types::ANALYTICS_EVENTS_ACCEPTED, Service::CoreApi, ordering key |a| {
    format!("analytics-{}", partition_of(&a.batch_id.to_string(), ANALYTICS_PARTITIONS))
});

/// `access_request.submitted`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccessRequestSubmitted {
    pub ticket_id: TicketId,
    pub requester: EmailAddress,
    pub organization: TenantName,
    #[serde(default)]
    pub message: Option<String>,
}
// A requester's request and its decision are handled in that order.
carried_by!(AccessRequestSubmitted, types::ACCESS_REQUEST_SUBMITTED, Service::CoreApi, ordering key |r| {
    r.requester.as_str().to_ascii_lowercase()
});

/// How an operator decided an access request (the data of both decision events).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccessDecision {
    pub ticket_id: TicketId,
    pub requester: EmailAddress,
    pub organization: TenantName,
    #[serde(default)]
    pub decision_reason: Option<String>,
    /// The tenant an approval created.
    #[serde(default)]
    pub created_tenant_id: Option<TenantId>,
}

/// `access_request.approved`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AccessRequestApproved(pub AccessDecision);
carried_by!(AccessRequestApproved, types::ACCESS_REQUEST_APPROVED, Service::ControlPlane, ordering key |d| {
    d.0.requester.as_str().to_ascii_lowercase()
});

/// `access_request.rejected`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AccessRequestRejected(pub AccessDecision);
carried_by!(AccessRequestRejected, types::ACCESS_REQUEST_REJECTED, Service::ControlPlane, ordering key |d| {
    d.0.requester.as_str().to_ascii_lowercase()
});

/// The access-request events, for the worker that consumes all three.
#[derive(Debug, Clone, PartialEq)]
pub enum AccessRequestEvent {
    Submitted(AccessRequestSubmitted),
    Approved(AccessDecision),
    Rejected(AccessDecision),
}

impl Decode for AccessRequestEvent {
    const EXPECTED: &'static str = "access_request.submitted, .approved or .rejected";

    fn decode(envelope: &EventEnvelope) -> Result<Self, PayloadError> {
        let event_type = &envelope.event_type;
        if AccessRequestSubmitted::carried_by(event_type) {
            decode_data(envelope).map(Self::Submitted)
        } else if AccessRequestApproved::carried_by(event_type) {
            decode_data(envelope).map(Self::Approved)
        } else if AccessRequestRejected::carried_by(event_type) {
            decode_data(envelope).map(Self::Rejected)
        } else {
            Err(PayloadError::WrongType { found: event_type.clone(), expected: Self::EXPECTED })
        }
    }
}

/// `<source>.received`: a verified inbound webhook, published by the adapters service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookReceived {
    pub source: WebhookSource,
    /// The provider's message id (`X-Webhook-Id`).
    pub message_id: String,
    /// The body the provider sent.
    pub payload: Map<String, Value>,
}

impl Payload for WebhookReceived {
    const SOURCE: Service = Service::Adapters;
    const NAME: &'static str = "WebhookReceived";

    fn event_type(&self) -> EventType {
        EventType::received_from(&self.source)
    }

    fn carried_by(event_type: &EventType) -> bool {
        event_type.received_source().is_some()
    }

    /// A source's webhooks are handled in the order they arrived.
    fn ordering_key(&self) -> String {
        format!("webhooks-{}", self.source)
    }
}

/// `testflight.invitation_requested`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestflightInvitationRequested {
    pub invitation_id: InvitationId,
    pub email: EmailAddress,
    pub first_name: String,
    pub last_name: String,
    #[serde(rename = "beta_group_id")]
    pub group_id: String,
}
// One invitee's invitations are sent in order.
carried_by!(TestflightInvitationRequested, types::TESTFLIGHT_INVITATION_REQUESTED, Service::CoreApi, ordering key |i| {
    i.email.as_str().to_ascii_lowercase()
});

#[cfg(test)]
mod wire_form {
    //! The `data` of every platform event, pinned: these are the objects the API wrote
    //! before payloads were typed, and what workers in the field read.

    use serde_json::json;

    use super::*;
    use crate::clock::Timestamp;
    use crate::ids::AnalyticsEventId;

    fn data<P: Payload>(payload: P) -> Value {
        let envelope = payload.into_envelope(TenantId::new());
        Value::Object(envelope.data)
    }

    fn round_trip<P: Payload + PartialEq + std::fmt::Debug + Clone>(payload: &P) {
        let envelope = payload.clone().into_envelope(TenantId::new());
        assert_eq!(envelope.source, P::SOURCE);
        assert_eq!(&P::decode(&envelope).expect("decodes"), payload);
    }

    #[test]
    fn feedback_submitted() {
        let id = FeedbackId::new();
        let payload = FeedbackSubmitted {
            feedback_id: id,
            rating: Some(Rating::parse(4).expect("rating")),
            message: FeedbackMessage::parse("Love it").expect("message"),
            contact_email: None,
            metadata: json!({"app_version": "1.2.3"}).as_object().cloned().unwrap_or_default(),
        };
        assert_eq!(
            data(payload.clone()),
            json!({"feedback_id": id, "rating": 4, "message": "Love it", "contact_email": null, "metadata": {"app_version": "1.2.3"}})
        );
        assert_eq!(payload.event_type().as_str(), "feedback.submitted");
        round_trip(&payload);
    }

    #[test]
    fn email_requested() {
        let (id, campaign) = (EmailId::new(), EmailId::new());
        let payload = EmailRequested {
            email_id: id,
            to: EmailAddress::parse("ana@example.com").expect("to"),
            subject: "Hi".into(),
            content: EmailContent {
                template_id: Some("welcome".into()),
                variables: json!({"name": "Ana"}).as_object().cloned(),
                ..EmailContent::default()
            },
            campaign_id: Some(campaign),
            feedback_id: None,
        };
        assert_eq!(
            data(payload.clone()),
            json!({"email_id": id, "to": "ana@example.com", "subject": "Hi", "template_id": "welcome",
                   "variables": {"name": "Ana"}, "campaign_id": campaign})
        );
        assert_eq!(payload.event_type().as_str(), "email.requested");
        round_trip(&payload);
        let feedback = FeedbackId::new();
        let confirmation = EmailRequested {
            content: EmailContent { text: Some("Thanks".into()), ..EmailContent::default() },
            campaign_id: None,
            feedback_id: Some(feedback),
            ..payload
        };
        assert_eq!(
            data(confirmation),
            json!({"email_id": id, "to": "ana@example.com", "subject": "Hi", "text": "Thanks", "feedback_id": feedback})
        );
    }

    #[test]
    fn analytics_events_accepted() {
        let (batch, event) = (AnalyticsBatchId::new(), AnalyticsEventId::new());
        let at = Timestamp::parse_rfc3339("2026-11-27T10:15:00Z").expect("t");
        let payload = AnalyticsEventsAccepted {
            batch_id: batch,
            events: vec![AnalyticsEvent {
                id: event,
                name: "signed_up".into(),
                timestamp: at,
                user_id: None,
                properties: Map::new(),
            }],
        };
        assert_eq!(
            data(payload.clone()),
            json!({"batch_id": batch, "events": [{"id": event, "name": "signed_up", "timestamp": at, "user_id": null, "properties": {}}]})
        );
        assert_eq!(payload.event_type().as_str(), "analytics.events_accepted");
        round_trip(&payload);
    }

    #[test]
    fn access_request_events() {
        let ticket = TicketId::from_number(7);
        let submitted = AccessRequestSubmitted {
            ticket_id: ticket,
            requester: EmailAddress::parse("ana@example.com").expect("a"),
            organization: TenantName::parse("Acme").expect("n"),
            message: None,
        };
        assert_eq!(
            data(submitted.clone()),
            json!({"ticket_id": "R00007", "requester": "ana@example.com", "organization": "Acme", "message": null})
        );
        round_trip(&submitted);
        let tenant = TenantId::new();
        let decision = AccessDecision {
            ticket_id: ticket,
            requester: submitted.requester.clone(),
            organization: submitted.organization.clone(),
            decision_reason: None,
            created_tenant_id: Some(tenant),
        };
        let approved = AccessRequestApproved(decision.clone());
        assert_eq!(
            data(approved.clone()),
            json!({"ticket_id": "R00007", "requester": "ana@example.com", "organization": "Acme",
                   "decision_reason": null, "created_tenant_id": tenant})
        );
        assert_eq!(approved.event_type().as_str(), "access_request.approved");
        assert_eq!(AccessRequestRejected(decision.clone()).event_type().as_str(), "access_request.rejected");
        let envelope = approved.into_envelope(tenant);
        assert_eq!(envelope.source, Service::ControlPlane);
        assert_eq!(AccessRequestEvent::decode(&envelope).expect("decodes"), AccessRequestEvent::Approved(decision));
    }

    #[test]
    fn testflight_invitation_requested() {
        let id = InvitationId::new();
        let payload = TestflightInvitationRequested {
            invitation_id: id,
            email: EmailAddress::parse("tess@example.com").expect("e"),
            first_name: "Tess".into(),
            last_name: "Ter".into(),
            group_id: "g-1".into(),
        };
        assert_eq!(
            data(payload.clone()),
            json!({"invitation_id": id, "email": "tess@example.com", "first_name": "Tess", "last_name": "Ter", "beta_group_id": "g-1"})
        );
        assert_eq!(payload.event_type().as_str(), "testflight.invitation_requested");
        round_trip(&payload);
    }

    #[test]
    fn webhook_received() {
        let payload = WebhookReceived {
            source: WebhookSource::parse("stripe").expect("source"),
            message_id: "msg_1".into(),
            payload: json!({"type": "invoice.paid"}).as_object().cloned().unwrap_or_default(),
        };
        assert_eq!(
            data(payload.clone()),
            json!({"source": "stripe", "message_id": "msg_1", "payload": {"type": "invoice.paid"}})
        );
        assert_eq!(payload.event_type().as_str(), "stripe.received");
        round_trip(&payload);
        assert!(!WebhookReceived::carried_by(&EventType::parse("stripe.invoice.received").expect("type")));
        assert!(!WebhookReceived::carried_by(&EventType::parse("order.placed").expect("type")));
    }

    #[test]
    fn a_worker_refuses_another_type_and_data_that_does_not_read_back() {
        let payload = TestflightInvitationRequested {
            invitation_id: InvitationId::new(),
            email: EmailAddress::parse("tess@example.com").expect("e"),
            first_name: "Tess".into(),
            last_name: "Ter".into(),
            group_id: "g-1".into(),
        };
        let mut envelope = payload.into_envelope(TenantId::new());
        assert!(matches!(FeedbackSubmitted::decode(&envelope), Err(PayloadError::WrongType { .. })));
        envelope.data.remove("beta_group_id");
        let error = TestflightInvitationRequested::decode(&envelope).expect_err("a field is missing");
        assert!(error.to_string().contains("beta_group_id"), "{error}");
    }

    #[test]
    fn platform_event_types_are_known_when_compiled() {
        for (known, raw) in [
            (types::FEEDBACK_SUBMITTED, "feedback.submitted"),
            (types::EMAIL_REQUESTED, "email.requested"),
            (types::ANALYTICS_EVENTS_ACCEPTED, "analytics.events_accepted"),
            (types::ACCESS_REQUEST_SUBMITTED, "access_request.submitted"),
            (types::ACCESS_REQUEST_APPROVED, "access_request.approved"),
            (types::ACCESS_REQUEST_REJECTED, "access_request.rejected"),
            (types::TESTFLIGHT_INVITATION_REQUESTED, "testflight.invitation_requested"),
        ] {
            assert_eq!(known, EventType::parse(raw).expect("parses"), "a known type equals its parsed form");
        }
    }

    /// Each type's ordering key, and so its message group (`<tenant>:<key>`).
    #[test]
    fn ordering_keys() {
        let tenant = TenantId::new();
        let group = |envelope: EventEnvelope| envelope.group_id();

        let feedback = FeedbackSubmitted {
            feedback_id: FeedbackId::new(),
            rating: None,
            message: FeedbackMessage::parse("Hi").expect("message"),
            contact_email: None,
            metadata: Map::new(),
        };
        let id = feedback.feedback_id;
        assert_eq!(group(feedback.into_envelope(tenant)), format!("{tenant}:{id}"), "feedback: its own id");

        let email = |to: &str| EmailRequested {
            email_id: EmailId::new(),
            to: EmailAddress::parse(to).expect("to"),
            subject: "Hi".into(),
            content: EmailContent { text: Some("x".into()), ..EmailContent::default() },
            campaign_id: None,
            feedback_id: None,
        };
        assert_eq!(
            group(email("Ana@Example.com").into_envelope(tenant)),
            group(email("ana@example.com").into_envelope(tenant)),
            "email: the recipient, whatever its case"
        );
        assert_eq!(email("ana@example.com").ordering_key(), "ana@example.com");

        let requester = EmailAddress::parse("bo@example.com").expect("requester");
        let submitted = AccessRequestSubmitted {
            ticket_id: TicketId::from_number(1),
            requester: requester.clone(),
            organization: TenantName::parse("Bo").expect("name"),
            message: None,
        };
        let decision = AccessDecision {
            ticket_id: TicketId::from_number(1),
            requester,
            organization: TenantName::parse("Bo").expect("name"),
            decision_reason: None,
            created_tenant_id: None,
        };
        assert_eq!(submitted.ordering_key(), "bo@example.com", "access requests: the requester");
        assert_eq!(AccessRequestApproved(decision.clone()).ordering_key(), submitted.ordering_key());
        assert_eq!(AccessRequestRejected(decision).ordering_key(), submitted.ordering_key());

        let batch = |batch_id: AnalyticsBatchId| AnalyticsEventsAccepted { batch_id, events: Vec::new() };
        let one = AnalyticsBatchId::new();
        assert_eq!(batch(one).ordering_key(), batch(one).ordering_key(), "a batch's chunks share a partition");
        let partitions: std::collections::BTreeSet<String> =
            (0..200).map(|_| batch(AnalyticsBatchId::new()).ordering_key()).collect();
        assert_eq!(partitions.len(), ANALYTICS_PARTITIONS as usize, "batches spread over every partition");
        assert!(partitions.iter().all(|key| key.starts_with("analytics-")));

        let webhook = WebhookReceived {
            source: WebhookSource::parse("stripe").expect("source"),
            message_id: "m".into(),
            payload: Map::new(),
        };
        assert_eq!(webhook.ordering_key(), "webhooks-stripe", "webhooks: their source");
        let invitation = TestflightInvitationRequested {
            invitation_id: InvitationId::new(),
            email: EmailAddress::parse("Cy@example.com").expect("email"),
            first_name: "Cy".into(),
            last_name: "D".into(),
            group_id: "g".into(),
        };
        assert_eq!(invitation.ordering_key(), "cy@example.com", "TestFlight: the invitee");
    }
}
