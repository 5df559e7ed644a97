//! Switchyard's benchmarks. Each reports ratios measured in one run on one machine.
//!
//! - `api`: `POST /v1/events` on PostgreSQL at N connections (requests/s, p50, p99),
//!   next to pgbench running the outbox's single-row INSERT at N clients.
//! - `e2e`: feedback end to end (202 → status completed) on the embedded engine at a
//!   steady request rate (p50, p99).
//! - `drain`: how fast the relay and the feedback worker drain a stored backlog, by
//!   its size (5,000 next to 50,000).
//! - `pipeline`: bursts (completions/s, drain time), the sustainable rate next to the
//!   API-only ingest rate, for 1 and 10 tenants, on both stores.
//! - `fairness`: one tenant's flood next to another tenant's steady traffic.
//! - `aws-calls`: AWS API calls per operation for feedback end to end on an
//!   AWS-compatible server, next to a naive one-call-per-message-per-step flow, and
//!   the relay's added latency.
//! - `dead-letters`: the operators' first page of 100,000 parked dead letters through
//!   the control plane, unfiltered and filtered, on both stores.
//!
//! Run `bench/run` to do both and write `bench/results/latest.md`.

mod api;
mod aws_calls;
mod dead_letters;
mod drain;
mod e2e;
mod pipeline;
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
    /// How fast a stored backlog of feedback drains, by its size.
    Drain {
        /// Backlog sizes, smallest first; the ratio compares the last with the first.
        #[arg(long, value_delimiter = ',', default_values_t = [5_000, 50_000])]
        backlogs: Vec<usize>,
        #[arg(long, value_delimiter = ',', default_values_t = [String::from("sqlite"), String::from("postgres")])]
        stores: Vec<String>,
        /// Each run stops here if it has not drained.
        #[arg(long, default_value_t = 180)]
        limit_seconds: u64,
    },
    /// Bursts and the sustainable rate of the pipeline, by store and tenant count.
    Pipeline {
        #[arg(long, value_delimiter = ',', default_values_t = [String::from("sqlite"), String::from("postgres")])]
        stores: Vec<String>,
        #[arg(long, value_delimiter = ',', default_values_t = [1, 10])]
        tenants: Vec<usize>,
        /// Burst lengths in seconds.
        #[arg(long, value_delimiter = ',', default_values_t = [1, 3, 15])]
        bursts: Vec<u64>,
        /// How long each paced trial holds its rate.
        #[arg(long, default_value_t = 60)]
        trial_seconds: u64,
        #[arg(long, default_value_t = 16)]
        connections: usize,
        /// Only trials at these rates (feedback/s), each reported held or not: for
        /// profiling one rate, instead of the bursts and the bisection.
        #[arg(long, value_delimiter = ',')]
        at: Vec<f64>,
    },
    /// One tenant's flood next to another tenant's steady traffic.
    Fairness {
        #[arg(long, default_value_t = 50_000)]
        flood: u64,
        #[arg(long, default_value_t = 20.0)]
        rate: f64,
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        #[arg(long, default_value_t = 16)]
        connections: usize,
    },
    /// The first page of parked dead letters through the control plane.
    DeadLetters {
        #[arg(long, value_delimiter = ',', default_values_t = [String::from("sqlite"), String::from("postgres")])]
        stores: Vec<String>,
        #[arg(long, default_value_t = 100_000)]
        count: usize,
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
        Command::Drain { backlogs, stores, limit_seconds } => {
            let stores = stores.iter().map(|s| s.parse()).collect::<Result<Vec<pipeline::Store>, String>>();
            runtime.block_on(drain::run(&stores.map_err(anyhow::Error::msg)?, &backlogs, limit_seconds))
        }
        Command::Pipeline { stores, tenants, bursts, trial_seconds, connections, at } => {
            let stores = stores.iter().map(|s| s.parse()).collect::<Result<Vec<pipeline::Store>, String>>();
            let stores = stores.map_err(anyhow::Error::msg)?;
            let options = pipeline::Options { stores, tenants, bursts, trial_seconds, connections, at };
            runtime.block_on(pipeline::run(options))
        }
        Command::Fairness { flood, rate, seconds, connections } => {
            runtime.block_on(pipeline::fairness(flood, rate, seconds, connections))
        }
        Command::DeadLetters { stores, count } => {
            let stores = stores.iter().map(|s| s.parse()).collect::<Result<Vec<pipeline::Store>, String>>();
            runtime.block_on(dead_letters::run(&stores.map_err(anyhow::Error::msg)?, count))
        }
        Command::AwsCalls { events, tenants, rate } => runtime.block_on(aws_calls::run(events, tenants, rate)),
    }
}
