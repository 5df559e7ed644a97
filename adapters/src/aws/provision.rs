//! The topology on AWS: `plan` (what differs), `apply` (create or update, idempotent;
//! for local servers, tests and first set-up) and `check` (read-only: what the running
//! services need and is missing). Production stacks are created by Terraform; the
//! running services only ever need the read calls that `check` makes.

use std::collections::HashMap;
use std::fmt;

use aws_config::SdkConfig;
use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::{json, Value};

use shared::topology::{QueueSpec, SubscriptionSpec, Topology};

use super::{classify, describe, Failure};

/// One difference between the topology and what exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    CreateBus { name: String },
    CreateTopic { name: String },
    CreateQueue { name: String },
    UpdateQueue { name: String, attribute: String, current: String, wanted: String },
    Subscribe { topic: String, queue: String },
    UpdateSubscription { topic: String, queue: String, attribute: String, current: String, wanted: String },
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::CreateBus { name } => write!(f, "+ event bus {name}"),
            Change::CreateTopic { name } => write!(f, "+ topic {name}"),
            Change::CreateQueue { name } => write!(f, "+ queue {name}"),
            Change::UpdateQueue { name, attribute, current, wanted } => {
                write!(f, "~ queue {name}: {attribute} {current} -> {wanted}")
            }
            Change::Subscribe { topic, queue } => write!(f, "+ subscription {topic} -> {queue}"),
            Change::UpdateSubscription { topic, queue, attribute, current, wanted } => {
                write!(f, "~ subscription {topic} -> {queue}: {attribute} {current} -> {wanted}")
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("{action} failed: {detail}")]
    Aws { action: String, detail: String, unavailable: bool },
    #[error(
        "the messaging topology is incomplete:\n{}\nCreate it with Terraform (infra/terraform) or, against a local server, `switchyard topology apply`.",
        .0.iter().map(|c| format!("  {c}")).collect::<Vec<_>>().join("\n")
    )]
    Missing(Vec<Change>),
}

fn aws_error<E>(
    action: &str,
    error: aws_sdk_sqs::error::SdkError<E, aws_sdk_sqs::config::http::HttpResponse>,
) -> ProvisionError
where
    E: aws_sdk_sqs::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    let unavailable = matches!(classify(&error), Failure::Unavailable | Failure::Throttled);
    ProvisionError::Aws { action: action.to_owned(), detail: describe(&error), unavailable }
}

struct Provisioner {
    sns: aws_sdk_sns::Client,
    sqs: aws_sdk_sqs::Client,
    events: aws_sdk_eventbridge::Client,
}

/// What exists for one queue.
struct ExistingQueue {
    arn: String,
    attributes: HashMap<QueueAttributeName, String>,
}

fn redrive_policy(dlq_arn: &str, max_receive_count: u32) -> Value {
    json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive_count})
}

/// Queue policy: only the topics that feed the queue may send to it.
fn queue_policy(queue_arn: &str, topic_arns: &[String]) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "switchyard-topics",
            "Effect": "Allow",
            "Principal": {"Service": "sns.amazonaws.com"},
            "Action": "sqs:SendMessage",
            "Resource": queue_arn,
            "Condition": {"ArnEquals": {"aws:SourceArn": topic_arns}}
        }]
    })
}

/// The topics a queue policy lets SNS send from, read the way IAM reads policies: a
/// `Statement` object or array, `Principal.Service`, `Action` and `aws:SourceArn` as a
/// string or an array, actions case-insensitive. Whatever wrote the policy (this
/// module, Terraform's `jsonencode`, AWS normalising it), the same grant reads the same.
fn admitted_topics(policy: &str) -> Option<std::collections::BTreeSet<String>> {
    fn strings(value: Option<&Value>) -> Vec<String> {
        match value {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
            _ => Vec::new(),
        }
    }
    let policy: Value = serde_json::from_str(policy).ok()?;
    let statements = match policy.get("Statement") {
        Some(Value::Array(items)) => items.clone(),
        Some(single @ Value::Object(_)) => vec![single.clone()],
        _ => Vec::new(),
    };
    let mut topics = std::collections::BTreeSet::new();
    for statement in statements {
        let allows = statement.get("Effect").and_then(Value::as_str) == Some("Allow");
        let from_sns = strings(statement.pointer("/Principal/Service")).iter().any(|s| s == "sns.amazonaws.com");
        let sends = strings(statement.get("Action")).iter().any(|a| a.eq_ignore_ascii_case("sqs:SendMessage"));
        if allows && from_sns && sends {
            topics.extend(strings(statement.pointer("/Condition/ArnEquals/aws:SourceArn")));
        }
    }
    Some(topics)
}

/// Parses JSON-valued attributes so that formatting differences are not changes.
fn same_json(current: &str, wanted: &Value) -> bool {
    let normalize = |v: &Value| -> Value {
        match v {
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| {
                        (k.clone(), v.as_str().and_then(|s| s.parse::<u64>().ok()).map_or(v.clone(), Value::from))
                    })
                    .collect(),
            ),
            other => other.clone(),
        }
    };
    serde_json::from_str::<Value>(current).is_ok_and(|c| normalize(&c) == normalize(wanted))
}

impl Provisioner {
    fn new(config: &SdkConfig) -> Self {
        Self {
            sns: aws_sdk_sns::Client::new(config),
            sqs: aws_sdk_sqs::Client::new(config),
            events: aws_sdk_eventbridge::Client::new(config),
        }
    }

    async fn topic_arns(&self) -> Result<Vec<String>, ProvisionError> {
        let mut arns = Vec::new();
        let mut pages = self.sns.list_topics().into_paginator().send();
        while let Some(page) = pages.next().await {
            arns.extend(
                page.map_err(|e| aws_error("ListTopics", e))?
                    .topics()
                    .iter()
                    .filter_map(|t| t.topic_arn())
                    .map(str::to_owned),
            );
        }
        Ok(arns)
    }

    async fn queue(&self, name: &str) -> Result<Option<(String, ExistingQueue)>, ProvisionError> {
        let url = match self.sqs.get_queue_url().queue_name(name).send().await {
            Ok(output) => output.queue_url().unwrap_or_default().to_owned(),
            Err(error) if classify(&error) == Failure::Missing => return Ok(None),
            Err(error) => return Err(aws_error("GetQueueUrl", error)),
        };
        let output = self
            .sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::All)
            .send()
            .await
            .map_err(|e| aws_error("GetQueueAttributes", e))?;
        let attributes = output.attributes().cloned().unwrap_or_default();
        let arn = attributes.get(&QueueAttributeName::QueueArn).cloned().unwrap_or_default();
        Ok(Some((url, ExistingQueue { arn, attributes })))
    }

    /// Subscription attributes per queue ARN for one topic.
    async fn subscriptions(
        &self,
        topic_arn: &str,
    ) -> Result<HashMap<String, (String, HashMap<String, String>)>, ProvisionError> {
        let mut found = HashMap::new();
        let mut pages = self.sns.list_subscriptions_by_topic().topic_arn(topic_arn).into_paginator().send();
        while let Some(page) = pages.next().await {
            for subscription in page.map_err(|e| aws_error("ListSubscriptionsByTopic", e))?.subscriptions() {
                let (Some(arn), Some(endpoint)) = (subscription.subscription_arn(), subscription.endpoint()) else {
                    continue;
                };
                let attributes = self
                    .sns
                    .get_subscription_attributes()
                    .subscription_arn(arn)
                    .send()
                    .await
                    .map_err(|e| aws_error("GetSubscriptionAttributes", e))?
                    .attributes()
                    .cloned()
                    .unwrap_or_default();
                found.insert(endpoint.to_owned(), (arn.to_owned(), attributes));
            }
        }
        Ok(found)
    }

    fn queue_changes(
        spec_name: &str,
        existing: &ExistingQueue,
        wanted: &[(QueueAttributeName, String)],
    ) -> Vec<Change> {
        let mut changes = Vec::new();
        for (attribute, value) in wanted {
            let current = existing.attributes.get(attribute).cloned().unwrap_or_default();
            let differs = match attribute {
                QueueAttributeName::RedrivePolicy => {
                    !same_json(&current, &serde_json::from_str(value).unwrap_or(Value::Null))
                }
                _ => current != *value,
            };
            if differs {
                changes.push(Change::UpdateQueue {
                    name: spec_name.to_owned(),
                    attribute: attribute.as_str().to_owned(),
                    current: if current.is_empty() { "(unset)".into() } else { current },
                    wanted: value.clone(),
                });
            }
        }
        changes
    }

    fn wanted_queue_attributes(spec: &QueueSpec, dlq: bool, dlq_arn: &str) -> Vec<(QueueAttributeName, String)> {
        let retention = if dlq { spec.dlq_retention } else { spec.retention };
        let mut wanted = vec![
            (QueueAttributeName::MessageRetentionPeriod, retention.as_secs().to_string()),
            (QueueAttributeName::VisibilityTimeout, spec.visibility_timeout.as_secs().to_string()),
        ];
        if !dlq {
            wanted
                .push((QueueAttributeName::RedrivePolicy, redrive_policy(dlq_arn, spec.max_receive_count).to_string()));
            if spec.high_throughput {
                wanted.push((QueueAttributeName::DeduplicationScope, "messageGroup".to_owned()));
                wanted.push((QueueAttributeName::FifoThroughputLimit, "perMessageGroupId".to_owned()));
            }
        }
        wanted
    }

    fn wanted_subscription_attributes(spec: &SubscriptionSpec) -> Vec<(&'static str, String)> {
        vec![
            ("RawMessageDelivery", spec.raw_delivery.to_string()),
            ("FilterPolicyScope", "MessageAttributes".to_owned()),
            ("FilterPolicy", spec.filter_policy_json.to_string()),
        ]
    }

    /// Everything that differs; with `Apply`, also makes it so.
    async fn reconcile(&self, topology: &Topology, mode: Mode) -> Result<Vec<Change>, ProvisionError> {
        let mut changes = Vec::new();
        if let Some(bus) = &topology.bus {
            match self.events.describe_event_bus().name(bus).send().await {
                Ok(_) => {}
                Err(error) if classify(&error) == Failure::Missing => {
                    changes.push(Change::CreateBus { name: bus.clone() });
                    if mode == Mode::Apply {
                        self.events
                            .create_event_bus()
                            .name(bus)
                            .send()
                            .await
                            .map_err(|e| aws_error("CreateEventBus", e))?;
                    }
                }
                Err(error) => return Err(aws_error("DescribeEventBus", error)),
            }
        }
        let existing_topics = self.topic_arns().await?;
        let mut topic_arns: HashMap<String, String> = HashMap::new();
        for topic in &topology.topics {
            let suffix = format!(":{}", topic.name);
            match existing_topics.iter().find(|arn| arn.ends_with(&suffix)) {
                Some(arn) => {
                    topic_arns.insert(topic.name.clone(), arn.clone());
                }
                None => {
                    changes.push(Change::CreateTopic { name: topic.name.clone() });
                    if mode == Mode::Apply {
                        let output = self
                            .sns
                            .create_topic()
                            .name(&topic.name)
                            .attributes("FifoTopic", "true")
                            .attributes("ContentBasedDeduplication", "false")
                            .send()
                            .await
                            .map_err(|e| aws_error("CreateTopic", e))?;
                        topic_arns.insert(topic.name.clone(), output.topic_arn().unwrap_or_default().to_owned());
                    }
                }
            }
        }

        let mut queue_arns: HashMap<String, String> = HashMap::new();
        for spec in &topology.queues {
            for (name, dlq) in [(&spec.dlq_name, true), (&spec.name, false)] {
                let dlq_arn = queue_arns.get(&spec.dlq_name).cloned().unwrap_or_default();
                let wanted = Self::wanted_queue_attributes(spec, dlq, &dlq_arn);
                let feeding_topics: Vec<String> = topology
                    .subscriptions
                    .iter()
                    .filter(|s| &s.queue == name)
                    .filter_map(|s| topic_arns.get(&s.topic).cloned())
                    .collect();
                match self.queue(name).await? {
                    Some((url, existing)) => {
                        let mut found = Self::queue_changes(name, &existing, &wanted);
                        if !feeding_topics.is_empty() {
                            let current =
                                existing.attributes.get(&QueueAttributeName::Policy).cloned().unwrap_or_default();
                            let wanted: std::collections::BTreeSet<String> = feeding_topics.iter().cloned().collect();
                            if admitted_topics(&current) != Some(wanted) {
                                found.push(Change::UpdateQueue {
                                    name: name.clone(),
                                    attribute: "Policy".into(),
                                    current: if current.is_empty() {
                                        "(unset)".into()
                                    } else {
                                        "(other policy)".into()
                                    },
                                    wanted: "allow its topics to send".into(),
                                });
                            }
                        }
                        if mode == Mode::Apply && !found.is_empty() {
                            self.set_queue_attributes(&url, &existing.arn, &wanted, &feeding_topics).await?;
                        }
                        changes.extend(found);
                        queue_arns.insert(name.clone(), existing.arn);
                    }
                    None => {
                        changes.push(Change::CreateQueue { name: name.clone() });
                        if mode == Mode::Apply {
                            let output = self
                                .sqs
                                .create_queue()
                                .queue_name(name)
                                .attributes(QueueAttributeName::FifoQueue, "true")
                                .attributes(QueueAttributeName::ContentBasedDeduplication, "false")
                                .send()
                                .await
                                .map_err(|e| aws_error("CreateQueue", e))?;
                            let url = output.queue_url().unwrap_or_default().to_owned();
                            let arn = self.queue(name).await?.map(|(_, q)| q.arn).unwrap_or_default();
                            self.set_queue_attributes(&url, &arn, &wanted, &feeding_topics).await?;
                            queue_arns.insert(name.clone(), arn);
                        }
                    }
                }
            }
        }

        for spec in &topology.subscriptions {
            let (Some(topic_arn), Some(queue_arn)) = (topic_arns.get(&spec.topic), queue_arns.get(&spec.queue)) else {
                changes.push(Change::Subscribe { topic: spec.topic.clone(), queue: spec.queue.clone() });
                continue;
            };
            let wanted = Self::wanted_subscription_attributes(spec);
            match self.subscriptions(topic_arn).await?.remove(queue_arn) {
                Some((subscription_arn, current)) => {
                    for (attribute, value) in wanted {
                        let now = current.get(attribute).cloned().unwrap_or_default();
                        let differs = if attribute == "FilterPolicy" {
                            !same_json(&now, &spec.filter_policy_json)
                        } else {
                            now != value && !(attribute == "FilterPolicyScope" && now.is_empty())
                        };
                        if !differs {
                            continue;
                        }
                        changes.push(Change::UpdateSubscription {
                            topic: spec.topic.clone(),
                            queue: spec.queue.clone(),
                            attribute: attribute.to_owned(),
                            current: if now.is_empty() { "(unset)".into() } else { now },
                            wanted: value.clone(),
                        });
                        if mode == Mode::Apply {
                            self.sns
                                .set_subscription_attributes()
                                .subscription_arn(&subscription_arn)
                                .attribute_name(attribute)
                                .attribute_value(value)
                                .send()
                                .await
                                .map_err(|e| aws_error("SetSubscriptionAttributes", e))?;
                        }
                    }
                }
                None => {
                    changes.push(Change::Subscribe { topic: spec.topic.clone(), queue: spec.queue.clone() });
                    if mode == Mode::Apply {
                        let mut request = self
                            .sns
                            .subscribe()
                            .topic_arn(topic_arn)
                            .protocol("sqs")
                            .endpoint(queue_arn)
                            .return_subscription_arn(true);
                        for (attribute, value) in wanted {
                            request = request.attributes(attribute, value);
                        }
                        request.send().await.map_err(|e| aws_error("Subscribe", e))?;
                    }
                }
            }
        }
        Ok(changes)
    }

    async fn set_queue_attributes(
        &self,
        url: &str,
        arn: &str,
        wanted: &[(QueueAttributeName, String)],
        feeding_topics: &[String],
    ) -> Result<(), ProvisionError> {
        let mut request = self.sqs.set_queue_attributes().queue_url(url);
        for (attribute, value) in wanted {
            request = request.attributes(attribute.clone(), value);
        }
        if !feeding_topics.is_empty() {
            request = request.attributes(QueueAttributeName::Policy, queue_policy(arn, feeding_topics).to_string());
        }
        request.send().await.map_err(|e| aws_error("SetQueueAttributes", e))?;
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Plan,
    Apply,
}

/// What would change to make AWS match `topology`.
pub async fn plan(config: &SdkConfig, topology: &Topology) -> Result<Vec<Change>, ProvisionError> {
    Provisioner::new(config).reconcile(topology, Mode::Plan).await
}

/// Makes AWS match `topology`; returns what it changed (empty when nothing did).
pub async fn apply(config: &SdkConfig, topology: &Topology) -> Result<Vec<Change>, ProvisionError> {
    Provisioner::new(config).reconcile(topology, Mode::Apply).await
}

/// Fails with every missing or different resource, and how to fix it.
pub async fn check(config: &SdkConfig, topology: &Topology) -> Result<(), ProvisionError> {
    let changes = plan(config, topology).await?;
    if changes.is_empty() {
        Ok(())
    } else {
        Err(ProvisionError::Missing(changes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queue_policy_is_read_for_what_it_grants_not_how_it_is_written() {
        let topics = vec!["arn:aws:sns:eu-west-1:1:a.fifo".to_owned(), "arn:aws:sns:eu-west-1:1:b.fifo".to_owned()];
        let ours = queue_policy("arn:aws:sqs:eu-west-1:1:q.fifo", &topics).to_string();
        let wanted: std::collections::BTreeSet<String> = topics.iter().cloned().collect();
        assert_eq!(admitted_topics(&ours), Some(wanted.clone()));
        // As AWS or Terraform may write it: one statement object, a principal list, a
        // differently cased action, no Sid, arrays in another order.
        let theirs = json!({
            "Version": "2012-10-17",
            "Statement": {
                "Effect": "Allow",
                "Principal": {"Service": ["sns.amazonaws.com"]},
                "Action": ["SQS:SendMessage"],
                "Resource": "arn:aws:sqs:eu-west-1:1:q.fifo",
                "Condition": {"ArnEquals": {"aws:SourceArn": [topics[1].clone(), topics[0].clone()]}}
            }
        })
        .to_string();
        assert_eq!(admitted_topics(&theirs), Some(wanted));
        let one = json!({"Statement": [{"Effect": "Allow", "Principal": {"Service": "sns.amazonaws.com"},
            "Action": "sqs:SendMessage", "Condition": {"ArnEquals": {"aws:SourceArn": topics[0].clone()}}}]});
        assert_eq!(admitted_topics(&one.to_string()).map(|t| t.len()), Some(1), "a single ARN as a string");
        let denied = json!({"Statement": [{"Effect": "Deny", "Principal": {"Service": "sns.amazonaws.com"},
            "Action": "sqs:SendMessage", "Condition": {"ArnEquals": {"aws:SourceArn": topics[0].clone()}}}]});
        assert_eq!(admitted_topics(&denied.to_string()).map(|t| t.len()), Some(0));
        assert_eq!(admitted_topics(""), None, "no policy");
    }
}
