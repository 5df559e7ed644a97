//! core-api: the tenant-facing REST API.
//!
//! Every write validates its body, authenticates the tenant, and commits the domain row
//! and its outbox row in one store transaction before answering 202 Accepted.
//!
//! Architecture invariant: this crate knows the store only through the store ports of
//! `shared::ports`; it never names a database, a transport or AWS.

pub mod auth;
pub mod body;
pub mod journey;
pub mod problem;
pub mod request;
mod routes;

pub use routes::access_requests::{view as access_request_view, REQUESTER_HEADER};

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::{web, App, HttpServer};

use shared::config::Plans;
use shared::limits::{per_second, Share, TenantRates};
use shared::ports::{
    AccessRequestStore, AnalyticsStore, EmailStore, EventLog, FeedbackStore, InvitationStore, Readiness, StoreBackend,
    TenantDirectory, WebhookStore,
};

pub use auth::{issue_api_key, IssuedKey};
pub use problem::ApiError;
pub use routes::webhooks::{
    new_secret as new_webhook_secret, sign as sign_webhook, MESSAGE_ID_HEADER, SIGNATURE_HEADER,
};

/// The largest request body the API accepts, in bytes.
pub const MAX_BODY_BYTES: usize = 262_144;

/// What every handler shares.
#[derive(Clone)]
pub struct ApiState {
    pub tenants: Arc<dyn TenantDirectory>,
    pub events: Arc<dyn EventLog>,
    pub feedback: Arc<dyn FeedbackStore>,
    pub emails: Arc<dyn EmailStore>,
    pub analytics: Arc<dyn AnalyticsStore>,
    pub access: Arc<dyn AccessRequestStore>,
    pub invitations: Arc<dyn InvitationStore>,
    pub webhooks: Arc<dyn WebhookStore>,
    pub readiness: Arc<dyn Readiness>,
    pub keys: Arc<auth::KeyCache>,
    /// Requests per second per tenant, by plan.
    pub rates: Arc<TenantRates>,
    /// Events' records, for their journeys.
    pub journeys: Arc<dyn shared::ports::EventJourneys>,
    /// The topology and result objects journeys read (none: journeys show no queues).
    pub journey: Option<Arc<journey::JourneyContext>>,
}

impl ApiState {
    /// The API's ports, all from `store`; `share`: how many API processes divide the
    /// plans' limits (see `shared::limits`).
    pub fn new(store: Arc<dyn StoreBackend>, plans: &Plans, share: &Share) -> Self {
        let rates = TenantRates::new(store.clone(), plans, |limits| per_second(limits.api_per_second)).sharing(share);
        Self {
            tenants: store.clone(),
            events: store.clone(),
            feedback: store.clone(),
            emails: store.clone(),
            analytics: store.clone(),
            access: store.clone(),
            invitations: store.clone(),
            webhooks: store.clone(),
            journeys: store.clone(),
            readiness: store,
            keys: Arc::default(),
            rates: Arc::new(rates),
            journey: None,
        }
    }

    /// The calling tenant, once its key is valid and its plan allows another request.
    pub(crate) async fn authenticate(&self, request: &actix_web::HttpRequest) -> Result<shared::TenantId, ApiError> {
        let tenant = auth::authenticate(request, self.tenants.as_ref(), &self.keys).await?;
        self.rates.check(tenant).await.map_err(|retry_after| ApiError::RateLimited { retry_after })?;
        Ok(tenant)
    }
}

/// Refuses an event the transport would refuse: the check runs before the row is
/// written, so nothing accepted is unpublishable.
pub(crate) fn publishable(envelope: &shared::EventEnvelope) -> Result<(), ApiError> {
    let size = envelope.message_size();
    if size > shared::ports::MAX_MESSAGE_BYTES {
        return Err(ApiError::MessageTooLarge { size, limit: shared::ports::MAX_MESSAGE_BYTES });
    }
    Ok(())
}

/// How long a readiness check waits for the store.
pub const READINESS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// `GET /livez`: the process is up and serving HTTP (it says nothing of its
/// dependencies, so an orchestrator does not restart it for a database outage).
pub async fn liveness() -> actix_web::HttpResponse {
    actix_web::HttpResponse::Ok().json(serde_json::json!({"status": "live"}))
}

/// `GET /readyz`: 200 once the store answers, else 503 problem+json with
/// `Retry-After`, within [`READINESS_TIMEOUT`] whatever the store does.
pub async fn readiness(store: &dyn Readiness) -> Result<actix_web::HttpResponse, ApiError> {
    match tokio::time::timeout(READINESS_TIMEOUT, store.ping()).await {
        Ok(Ok(())) => Ok(actix_web::HttpResponse::Ok().json(serde_json::json!({"status": "ready"}))),
        Ok(Err(error)) => Err(ApiError::Unavailable(error)),
        Err(_) => Err(ApiError::Unavailable(shared::ports::StoreError::Unavailable(
            format!("the store did not answer within {} s", READINESS_TIMEOUT.as_secs()).into(),
        ))),
    }
}

/// Registers the API's routes (used by the server and by in-process tests).
pub fn configure(cfg: &mut web::ServiceConfig) {
    problem::extractor_errors(cfg);
    cfg.route("/health", web::get().to(routes::health))
        .route("/livez", web::get().to(liveness))
        .route("/readyz", web::get().to(routes::ready))
        .service(
            web::scope("/v1")
                .route("/events", web::post().to(routes::events::create))
                .route("/events/{id}", web::get().to(routes::events::journey))
                .route("/feedback", web::post().to(routes::feedback::create))
                .route("/feedback/{id}", web::get().to(routes::feedback::get))
                .route("/emails", web::post().to(routes::emails::create))
                .route("/emails/{id}", web::get().to(routes::emails::get))
                .route("/access-requests", web::post().to(routes::access_requests::create))
                .route("/access-requests/mine", web::get().to(routes::access_requests::mine))
                .route("/testflight/invitations", web::post().to(routes::testflight::create))
                .route("/testflight/invitations/{id}", web::get().to(routes::testflight::get))
                .route("/analytics/events", web::post().to(routes::analytics::create))
                .route("/analytics/batches/{id}", web::get().to(routes::analytics::batch))
                .route("/analytics/reconciliation", web::get().to(routes::analytics::reconciliation))
                .route("/webhooks/events", web::get().to(routes::webhooks::events))
                .route("/webhooks/{source}", web::post().to(routes::webhooks::receive)),
        )
        .default_service(web::to(routes::not_found));
}

/// Builds the HTTP server on a listener the caller owns (port 0 in tests). The caller
/// stops it through `Server::handle()`; signals are left to the caller.
pub fn server(listener: TcpListener, state: ApiState) -> std::io::Result<Server> {
    let data = web::Data::new(state);
    let server = HttpServer::new(move || App::new().app_data(data.clone()).configure(configure))
        .listen(listener)?
        .disable_signals()
        .shutdown_timeout(10)
        .run();
    Ok(server)
}
