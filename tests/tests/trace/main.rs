//! Trace context crosses the bus: the consumer's span continues the API request's
//! trace, which continues the caller's. Its own binary, because it installs the
//! process-wide tracing subscriber (an in-memory OpenTelemetry exporter).

#[allow(dead_code)]
#[path = "../it/helpers.rs"]
mod helpers;

use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use serde_json::json;
use tracing_subscriber::layer::SubscriberExt;

use helpers::{json, spawn_app, Engine};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consumer_span_continues_the_producers_trace() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
    let subscriber =
        tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(provider.tracer("tests")));
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber in this binary");

    let app = spawn_app(Engine::Embedded).await;
    let (caller_trace, caller_span) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let response = app
        .client
        .post(format!("{}/v1/feedback", app.api_url))
        .bearer_auth(&app.acme.key)
        .header("traceparent", format!("00-{caller_trace}-{caller_span}-01"))
        .json(&json!({"message": "traced"}))
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), 202);

    let (producer, consumer) = shared::testkit::eventually(
        Duration::from_secs(10),
        "a producer span and a consumer span in one trace",
        || async {
            let _ = provider.force_flush();
            let spans = exporter.get_finished_spans().expect("spans");
            let producer = spans.iter().find(|s| s.name == "POST /v1/feedback").cloned();
            let consumer = producer.as_ref().and_then(|p| {
                spans
                    .iter()
                    .find(|s| s.name == "process message" && s.span_context.trace_id() == p.span_context.trace_id())
                    .cloned()
            });
            match (producer, consumer) {
                (Some(producer), Some(consumer)) => Ok((producer, consumer)),
                _ => Err(spans.len()),
            }
        },
    )
    .await;
    assert_eq!(producer.span_context.trace_id().to_string(), caller_trace, "the API continues the caller's trace");
    assert_eq!(producer.parent_span_id.to_string(), caller_span);
    assert_eq!(consumer.parent_span_id, producer.span_context.span_id(), "the consumer's parent is the API's span");
    let _ = json(app.get("/health", &app.acme.key).await).await;
}
