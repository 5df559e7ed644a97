//! End-to-end suites: the whole platform in-process, on the embedded engine and on
//! PostgreSQL with the embedded transport.

mod access_requests;
mod alarms;
mod analytics;
mod api;
mod dead_letters;
mod emails;
mod failed_outbox;
mod flow;
mod helpers;
mod journeys;
mod keys;
mod outage;
mod plans;
mod queues;
mod roles;
mod store_outage;
mod testflight;
mod webhooks;
