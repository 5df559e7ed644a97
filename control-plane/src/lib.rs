//! control-plane: the operator API and admin console. Today: access-request decisions,
//! tenant settings (plan, alert webhook), the dead letters parked from every
//! dead-letter queue (browsed, redriven, purged and restored by plan), failed outbox
//! rows, queue statistics and the audit log, as a JSON API for named operators with
//! roles and the bootstrap admin (`SWITCHYARD_ADMIN_TOKEN`); see `audit`.
//!
//! Architecture invariant: like core-api, it reaches the outside world only through
//! the ports in `shared::ports`.

mod access_requests;
pub mod audit;
mod captures;
mod dead_letters;
mod events;
mod keys;
mod operators;
mod outbox;
mod page;
mod plans;
mod queues;
mod tenants;

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use serde_json::json;

use core_api::ApiError;
use shared::config::{Plans, Secret};
use shared::ports::providers::CapturedCalls;
use shared::ports::{
    AccessRequestStore, AuditLog, DeadLetterParking, DeadLetterPlans, EventJourneys, Operators, Outbox, Readiness,
    TenantDirectory, Transport, WorkerHealth,
};

pub use plans::{RedriveSettings, PLAN_TTL};
use shared::topology::Topology;

/// What every handler shares.
#[derive(Clone)]
pub struct ConsoleState {
    pub tenants: Arc<dyn TenantDirectory>,
    pub access: Arc<dyn AccessRequestStore>,
    pub readiness: Arc<dyn Readiness>,
    /// The bootstrap admin's bearer token (named operators have their own).
    pub admin_token: Option<Secret>,
    /// Named operators and their roles.
    pub operators: Arc<dyn Operators>,
    /// Where every operator action is recorded.
    pub audit: Arc<dyn AuditLog>,
    /// The plans a tenant can be put on.
    pub plans: Plans,
    /// Provider calls captured instead of made (`dev`), for operators to look at.
    pub captures: Option<Arc<dyn CapturedCalls>>,
    /// Which URLs a tenant's alert webhook may have.
    pub webhooks: shared::domain::WebhookPolicy,
    /// Dead letters drained from their queues.
    pub parking: Arc<dyn DeadLetterParking>,
    /// Plans over the parked dead letters, and redrive jobs.
    pub plans_store: Arc<dyn DeadLetterPlans>,
    /// Redrive rates and the purge retention.
    pub redrive: RedriveSettings,
    /// The deployment's queues, by name and use case.
    pub topology: Topology,
    /// Events' records and what their journeys read besides.
    pub journeys: Arc<dyn EventJourneys>,
    pub journey: Arc<core_api::journey::JourneyContext>,
    /// Queue depths for `GET /v1/queues`.
    pub transport: Arc<dyn Transport>,
    pub outbox: Arc<dyn Outbox>,
    /// Workers' reports (the oldest message's age where the transport cannot say).
    pub health: Arc<dyn WorkerHealth>,
    /// How often processes report themselves: reports older than three are stale.
    pub report_interval: std::time::Duration,
}

async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok", "service": "control-plane"}))
}

async fn ready(state: web::Data<ConsoleState>) -> Result<HttpResponse, ApiError> {
    core_api::readiness(state.readiness.as_ref()).await
}

async fn not_found(request: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound(format!("route {} {}", request.method(), request.path())))
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    core_api::problem::extractor_errors(cfg);
    cfg.route("/health", web::get().to(health))
        .route("/livez", web::get().to(core_api::liveness))
        .route("/readyz", web::get().to(ready))
        .service(
            web::scope("/v1")
                .route("/audit", web::get().to(audit::list))
                .route("/access-requests", web::get().to(access_requests::list))
                .route("/access-requests/{ticket}", web::get().to(access_requests::get))
                .route("/access-requests/{ticket}/approve", web::post().to(access_requests::approve))
                .route("/access-requests/{ticket}/reject", web::post().to(access_requests::reject))
                .route("/captures", web::get().to(captures::kinds))
                .route("/captures/{kind}", web::get().to(captures::list))
                .route("/dead-letters", web::get().to(dead_letters::list))
                .route("/dead-letters/groups", web::get().to(dead_letters::groups))
                .route("/dead-letters/redrive", web::post().to(plans::redrive))
                .route("/dead-letters/purge", web::post().to(plans::purge))
                .route("/dead-letters/restore", web::post().to(plans::restore))
                .route("/outbox/failed", web::get().to(outbox::failed))
                .route("/outbox/retry", web::post().to(plans::retry_outbox))
                .route("/outbox/discard", web::post().to(plans::discard_outbox))
                .route("/events/{id}", web::get().to(events::journey))
                .route("/operators", web::get().to(operators::list))
                .route("/operators", web::post().to(operators::create))
                .route("/operators/{name}", web::delete().to(operators::revoke))
                .route("/queues", web::get().to(queues::list))
                .route("/jobs/{id}", web::get().to(plans::job))
                .route("/jobs/{id}/cancel", web::post().to(plans::cancel))
                .route("/dead-letters/{id}", web::get().to(dead_letters::get))
                .route("/tenants", web::get().to(keys::list))
                .route("/tenants", web::post().to(keys::create))
                .route("/tenants/{id}/keys", web::get().to(keys::keys))
                .route("/tenants/{id}/keys", web::post().to(keys::create_key))
                .route("/tenants/{id}/keys/{key_id}", web::delete().to(keys::revoke_key))
                .route("/tenants/{id}", web::get().to(tenants::get))
                .route("/tenants/{id}", web::patch().to(tenants::update)),
        )
        .default_service(web::to(not_found));
}

/// Builds the console's HTTP server on a listener the caller owns.
pub fn server(listener: TcpListener, state: ConsoleState) -> std::io::Result<Server> {
    let data = web::Data::new(state);
    Ok(HttpServer::new(move || App::new().app_data(data.clone()).configure(configure))
        .listen(listener)?
        .workers(1)
        .disable_signals()
        .shutdown_timeout(10)
        .run())
}
