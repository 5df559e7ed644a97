//! Email through Amazon SES v2 (SendEmail), behind the email port.

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent, Message, MessageTag, Template};

use shared::ports::providers::{Email, EmailBody, EmailReceipt, EmailSender, ProviderError};

use super::{classify, describe, Failure};

const PROVIDER: &str = "ses";

pub struct SesEmailSender {
    client: aws_sdk_sesv2::Client,
}

impl SesEmailSender {
    pub fn new(config: &SdkConfig) -> Self {
        Self { client: aws_sdk_sesv2::Client::new(config) }
    }
}

fn content(text: &str) -> Result<Content, ProviderError> {
    Content::builder().data(text).charset("UTF-8").build().map_err(|e| ProviderError::Rejected {
        provider: PROVIDER,
        status: 400,
        reason: e.to_string(),
    })
}

#[async_trait]
impl EmailSender for SesEmailSender {
    async fn send(&self, email: &Email) -> Result<EmailReceipt, ProviderError> {
        let body = match &email.body {
            EmailBody::Content { text, html } => {
                let mut body = Body::builder();
                if let Some(text) = text {
                    body = body.text(content(text)?);
                }
                if let Some(html) = html {
                    body = body.html(content(html)?);
                }
                let message = Message::builder().subject(content(&email.subject)?).body(body.build()).build();
                EmailContent::builder().simple(message).build()
            }
            EmailBody::Template { id, variables } => EmailContent::builder()
                .template(
                    Template::builder()
                        .template_name(id)
                        .template_data(serde_json::Value::Object(variables.clone()).to_string())
                        .build(),
                )
                .build(),
        };
        let tag = MessageTag::builder()
            .name("switchyard_reference")
            .value(
                email
                    .reference
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
                    .collect::<String>(),
            )
            .build()
            .map_err(|e| ProviderError::Rejected { provider: PROVIDER, status: 400, reason: e.to_string() })?;
        let output = self
            .client
            .send_email()
            .from_email_address(email.from.as_str())
            .destination(Destination::builder().to_addresses(email.to.as_str()).build())
            .content(body)
            .email_tags(tag)
            .send()
            .await
            .map_err(|error| match classify(&error) {
                Failure::Throttled => ProviderError::RateLimited { provider: PROVIDER, retry_after: None },
                Failure::Unavailable => ProviderError::Unavailable { provider: PROVIDER, detail: describe(&error) },
                Failure::Missing | Failure::Rejected => {
                    ProviderError::Rejected { provider: PROVIDER, status: 400, reason: describe(&error) }
                }
            })?;
        Ok(EmailReceipt { provider: PROVIDER, message_id: output.message_id().map(str::to_owned) })
    }
}
