//! The store goes away for a minute while feedback flows: the API answers 503 with
//! `Retry-After` at once instead of waiting, `/readyz` says not ready while `/livez`
//! stays up, and the workers keep what they hold without spending its attempts, so
//! every accepted feedback completes after the store is back and none is failed or
//! dead-lettered.

use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

use shared::domain::FeedbackStatus;
use shared::topology::UseCase;
use shared::FeedbackId;

use crate::helpers::{empty_zendesk, json, spawn_app_behind_store_gateway, store, Gateway};

const OUTAGE: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minute_without_the_store_fails_nothing_that_was_accepted() {
    // A help desk that takes 150 ms a ticket keeps feedback in the worker's hands when
    // the store goes away.
    let zendesk = empty_zendesk().await;
    Mock::given(method("POST"))
        .and(path("/api/v2/tickets.json"))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(json!({"ticket": {"id": 7}}))
                .set_delay(Duration::from_millis(150)),
        )
        .mount(&zendesk)
        .await;
    let (app, gateway, target) = spawn_app_behind_store_gateway(&zendesk.uri()).await;
    let post = |n: u32| {
        let body = json!({"rating": 4, "message": format!("feedback {n}")});
        let request = app.client.post(format!("{}/v1/feedback", app.api_url)).bearer_auth(&app.acme.key).json(&body);
        async move {
            let started = Instant::now();
            let response = request.send().await.expect("request");
            (response, started.elapsed())
        }
    };

    // A burst right before the outage, so there is work in every stage when it starts.
    let burst = futures::future::join_all((0..60).map(post)).await;
    let mut accepted: Vec<String> = Vec::new();
    for (response, _) in burst {
        assert_eq!(response.status(), 202);
        accepted.push(json(response).await["id"].as_str().expect("id").to_owned());
    }
    let queue = app.topology.queue(UseCase::Feedback).name.clone();
    shared::testkit::eventually(Duration::from_secs(10), "the relay publishes the burst", || async {
        let stats = app.backends.transport.stats(&queue).await.expect("stats");
        if stats.visible + stats.in_flight >= 10 {
            Ok(())
        } else {
            Err(stats)
        }
    })
    .await;
    let port = gateway.stop();
    let down = Instant::now();
    let mut refused = 0;
    let mut n = 100;
    while down.elapsed() < OUTAGE {
        let (response, took) = post(n).await;
        n += 1;
        match response.status().as_u16() {
            202 => accepted.push(json(response).await["id"].as_str().expect("id").to_owned()),
            503 => {
                refused += 1;
                assert!(took < Duration::from_secs(2), "a 503 comes fast, not after a long wait: {took:?}");
                let retry_after =
                    response.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
                let kind = response.headers().get("content-type").and_then(|v| v.to_str().ok()).map(str::to_owned);
                assert_eq!(kind.as_deref(), Some("application/problem+json"));
                assert!(retry_after.is_some_and(|s| s.parse::<u64>().is_ok_and(|s| s > 0)), "Retry-After says when");
            }
            other => panic!("during a store outage the API answers 202 or 503, not {other}"),
        }
        if n % 20 == 0 {
            for base in [&app.api_url, &app.console_url] {
                let ready = app.client.get(format!("{base}/readyz")).send().await.expect("readyz");
                assert_eq!(ready.status(), 503, "{base} is not ready without its store");
                let live = app.client.get(format!("{base}/livez")).send().await.expect("livez");
                assert_eq!(live.status(), 200, "{base} is still alive");
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(refused > 10, "the outage was felt: {refused} refusals");

    let gateway = Gateway::start(port, target).await;
    let back = Instant::now();
    let store = store(&app);
    let mut pending = accepted.clone();
    while !pending.is_empty() && back.elapsed() < Duration::from_secs(30) {
        let mut still = Vec::new();
        for id in pending {
            let feedback = FeedbackId::parse(&id).expect("id");
            let status = match store.feedback(app.acme.id, feedback).await {
                Ok(Some(row)) => row.status,
                Ok(None) => panic!("{id} was accepted with 202 but has no row"),
                Err(_) => FeedbackStatus::Accepted,
            };
            assert_ne!(status, FeedbackStatus::Failed, "{id} was failed by the outage");
            if status != FeedbackStatus::Completed {
                still.push(id);
            }
        }
        pending = still;
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    assert!(pending.is_empty(), "{} accepted feedback not completed 30 s after the store came back", pending.len());
    let dlq = &app.topology.queue(UseCase::Feedback).dlq_name;
    assert!(app.backends.transport.dead_letters(dlq, 10).await.expect("dlq").is_empty(), "nothing dead-lettered");
    // Nor parked: the control plane drains dead-letter queues into the store.
    let parked = app.backends.store.parked(&shared::ports::ParkedFilter::default(), None, 10).await.expect("parked");
    assert!(parked.is_empty(), "nothing dead-lettered: {parked:?}");
    let ready = app.client.get(format!("{}/readyz", app.api_url)).send().await.expect("readyz");
    assert_eq!(ready.status(), 200, "ready again");
    gateway.stop();
}
