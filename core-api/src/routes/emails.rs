//! `POST /v1/emails` (one email, or a campaign of up to 1,000 recipients fanned out to
//! one message each) and `GET /v1/emails/{id}`.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Map, Value};
use tracing::Instrument;

use shared::domain::{EmailAddress, NewEmail};
use shared::envelope::event_types::EMAIL_REQUESTED;
use shared::{EmailId, EventEnvelope, Service};

use crate::body::json_object;
use crate::problem::{ApiError, FieldError};
use crate::ApiState;

pub const MAX_RECIPIENTS: usize = 1_000;
const MAX_SUBJECT_CHARS: usize = 998;

/// A validated request: the recipients and what every message carries.
struct EmailRequest {
    recipients: Vec<EmailAddress>,
    subject: String,
    content: Map<String, Value>,
    campaign: bool,
}

fn optional_text(body: &Map<String, Value>, field: &str, errors: &mut Vec<FieldError>) -> Option<String> {
    match body.get(field) {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) if !text.is_empty() => Some(text.clone()),
        Some(_) => {
            errors.push(FieldError::new(field, "must be a non-empty string"));
            None
        }
    }
}

fn parse(body: &Map<String, Value>) -> Result<EmailRequest, ApiError> {
    let mut errors = Vec::new();
    let mut recipients = Vec::new();
    let campaign = body.contains_key("recipients");
    match (body.get("to"), body.get("recipients")) {
        (Some(_), Some(_)) => errors.push(FieldError::new("to", "give either `to` or `recipients`, not both")),
        (None, None) => errors.push(FieldError::new("to", "is required (or `recipients` for a campaign)")),
        (Some(Value::String(to)), None) => match EmailAddress::parse(to) {
            Ok(address) => recipients.push(address),
            Err(detail) => errors.push(FieldError::new("to", detail)),
        },
        (Some(_), None) => errors.push(FieldError::new("to", "must be a string")),
        (None, Some(Value::Array(list))) if list.is_empty() || list.len() > MAX_RECIPIENTS => errors.push(
            FieldError::new("recipients", format!("must hold 1 to {MAX_RECIPIENTS} addresses (got {})", list.len())),
        ),
        (None, Some(Value::Array(list))) => {
            for (i, item) in list.iter().enumerate() {
                match item.as_str().map(EmailAddress::parse) {
                    Some(Ok(address)) => recipients.push(address),
                    Some(Err(detail)) => errors.push(FieldError::new(format!("recipients[{i}]"), detail)),
                    None => errors.push(FieldError::new(format!("recipients[{i}]"), "must be a string")),
                }
            }
        }
        (None, Some(_)) => errors.push(FieldError::new("recipients", "must be an array of addresses")),
    }
    let subject = match body.get("subject") {
        Some(Value::String(s)) if !s.trim().is_empty() && s.chars().count() <= MAX_SUBJECT_CHARS => s.clone(),
        Some(Value::String(_)) => {
            errors.push(FieldError::new("subject", format!("must be 1 to {MAX_SUBJECT_CHARS} characters")));
            String::new()
        }
        _ => {
            errors.push(FieldError::new("subject", "is required"));
            String::new()
        }
    };
    let text = optional_text(body, "text", &mut errors);
    let html = optional_text(body, "html", &mut errors);
    let template_id = optional_text(body, "template_id", &mut errors);
    let variables = match body.get("variables") {
        None | Some(Value::Null) => None,
        Some(Value::Object(map)) => Some(map.clone()),
        Some(_) => {
            errors.push(FieldError::new("variables", "must be a JSON object"));
            None
        }
    };
    match (&template_id, text.is_some() || html.is_some()) {
        (Some(_), true) => errors.push(FieldError::new("template_id", "give a template or text/html, not both")),
        (None, false) => errors.push(FieldError::new("text", "give `text`, `html` or a `template_id`")),
        _ => {}
    }
    if variables.is_some() && template_id.is_none() {
        errors.push(FieldError::new("variables", "only go with a `template_id`"));
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let mut content = Map::new();
    for (field, value) in [("text", text), ("html", html), ("template_id", template_id)] {
        if let Some(value) = value {
            content.insert(field.into(), Value::String(value));
        }
    }
    if let Some(variables) = variables {
        content.insert("variables".into(), Value::Object(variables));
    }
    Ok(EmailRequest { recipients, subject, content, campaign })
}

pub(crate) async fn create(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let body = json_object(&request, payload).await?;
    let email = parse(&body)?;
    let super::Write { tenant, event_type, span, trace_context } =
        super::authorize_write(&request, &state, EMAIL_REQUESTED).await?;
    let campaign_id = email.campaign.then(EmailId::new);
    let mut batch = Vec::with_capacity(email.recipients.len());
    for to in email.recipients {
        let id = EmailId::new();
        let mut data = email.content.clone();
        data.insert("email_id".into(), json!(id));
        data.insert("to".into(), json!(to.as_str()));
        data.insert("subject".into(), json!(email.subject));
        if let Some(campaign) = campaign_id {
            data.insert("campaign_id".into(), json!(campaign));
        }
        let mut envelope = EventEnvelope::new(tenant, Service::CoreApi, event_type.clone(), data);
        envelope.trace_context = trace_context.clone();
        batch.push((NewEmail { id, campaign_id, to, subject: email.subject.clone() }, envelope));
    }
    // The recipients' events differ only in their address: the longest is the largest.
    if let Some((_, largest)) = batch.iter().max_by_key(|(email, _)| email.to.as_str().len()) {
        crate::publishable(largest)?;
    }
    state.emails.submit_emails(tenant, &batch).instrument(span).await?;
    let emails: Vec<Value> = batch.iter().map(|(e, _)| json!({"id": e.id, "to": e.to.as_str()})).collect();
    Ok(match campaign_id {
        Some(campaign) => {
            HttpResponse::Accepted().json(json!({"campaign_id": campaign, "count": emails.len(), "emails": emails}))
        }
        None => HttpResponse::Accepted().json(json!({"id": batch[0].0.id, "status": "accepted"})),
    })
}

pub(crate) async fn get(
    request: HttpRequest,
    path: web::Path<String>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let tenant = state.authenticate(&request).await?;
    let not_found = || super::not_found_id("email", &path);
    let id = EmailId::parse(&path).map_err(|_| not_found())?;
    let email = state.emails.email(tenant, id).await?.ok_or_else(not_found)?;
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
