//! The alarm forwarder: CloudWatch alarms (dead letters, old messages — see the
//! Terraform monitoring module) arrive on the alarms queue through the alerts topic; each
//! state change is posted to the deployment's Discord webhook. CloudWatch notifies on
//! state changes only, so there is no storm to fold; a post that fails is retried (the
//! message stays on the queue) and, after three receives, the alarm waits in the alarms
//! queue's dead-letter queue.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use shared::ports::providers::{Alert, AlertSink};
use shared::ports::ReceivedMessage;

use crate::consumer::{Handler, HandlerError};

const RED: u32 = 0xE7_4C_3C;
const GREEN: u32 = 0x2E_CC_71;
const GREY: u32 = 0x95_A5_A6;

pub struct AlarmForwarder {
    sink: Arc<dyn AlertSink>,
}

/// A CloudWatch alarm notification: the body itself (raw delivery) or inside an SNS
/// envelope's `Message`.
fn notification(body: &str) -> Result<Value, HandlerError> {
    let value: Value = serde_json::from_str(body).map_err(HandlerError::permanent)?;
    let inner = match value.get("Type").and_then(Value::as_str) {
        Some("Notification") => {
            let message = value.get("Message").and_then(Value::as_str).unwrap_or_default();
            serde_json::from_str(message).map_err(HandlerError::permanent)?
        }
        _ => value,
    };
    if inner.get("AlarmName").and_then(Value::as_str).is_none() {
        return Err(HandlerError::permanent("not a CloudWatch alarm notification (no AlarmName)"));
    }
    Ok(inner)
}

impl AlarmForwarder {
    pub fn new(sink: Arc<dyn AlertSink>) -> Self {
        Self { sink }
    }

    fn alert(alarm: &Value) -> Alert {
        let text = |field: &str| alarm.get(field).and_then(Value::as_str).unwrap_or_default().to_owned();
        let state = text("NewStateValue");
        let colour = match state.as_str() {
            "ALARM" => RED,
            "OK" => GREEN,
            _ => GREY,
        };
        let mut fields = vec![("state".to_owned(), state.clone()), ("reason".to_owned(), text("NewStateReason"))];
        if let Some(dimensions) = alarm.pointer("/Trigger/Dimensions").and_then(Value::as_array) {
            for dimension in dimensions {
                let name = dimension.get("name").and_then(Value::as_str).unwrap_or_default();
                let value = dimension.get("value").and_then(Value::as_str).unwrap_or_default();
                fields.push((name.to_owned(), value.to_owned()));
            }
        }
        fields.push(("region".to_owned(), text("Region")));
        Alert {
            title: format!("{} is {state}", text("AlarmName")),
            description: text("AlarmDescription"),
            fields,
            colour,
            url: None,
        }
    }
}

#[async_trait]
impl Handler for AlarmForwarder {
    fn name(&self) -> &str {
        "alarms"
    }

    async fn handle(&self, message: &ReceivedMessage) -> Result<(), HandlerError> {
        let alarm = notification(&message.body)?;
        self.sink.post(&Self::alert(&alarm)).await.map_err(HandlerError::provider)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALARM: &str = r#"{"AlarmName":"acme-feedback-dlq.fifo-has-messages","AlarmDescription":"A message moved to the DLQ.","NewStateValue":"ALARM","NewStateReason":"Threshold Crossed","Region":"EU (Ireland)","Trigger":{"MetricName":"ApproximateNumberOfMessagesVisible","Dimensions":[{"name":"QueueName","value":"acme-feedback-dlq.fifo"}]}}"#;

    #[test]
    fn reads_raw_and_enveloped_notifications() {
        let raw = notification(ALARM).unwrap();
        let envelope = serde_json::json!({"Type": "Notification", "Message": ALARM}).to_string();
        assert_eq!(notification(&envelope).unwrap(), raw);
        let alert = AlarmForwarder::alert(&raw);
        assert_eq!(alert.title, "acme-feedback-dlq.fifo-has-messages is ALARM");
        assert_eq!(alert.colour, RED);
        assert!(alert.fields.contains(&("QueueName".to_owned(), "acme-feedback-dlq.fifo".to_owned())));
        assert!(notification("{}").is_err());
        assert!(notification("not json").is_err());
    }

    struct Down;

    #[async_trait]
    impl AlertSink for Down {
        async fn post(&self, _alert: &Alert) -> Result<(), shared::ports::providers::ProviderError> {
            Err(shared::ports::providers::ProviderError::Unavailable { provider: "discord", detail: "503".into() })
        }
    }

    #[tokio::test]
    async fn an_alarm_discord_refuses_stays_on_the_queue_for_a_retry() {
        let message = ReceivedMessage {
            message_id: "m".into(),
            receipt: shared::ports::Receipt("r".into()),
            group_id: String::new(),
            dedup_id: String::new(),
            body: ALARM.into(),
            attributes: Default::default(),
            receive_count: 1,
            sent_at: shared::Timestamp::now(),
        };
        let error = AlarmForwarder::new(Arc::new(Down)).handle(&message).await.unwrap_err();
        assert!(matches!(error, HandlerError::Transient(_)), "{error:?}");
    }
}
