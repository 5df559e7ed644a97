//! The `switchyard` CLI's library half: configuration loading and the wiring that turns
//! a [`shared::config::Config`] into a running platform. `main.rs` only parses the
//! command line and calls into here.

pub mod config;
pub mod dev;
pub mod import;
pub mod operator;
pub mod platform;
pub mod terraform;
