//! Switchyard's benchmarks. Each reports ratios measured in one run on one machine.
//!
//! - `api`: `POST /v1/events` on PostgreSQL at N connections (requests/s, p50, p99),
//!   next to pgbench running the outbox's single-row INSERT at N clients.
//! - `e2e`: feedback end to end (202 → status completed) on the embedded engine at a
//!   steady request rate (p50, p99).
//! - `aws-calls`: AWS API calls per operation for feedback end to end on an
//!   AWS-compatible server, next to a naive one-call-per-message-per-step flow, and
//!   the relay's added latency.
//!
//! Run `bench/run` to do both and write `bench/results/latest.md`.

mod api;
mod aws_calls;
mod e2e;
mod stats;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "switchyard-bench")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// API throughput on PostgreSQL next to pgbench.
    Api {
        #[arg(long, default_value_t = 64)]
        connections: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// AWS API calls per operation for feedback end to end on an AWS-compatible server.
    AwsCalls {
        #[arg(long, default_value_t = 1000)]
        events: u64,
        #[arg(long, default_value_t = 10)]
        tenants: u64,
        /// Requests per second across all tenants; 0 sends as fast as possible.
        #[arg(long, default_value_t = 0)]
        rate: u64,
    },
    /// End-to-end feedback latency on the embedded engine at a steady rate.
    E2e {
        #[arg(long, default_value_t = 200)]
        rate: u64,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match cli.command {
        Command::Api { connections, seconds } => runtime.block_on(api::run(connections, seconds)),
        Command::E2e { rate, seconds } => runtime.block_on(e2e::run(rate, seconds)),
        Command::AwsCalls { events, tenants, rate } => runtime.block_on(aws_calls::run(events, tenants, rate)),
    }
}
