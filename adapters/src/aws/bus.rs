//! The event-bus port on EventBridge.

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;

use shared::pattern::EventPattern;
use shared::ports::{BusEvent, EventBus, TransportError};

use super::{classify, describe, Failure};

pub struct EventBridgeBus {
    client: aws_sdk_eventbridge::Client,
    bus: String,
}

fn error<E>(
    error: aws_sdk_eventbridge::error::SdkError<E, aws_sdk_eventbridge::config::http::HttpResponse>,
    bus: &str,
) -> TransportError
where
    E: aws_sdk_eventbridge::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match classify(&error) {
        Failure::Throttled => TransportError::Throttled,
        Failure::Unavailable => TransportError::Unavailable(describe(&error).into()),
        Failure::Missing => TransportError::UnknownTopic(bus.to_owned()),
        Failure::Rejected => TransportError::Other(describe(&error).into()),
    }
}

impl EventBridgeBus {
    pub fn new(config: &SdkConfig, bus: impl Into<String>) -> Self {
        Self { client: aws_sdk_eventbridge::Client::new(config), bus: bus.into() }
    }
}

#[async_trait]
impl EventBus for EventBridgeBus {
    async fn put_events(&self, events: &[BusEvent]) -> Result<Vec<Result<(), TransportError>>, TransportError> {
        if events.is_empty() || events.len() > 10 {
            return Err(TransportError::Invalid(format!("PutEvents takes 1 to 10 entries (got {})", events.len())));
        }
        let entries: Vec<PutEventsRequestEntry> = events
            .iter()
            .map(|e| {
                PutEventsRequestEntry::builder()
                    .event_bus_name(&self.bus)
                    .source(&e.source)
                    .detail_type(&e.detail_type)
                    .detail(&e.detail)
                    .build()
            })
            .collect();
        let output =
            self.client.put_events().set_entries(Some(entries)).send().await.map_err(|e| error(e, &self.bus))?;
        let results = output.entries();
        Ok((0..events.len())
            .map(|i| match results.get(i) {
                Some(entry) if entry.error_code().is_none() => Ok(()),
                Some(entry) => Err(TransportError::Unavailable(
                    format!(
                        "{}: {}",
                        entry.error_code().unwrap_or_default(),
                        entry.error_message().unwrap_or_default()
                    )
                    .into(),
                )),
                None => Err(TransportError::Unavailable("no result for this entry".into())),
            })
            .collect())
    }

    async fn rule_patterns(&self) -> Result<Vec<EventPattern>, TransportError> {
        let mut patterns = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let output = self
                .client
                .list_rules()
                .event_bus_name(&self.bus)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| error(e, &self.bus))?;
            for rule in output.rules() {
                let Some(text) = rule.event_pattern() else { continue };
                match EventPattern::parse_str(text) {
                    Ok(pattern) => patterns.push(pattern),
                    Err(problem) => {
                        tracing::warn!(rule = rule.name().unwrap_or_default(), %problem, "skipping a rule whose pattern Switchyard cannot read")
                    }
                }
            }
            match output.next_token() {
                Some(next) => token = Some(next.to_owned()),
                None => return Ok(patterns),
            }
        }
    }
}
