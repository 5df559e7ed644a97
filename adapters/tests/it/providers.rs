//! Provider clients against a mock server speaking each provider's documented shapes.

use std::time::{Duration, Instant};

use serde_json::json;
use wiremock::matchers::{body_partial_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use adapters::providers::{DiscordWebhook, SendGrid, Zendesk};
use shared::config::Secret;
use shared::domain::EmailAddress;
use shared::ports::providers::{
    Alert, AlertSink, Email, EmailBody, EmailSender, ProviderError, Ticket, TicketDesk, TicketRef,
};

fn address(text: &str) -> EmailAddress {
    EmailAddress::parse(text).expect("address")
}

fn email(body: EmailBody) -> Email {
    Email {
        to: address("ana@example.com"),
        from: address("support@acme.example"),
        subject: "Thanks for your feedback".into(),
        body,
        reference: "evt_0192f3a4b5c6d7e8f9a0b1c2d3e4f5a6".into(),
    }
}

#[tokio::test]
async fn sendgrid_sends_content_and_templates_and_classifies_failures() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v3/mail/send"))
        .and(header("authorization", "Bearer SG.key"))
        .and(body_partial_json(json!({
            "personalizations": [{"to": [{"email": "ana@example.com"}]}],
            "from": {"email": "support@acme.example"},
            "subject": "Thanks for your feedback",
            "content": [{"type": "text/plain", "value": "Hi"}, {"type": "text/html", "value": "<p>Hi</p>"}],
            "custom_args": {"switchyard_reference": "evt_0192f3a4b5c6d7e8f9a0b1c2d3e4f5a6"}
        })))
        .respond_with(ResponseTemplate::new(202).insert_header("X-Message-Id", "msg-1"))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v3/mail/send"))
        .and(body_partial_json(json!({
            "template_id": "d-123",
            "personalizations": [{"dynamic_template_data": {"name": "Ana"}}]
        })))
        .respond_with(ResponseTemplate::new(202))
        .expect(1)
        .mount(&server)
        .await;
    let sendgrid = SendGrid::new(server.uri(), Secret::new("SG.key"));
    let receipt = sendgrid
        .send(&email(EmailBody::Content { text: Some("Hi".into()), html: Some("<p>Hi</p>".into()) }))
        .await
        .expect("sent");
    assert_eq!(receipt.message_id.as_deref(), Some("msg-1"));
    let variables = json!({"name": "Ana"}).as_object().cloned().unwrap_or_default();
    sendgrid.send(&email(EmailBody::Template { id: "d-123".into(), variables })).await.expect("template sent");

    let failing = MockServer::start().await;
    for (status, body) in [(400, r#"{"errors":[{"message":"The to email does not contain a valid address."}]}"#)] {
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(status).set_body_string(body))
            .mount(&failing)
            .await;
    }
    let error = SendGrid::new(failing.uri(), Secret::new("k"))
        .send(&email(EmailBody::Content { text: Some("x".into()), html: None }))
        .await
        .expect_err("rejected");
    assert!(
        matches!(&error, ProviderError::Rejected { status: 400, reason, .. } if reason.contains("valid address")),
        "{error:?}"
    );
    assert!(!error.is_retryable());

    let busy = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "7"))
        .mount(&busy)
        .await;
    let error = SendGrid::new(busy.uri(), Secret::new("k"))
        .send(&email(EmailBody::Content { text: Some("x".into()), html: None }))
        .await
        .expect_err("throttled");
    assert_eq!(error, ProviderError::RateLimited { provider: "sendgrid", retry_after: Some(Duration::from_secs(7)) });
    assert!(error.is_retryable());

    let down = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(503)).mount(&down).await;
    let error = SendGrid::new(down.uri(), Secret::new("k"))
        .send(&email(EmailBody::Content { text: Some("x".into()), html: None }))
        .await
        .expect_err("down");
    assert!(matches!(error, ProviderError::Unavailable { .. }), "{error:?}");
}

fn ticket() -> Ticket {
    Ticket {
        external_id: "evt_1".into(),
        requester_email: Some(address("ana@example.com")),
        requester_name: Some("Ana".into()),
        subject: "Feedback: 4/5".into(),
        comment: "The export button is hard to find".into(),
        tags: vec!["switchyard".into(), "feedback".into()],
    }
}

#[tokio::test]
async fn zendesk_looks_up_the_external_id_before_creating_a_ticket() {
    let server = MockServer::start().await;
    // "agent@acme.example/token:secret" in base64.
    let auth = "Basic YWdlbnRAYWNtZS5leGFtcGxlL3Rva2VuOnNlY3JldA==";
    Mock::given(method("GET"))
        .and(path("/api/v2/tickets.json"))
        .and(query_param("external_id", "evt_1"))
        .and(header("authorization", auth))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"tickets": [], "count": 0})))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/v2/tickets.json"))
        .and(header("authorization", auth))
        .and(body_partial_json(json!({"ticket": {
            "subject": "Feedback: 4/5",
            "comment": {"body": "The export button is hard to find"},
            "requester": {"email": "ana@example.com", "name": "Ana"},
            "tags": ["switchyard", "feedback"],
            "external_id": "evt_1"
        }})))
        .respond_with(
            ResponseTemplate::new(201).set_body_json(json!({"ticket": {"id": 35436, "external_id": "evt_1"}})),
        )
        .expect(1)
        .mount(&server)
        .await;
    // The retry finds the ticket the first attempt created.
    Mock::given(method("GET"))
        .and(path("/api/v2/tickets.json"))
        .and(query_param("external_id", "evt_1"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"tickets": [{"id": 35436, "external_id": "evt_1"}], "count": 1})),
        )
        .mount(&server)
        .await;
    let zendesk = Zendesk::new(server.uri(), "agent@acme.example", Secret::new("secret"));
    assert_eq!(zendesk.create_ticket(&ticket()).await.expect("created"), TicketRef { id: 35436, created: true });
    assert_eq!(zendesk.create_ticket(&ticket()).await.expect("found"), TicketRef { id: 35436, created: false });
}

fn alert() -> Alert {
    Alert {
        title: "Message in a dead-letter queue".into(),
        description: "acme-feedback-dlq.fifo has 1 message".into(),
        fields: vec![("queue".into(), "acme-feedback-dlq.fifo".into()), ("tenant".into(), "ten_1".into())],
        colour: 0xE74C3C,
        url: Some("https://console.example/queues".into()),
    }
}

#[tokio::test]
async fn discord_posts_embeds_and_honours_retry_after() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/webhooks/1/token"))
        .respond_with(
            ResponseTemplate::new(429)
                .set_body_json(json!({"message": "You are being rate limited.", "retry_after": 0.3, "global": false})),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/webhooks/1/token"))
        .and(body_partial_json(json!({"embeds": [{
            "title": "Message in a dead-letter queue",
            "description": "acme-feedback-dlq.fifo has 1 message",
            "color": 0xE74C3C,
            "url": "https://console.example/queues",
            "fields": [{"name": "queue", "value": "acme-feedback-dlq.fifo", "inline": false}, {"name": "tenant", "value": "ten_1", "inline": false}]
        }]})))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    let discord = DiscordWebhook::new(Secret::new(format!("{}/api/webhooks/1/token", server.uri())));
    let started = Instant::now();
    discord.post(&alert()).await.expect("posted after the wait");
    assert!(started.elapsed() >= Duration::from_millis(300), "waited retry_after before the second attempt");

    let hostile = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(429).set_body_json(json!({"retry_after": 3600.0, "global": true})))
        .mount(&hostile)
        .await;
    let error = DiscordWebhook::new(Secret::new(format!("{}/api/webhooks/1/token", hostile.uri())))
        .post(&alert())
        .await
        .expect_err("too long to wait in-line");
    assert_eq!(error, ProviderError::RateLimited { provider: "discord", retry_after: Some(Duration::from_secs(3600)) });
}
