//! An event's journey: every step from the request to its effects, with its time, built
//! from the records the platform keeps anyway ([`EventRecords`]) and the topology.
//! Steps that have not happened yet are `pending`, with what they wait for.
//!
//! The steps, in order: `accepted` (idempotency key, the request's trace id),
//! `outbox_committed`, `published` (the topic), one `delivered` per queue whose
//! subscription takes the event, then per queue `handled` (the worker that applied it,
//! or is to), `dead_lettered` with every attempt and what happened to the copy
//! (`redriven`, `purged`), and last each `effect` (the row it wrote: status, result
//! object, the provider's id — a help-desk ticket is read from the result object).

use std::sync::Arc;

use serde_json::{json, Value};

use shared::ports::{EventRecords, ObjectStore, ParkedState};
use shared::topology::Topology;
use shared::{EventEnvelope, ObjectKey, Timestamp};

/// What a journey needs beyond the store: which queues subscribe to what, and the
/// result objects (for the provider ids they hold).
#[derive(Clone)]
pub struct JourneyContext {
    pub topology: Topology,
    pub objects: Option<Arc<dyn ObjectStore>>,
}

fn step(name: &str, state: &str, at: Option<Timestamp>) -> Value {
    json!({"step": name, "state": state, "at": at})
}

fn trace_id(envelope: &EventEnvelope) -> Option<String> {
    let parent = &envelope.trace_context.as_ref()?.traceparent;
    parent.split('-').nth(1).map(str::to_owned)
}

/// The journey of the event `records` describe; without a `context`, the steps after
/// publication are not shown.
pub async fn build(records: &EventRecords, context: Option<&JourneyContext>) -> Value {
    let outbox = &records.outbox;
    let envelope = EventEnvelope::from_json(&outbox.envelope).ok();
    let mut steps = Vec::new();

    let mut accepted = step("accepted", "done", Some(outbox.created_at));
    accepted["idempotency_key"] = json!(records.idempotency_key);
    accepted["trace_id"] = json!(envelope.as_ref().and_then(trace_id));
    steps.push(accepted);
    steps.push(step("outbox_committed", "done", Some(outbox.created_at)));

    let topic = match (&envelope, context) {
        (Some(e), Some(context)) => Some(context.topology.topic(e.source).name.clone()),
        _ => None,
    };
    let mut published = match (outbox.published_at, outbox.discarded_at, outbox.failed_at) {
        (Some(at), _, _) => step("published", "done", Some(at)),
        (None, Some(at), _) => {
            let mut s = step("published", "discarded", Some(at));
            s["reason"] = json!(outbox.discard_reason);
            s
        }
        (None, None, Some(at)) => {
            let mut s = step("published", "failed", Some(at));
            s["waiting_for"] = json!("an operator: the relay gave up on it (retry it from the failed outbox rows)");
            s
        }
        (None, None, None) => {
            let mut s = step("published", "pending", None);
            s["waiting_for"] = json!("the outbox relay");
            s
        }
    };
    published["topic"] = json!(topic);
    published["attempts"] = json!(outbox.attempts);
    published["last_error"] = json!(outbox.last_error);
    steps.push(published);

    // The queues whose subscriptions take this event, as the relay publishes it.
    let queues: Vec<&shared::topology::QueueSpec> = match (&envelope, &topic, context) {
        (Some(envelope), Some(topic), Some(context)) => {
            let message = envelope.to_message();
            let names: Vec<&str> = context
                .topology
                .subscriptions
                .iter()
                .filter(|s| &s.topic == topic && s.filter_policy.matches_message(&message.attributes, &message.body))
                .map(|s| s.queue.as_str())
                .collect();
            context.topology.queues.iter().filter(|q| names.contains(&q.name.as_str())).collect()
        }
        _ => Vec::new(),
    };
    let mut completed = true;
    let mut dead = false;
    for queue in &queues {
        let mut delivered = match outbox.published_at {
            Some(at) => step("delivered", "done", Some(at)),
            None => {
                let mut s = step("delivered", "pending", None);
                s["waiting_for"] = json!("its publication");
                s
            }
        };
        delivered["queue"] = json!(queue.name);
        steps.push(delivered);
        let worker = queue.use_case.as_str();
        let handled = records.handled.iter().find(|h| h.consumer == worker);
        let copies: Vec<_> = records.parked.iter().filter(|p| p.message.queue.as_str() == queue.name).collect();
        let mut handled_step = match handled {
            Some(h) => step("handled", "done", Some(h.at)),
            None if copies.iter().any(|p| p.state == ParkedState::Parked) => {
                dead = true;
                let mut s = step("handled", "dead_lettered", None);
                s["waiting_for"] = json!("an operator: redrive or purge its dead letter");
                s
            }
            None => {
                completed = false;
                let mut s = step("handled", "pending", None);
                s["waiting_for"] = json!(format!("the {worker} worker"));
                s
            }
        };
        handled_step["queue"] = json!(queue.name);
        handled_step["worker"] = json!(worker);
        steps.push(handled_step);
        for copy in copies {
            let mut s = step("dead_lettered", "done", Some(copy.message.dead_lettered_at));
            s["queue"] = json!(queue.name);
            s["dead_letter_id"] = json!(copy.id.to_string());
            s["error"] = json!(copy.message.error);
            s["attempts"] = json!(copy.message.attempts);
            steps.push(s);
            match copy.state {
                ParkedState::Redriven => {
                    let mut s = step("redriven", "done", None);
                    s["job_id"] = json!(copy.redriven_by);
                    s["queue"] = json!(queue.name);
                    steps.push(s);
                }
                ParkedState::Purged => {
                    let mut s = step("purged", "done", copy.purged_at);
                    s["queue"] = json!(queue.name);
                    steps.push(s);
                }
                ParkedState::Parked => {}
            }
        }
    }
    for effect in &records.effects {
        let mut s = step("effect", "done", Some(effect.updated_at));
        s["kind"] = json!(effect.kind);
        s["status"] = json!(effect.status);
        s["id"] = json!(effect.id);
        s["result_key"] = json!(effect.result_key);
        s["provider_id"] = json!(effect.provider_id);
        s["failure"] = json!(effect.failure);
        if effect.kind == "feedback" {
            s["ticket_id"] = ticket_of(effect.result_key.as_deref(), context).await;
        }
        steps.push(s);
    }
    let status = if outbox.discarded_at.is_some() {
        "discarded"
    } else if outbox.published_at.is_none() && outbox.failed_at.is_some() {
        "failed"
    } else if outbox.published_at.is_none() {
        "accepted"
    } else if dead {
        "dead_lettered"
    } else if completed {
        "completed"
    } else {
        "in_flight"
    };
    json!({
        "event_id": envelope.as_ref().map(|e| e.id.to_string()),
        "tenant_id": outbox.tenant,
        "type": envelope.as_ref().map(|e| e.event_type.to_string()),
        "occurred_at": envelope.as_ref().map(|e| e.occurred_at),
        "status": status,
        "steps": steps,
    })
}

/// The help-desk ticket a feedback's result object names, when it can be read.
async fn ticket_of(key: Option<&str>, context: Option<&JourneyContext>) -> Value {
    let (Some(key), Some(objects)) = (key, context.and_then(|c| c.objects.as_ref())) else { return Value::Null };
    let Ok(key) = ObjectKey::parse(key) else { return Value::Null };
    match objects.get(&key).await {
        Ok(Some(body)) => serde_json::from_slice::<Value>(&body).ok().map_or(Value::Null, |v| v["ticket_id"].clone()),
        _ => Value::Null,
    }
}
