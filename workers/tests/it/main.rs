//! The relay, the consumer runtime and the feedback worker on the embedded engine.

mod access_requests;
mod alerts;
mod analytics;
mod consumer;
mod email;
mod feedback;
mod helpers;
mod parking;
mod redrive;
mod relay;
mod testflight;
mod webhooks;
