//! App Store Connect: TestFlight beta testers.
//!
//! Requests carry an ES256 JWT made from the API key (key id, issuer id and the `.p8`
//! private key): header `{"alg": "ES256", "kid": <key id>, "typ": "JWT"}`, claims
//! `{"iss": <issuer id>, "iat", "exp" (20 minutes at most), "aud": "appstoreconnect-v1"}`.
//! A token is reused until five minutes before it expires.
//!
//! Inviting creates the tester in the group (`POST /v1/betaTesters`). App Store Connect
//! answers 409 when the tester exists; the tester is then looked up by email and added
//! to the group (`POST /v1/betaTesters/{id}/relationships/betaGroups`, idempotent), so
//! "already exists" is a success that still leaves the tester in the requested group.

use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::DecodePrivateKey;
use serde_json::{json, Value};

use shared::ports::providers::{BetaInvite, BetaInviteReceipt, BetaTesters, ProviderError};

use super::{failure, http_client, network_failure};

const PROVIDER: &str = "app-store-connect";
pub const DEFAULT_URL: &str = "https://api.appstoreconnect.apple.com";
const TOKEN_LIFETIME: Duration = Duration::from_secs(20 * 60);
const RENEW_BEFORE: Duration = Duration::from_secs(5 * 60);

#[derive(Debug, thiserror::Error)]
#[error("the App Store Connect private key is not a PKCS#8 P-256 key (the .p8 file's contents): {0}")]
pub struct KeyError(String);

pub struct AppStoreConnect {
    client: reqwest::Client,
    base_url: String,
    key_id: String,
    issuer_id: String,
    key: SigningKey,
    /// The current token and when it expires (Unix seconds).
    token: Mutex<Option<(String, u64)>>,
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default()
}

/// An ES256 JWT for App Store Connect, valid from `now` for [`TOKEN_LIFETIME`].
pub fn token(key: &SigningKey, key_id: &str, issuer_id: &str, now: u64) -> String {
    let header = json!({"alg": "ES256", "kid": key_id, "typ": "JWT"});
    let claims = json!({
        "iss": issuer_id,
        "iat": now,
        "exp": now + TOKEN_LIFETIME.as_secs(),
        "aud": "appstoreconnect-v1",
    });
    let signing_input =
        format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
    // JWS ES256 signatures are the raw 64-byte r || s, not DER.
    let signature: Signature = key.sign(signing_input.as_bytes());
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
}

impl AppStoreConnect {
    pub fn new(
        base_url: impl Into<String>,
        key_id: impl Into<String>,
        issuer_id: impl Into<String>,
        private_key_pem: &str,
    ) -> Result<Self, KeyError> {
        let key = SigningKey::from_pkcs8_pem(private_key_pem.trim()).map_err(|e| KeyError(e.to_string()))?;
        Ok(Self {
            client: http_client(),
            base_url: base_url.into().trim_end_matches('/').to_owned(),
            key_id: key_id.into(),
            issuer_id: issuer_id.into(),
            key,
            token: Mutex::new(None),
        })
    }

    fn bearer(&self) -> String {
        let now = unix_now();
        let mut current = self.token.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match &*current {
            Some((token, expires)) if now + RENEW_BEFORE.as_secs() < *expires => token.clone(),
            _ => {
                let fresh = token(&self.key, &self.key_id, &self.issuer_id, now);
                *current = Some((fresh.clone(), now + TOKEN_LIFETIME.as_secs()));
                fresh
            }
        }
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, format!("{}{path}", self.base_url)).bearer_auth(self.bearer())
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Response, ProviderError> {
        request.send().await.map_err(|e| network_failure(PROVIDER, e))
    }

    async fn tester_by_email(&self, email: &str) -> Result<Option<String>, ProviderError> {
        let response = self
            .send(
                self.request(reqwest::Method::GET, "/v1/betaTesters")
                    .query(&[("filter[email]", email), ("limit", "1")]),
            )
            .await?;
        if !response.status().is_success() {
            return Err(failure(PROVIDER, response).await);
        }
        let body: Value = response.json().await.map_err(|e| network_failure(PROVIDER, e))?;
        Ok(body["data"].as_array().and_then(|d| d.first()).and_then(|t| t["id"].as_str()).map(str::to_owned))
    }

    async fn add_to_group(&self, tester: &str, group: &str) -> Result<(), ProviderError> {
        let body = json!({"data": [{"type": "betaGroups", "id": group}]});
        let path = format!("/v1/betaTesters/{tester}/relationships/betaGroups");
        let response = self.send(self.request(reqwest::Method::POST, &path).json(&body)).await?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(failure(PROVIDER, response).await)
        }
    }
}

#[async_trait]
impl BetaTesters for AppStoreConnect {
    async fn invite(&self, invite: &BetaInvite) -> Result<BetaInviteReceipt, ProviderError> {
        let body = json!({
            "data": {
                "type": "betaTesters",
                "attributes": {
                    "email": invite.email.as_str(),
                    "firstName": invite.first_name,
                    "lastName": invite.last_name,
                },
                "relationships": {
                    "betaGroups": {"data": [{"type": "betaGroups", "id": invite.group_id}]},
                },
            }
        });
        let response = self.send(self.request(reqwest::Method::POST, "/v1/betaTesters").json(&body)).await?;
        if response.status().is_success() {
            let created: Value = response.json().await.map_err(|e| network_failure(PROVIDER, e))?;
            let tester_id = created["data"]["id"].as_str().map(str::to_owned).ok_or_else(|| {
                ProviderError::Unavailable { provider: PROVIDER, detail: "the response has no beta tester id".into() }
            })?;
            return Ok(BetaInviteReceipt { tester_id, already_existed: false });
        }
        if response.status().as_u16() != 409 {
            return Err(failure(PROVIDER, response).await);
        }
        // 409: the tester exists (or the request conflicts otherwise: then no tester
        // with this email is found and the conflict is the answer).
        let conflict = failure(PROVIDER, response).await;
        match self.tester_by_email(invite.email.as_str()).await? {
            Some(tester_id) => {
                self.add_to_group(&tester_id, &invite.group_id).await?;
                Ok(BetaInviteReceipt { tester_id, already_existed: true })
            }
            None => Err(conflict),
        }
    }
}
