//! The App Store Connect client against a mock server: the ES256 token, inviting a new
//! tester, "already exists" as success, and failures.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::pkcs8::{EncodePrivateKey, LineEnding};
use serde_json::{json, Value};
use wiremock::matchers::{body_partial_json, method, path, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use adapters::providers::AppStoreConnect;
use shared::domain::EmailAddress;
use shared::ports::providers::{BetaInvite, BetaTesters, ProviderError};

fn key() -> (SigningKey, String) {
    let key = SigningKey::random(&mut rand::rngs::OsRng);
    let pem = key.to_pkcs8_pem(LineEnding::LF).expect("pem").to_string();
    (key, pem)
}

fn invite() -> BetaInvite {
    BetaInvite {
        email: EmailAddress::parse("tess@example.com").expect("email"),
        first_name: "Tess".into(),
        last_name: "Ter".into(),
        group_id: "group-1".into(),
    }
}

fn client(server: &MockServer, pem: &str) -> AppStoreConnect {
    AppStoreConnect::new(server.uri(), "KEY123", "issuer-uuid", pem).expect("client")
}

/// Checks a request's bearer token: its header, claims and ES256 signature.
fn assert_valid_token(request: &Request, verifying: &VerifyingKey) {
    let auth = request.headers.get("authorization").and_then(|v| v.to_str().ok()).expect("authorization");
    let token = auth.strip_prefix("Bearer ").expect("bearer");
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "{token}");
    let decode =
        |part: &str| -> Value { serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("b64")).expect("json") };
    assert_eq!(decode(parts[0]), json!({"alg": "ES256", "kid": "KEY123", "typ": "JWT"}));
    let claims = decode(parts[1]);
    assert_eq!((claims["iss"].as_str(), claims["aud"].as_str()), (Some("issuer-uuid"), Some("appstoreconnect-v1")));
    let lifetime = claims["exp"].as_u64().expect("exp") - claims["iat"].as_u64().expect("iat");
    assert!(lifetime <= 20 * 60, "Apple refuses tokens living longer than 20 minutes: {lifetime}");
    let signature = Signature::from_slice(&URL_SAFE_NO_PAD.decode(parts[2]).expect("b64")).expect("r || s");
    verifying.verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &signature).expect("signed by the API key");
}

#[tokio::test]
async fn a_new_tester_is_created_in_the_group_with_a_signed_token() {
    let server = MockServer::start().await;
    let (key, pem) = key();
    Mock::given(method("POST"))
        .and(path("/v1/betaTesters"))
        .and(body_partial_json(json!({"data": {
            "type": "betaTesters",
            "attributes": {"email": "tess@example.com", "firstName": "Tess", "lastName": "Ter"},
            "relationships": {"betaGroups": {"data": [{"type": "betaGroups", "id": "group-1"}]}},
        }})))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"data": {"type": "betaTesters", "id": "T1"}})))
        .expect(1)
        .mount(&server)
        .await;
    let receipt = client(&server, &pem).invite(&invite()).await.expect("invited");
    assert_eq!((receipt.tester_id.as_str(), receipt.already_existed), ("T1", false));
    let requests = server.received_requests().await.expect("recorded");
    assert_valid_token(&requests[0], key.verifying_key());
}

#[tokio::test]
async fn an_existing_tester_is_a_success_and_is_added_to_the_group() {
    let server = MockServer::start().await;
    let (_, pem) = key();
    let conflict = json!({"errors": [{"status": "409", "code": "ENTITY_ERROR.ATTRIBUTE.INVALID.DUPLICATE",
        "title": "The provided entity includes an attribute with a value that has already been used",
        "detail": "The email has already been used", "source": {"pointer": "/data/attributes/email"}}]});
    Mock::given(method("POST"))
        .and(path("/v1/betaTesters"))
        .respond_with(ResponseTemplate::new(409).set_body_json(conflict))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/betaTesters"))
        .and(query_param("filter[email]", "tess@example.com"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": [{"type": "betaTesters", "id": "T9"}]})))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/betaTesters/T9/relationships/betaGroups"))
        .and(body_partial_json(json!({"data": [{"type": "betaGroups", "id": "group-1"}]})))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    let receipt = client(&server, &pem).invite(&invite()).await.expect("already exists is a success");
    assert_eq!((receipt.tester_id.as_str(), receipt.already_existed), ("T9", true));
}

/// Whether an error is the expected kind.
type Classifier = fn(&ProviderError) -> bool;

#[tokio::test]
async fn failures_are_classified() {
    let (_, pem) = key();
    let cases: [(u16, &str, Classifier); 4] = [
        (429, "rate limited", |e| matches!(e, ProviderError::RateLimited { .. })),
        (503, "down", |e| matches!(e, ProviderError::Unavailable { .. })),
        (401, "bad key", |e| matches!(e, ProviderError::Rejected { status: 401, .. })),
        // A conflict for a tester that cannot be found is the conflict itself.
        (409, "other conflict", |e| matches!(e, ProviderError::Rejected { status: 409, .. })),
    ];
    for (status, what, expected) in cases {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v1/betaTesters"))
            .respond_with(
                ResponseTemplate::new(status).set_body_json(json!({"errors": [{"status": status.to_string()}]})),
            )
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/v1/betaTesters"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": []})))
            .mount(&server)
            .await;
        let error = client(&server, &pem).invite(&invite()).await.expect_err(what);
        assert!(expected(&error), "{what}: {error:?}");
        assert_eq!(error.is_retryable(), status == 429 || status == 503, "{what}");
    }
    assert!(AppStoreConnect::new("http://localhost", "K", "I", "not a key").is_err(), "a bad key fails at start-up");
}
