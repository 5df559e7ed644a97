//! `switchyard`: run the platform, manage tenants and keys, test event patterns.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use shared::config::{AwsSettings, ObjectStoreConfig, StoreConfig, TransportConfig};
use shared::pattern::EventPattern;
use shared::topology::UseCase;
use shared::TenantId;
use switchyard::config::{self, Layer};
use switchyard::dev;
use switchyard::operator::{self, Action, ControlPlane, DeadLetterFilter, Manner, Page};
use switchyard::platform::{Backends, Component, Platform};

#[derive(Parser)]
#[command(name = "switchyard", version, about = "Multi-tenant event platform")]
struct Cli {
    /// A TOML config file (settings as in `SWITCHYARD_*`, lowercase, without the prefix).
    #[arg(long, global = true, env = "SWITCHYARD_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole platform on one machine (embedded engine unless configured otherwise).
    Dev {
        /// Where the embedded engine keeps its data.
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        #[arg(long, value_name = "ADDR")]
        api_addr: Option<String>,
        #[arg(long, value_name = "ADDR")]
        console_addr: Option<String>,
    },
    /// Run one component (or all) on the configured engine, as in production.
    Serve {
        #[command(subcommand)]
        target: ServeTarget,
    },
    /// Compare, create or verify the messaging topology on AWS.
    Topology {
        #[command(subcommand)]
        command: TopologyCommand,
    },
    /// Apply the configured store's migrations.
    Migrate,
    /// Manage tenants.
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// Manage tenant API keys.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Manage inbound-webhook secrets.
    Webhook {
        #[command(subcommand)]
        command: WebhookCommand,
    },
    /// Work with EventBridge-style event patterns.
    Pattern {
        #[command(subcommand)]
        command: PatternCommand,
    },
    /// Dead letters, through the control plane: list, show, groups, redrive, purge,
    /// restore (SWITCHYARD_CONTROL_PLANE_URL and SWITCHYARD_OPERATOR_TOKEN; under
    /// `dev`, its credentials file).
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Outbox rows the relay gave up on: list, retry, discard.
    Outbox {
        #[command(subcommand)]
        command: OutboxCommand,
    },
    /// Each queue's depth and oldest message, and the outbox's backlog.
    Queues {
        #[arg(long)]
        json: bool,
    },
    /// A redrive job: its progress, or cancel it.
    Job {
        #[command(subcommand)]
        command: JobCommand,
    },
    /// Bring records across from the backend Switchyard replaces.
    Import {
        #[command(subcommand)]
        command: ImportCommand,
    },
    /// What happened to events (through the control plane).
    Events {
        #[command(subcommand)]
        command: EventsCommand,
    },
    /// Named operators of the control plane (on the configured store).
    Operator {
        #[command(subcommand)]
        command: OperatorCommand,
    },
    /// What operators did, newest first (through the control plane).
    Audit {
        #[arg(long)]
        operator: Option<String>,
        /// The route (`POST /v1/dead-letters/purge`) or command.
        #[arg(long)]
        action: Option<String>,
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        from: Option<String>,
        #[arg(long)]
        to: Option<String>,
        #[command(flatten)]
        page: Page,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum EventsCommand {
    /// One event's journey: every step from the request to its effects.
    Show {
        event_id: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum ImportCommand {
    /// An export of `organization_access_requests` (JSON lines, or CSV with a header):
    /// each request under its own ticket number, once; new tickets continue after the
    /// highest imported one.
    AccessRequests {
        file: PathBuf,
        /// The tenant whose application the requests came through.
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum OperatorCommand {
    /// Create an operator and print its token (shown only this once; stored hashed).
    Create {
        name: String,
        /// viewer, operator or admin.
        #[arg(long)]
        role: String,
        #[arg(long)]
        json: bool,
    },
    /// Every operator with its role, revoked ones too.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke an operator's token (at once, on every control-plane process).
    Revoke { name: String },
}

#[derive(Subcommand)]
enum DlqCommand {
    /// Parked dead letters, newest first.
    List {
        #[command(flatten)]
        filter: DeadLetterFilter,
        /// parked (the default), purged or redriven.
        #[arg(long)]
        state: Option<String>,
        #[command(flatten)]
        page: Page,
        #[arg(long)]
        json: bool,
    },
    /// One dead letter with its message and every attempt.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Dead letters by error group, largest first.
    Groups {
        #[command(flatten)]
        filter: DeadLetterFilter,
        #[arg(long)]
        json: bool,
    },
    /// Send dead letters back to their queues, in their order, as a job.
    Redrive {
        #[command(flatten)]
        chosen: Chosen,
        /// Messages a minute (the queue's provider rate caps it).
        #[arg(long)]
        rate_per_minute: Option<u32>,
    },
    /// Purge dead letters (restorable for the retention period).
    Purge(Chosen),
    /// Restore purged dead letters.
    Restore(Chosen),
}

/// The dead letters an action is for, and how it goes.
#[derive(clap::Args)]
struct Chosen {
    /// These dead letters (repeat the flag); without, the filter's.
    #[arg(long = "id", value_name = "ID")]
    ids: Vec<String>,
    #[command(flatten)]
    filter: DeadLetterFilter,
    /// Do it without asking.
    #[arg(long)]
    yes: bool,
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum OutboxCommand {
    /// Failed outbox rows, newest first, with why.
    Failed {
        #[arg(long)]
        tenant: Option<String>,
        #[command(flatten)]
        page: Page,
        #[arg(long)]
        json: bool,
    },
    /// Make failed rows pending again, for the relay to publish.
    Retry {
        #[arg(long = "id", value_name = "SEQ")]
        ids: Vec<String>,
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        yes: bool,
        #[arg(long)]
        json: bool,
    },
    /// Discard failed rows (kept, never published).
    Discard {
        #[arg(long = "id", value_name = "SEQ")]
        ids: Vec<String>,
        #[arg(long)]
        tenant: Option<String>,
        /// Why they are discarded.
        #[arg(long)]
        reason: String,
        #[arg(long)]
        yes: bool,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum JobCommand {
    /// A job's progress.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Cancel a running job (what it sent stays sent).
    Cancel {
        id: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Clone)]
enum ServeTarget {
    /// The tenant REST API.
    Api,
    /// The operator API and console.
    ControlPlane,
    /// The outbox relay.
    Relay,
    /// One worker: feedback, email, analytics, testflight or access-requests.
    Worker { name: String },
    /// Dead-letter, failure-rate, outbox-lag and access-request alerts.
    Monitor,
    /// Forwards CloudWatch alarms (SWITCHYARD_ALARMS_QUEUE) to Discord.
    Alarms,
    /// Everything in one process.
    All,
}

#[derive(Subcommand, Clone, Copy)]
enum TopologyCommand {
    /// Print what differs between the declared topology and what exists.
    Plan,
    /// Create or update topics, queues and subscriptions (idempotent).
    Apply,
    /// Verify that everything the services need exists; say what is missing.
    Check,
    /// Print the Terraform module the topology renders to
    /// (infra/terraform/modules/topology/main.tf); works offline.
    Terraform,
}

#[derive(Subcommand)]
enum TenantCommand {
    /// Create a tenant and print its id (on the configured store).
    Create {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Tenants with their plan and active keys (through the control plane).
    List {
        /// A part of the name, any case.
        #[arg(long)]
        search: Option<String>,
        #[command(flatten)]
        page: Page,
        #[arg(long)]
        json: bool,
    },
    /// One tenant's settings and keys (through the control plane).
    Show {
        tenant_id: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Create an API key for a tenant and print it (shown only this once; on the
    /// configured store).
    Create {
        tenant_id: String,
        #[arg(long)]
        json: bool,
    },
    /// A tenant's keys: prefix, created, expires, last used, revoked (through the
    /// control plane).
    List {
        tenant_id: String,
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key: every API process refuses it within seconds (through the control
    /// plane).
    Revoke {
        tenant_id: String,
        key_id: String,
        /// Do it without asking.
        #[arg(long)]
        yes: bool,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum WebhookCommand {
    /// Create (or rotate) the secret a tenant's webhooks from `source` are signed with,
    /// and print it with the URL to give the provider.
    Secret { tenant_id: String, source: String },
}

#[derive(Subcommand)]
enum PatternCommand {
    /// Test an event against a pattern, offline: prints `match` (exit 0), `no match`
    /// (exit 1), or the pattern's error (exit 2).
    Test {
        #[arg(long, value_name = "FILE")]
        pattern: PathBuf,
        #[arg(long, value_name = "FILE")]
        event: PathBuf,
    },
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn,actix_server=warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Pattern { command: PatternCommand::Test { pattern, event } } = &cli.command {
        return pattern_test(pattern, event);
    }
    init_tracing();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: could not start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn pattern_test(pattern_path: &Path, event_path: &Path) -> ExitCode {
    let read =
        |path: &Path| std::fs::read_to_string(path).map_err(|e| format!("could not read {}: {e}", path.display()));
    let outcome = read(pattern_path)
        .and_then(|text| EventPattern::parse_str(&text).map_err(|e| e.to_string()))
        .and_then(|pattern| {
            let text = read(event_path)?;
            let event: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| format!("the event in {} is not JSON: {e}", event_path.display()))?;
            Ok(pattern.matches(&event))
        });
    match outcome {
        Ok(true) => {
            println!("match");
            ExitCode::SUCCESS
        }
        Ok(false) => {
            println!("no match");
            ExitCode::from(1)
        }
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let config_file = cli.config.as_deref();
    match cli.command {
        Command::Dev { data_dir, api_addr, console_addr } => {
            let flags = Layer { data_dir, api_addr, console_addr, ..Layer::default() };
            // On a laptop, analytics objects should appear within seconds, not a minute,
            // and new access requests reach a (captured) support address.
            let dev_defaults = Layer {
                analytics_batch_seconds: Some(5),
                support_email: Some("support@switchyard.localhost".into()),
                ..Layer::default()
            };
            let mut config = config::load_over(dev_defaults, config_file, flags)?;
            // Captures live with the rest of dev's state, wherever the layers put it,
            // unless a capture directory is set.
            if config.capture_dir.is_none() {
                config.capture_dir = Some(config.data_dir.join("captures"));
            }
            let data_dir = config.data_dir.clone();
            run_dev(config, &data_dir).await
        }
        Command::Serve { target } => {
            let config = config::load(config_file, Layer::default())?;
            let topology = config.topology()?;
            let platform = Platform::build(config, topology, components(target)?).await?;
            if let Some(port) = platform.api_port() {
                tracing::info!(port, "API listening");
            }
            if let Some(port) = platform.console_port() {
                tracing::info!(port, "console listening");
            }
            run_until_signal(platform).await
        }
        Command::Topology { command: TopologyCommand::Terraform } => {
            print!("{}", switchyard::terraform::render()?);
            Ok(())
        }
        Command::Topology { command } => topology_command(&config::load(config_file, Layer::default())?, command).await,
        Command::Migrate => {
            let config = config::load(config_file, Layer::default())?;
            let store = adapters::SqlStore::connect(&config.store).await?;
            let applied = store.migrate().await?;
            println!("applied {applied} migration(s) to the {:?} store", store.dialect());
            Ok(())
        }
        Command::Tenant { command: TenantCommand::Create { name, json } } => {
            let config = config::load(config_file, Layer::default())?;
            let store = adapters::connect_store(&config.store).await?;
            let tenant = dev::create_tenant(store.as_ref(), &name).await?;
            if json {
                println!("{}", serde_json::json!({"tenant_id": tenant.id, "name": tenant.name}));
            } else {
                println!("{}", tenant.id);
            }
            Ok(())
        }
        Command::Key { command: KeyCommand::Create { tenant_id, json } } => {
            let tenant = TenantId::parse(&tenant_id)?;
            let config = config::load(config_file, Layer::default())?;
            let store = adapters::connect_store(&config.store).await?;
            if store.tenant(tenant).await?.is_none() {
                anyhow::bail!("no tenant {tenant}");
            }
            let key = core_api::issue_api_key(store.as_ref(), tenant).await?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"tenant_id": tenant, "key_id": key.record.id, "api_key": key.plaintext})
                );
            } else {
                println!("{}", key.plaintext);
            }
            Ok(())
        }
        Command::Webhook { command: WebhookCommand::Secret { tenant_id, source } } => {
            let tenant = TenantId::parse(&tenant_id)?;
            let config = config::load(config_file, Layer::default())?;
            let store = adapters::connect_store(&config.store).await?;
            if store.tenant(tenant).await?.is_none() {
                anyhow::bail!("no tenant {tenant}");
            }
            let secret = core_api::new_webhook_secret();
            store.set_webhook_secret(tenant, &source, &secret).await?;
            println!("{}", secret.expose());
            eprintln!(
                "Give the provider http://{}/v1/webhooks/{source}?tenant={tenant} and sign with this secret.",
                config.api_addr
            );
            Ok(())
        }
        Command::Pattern { .. } => Ok(()),
        Command::Tenant { command: TenantCommand::List { search, page, json } } => {
            let page = page.pairs();
            let mut pairs: Vec<(&str, &str)> = page.iter().map(|(k, v)| (*k, v.as_str())).collect();
            pairs.extend(search.as_deref().map(|s| ("search", s)));
            operator::tenants(&control_plane(config_file)?, &pairs, json).await
        }
        Command::Tenant { command: TenantCommand::Show { tenant_id, json } } => {
            operator::tenant(&control_plane(config_file)?, &tenant_id, json).await
        }
        Command::Key { command: KeyCommand::List { tenant_id, json } } => {
            operator::keys(&control_plane(config_file)?, &tenant_id, json).await
        }
        Command::Key { command: KeyCommand::Revoke { tenant_id, key_id, yes, json } } => {
            operator::revoke_key(&control_plane(config_file)?, &tenant_id, &key_id, Manner { yes, json }).await
        }
        Command::Dlq { command } => dlq(&control_plane(config_file)?, command).await,
        Command::Outbox { command } => outbox(&control_plane(config_file)?, command).await,
        Command::Queues { json } => operator::queues(&control_plane(config_file)?, json).await,
        Command::Import { command: ImportCommand::AccessRequests { file, tenant, json } } => {
            let tenant = TenantId::parse(&tenant)?;
            let text =
                std::fs::read_to_string(&file).map_err(|e| anyhow::anyhow!("reading {}: {e}", file.display()))?;
            let config = config::load(config_file, Layer::default())?;
            let store = adapters::connect_store(&config.store).await?;
            if store.tenant(tenant).await?.is_none() {
                anyhow::bail!("no tenant {tenant}");
            }
            import_report(&switchyard::import::import(store.as_ref(), tenant, &text).await?, json)
        }
        Command::Events { command: EventsCommand::Show { event_id, json } } => {
            operator::event_journey(&control_plane(config_file)?, &event_id, json).await
        }
        Command::Operator { command } => {
            let config = config::load(config_file, Layer::default())?;
            let store = adapters::connect_store(&config.store).await?;
            operator_command(store.as_ref(), command).await
        }
        Command::Audit { operator, action, tenant, from, to, page, json } => {
            let page = page.pairs();
            let mut pairs: Vec<(&str, &str)> = page.iter().map(|(k, v)| (*k, v.as_str())).collect();
            pairs.extend(
                [
                    ("operator", operator.as_deref()),
                    ("action", action.as_deref()),
                    ("tenant", tenant.as_deref()),
                    ("from", from.as_deref()),
                    ("to", to.as_deref()),
                ]
                .into_iter()
                .filter_map(|(k, v)| v.map(|v| (k, v))),
            );
            operator::audit_log(&control_plane(config_file)?, &pairs, json).await
        }
        Command::Job { command: JobCommand::Show { id, json } } => {
            operator::job(&control_plane(config_file)?, &id, false, json).await
        }
        Command::Job { command: JobCommand::Cancel { id, json } } => {
            operator::job(&control_plane(config_file)?, &id, true, json).await
        }
    }
}

/// Prints what an import did; an error when a line was refused.
fn import_report(outcomes: &[switchyard::import::LineOutcome], json: bool) -> anyhow::Result<()> {
    use switchyard::import::Outcome;
    let count = |f: fn(&Outcome) -> bool| outcomes.iter().filter(|o| f(&o.outcome)).count();
    let (imported, skipped, refused) = (
        count(|o| matches!(o, Outcome::Imported)),
        count(|o| matches!(o, Outcome::Skipped(_))),
        count(|o| matches!(o, Outcome::Refused(_))),
    );
    if json {
        let lines: Vec<_> = outcomes
            .iter()
            .filter(|o| !matches!(o.outcome, Outcome::Imported))
            .map(|o| {
                let (kind, reason) = match &o.outcome {
                    Outcome::Skipped(why) => ("skipped", why.as_str()),
                    Outcome::Refused(why) => ("refused", why.as_str()),
                    Outcome::Imported => ("imported", ""),
                };
                serde_json::json!({"line": o.line, "ticket_id": o.ticket, "outcome": kind, "reason": reason})
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({"imported": imported, "skipped": skipped, "refused": refused, "lines": lines})
        );
    } else {
        for o in outcomes {
            let ticket = o.ticket.as_deref().unwrap_or("-");
            match &o.outcome {
                Outcome::Imported => {}
                Outcome::Skipped(why) => println!("line {}: {ticket}: skipped: {why}", o.line),
                Outcome::Refused(why) => println!("line {}: {ticket}: refused: {why}", o.line),
            }
        }
        println!("imported {imported}, skipped {skipped}, refused {refused}");
    }
    if refused > 0 {
        anyhow::bail!(
            "{refused} line(s) were refused (listed above); fix them and import again: what was imported stays"
        );
    }
    Ok(())
}

async fn operator_command(store: &dyn shared::ports::StoreBackend, command: OperatorCommand) -> anyhow::Result<()> {
    use switchyard::operator::accounts;
    match command {
        OperatorCommand::Create { name, role, json } => {
            let token = accounts::create(store, &name, &role).await?;
            if json {
                println!("{}", serde_json::json!({"name": name, "role": role, "token": token}));
            } else {
                println!("{token}");
                eprintln!("The token of {name} ({role}) is shown only this once.");
            }
        }
        OperatorCommand::List { json } => {
            let operators = accounts::list(store).await?;
            if json {
                let view: Vec<_> = operators
                    .iter()
                    .map(|o| {
                        serde_json::json!({
                            "name": o.name.as_str(),
                            "role": o.role.as_str(),
                            "created_at": o.created_at,
                            "revoked_at": o.revoked_at,
                        })
                    })
                    .collect();
                println!("{}", serde_json::json!({ "operators": view }));
            } else {
                for o in &operators {
                    let revoked = o.revoked_at.map(|at| format!("  revoked {at}")).unwrap_or_default();
                    println!("{:<24} {:<9} {}{revoked}", o.name.as_str(), o.role.as_str(), o.created_at);
                }
            }
        }
        OperatorCommand::Revoke { name } => {
            accounts::revoke(store, &name).await?;
            println!("revoked {name}");
        }
    }
    Ok(())
}

/// The control plane the operator commands talk to (see `switchyard::operator`).
fn control_plane(config_file: Option<&Path>) -> anyhow::Result<ControlPlane> {
    let data_dir =
        config::load(config_file, Layer::default()).map_or_else(|_| PathBuf::from(".switchyard"), |c| c.data_dir);
    ControlPlane::locate(&data_dir)
}

async fn dlq(cp: &ControlPlane, command: DlqCommand) -> anyhow::Result<()> {
    match command {
        DlqCommand::List { filter, state, page, json } => {
            operator::dlq_list(cp, &filter, state.as_deref(), &page, json).await
        }
        DlqCommand::Show { id, json } => operator::dlq_show(cp, &id, json).await,
        DlqCommand::Groups { filter, json } => operator::dlq_groups(cp, &filter, json).await,
        DlqCommand::Redrive { chosen, rate_per_minute } => act(cp, Action::Redrive, chosen, rate_per_minute).await,
        DlqCommand::Purge(chosen) => act(cp, Action::Purge, chosen, None).await,
        DlqCommand::Restore(chosen) => act(cp, Action::Restore, chosen, None).await,
    }
}

async fn act(cp: &ControlPlane, action: Action, chosen: Chosen, rate_per_minute: Option<u32>) -> anyhow::Result<()> {
    let Chosen { ids, filter, yes, json } = chosen;
    operator::dead_letter_action(cp, action, &ids, &filter, rate_per_minute, Manner { yes, json }).await
}

async fn outbox(cp: &ControlPlane, command: OutboxCommand) -> anyhow::Result<()> {
    match command {
        OutboxCommand::Failed { tenant, page, json } => {
            operator::outbox_failed(cp, tenant.as_deref(), &page, json).await
        }
        OutboxCommand::Retry { ids, tenant, yes, json } => {
            operator::outbox_action(cp, Action::Retry, &ids, tenant.as_deref(), None, Manner { yes, json }).await
        }
        OutboxCommand::Discard { ids, tenant, reason, yes, json } => {
            let manner = Manner { yes, json };
            operator::outbox_action(cp, Action::Discard, &ids, tenant.as_deref(), Some(&reason), manner).await
        }
    }
}

async fn run_dev(mut config: shared::config::Config, data_dir: &Path) -> anyhow::Result<()> {
    let admin_token = match &config.admin_token {
        Some(token) => token.expose().to_owned(),
        None => dev::dev_admin_token(data_dir),
    };
    config.admin_token = Some(shared::config::Secret::new(admin_token.clone()));
    // Local tools may take alerts on loopback.
    config.webhooks.loopback_http = true;
    let topology = config.topology()?;
    let backends = Backends::open(&config, &topology).await?;
    let platform = Platform::with_backends(config.clone(), topology, backends.clone(), Component::all())?;
    let api_url = format!("http://{}:{}", config.api_addr.ip(), platform.api_port().unwrap_or_default());
    let console_url = format!("http://{}:{}", config.console_addr.ip(), platform.console_port().unwrap_or_default());
    let (credentials, created) =
        dev::ensure_demo_tenant(backends.store.as_ref(), data_dir, &api_url, &console_url, &admin_token).await?;
    let store = match &config.store {
        StoreConfig::Sqlite { path } => format!("SQLite at {}", path.display()),
        StoreConfig::Postgres { .. } => "PostgreSQL".to_owned(),
    };
    let objects = match &config.objects {
        ObjectStoreConfig::Filesystem { root } => format!("{}/", root.display()),
        ObjectStoreConfig::S3 { bucket, .. } => format!("s3://{bucket}/"),
    };
    let transport = match &config.transport {
        TransportConfig::Embedded { .. } => "embedded transport",
        TransportConfig::Aws(_) => "SNS/SQS",
    };
    println!(
        "\nSwitchyard is running ({store}, {transport}).\n\
         \n  API:          {api_url}\
         \n  Console:      {console_url}\
         \n  Demo tenant:  {tenant}{fresh}\
         \n  API key:      {key}\
         \n  Admin token:  {admin_token} (control plane: GET {console_url}/v1/access-requests)\
         \n  Credentials:  {creds}\
         \n  Results:      {objects}\
         \n  Provider calls: {captures} (tickets, emails, alerts, testflight .jsonl; GET {console_url}/v1/captures)\
         \n\nTry it:\n\
         \n  curl -sS -X POST {api_url}/v1/feedback \\\
         \n    -H 'Authorization: Bearer {key}' \\\
         \n    -H 'Content-Type: application/json' \\\
         \n    -d '{{\"rating\": 5, \"message\": \"Hello from switchyard dev\"}}'\
         \n\nThen GET {api_url}/v1/feedback/<id> with the same header. Ctrl-C stops.\n",
        tenant = credentials.tenant_id,
        fresh = if created { " (created now)" } else { "" },
        key = credentials.api_key,
        creds = data_dir.join(dev::CREDENTIALS_FILE).display(),
        captures = match (&config.zendesk, &config.capture_dir) {
            (Some(_), _) => "tickets go to Zendesk".to_owned(),
            (None, Some(dir)) => format!("{}/", dir.display()),
            (None, None) => "not captured".to_owned(),
        },
    );
    run_until_signal(platform).await
}

/// Runs `platform` until Ctrl-C or SIGTERM.
async fn run_until_signal(platform: Platform) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let trigger = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        trigger.cancel();
    });
    platform.run_until_stopped(shutdown).await
}

fn aws_settings(config: &shared::config::Config) -> anyhow::Result<&AwsSettings> {
    match &config.transport {
        TransportConfig::Aws(settings) => Ok(settings),
        TransportConfig::Embedded { .. } => {
            anyhow::bail!("the topology commands work on the AWS engine: set SWITCHYARD_TRANSPORT=aws (and AWS_ENDPOINT_URL for a local server)")
        }
    }
}

async fn topology_command(config: &shared::config::Config, command: TopologyCommand) -> anyhow::Result<()> {
    let topology = config.topology()?;
    let sdk = adapters::aws::sdk_config(aws_settings(config)?).await;
    match command {
        TopologyCommand::Plan => {
            let changes = adapters::aws::provision::plan(&sdk, &topology).await?;
            if changes.is_empty() {
                println!("The topology of `{}` is up to date.", config.instance.as_str());
            }
            for change in changes {
                println!("{change}");
            }
        }
        TopologyCommand::Apply => {
            let changes = adapters::aws::provision::apply(&sdk, &topology).await?;
            for change in &changes {
                println!("{change}");
            }
            println!("Applied {} change(s) to `{}`.", changes.len(), config.instance.as_str());
        }
        TopologyCommand::Check => {
            adapters::aws::provision::check(&sdk, &topology).await?;
            println!("Every topic, queue and subscription of `{}` exists as declared.", config.instance.as_str());
        }
        TopologyCommand::Terraform => print!("{}", switchyard::terraform::render()?),
    }
    Ok(())
}

fn components(target: ServeTarget) -> anyhow::Result<Vec<Component>> {
    Ok(match target {
        ServeTarget::Api => vec![Component::Api],
        ServeTarget::ControlPlane => vec![Component::ControlPlane],
        ServeTarget::Relay => vec![Component::Relay],
        ServeTarget::Worker { name } => vec![Component::Worker(name.parse::<UseCase>().map_err(anyhow::Error::msg)?)],
        ServeTarget::Monitor => vec![Component::Monitor],
        ServeTarget::Alarms => vec![Component::Alarms],
        ServeTarget::All => Component::all(),
    })
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
