//! `serve alarms` on the AWS engine: a CloudWatch alarm notification on the alarms queue
//! (as Terraform's monitoring module delivers it) reaches the Discord webhook.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use adapters::aws::AwsTransport;
use adapters::providers::DiscordWebhook;
use shared::config::Secret;
use shared::topology::{Environment, InstanceName, Topology};
use workers::alarms::AlarmForwarder;
use workers::{Consumer, ConsumerConfig};

use crate::helpers::aws_settings;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cloudwatch_alarm_on_the_alarms_queue_is_posted_to_discord() {
    let sdk = adapters::aws::sdk_config(&aws_settings()).await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let queue = format!("alarms-{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let url = sqs.create_queue().queue_name(&queue).send().await.expect("create queue").queue_url.expect("url");
    let alarm = json!({
        "AlarmName": "acme-feedback-dlq.fifo-has-messages",
        "AlarmDescription": "A message of the feedback queue could not be handled after 3 attempts.",
        "NewStateValue": "ALARM",
        "NewStateReason": "Threshold Crossed: 1 datapoint [1.0] was greater than the threshold (0.0).",
        "Region": "EU (Ireland)",
        "Trigger": {"Dimensions": [{"name": "QueueName", "value": "acme-feedback-dlq.fifo"}]}
    });
    sqs.send_message().queue_url(&url).message_body(alarm.to_string()).send().await.expect("send");

    let discord = MockServer::start().await;
    Mock::given(method("POST")).and(path("/hook")).respond_with(ResponseTemplate::new(204)).mount(&discord).await;
    let sink = Arc::new(DiscordWebhook::new(Secret::new(format!("{}/hook", discord.uri()))));
    let forwarder = Arc::new(AlarmForwarder::new(sink));
    let topology =
        Topology::new(InstanceName::parse("alarms").expect("name"), Environment::Production).expect("topology");
    let transport = Arc::new(AwsTransport::new(&sdk, &topology));
    let consumer = Consumer::new(transport, forwarder, ConsumerConfig::new(queue.clone()));
    consumer.run_once(Duration::from_secs(2)).await.expect("run");

    let posted = discord.received_requests().await.expect("recorded");
    assert_eq!(posted.len(), 1, "one post");
    let body: Value = serde_json::from_slice(&posted[0].body).expect("json");
    assert_eq!(body["embeds"][0]["title"], "acme-feedback-dlq.fifo-has-messages is ALARM");
    let left = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
        .send()
        .await
        .expect("attributes");
    let visible = left
        .attributes()
        .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages))
        .cloned();
    assert_eq!(visible.as_deref(), Some("0"), "forwarded and deleted");
}
