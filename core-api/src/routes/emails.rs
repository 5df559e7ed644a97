//! `POST /v1/emails` (one email, or a campaign of up to 1,000 recipients fanned out to
//! one message each) and `GET /v1/emails/{id}`.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Map, Value};
use tracing::Instrument;

use shared::domain::{EmailAddress, NewEmail};
use shared::events::{EmailContent, EmailRequested};
use shared::EmailId;

use crate::problem::ApiError;
use crate::request::{by_id, Caller, Fields, FromBody, Write};
use crate::ApiState;

pub const MAX_RECIPIENTS: usize = 1_000;
const MAX_SUBJECT_CHARS: usize = 998;

/// A validated request: the recipients and what every message carries.
pub(crate) struct EmailRequest {
    recipients: Vec<EmailAddress>,
    subject: String,
    /// The body every recipient's event carries (its per-recipient fields are filled in).
    content: EmailContent,
    campaign: bool,
}

/// A non-empty string.
fn non_empty(value: &str) -> Result<String, &'static str> {
    if value.is_empty() {
        Err("must be a non-empty string")
    } else {
        Ok(value.to_owned())
    }
}

fn subject(value: &str) -> Result<String, String> {
    if value.trim().is_empty() || value.chars().count() > MAX_SUBJECT_CHARS {
        return Err(format!("must be 1 to {MAX_SUBJECT_CHARS} characters"));
    }
    Ok(value.to_owned())
}

/// `to` (one email) or `recipients` (a campaign), not both.
fn recipients(fields: &mut Fields<'_>) -> Vec<EmailAddress> {
    let mut recipients = Vec::new();
    match (fields.has("to"), fields.value("recipients")) {
        (true, Some(_)) => fields.error("to", "give either `to` or `recipients`, not both"),
        (false, None) => fields.error("to", "is required (or `recipients` for a campaign)"),
        (true, None) => recipients.extend(fields.required("to", EmailAddress::parse)),
        (false, Some(Value::Array(list))) if list.is_empty() || list.len() > MAX_RECIPIENTS => {
            fields.error("recipients", format!("must hold 1 to {MAX_RECIPIENTS} addresses (got {})", list.len()))
        }
        (false, Some(Value::Array(list))) => {
            for (i, item) in list.iter().enumerate() {
                let field = format!("recipients[{i}]");
                match item.as_str() {
                    Some(address) => recipients.extend(fields.check(&field, EmailAddress::parse(address))),
                    None => fields.error(field, "must be a string"),
                }
            }
        }
        (false, Some(_)) => fields.error("recipients", "must be an array of addresses"),
    }
    recipients
}

impl FromBody for EmailRequest {
    fn from_body(body: &Map<String, Value>, _: &HttpRequest) -> Result<Self, ApiError> {
        let mut fields = Fields::new(body);
        let campaign = fields.has("recipients");
        let recipients = recipients(&mut fields);
        let subject = fields.required("subject", subject);
        let text = fields.optional("text", non_empty);
        let html = fields.optional("html", non_empty);
        let template_id = fields.optional("template_id", non_empty);
        let variables = fields.optional_object("variables");
        match (&template_id, text.is_some() || html.is_some()) {
            (Some(_), true) => fields.error("template_id", "give a template or text/html, not both"),
            (None, false) if fields.value("text").is_none() && fields.value("html").is_none() => {
                fields.error("text", "give `text`, `html` or a `template_id`");
            }
            _ => {}
        }
        if variables.is_some() && template_id.is_none() {
            fields.error("variables", "only go with a `template_id`");
        }
        fields.finish(|| {
            let content = EmailContent { text, html, template_id, variables };
            Some(EmailRequest { recipients, subject: subject?, content, campaign })
        })
    }
}

pub(crate) async fn create(write: Write<EmailRequest>, state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let email = &write.body;
    let campaign_id = email.campaign.then(EmailId::new);
    let mut batch = Vec::with_capacity(email.recipients.len());
    for to in email.recipients.iter().cloned() {
        let id = EmailId::new();
        let envelope = write.event(EmailRequested {
            email_id: id,
            to: to.clone(),
            subject: email.subject.clone(),
            content: email.content.clone(),
            campaign_id,
            feedback_id: None,
        });
        batch.push((NewEmail { id, campaign_id, to, subject: email.subject.clone() }, envelope));
    }
    // The recipients' events differ only in their address: the longest is the largest.
    if let Some((_, largest)) = batch.iter().max_by_key(|(email, _)| email.to.as_str().len()) {
        crate::publishable(largest)?;
    }
    state.emails.submit_emails(write.tenant, &batch).instrument(write.span.clone()).await?;
    let emails: Vec<Value> = batch.iter().map(|(e, _)| json!({"id": e.id, "to": e.to.as_str()})).collect();
    Ok(match campaign_id {
        Some(campaign) => {
            HttpResponse::Accepted().json(json!({"campaign_id": campaign, "count": emails.len(), "emails": emails}))
        }
        None => HttpResponse::Accepted().json(json!({"id": batch[0].0.id, "status": "accepted"})),
    })
}

pub(crate) async fn get(
    caller: Caller,
    path: web::Path<String>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let email = by_id("email", &path, EmailId::parse, |id| state.emails.email(caller.tenant, id)).await?;
    Ok(HttpResponse::Ok().json(json!({
        "id": email.id,
        "status": email.status,
        "to": email.to.as_str(),
        "subject": email.subject,
        "campaign_id": email.campaign_id,
        "provider": email.provider,
        "provider_message_id": email.provider_message_id,
        "failure_reason": email.failure_reason,
        "result_key": email.result_key,
        "created_at": email.created_at,
        "updated_at": email.updated_at,
    })))
}
