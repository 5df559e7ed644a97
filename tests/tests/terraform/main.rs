//! infra/terraform against the code: the topology module is generated from shared's
//! topology and evaluates to it, the messaging module applies what it is given, every
//! file parses, and the client example tags everything and hands the runtime the
//! settings it reads.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use hcl::eval::{Context, Evaluate};
use hcl::{Block, Body, Expression};
use serde_json::Value;

use shared::topology::{Environment, InstanceName, Topology};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(root().join(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

fn parse(relative: &str) -> Body {
    hcl::parse(&read(relative)).unwrap_or_else(|e| panic!("{relative} is not valid HCL: {e}"))
}

fn block<'a>(body: &'a Body, kind: &str, labels: &[&str]) -> &'a Block {
    body.blocks()
        .find(|b| b.identifier() == kind && b.labels().iter().map(|l| l.as_str()).eq(labels.iter().copied()))
        .unwrap_or_else(|| panic!("no {kind} {labels:?}"))
}

fn attribute<'a>(block: &'a Block, key: &str) -> &'a Expression {
    block
        .body()
        .attributes()
        .find(|a| a.key() == key)
        .map(|a| a.expr())
        .unwrap_or_else(|| panic!("{} {:?} has no `{key}`", block.identifier(), block.labels()))
}

fn source(expr: &Expression) -> String {
    expr.to_string().split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn the_topology_module_is_generated_from_the_code() {
    let committed = read(switchyard::terraform::MODULE_PATH);
    let generated = switchyard::terraform::render().expect("render");
    assert!(
        committed == generated,
        "{} is out of date with shared's topology: run `cargo run -- topology terraform > {}` and commit it",
        switchyard::terraform::MODULE_PATH,
        switchyard::terraform::MODULE_PATH
    );
}

/// The module's locals evaluated for `instance`, as JSON.
fn evaluated_locals(instance: &str) -> BTreeMap<String, Value> {
    let body = parse(switchyard::terraform::MODULE_PATH);
    let mut context = Context::new();
    context.declare_var("var", hcl::value!({ instance = (instance) }));
    body.blocks()
        .filter(|b| b.identifier() == "locals")
        .flat_map(|b| b.body().attributes())
        .map(|a| {
            let value = a.expr().evaluate(&context).unwrap_or_else(|e| panic!("local.{}: {e}", a.key()));
            (a.key().to_owned(), serde_json::to_value(value).expect("json"))
        })
        .collect()
}

#[test]
fn the_topology_module_evaluates_to_the_code_topology() {
    let locals = evaluated_locals("acme");
    for (name, environment) in [("production", Environment::Production), ("staging", Environment::Staging)] {
        let topology = Topology::new(InstanceName::parse("acme").expect("instance"), environment).expect("topology");
        for topic in &topology.topics {
            assert_eq!(locals["topics"][topic.service.as_str()], topic.name.as_str(), "{name} topic");
        }
        let declared = &locals["environments"][name];
        for queue in &topology.queues {
            let tf = &declared["queues"][queue.use_case.as_str()];
            assert_eq!(tf["name"], queue.name.as_str());
            assert_eq!(tf["dlq_name"], queue.dlq_name.as_str());
            assert_eq!(tf["retention_seconds"], queue.retention.as_secs(), "{name} {}", queue.name);
            assert_eq!(tf["visibility_timeout_seconds"], queue.visibility_timeout.as_secs(), "{name} {}", queue.name);
            assert_eq!(tf["max_receive_count"], queue.max_receive_count);
            assert_eq!(tf["dlq_retention_seconds"], queue.dlq_retention.as_secs());
            assert_eq!(tf["high_throughput"], queue.high_throughput, "{name} {}", queue.name);
        }
        assert_eq!(declared["queues"].as_object().map(|q| q.len()), Some(topology.queues.len()), "no extra queues");
        let subscriptions = locals["subscriptions"].as_array().expect("subscriptions");
        assert_eq!(subscriptions.len(), topology.subscriptions.len(), "{name}: one per subscription");
        for (tf, code) in subscriptions.iter().zip(&topology.subscriptions) {
            let topic = tf["topic"].as_str().expect("topic");
            let queue = tf["queue"].as_str().expect("queue");
            assert_eq!(locals["topics"][topic], code.topic.as_str());
            assert_eq!(declared["queues"][queue]["name"], code.queue.as_str());
            assert_eq!(tf["raw_delivery"], code.raw_delivery);
            let policy: Value = serde_json::from_str(tf["filter_policy"].as_str().expect("policy")).expect("json");
            assert_eq!(policy, code.filter_policy_json, "{name} {topic} -> {queue}");
        }
    }
}

fn terraform_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        if path.is_dir() && !path.ends_with(".terraform") {
            terraform_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "tf" || e == "tfvars") {
            found.push(path);
        }
    }
}

#[test]
fn every_terraform_file_parses() {
    let mut files = Vec::new();
    terraform_files(&root().join("infra/terraform"), &mut files);
    assert!(files.len() >= 20, "modules and the client example: {files:?}");
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read");
        hcl::parse(&text).unwrap_or_else(|e| panic!("{} is not valid HCL: {e}", file.display()));
    }
}

#[test]
fn the_messaging_module_applies_the_topology_as_given() {
    let main = parse("infra/terraform/modules/messaging/main.tf");
    let topics = block(&main, "resource", &["aws_sns_topic", "this"]);
    assert_eq!(source(attribute(topics, "for_each")), "var.topics");
    assert_eq!(source(attribute(topics, "fifo_topic")), "true");
    for name in ["this", "dlq"] {
        let queue = block(&main, "resource", &["aws_sqs_queue", name]);
        assert_eq!(source(attribute(queue, "for_each")), "var.queues");
        assert_eq!(source(attribute(queue, "fifo_queue")), "true");
        assert_eq!(source(attribute(queue, "visibility_timeout_seconds")), "each.value.visibility_timeout_seconds");
        assert!(source(attribute(queue, "kms_master_key_id")).starts_with("aws_kms_key."), "encrypted");
    }
    let queue = block(&main, "resource", &["aws_sqs_queue", "this"]);
    assert_eq!(source(attribute(queue, "message_retention_seconds")), "each.value.retention_seconds");
    assert!(source(attribute(queue, "redrive_policy")).contains("maxReceiveCount = each.value.max_receive_count"));
    assert_eq!(
        source(attribute(queue, "deduplication_scope")),
        "each.value.high_throughput ? \"messageGroup\" : \"queue\""
    );
    assert_eq!(
        source(attribute(queue, "fifo_throughput_limit")),
        "each.value.high_throughput ? \"perMessageGroupId\" : \"perQueue\""
    );
    let dlq = block(&main, "resource", &["aws_sqs_queue", "dlq"]);
    assert_eq!(source(attribute(dlq, "message_retention_seconds")), "each.value.dlq_retention_seconds");
    let subscription = block(&main, "resource", &["aws_sns_topic_subscription", "this"]);
    assert_eq!(source(attribute(subscription, "raw_message_delivery")), "each.value.raw_delivery");
    assert_eq!(source(attribute(subscription, "filter_policy")), "each.value.filter_policy");
    assert_eq!(source(attribute(subscription, "filter_policy_scope")), "\"MessageAttributes\"");
    let policy = source(attribute(block(&main, "resource", &["aws_sqs_queue_policy", "this"]), "policy"));
    for part in ["Sid = \"switchyard-topics\"", "\"sqs:SendMessage\"", "ArnEquals", "\"aws:SourceArn\" = each.value"] {
        assert!(policy.contains(part), "the queue policy the services check: {part} in {policy}");
    }
}

/// Every environment variable the configuration reads.
fn known_settings() -> BTreeSet<String> {
    let asked = std::cell::RefCell::new(BTreeSet::new());
    let _ = switchyard::config::Layer::from_env(|name| {
        asked.borrow_mut().insert(name.to_owned());
        None
    });
    asked.into_inner()
}

#[test]
fn the_client_example_tags_everything_and_feeds_the_runtime_config() {
    let main = parse("infra/terraform/clients/example/main.tf");
    let provider = block(&main, "provider", &["aws"]);
    let default_tags = provider.body().blocks().find(|b| b.identifier() == "default_tags").expect("default_tags");
    let tags = source(attribute(default_tags, "tags"));
    for tag in ["client", "environment", "service"] {
        assert!(tags.contains(&format!("{tag} =")), "cost-allocation tag {tag} on every resource: {tags}");
    }
    for module in ["topology", "messaging", "eventbus", "storage", "iam", "monitoring"] {
        let source = source(attribute(block(&main, "module", &[module]), "source"));
        assert_eq!(source, format!("\"../../modules/{module}\""));
    }

    let outputs = parse("infra/terraform/clients/example/outputs.tf");
    let runtime = attribute(block(&outputs, "output", &["runtime_env"]), "value");
    let Expression::Object(object) = runtime else { panic!("runtime_env is an object: {runtime}") };
    let known = known_settings();
    assert!(known.contains("SWITCHYARD_S3_BUCKET"), "{known:?}");
    for key in object.keys() {
        let name = key.to_string().trim_matches('"').to_owned();
        assert!(known.contains(&name), "runtime_env sets {name}, which the configuration does not read");
    }

    for environment in ["production", "staging"] {
        let file = format!("infra/terraform/clients/example/{environment}.tfvars");
        let vars = parse(&file);
        let value = |key: &str| {
            let expr = vars.attributes().find(|a| a.key() == key).map(|a| a.expr().clone());
            match expr {
                Some(Expression::String(text)) => text,
                other => panic!("{file}: {key} must be a string, found {other:?}"),
            }
        };
        assert_eq!(value("environment"), environment);
        InstanceName::parse(&value("instance")).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(!value("region").is_empty() && !value("client").is_empty());
    }
}

#[test]
fn each_worker_may_move_its_own_messages_to_its_dead_letter_queue() {
    // The consumer dead-letters a message after its third failed attempt itself:
    // send to the DLQ, then delete. Without the grant every give-up would fail on AWS.
    let text = source(&Expression::from(parse("infra/terraform/modules/iam/main.tf")));
    let statement = text
        .split("Sid = \"deadLetterOwnMessages\"")
        .nth(1)
        .unwrap_or_else(|| panic!("the worker roles have no deadLetterOwnMessages statement: {text}"));
    let statement = &statement[..statement.find('}').unwrap_or(statement.len())];
    assert!(statement.contains("\"sqs:SendMessage\""), "{statement}");
    assert!(statement.contains("var.dlq_arns[use_case]"), "only its own DLQ: {statement}");
}

#[test]
fn the_control_plane_may_park_dead_letters_and_send_only_to_source_queues() {
    let text = source(&Expression::from(parse("infra/terraform/modules/iam/main.tf")));
    let statement = |sid: &str| {
        let after = text
            .split(&format!("Sid = \"{sid}\""))
            .nth(1)
            .unwrap_or_else(|| panic!("the control-plane role has no {sid} statement: {text}"));
        after[..after.find('}').unwrap_or(after.len())].to_owned()
    };
    let park = statement("parkDeadLetters");
    for action in ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"] {
        assert!(park.contains(&format!("\"{action}\"")), "{action}: {park}");
    }
    assert!(park.contains("values(var.dlq_arns)") && !park.contains("queue_arns"), "dead-letter queues only: {park}");
    let redrive = statement("redriveToSourceQueues");
    assert!(redrive.contains("\"sqs:SendMessage\"") && !redrive.contains("Delete"), "{redrive}");
    assert!(redrive.contains("values(var.queue_arns)") && !redrive.contains("dlq"), "source queues only: {redrive}");
}
