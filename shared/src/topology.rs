//! The messaging topology, declared once. The embedded engine provisions itself from
//! it, the AWS engine checks and applies it, and the Terraform mirrors it.
//!
//! - one SNS FIFO topic per [`Service`]: `{instance}-{service}.fifo`;
//! - one SQS FIFO queue per [`UseCase`]: `{instance}-{use_case}.fifo`, each with a
//!   dead-letter queue `{instance}-{use_case}-dlq.fifo` (maxReceiveCount 3);
//! - subscriptions from topics to queues with filter policies on `event_type`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde_json::{json, Value};

use crate::envelope::Service;
use crate::pattern::{FilterPolicy, FilterPolicyScope, PatternError};

const MINUTE: u64 = 60;
const DAY: u64 = 24 * 60 * MINUTE;

/// How many times a message may be received before it moves to its dead-letter queue.
pub const MAX_RECEIVE_COUNT: u32 = 3;

/// Production or staging: staging keeps messages for 7 days and uses shorter visibility.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    Production,
    Staging,
}

impl FromStr for Environment {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "production" => Ok(Self::Production),
            "staging" => Ok(Self::Staging),
            other => Err(format!("unknown environment `{other}` (expected production or staging)")),
        }
    }
}

/// The work a dedicated queue and its worker exist for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum UseCase {
    Feedback,
    Email,
    Analytics,
    Testflight,
    AccessRequests,
    /// Inbound webhooks (`<source>.received`, from the adapters topic).
    Webhooks,
}

impl UseCase {
    pub const ALL: [UseCase; 6] = [
        UseCase::Feedback,
        UseCase::Email,
        UseCase::Analytics,
        UseCase::Testflight,
        UseCase::AccessRequests,
        UseCase::Webhooks,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            UseCase::Feedback => "feedback",
            UseCase::Email => "email",
            UseCase::Analytics => "analytics",
            UseCase::Testflight => "testflight",
            UseCase::AccessRequests => "access-requests",
            UseCase::Webhooks => "webhooks",
        }
    }

    /// The event-type namespace this use case consumes (`feedback.` …); none for
    /// webhooks, whose types are named after their source (`stripe.received`).
    pub fn event_namespace(self) -> Option<&'static str> {
        match self {
            UseCase::Feedback => Some("feedback"),
            UseCase::Email => Some("email"),
            UseCase::Analytics => Some("analytics"),
            UseCase::Testflight => Some("testflight"),
            UseCase::AccessRequests => Some("access_request"),
            UseCase::Webhooks => None,
        }
    }

    /// What its queue's subscription lets through, on the `event_type` attribute.
    fn filter(self) -> Value {
        match self.event_namespace() {
            Some(namespace) => json!({ "event_type": [{ "prefix": format!("{namespace}.") }] }),
            None => json!({ "event_type": [{ "suffix": ".received" }] }),
        }
    }
}

impl fmt::Display for UseCase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for UseCase {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        UseCase::ALL.into_iter().find(|u| u.as_str() == s).ok_or_else(|| {
            format!(
                "unknown use case `{s}` (expected feedback, email, analytics, testflight, access-requests or webhooks)"
            )
        })
    }
}

/// The event-type namespaces the platform reserves for itself; tenants cannot publish
/// these through `POST /v1/events`.
pub fn reserved_namespaces() -> impl Iterator<Item = &'static str> {
    UseCase::ALL.into_iter().filter_map(UseCase::event_namespace)
}

/// The deployment's instance name: the prefix of every resource (`acme-prod`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceName(String);

impl InstanceName {
    /// Lowercase letters, digits and dashes, starting with a letter, at most 40 characters
    /// (so the longest queue name stays under SQS's 80-character limit).
    pub fn parse(value: &str) -> Result<Self, String> {
        let ok = !value.is_empty()
            && value.len() <= 40
            && value.starts_with(|c: char| c.is_ascii_lowercase())
            && value.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if ok {
            Ok(Self(value.to_owned()))
        } else {
            Err(format!(
                "instance name `{value}` must be 1 to 40 lowercase letters, digits or dashes, starting with a letter"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One FIFO queue and its dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSpec {
    pub use_case: UseCase,
    pub name: String,
    pub dlq_name: String,
    pub retention: Duration,
    pub visibility_timeout: Duration,
    pub max_receive_count: u32,
    pub dlq_retention: Duration,
    /// SQS high-throughput FIFO (`DeduplicationScope=messageGroup`,
    /// `FifoThroughputLimit=perMessageGroupId`): the quota applies per message group
    /// instead of per queue, for the queues whose events have fine ordering keys. Not
    /// set on dead-letter queues.
    pub high_throughput: bool,
}

impl UseCase {
    /// Whether this use case's queue runs in SQS high-throughput FIFO mode: the ones
    /// with many groups and high volume (feedback, email campaigns, analytics,
    /// webhooks). TestFlight is paced by Apple's hourly limit and access requests are
    /// few, so they keep the plain FIFO quota.
    pub fn high_throughput(self) -> bool {
        matches!(self, UseCase::Feedback | UseCase::Email | UseCase::Analytics | UseCase::Webhooks)
    }
}

/// One FIFO topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    pub service: Service,
    pub name: String,
}

/// A topic-to-queue subscription with raw message delivery.
#[derive(Debug, Clone)]
pub struct SubscriptionSpec {
    pub topic: String,
    pub queue: String,
    pub filter_policy: FilterPolicy,
    /// The policy as JSON, exactly as it is applied to SNS and written to Terraform.
    pub filter_policy_json: Value,
    pub raw_delivery: bool,
}

/// Everything the transport needs to exist for one deployment.
#[derive(Debug, Clone)]
pub struct Topology {
    pub instance: InstanceName,
    pub environment: Environment,
    pub topics: Vec<TopicSpec>,
    pub queues: Vec<QueueSpec>,
    pub subscriptions: Vec<SubscriptionSpec>,
    /// The EventBridge bus, when the deployment has one (`{instance}-events` by default).
    pub bus: Option<String>,
}

/// Retention and visibility per use case and environment.
fn queue_timings(use_case: UseCase, environment: Environment) -> (Duration, Duration) {
    let (production_retention_days, production_visibility, staging_visibility) = match use_case {
        UseCase::Feedback => (14, 5 * MINUTE, 2 * MINUTE),
        UseCase::Email => (14, 10 * MINUTE, 5 * MINUTE),
        UseCase::Analytics => (7, 2 * MINUTE, MINUTE),
        UseCase::Testflight => (14, 5 * MINUTE, 2 * MINUTE),
        UseCase::AccessRequests => (14, MINUTE, 30),
        UseCase::Webhooks => (14, 2 * MINUTE, MINUTE),
    };
    match environment {
        Environment::Production => {
            (Duration::from_secs(production_retention_days * DAY), Duration::from_secs(production_visibility))
        }
        Environment::Staging => (Duration::from_secs(7 * DAY), Duration::from_secs(staging_visibility)),
    }
}

impl Topology {
    pub fn new(instance: InstanceName, environment: Environment) -> Result<Self, PatternError> {
        let topic_name = |service: Service| format!("{}-{}.fifo", instance.as_str(), service.as_str());
        let topics = Service::ALL.into_iter().map(|service| TopicSpec { service, name: topic_name(service) }).collect();
        let dlq_retention = match environment {
            Environment::Production => Duration::from_secs(14 * DAY),
            Environment::Staging => Duration::from_secs(7 * DAY),
        };
        let queues: Vec<QueueSpec> = UseCase::ALL
            .into_iter()
            .map(|use_case| {
                let (retention, visibility_timeout) = queue_timings(use_case, environment);
                QueueSpec {
                    use_case,
                    name: format!("{}-{}.fifo", instance.as_str(), use_case.as_str()),
                    dlq_name: format!("{}-{}-dlq.fifo", instance.as_str(), use_case.as_str()),
                    retention,
                    visibility_timeout,
                    max_receive_count: MAX_RECEIVE_COUNT,
                    dlq_retention,
                    high_throughput: use_case.high_throughput(),
                }
            })
            .collect();
        // Every use case consumes its namespace from the core-api topic; access-request
        // decisions come from the control plane's topic too; webhooks come from the
        // adapters topic alone.
        let mut feeds: Vec<(Service, &QueueSpec)> = queues
            .iter()
            .map(|q| (if q.use_case == UseCase::Webhooks { Service::Adapters } else { Service::CoreApi }, q))
            .collect();
        feeds.extend(
            queues.iter().filter(|q| q.use_case == UseCase::AccessRequests).map(|q| (Service::ControlPlane, q)),
        );
        let mut subscriptions = Vec::new();
        for (service, queue) in feeds {
            let policy = queue.use_case.filter();
            subscriptions.push(SubscriptionSpec {
                topic: topic_name(service),
                queue: queue.name.clone(),
                filter_policy: FilterPolicy::parse(&policy, FilterPolicyScope::MessageAttributes)?,
                filter_policy_json: policy,
                raw_delivery: true,
            });
        }
        Ok(Self { instance, environment, topics, queues, subscriptions, bus: None })
    }

    pub fn topic(&self, service: Service) -> &TopicSpec {
        // Every service has a topic by construction.
        self.topics.iter().find(|t| t.service == service).unwrap_or(&self.topics[0])
    }

    pub fn queue(&self, use_case: UseCase) -> &QueueSpec {
        self.queues.iter().find(|q| q.use_case == use_case).unwrap_or(&self.queues[0])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn production() -> Topology {
        Topology::new(InstanceName::parse("acme").unwrap(), Environment::Production).unwrap()
    }

    #[test]
    fn names_follow_the_convention() {
        let topology = production();
        assert_eq!(topology.topic(Service::CoreApi).name, "acme-core-api.fifo");
        assert_eq!(topology.topic(Service::ControlPlane).name, "acme-control-plane.fifo");
        assert_eq!(topology.topic(Service::Adapters).name, "acme-adapters.fifo");
        let feedback = topology.queue(UseCase::Feedback);
        assert_eq!(feedback.name, "acme-feedback.fifo");
        assert_eq!(feedback.dlq_name, "acme-feedback-dlq.fifo");
        assert_eq!(topology.queue(UseCase::AccessRequests).dlq_name, "acme-access-requests-dlq.fifo");
    }

    #[test]
    fn production_timings_match_the_design() {
        let topology = production();
        let expect = [
            (UseCase::Feedback, 14, 300),
            (UseCase::Email, 14, 600),
            (UseCase::Analytics, 7, 120),
            (UseCase::Testflight, 14, 300),
            (UseCase::AccessRequests, 14, 60),
        ];
        for (use_case, days, visibility) in expect {
            let q = topology.queue(use_case);
            assert_eq!(q.retention, Duration::from_secs(days * DAY), "{use_case}");
            assert_eq!(q.visibility_timeout, Duration::from_secs(visibility), "{use_case}");
            assert_eq!(q.max_receive_count, 3);
            assert_eq!(q.dlq_retention, Duration::from_secs(14 * DAY));
        }
    }

    #[test]
    fn staging_keeps_seven_days_with_shorter_visibility() {
        let staging = Topology::new(InstanceName::parse("acme-stg").unwrap(), Environment::Staging).unwrap();
        let production = production();
        for use_case in UseCase::ALL {
            let (s, p) = (staging.queue(use_case), production.queue(use_case));
            assert_eq!(s.retention, Duration::from_secs(7 * DAY));
            assert_eq!(s.dlq_retention, Duration::from_secs(7 * DAY));
            assert!(s.visibility_timeout < p.visibility_timeout, "{use_case}");
        }
    }

    #[test]
    fn inbound_webhooks_reach_their_own_queue_from_the_adapters_topic() {
        let topology = production();
        let webhooks: Vec<_> = topology.subscriptions.iter().filter(|s| s.queue == "acme-webhooks.fifo").collect();
        assert_eq!(webhooks.len(), 1);
        assert_eq!(webhooks[0].topic, "acme-adapters.fifo");
        let attrs = |t: &str| [("event_type".to_owned(), t.to_owned())].into_iter().collect();
        assert!(webhooks[0].filter_policy.matches_message(&attrs("stripe.received"), "{}"));
        assert!(!webhooks[0].filter_policy.matches_message(&attrs("stripe.invoice_paid"), "{}"));
        assert!(!reserved_namespaces().any(|ns| ns == "webhooks"), "no namespace is taken from tenants");
        assert_eq!(topology.queue(UseCase::Webhooks).dlq_name, "acme-webhooks-dlq.fifo");
    }

    #[test]
    fn subscriptions_filter_on_event_type() {
        let topology = production();
        let feedback = topology.subscriptions.iter().find(|s| s.queue == "acme-feedback.fifo").unwrap();
        assert_eq!(feedback.topic, "acme-core-api.fifo");
        assert!(feedback.raw_delivery);
        let attrs = |t: &str| [("event_type".to_owned(), t.to_owned())].into_iter().collect();
        assert!(feedback.filter_policy.matches_message(&attrs("feedback.submitted"), "{}"));
        assert!(!feedback.filter_policy.matches_message(&attrs("email.requested"), "{}"));
        let access: Vec<&SubscriptionSpec> =
            topology.subscriptions.iter().filter(|s| s.queue == "acme-access-requests.fifo").collect();
        let topics: Vec<&str> = access.iter().map(|s| s.topic.as_str()).collect();
        assert_eq!(topics, ["acme-core-api.fifo", "acme-control-plane.fifo"], "submissions and decisions");
        assert!(access[0].filter_policy.matches_message(&attrs("access_request.submitted"), "{}"));
        assert!(access[1].filter_policy.matches_message(&attrs("access_request.approved"), "{}"));
        assert!(!access[1].filter_policy.matches_message(&attrs("tenant.created"), "{}"));
    }

    #[test]
    fn instance_names_are_validated() {
        assert!(InstanceName::parse("acme-prod-1").is_ok());
        for bad in ["", "Acme", "1acme", "acme_prod", &"a".repeat(41)] {
            assert!(InstanceName::parse(bad).is_err(), "{bad}");
        }
    }
}
