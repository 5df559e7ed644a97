//! control-plane: the operator API and admin console. For now it serves its health
//! route; tenants, keys, queues and dead letters come next.
//!
//! Architecture invariant: like core-api, it reaches the outside world only through
//! the ports in `shared::ports`.

use std::net::TcpListener;

use actix_web::dev::Server;
use actix_web::{web, App, HttpResponse, HttpServer};
use serde_json::json;

async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok", "service": "control-plane"}))
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/health", web::get().to(health));
}

/// Builds the console's HTTP server on a listener the caller owns.
pub fn server(listener: TcpListener) -> std::io::Result<Server> {
    Ok(HttpServer::new(|| App::new().configure(configure))
        .listen(listener)?
        .workers(1)
        .disable_signals()
        .shutdown_timeout(10)
        .run())
}
