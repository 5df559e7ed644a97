//! The AWS engine against an AWS-compatible server on loopback (moto, started by
//! scripts/test). Every fixture provisions a topology with unique names.

use std::sync::Arc;

use adapters::aws::{self, AwsTransport, S3ObjectStore};
use shared::testkit::transport::{Backend, Capabilities, Fixture};
use shared::topology::Topology;

pub use adapters::testing::aws_test_config as sdk_config;

struct Moto;

impl Backend for Moto {
    async fn open(&self, topology: Topology) -> Fixture {
        let config = sdk_config().await;
        let applied = aws::provision::apply(&config, &topology).await.expect("apply the topology");
        assert!(!applied.is_empty(), "a fresh topology is created");
        let transport = AwsTransport::new(&config, &topology).with_dedup_window(std::time::Duration::ZERO);
        Fixture { transport: Arc::new(transport), topology, clock: None }
    }

    async fn reopen(&self, fixture: Fixture) -> Fixture {
        // AWS keeps everything; a restart is a new client.
        let config = sdk_config().await;
        let transport = AwsTransport::new(&config, &fixture.topology).with_dedup_window(std::time::Duration::ZERO);
        Fixture { transport: Arc::new(transport), topology: fixture.topology, clock: None }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transport_conformance_aws() {
    // moto forgets a dedup id once its message left the queue, so the five-minute
    // window is tested on the embedded engine only.
    shared::testkit::transport::run_suite(Capabilities { manual_clock: false, restart: true, fair_lanes: false }, Moto)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_store_conformance_s3() {
    let store = S3ObjectStore::new(&sdk_config().await, format!("results-{}", uuid::Uuid::new_v4().simple()));
    store.ensure_bucket().await.expect("bucket");
    shared::testkit::object_store::run_suite(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topology_plan_apply_check() {
    let config = sdk_config().await;
    let instance =
        shared::topology::InstanceName::parse(&format!("p{}", &uuid::Uuid::new_v4().simple().to_string()[..10]))
            .expect("name");
    let topology = Topology::new(instance, shared::topology::Environment::Production).expect("topology");

    let missing = aws::provision::check(&config, &topology).await.expect_err("nothing exists yet");
    let text = missing.to_string();
    assert!(text.contains(&format!("+ queue {}", topology.queues[0].name)), "{text}");
    assert!(text.contains("switchyard topology apply"), "says how to fix it: {text}");

    let planned = aws::provision::plan(&config, &topology).await.expect("plan");
    assert_eq!(planned.iter().filter(|c| matches!(c, aws::provision::Change::CreateTopic { .. })).count(), 3);
    assert_eq!(
        planned.iter().filter(|c| matches!(c, aws::provision::Change::CreateQueue { .. })).count(),
        12,
        "six queues and their DLQs"
    );
    let applied = aws::provision::apply(&config, &topology).await.expect("apply");
    assert_eq!(applied, planned, "apply does what plan said");
    assert!(aws::provision::plan(&config, &topology).await.expect("plan").is_empty(), "nothing left to do");
    assert!(aws::provision::apply(&config, &topology).await.expect("apply again").is_empty(), "idempotent");
    aws::provision::check(&config, &topology).await.expect("everything exists");

    // High-throughput FIFO where the topology asks for it, and nowhere else.
    let sqs = aws_sdk_sqs::Client::new(&config);
    for spec in &topology.queues {
        for (name, wanted) in [(&spec.name, spec.high_throughput), (&spec.dlq_name, false)] {
            let url = sqs.get_queue_url().queue_name(name).send().await.expect("url").queue_url.expect("url");
            let attributes = sqs
                .get_queue_attributes()
                .queue_url(url)
                .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
                .send()
                .await
                .expect("attributes")
                .attributes
                .unwrap_or_default();
            let scope = attributes.get(&aws_sdk_sqs::types::QueueAttributeName::DeduplicationScope);
            let limit = attributes.get(&aws_sdk_sqs::types::QueueAttributeName::FifoThroughputLimit);
            let high = scope.map(String::as_str) == Some("messageGroup")
                && limit.map(String::as_str) == Some("perMessageGroupId");
            assert_eq!(high, wanted, "{name}: {scope:?} {limit:?}");
        }
    }
    assert!(topology.queues.iter().any(|q| q.high_throughput) && topology.queues.iter().any(|q| !q.high_throughput));

    // A drifted setting shows up in the plan and apply puts it back.
    let staging = Topology::new(topology.instance.clone(), shared::topology::Environment::Staging).expect("topology");
    let drift = aws::provision::plan(&config, &staging).await.expect("plan");
    assert!(drift.iter().any(|c| c.to_string().contains("VisibilityTimeout")), "{drift:?}");
    aws::provision::apply(&config, &staging).await.expect("apply staging");
    assert!(aws::provision::plan(&config, &staging).await.expect("plan").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redrive_keeps_messages_younger_than_the_dedup_window() {
    use shared::ports::{ReceiveOptions, Transport};
    use shared::topology::UseCase;

    let config = sdk_config().await;
    let instance =
        shared::topology::InstanceName::parse(&format!("r{}", &uuid::Uuid::new_v4().simple().to_string()[..10]))
            .expect("name");
    let topology = Topology::new(instance, shared::topology::Environment::Production).expect("topology");
    aws::provision::apply(&config, &topology).await.expect("apply");
    let transport = AwsTransport::new(&config, &topology); // the real five-minute window
    let topic = topology.topic(shared::Service::CoreApi).name.clone();
    let queue = topology.queue(UseCase::Feedback);
    transport
        .publish(&topic, &[shared::testkit::transport::message("g", "young", "feedback.x")])
        .await
        .expect("publish");
    let options = ReceiveOptions {
        max_messages: 1,
        wait: std::time::Duration::from_secs(2),
        visibility_timeout: Some(std::time::Duration::ZERO),
    };
    for _ in 0..4 {
        transport.receive(&queue.name, options).await.expect("receive");
    }
    assert_eq!(transport.dead_letters(&queue.dlq_name, 10).await.expect("list").len(), 1);
    assert_eq!(transport.redrive(&queue.dlq_name).await.expect("redrive"), 0, "too young to redrive safely");
    assert_eq!(transport.dead_letters(&queue.dlq_name, 10).await.expect("list").len(), 1, "and still there");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eventbridge_bus_delivers_to_rule_targets_and_lists_rule_patterns() {
    use shared::ports::{BusEvent, EventBus};

    let config = sdk_config().await;
    let instance =
        shared::topology::InstanceName::parse(&format!("b{}", &uuid::Uuid::new_v4().simple().to_string()[..10]))
            .expect("name");
    let mut topology = Topology::new(instance.clone(), shared::topology::Environment::Production).expect("topology");
    let bus_name = format!("{}-events", instance.as_str());
    topology.bus = Some(bus_name.clone());
    let applied = aws::provision::apply(&config, &topology).await.expect("apply");
    assert!(applied.contains(&aws::provision::Change::CreateBus { name: bus_name.clone() }));
    aws::provision::check(&config, &topology).await.expect("the bus exists now");

    // A rule (as Terraform or a tenant would define it) routing orders to a queue.
    let sqs = aws_sdk_sqs::Client::new(&config);
    let target = sqs.create_queue().queue_name(format!("{}-orders", instance.as_str())).send().await.expect("queue");
    let target_url = target.queue_url().expect("url").to_owned();
    let target_arn = sqs
        .get_queue_attributes()
        .queue_url(&target_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("attributes")
        .attributes()
        .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn).cloned())
        .expect("arn");
    let events = aws_sdk_eventbridge::Client::new(&config);
    events
        .put_rule()
        .name("orders")
        .event_bus_name(&bus_name)
        .event_pattern(r#"{"detail-type": [{"prefix": "order."}]}"#)
        .send()
        .await
        .expect("rule");
    events
        .put_targets()
        .rule("orders")
        .event_bus_name(&bus_name)
        .targets(aws_sdk_eventbridge::types::Target::builder().id("queue").arn(target_arn).build().expect("target"))
        .send()
        .await
        .expect("target");

    let bus = aws::EventBridgeBus::new(&config, bus_name);
    let patterns = bus.rule_patterns().await.expect("rules");
    assert_eq!(patterns.len(), 1);
    assert!(patterns[0].matches(&serde_json::json!({"detail-type": "order.placed"})));
    let put = |detail_type: &str| BusEvent {
        source: "core-api".into(),
        detail_type: detail_type.into(),
        detail: serde_json::json!({"type": detail_type}).to_string(),
    };
    let results = bus.put_events(&[put("order.placed"), put("feedback.submitted")]).await.expect("put");
    assert!(results.iter().all(Result::is_ok));
    let received = sqs
        .receive_message()
        .queue_url(&target_url)
        .max_number_of_messages(10)
        .wait_time_seconds(2)
        .send()
        .await
        .expect("receive");
    let bodies: Vec<serde_json::Value> =
        received.messages().iter().filter_map(|m| m.body()).filter_map(|b| serde_json::from_str(b).ok()).collect();
    assert_eq!(bodies.len(), 1, "only the rule's events reach its target: {bodies:?}");
    assert_eq!(bodies[0]["detail-type"], "order.placed");
    assert_eq!(bodies[0]["source"], "core-api");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ses_sends_from_verified_identities_and_rejects_others() {
    use shared::domain::EmailAddress;
    use shared::ports::providers::{Email, EmailBody, EmailSender, ProviderError};

    let config = sdk_config().await;
    let from = format!("no-reply-{}@acme.example", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    aws_sdk_sesv2::Client::new(&config).create_email_identity().email_identity(&from).send().await.expect("identity");
    let ses = aws::SesEmailSender::new(&config);
    let email = |from: &str| Email {
        to: EmailAddress::parse("ana@example.com").expect("to"),
        from: EmailAddress::parse(from).expect("from"),
        subject: "Welcome".into(),
        body: EmailBody::Content { text: Some("Hello".into()), html: Some("<p>Hello</p>".into()) },
        reference: "evt_0192f3a4b5c6d7e8f9a0b1c2d3e4f5a6".into(),
    };
    let receipt = ses.send(&email(&from)).await.expect("sent");
    assert_eq!(receipt.provider, "ses");
    assert!(receipt.message_id.is_some_and(|id| !id.is_empty()));
    let error = ses.send(&email("stranger@elsewhere.example")).await.expect_err("unverified sender");
    assert!(matches!(&error, ProviderError::Rejected { reason, .. } if reason.contains("not verified")), "{error:?}");
    assert!(!error.is_retryable());
}
