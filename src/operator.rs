//! The operators' commands (`switchyard dlq|outbox|queues|job`): clients of the control
//! plane's JSON API, so the CLI, the console and scripts share one code path.
//!
//! Where the control plane is: `SWITCHYARD_CONTROL_PLANE_URL` and
//! `SWITCHYARD_OPERATOR_TOKEN`; when unset, what `switchyard dev` wrote to
//! `<data dir>/dev-credentials.json`. Tables for people, `--json` for scripts (one JSON
//! document per answer). An action shows its plan and asks before acting, unless
//! `--yes`; without a terminal to ask on, it refuses rather than guess.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::{json, Map, Value};

use crate::dev::{DevCredentials, CREDENTIALS_FILE};

/// How to reach the control plane.
pub struct ControlPlane {
    base: String,
    token: String,
    http: reqwest::Client,
}

/// What a list command narrows dead letters to (the API's filters).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct DeadLetterFilter {
    /// A queue's name or its use case (`feedback`).
    #[arg(long)]
    pub queue: Option<String>,
    #[arg(long)]
    pub tenant: Option<String>,
    /// An event type.
    #[arg(long = "type", value_name = "TYPE")]
    pub event_type: Option<String>,
    /// An error group's fingerprint (from `dlq groups`).
    #[arg(long)]
    pub error: Option<String>,
    /// Dead-lettered at or after (RFC 3339).
    #[arg(long)]
    pub from: Option<String>,
    /// Dead-lettered before (RFC 3339).
    #[arg(long)]
    pub to: Option<String>,
}

impl DeadLetterFilter {
    fn pairs(&self) -> Vec<(&'static str, &str)> {
        [
            ("queue", &self.queue),
            ("tenant", &self.tenant),
            ("type", &self.event_type),
            ("error", &self.error),
            ("from", &self.from),
            ("to", &self.to),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.as_deref().map(|v| (name, v)))
        .collect()
    }

    fn as_json(&self) -> Value {
        Value::Object(self.pairs().into_iter().map(|(k, v)| (k.to_owned(), json!(v))).collect::<Map<_, _>>())
    }
}

/// Which page of a list: at most `limit`, after the previous page's `next_cursor`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Page {
    #[arg(long)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    #[arg(long)]
    pub cursor: Option<String>,
}

impl Page {
    /// The query parameters it adds.
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = Vec::new();
        pairs.extend(self.limit.map(|l| ("limit", l.to_string())));
        pairs.extend(self.cursor.clone().map(|c| ("cursor", c)));
        pairs
    }
}

/// How an action asks and shows.
#[derive(Debug, Clone, Copy, Default)]
pub struct Manner {
    /// Act without asking.
    pub yes: bool,
    /// JSON instead of tables.
    pub json: bool,
}

fn query(pairs: &[(&str, &str)]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let encoded: Vec<String> = pairs
        .iter()
        .map(|(k, v)| {
            let value: String = v
                .bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => char::from(b).to_string(),
                    _ => format!("%{b:02X}"),
                })
                .collect();
            format!("{k}={value}")
        })
        .collect();
    format!("?{}", encoded.join("&"))
}

impl ControlPlane {
    /// From the environment, else from `dev`'s credentials under `data_dir`.
    pub fn locate(data_dir: &Path) -> anyhow::Result<Self> {
        let from_env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let (mut base, mut token) = (from_env("SWITCHYARD_CONTROL_PLANE_URL"), from_env("SWITCHYARD_OPERATOR_TOKEN"));
        if base.is_none() || token.is_none() {
            let path = data_dir.join(CREDENTIALS_FILE);
            if let Ok(text) = std::fs::read_to_string(&path) {
                let dev: DevCredentials =
                    serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))?;
                base = base.or(Some(dev.console_url));
                token = token.or(Some(dev.admin_token).filter(|t| !t.is_empty()));
            }
        }
        let Some(base) = base else {
            bail!(
                "no control plane to talk to: set SWITCHYARD_CONTROL_PLANE_URL (and SWITCHYARD_OPERATOR_TOKEN), \
                 or run `switchyard dev`, which writes {CREDENTIALS_FILE} under its data directory"
            );
        };
        let Some(token) = token else {
            bail!("no operator token: set SWITCHYARD_OPERATOR_TOKEN");
        };
        let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
        Ok(Self { base: base.trim_end_matches('/').to_owned(), token, http })
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<(u16, Value)> {
        let response = request
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| format!("could not reach the control plane at {}", self.base))?;
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        Ok((status, body))
    }

    /// The answer of a call that must succeed; a problem's detail (and every field's)
    /// otherwise.
    fn expect_ok((status, body): (u16, Value)) -> anyhow::Result<Value> {
        if (200..300).contains(&status) {
            return Ok(body);
        }
        let mut message = format!(
            "the control plane answered {status}: {}",
            body["detail"].as_str().or(body["title"].as_str()).unwrap_or("no detail")
        );
        for error in body["errors"].as_array().into_iter().flatten() {
            message.push_str(&format!(
                "\n  {}: {}",
                error["field"].as_str().unwrap_or("?"),
                error["detail"].as_str().unwrap_or("")
            ));
        }
        bail!(message)
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        Self::expect_ok(self.send(self.http.get(format!("{}{path}", self.base))).await?)
    }

    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        Self::expect_ok(self.send(self.http.post(format!("{}{path}", self.base)).json(body)).await?)
    }
}

/// Prints `rows` under `headers`, each column as wide as its widest cell.
fn table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// A JSON value as a table cell.
fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".to_owned(),
        Value::String(text) => text.chars().take(80).collect(),
        other => other.to_string(),
    }
}

fn print_json(value: &Value) {
    println!("{value}");
}

fn print_plan(plan: &Value, noun: &str) {
    println!("plan {}: {} {} {noun}", cell(&plan["plan_id"]), cell(&plan["action"]), cell(&plan["count"]));
    for (title, list, key) in [
        ("queue", &plan["queues"], "queue"),
        ("tenant", &plan["tenants"], "tenant_id"),
        ("group", &plan["groups"], "group_id"),
    ] {
        let rows: Vec<Vec<String>> =
            list.as_array().into_iter().flatten().map(|t| vec![cell(&t[key]), cell(&t["count"])]).collect();
        if !rows.is_empty() {
            println!();
            table(&[title, "count"], &rows);
        }
    }
    if plan["group_count"].as_u64().unwrap_or(0) > 0 {
        println!(
            "\n{} ordering group(s) in all; the plan holds until {}",
            plan["group_count"],
            cell(&plan["expires_at"])
        );
    }
}

/// Asks on the terminal whether to go on; refuses without one.
fn agree(question: &str, manner: Manner) -> anyhow::Result<bool> {
    if manner.yes {
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        bail!("{question} Not asking without a terminal: run again with --yes to go ahead");
    }
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

fn selection(ids: &[String], filter: Value) -> Value {
    if ids.is_empty() {
        json!({ "filter": filter })
    } else {
        json!({ "ids": ids })
    }
}

pub async fn dlq_list(
    cp: &ControlPlane,
    filter: &DeadLetterFilter,
    state: Option<&str>,
    page: &Page,
    json: bool,
) -> anyhow::Result<()> {
    let page = page.pairs();
    let mut pairs = filter.pairs();
    pairs.extend(state.map(|s| ("state", s)));
    pairs.extend(page.iter().map(|(k, v)| (*k, v.as_str())));
    let page = cp.get(&format!("/v1/dead-letters{}", query(&pairs))).await?;
    if json {
        print_json(&page);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = page["dead_letters"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            ["id", "use_case", "tenant_id", "event_type", "attempts", "dead_lettered_at", "error"]
                .iter()
                .map(|k| cell(&d[*k]))
                .collect()
        })
        .collect();
    table(&["ID", "QUEUE", "TENANT", "TYPE", "ATTEMPTS", "DEAD-LETTERED", "ERROR"], &rows);
    if let Some(next) = page["next_cursor"].as_str() {
        println!("\nmore: --cursor {next}");
    }
    Ok(())
}

pub async fn dlq_show(cp: &ControlPlane, id: &str, json: bool) -> anyhow::Result<()> {
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        bail!("a dead letter's id is a number, as `dlq list` shows it");
    }
    let letter = cp.get(&format!("/v1/dead-letters/{id}")).await?;
    if json {
        print_json(&letter);
        return Ok(());
    }
    for key in ["id", "state", "queue", "tenant_id", "event_id", "event_type", "group_id", "dead_lettered_at", "error"]
    {
        println!("{key:<17}{}", cell(&letter[key]));
    }
    println!("\nattempts:");
    let rows: Vec<Vec<String>> = letter["attempts"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(n, a)| vec![(n + 1).to_string(), cell(&a["at"]), cell(&a["error"])])
        .collect();
    table(&["#", "AT", "ERROR"], &rows);
    let body = letter.get("envelope").or(letter.get("body")).cloned().unwrap_or(Value::Null);
    println!("\nmessage:\n{}", serde_json::to_string_pretty(&body)?);
    Ok(())
}

pub async fn dlq_groups(cp: &ControlPlane, filter: &DeadLetterFilter, json: bool) -> anyhow::Result<()> {
    let groups = cp.get(&format!("/v1/dead-letters/groups{}", query(&filter.pairs()))).await?;
    if json {
        print_json(&groups);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = groups["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|g| ["fingerprint", "count", "last_at", "pattern"].iter().map(|k| cell(&g[*k])).collect())
        .collect();
    table(&["ERROR GROUP", "COUNT", "LAST", "PATTERN"], &rows);
    Ok(())
}

/// What a plan route does, for its messages.
#[derive(Debug, Clone, Copy)]
pub enum Action {
    Redrive,
    Purge,
    Restore,
    Retry,
    Discard,
}

impl Action {
    fn path(self) -> &'static str {
        match self {
            Action::Redrive => "/v1/dead-letters/redrive",
            Action::Purge => "/v1/dead-letters/purge",
            Action::Restore => "/v1/dead-letters/restore",
            Action::Retry => "/v1/outbox/retry",
            Action::Discard => "/v1/outbox/discard",
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Action::Redrive | Action::Purge | Action::Restore => "dead letter(s)",
            Action::Retry | Action::Discard => "failed outbox row(s)",
        }
    }

    fn verb(self) -> &'static str {
        match self {
            Action::Redrive => "Redrive",
            Action::Purge => "Purge",
            Action::Restore => "Restore",
            Action::Retry => "Retry",
            Action::Discard => "Discard",
        }
    }
}

/// Makes the plan `selection` asks for, shows it, asks, and confirms it.
pub async fn act(
    cp: &ControlPlane,
    action: Action,
    selection: Value,
    extra: Map<String, Value>,
    manner: Manner,
) -> anyhow::Result<()> {
    let plan = cp.post(action.path(), &selection).await?;
    if manner.json {
        print_json(&plan);
    } else {
        print_plan(&plan, action.noun());
    }
    let count = plan["count"].as_u64().unwrap_or(0);
    if count == 0 {
        if !manner.json {
            println!("nothing to do");
        }
        return Ok(());
    }
    if !agree(&format!("{} {count} {}?", action.verb(), action.noun()), manner)? {
        bail!("not confirmed; nothing changed");
    }
    let mut confirm = Map::new();
    confirm.insert("plan_id".into(), plan["plan_id"].clone());
    confirm.insert("confirm".into(), plan["to_confirm"]["confirm"].clone());
    confirm.extend(extra);
    let done = cp.post(action.path(), &Value::Object(confirm)).await?;
    match action {
        Action::Redrive => follow(cp, &done, manner).await,
        _ => {
            if manner.json {
                print_json(&done);
            } else {
                let moved = ["purged", "restored", "retried", "discarded"].iter().find_map(|k| done[*k].as_u64());
                println!("{}: {}", action.verb().to_lowercase(), moved.unwrap_or(0));
                if let Some(until) = done["restorable_until"].as_str() {
                    println!("restorable until {until} (switchyard dlq restore)");
                }
            }
            Ok(())
        }
    }
}

/// Follows a redrive job to its end, showing its progress on a terminal.
async fn follow(cp: &ControlPlane, job: &Value, manner: Manner) -> anyhow::Result<()> {
    let id = job["id"].as_str().context("the control plane answered no job id")?.to_owned();
    let live = std::io::stderr().is_terminal() && !manner.json;
    let mut job = job.clone();
    while job["state"] == "running" {
        if live {
            eprint!("\rjob {id}: {} of {} sent, {} skipped", job["done"], job["total"], job["skipped"]);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        job = cp.get(&format!("/v1/jobs/{id}")).await?;
    }
    if live {
        eprintln!();
    }
    if manner.json {
        print_json(&job);
    } else {
        println!(
            "job {id} {}: {} of {} sent, {} skipped{}",
            cell(&job["state"]),
            job["done"],
            job["total"],
            job["skipped"],
            job["error"].as_str().map(|e| format!(" ({e})")).unwrap_or_default()
        );
    }
    if job["state"] == "failed" {
        bail!("the redrive job failed");
    }
    Ok(())
}

pub async fn dead_letter_action(
    cp: &ControlPlane,
    action: Action,
    ids: &[String],
    filter: &DeadLetterFilter,
    rate_per_minute: Option<u32>,
    manner: Manner,
) -> anyhow::Result<()> {
    let mut extra = Map::new();
    if let Some(rate) = rate_per_minute {
        extra.insert("rate_per_minute".into(), json!(rate));
    }
    act(cp, action, selection(ids, filter.as_json()), extra, manner).await
}

pub async fn outbox_failed(cp: &ControlPlane, tenant: Option<&str>, page: &Page, json: bool) -> anyhow::Result<()> {
    let page = page.pairs();
    let mut pairs: Vec<(&str, &str)> = page.iter().map(|(k, v)| (*k, v.as_str())).collect();
    pairs.extend(tenant.map(|t| ("tenant", t)));
    let page = cp.get(&format!("/v1/outbox/failed{}", query(&pairs))).await?;
    if json {
        print_json(&page);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = page["rows"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            ["seq", "tenant_id", "event_type", "attempts", "failed_at", "error"].iter().map(|k| cell(&r[*k])).collect()
        })
        .collect();
    table(&["SEQ", "TENANT", "TYPE", "ATTEMPTS", "FAILED", "ERROR"], &rows);
    if let Some(next) = page["next_cursor"].as_str() {
        println!("\nmore: --cursor {next}");
    }
    Ok(())
}

pub async fn outbox_action(
    cp: &ControlPlane,
    action: Action,
    ids: &[String],
    tenant: Option<&str>,
    reason: Option<&str>,
    manner: Manner,
) -> anyhow::Result<()> {
    let filter = match tenant {
        Some(tenant) => json!({ "tenant": tenant }),
        None => json!({}),
    };
    let mut extra = Map::new();
    if let Some(reason) = reason {
        extra.insert("reason".into(), json!(reason));
    }
    act(cp, action, selection(ids, filter), extra, manner).await
}

pub async fn queues(cp: &ControlPlane, json: bool) -> anyhow::Result<()> {
    let view = cp.get("/v1/queues").await?;
    if json {
        print_json(&view);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = view["queues"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|q| {
            let age = q["oldest_age_seconds"].as_f64().map_or_else(|| "-".to_owned(), |s| format!("{s:.1}s"));
            vec![
                cell(&q["use_case"]),
                cell(&q["visible"]),
                cell(&q["in_flight"]),
                cell(&q["delayed"]),
                age,
                cell(&q["dead_letters"]),
                cell(&q["parked"]),
                cell(&q["workers"]),
            ]
        })
        .collect();
    table(&["QUEUE", "VISIBLE", "IN FLIGHT", "DELAYED", "OLDEST", "DLQ", "PARKED", "WORKERS"], &rows);
    let outbox = &view["outbox"];
    let age = outbox["oldest_pending_age_seconds"].as_f64().map_or_else(|| "-".to_owned(), |s| format!("{s:.1}s"));
    println!("\noutbox: {} pending (oldest {age}), {} failed", outbox["pending"], outbox["failed"]);
    Ok(())
}

pub async fn job(cp: &ControlPlane, id: &str, cancel: bool, json: bool) -> anyhow::Result<()> {
    if !id.starts_with("job_") || id.contains('/') {
        bail!("a job's id starts with job_");
    }
    let job = if cancel {
        cp.post(&format!("/v1/jobs/{id}/cancel"), &json!({})).await?
    } else {
        cp.get(&format!("/v1/jobs/{id}")).await?
    };
    if json {
        print_json(&job);
    } else {
        for key in ["id", "action", "state", "total", "done", "skipped", "remaining", "rate_per_minute", "error"] {
            println!("{key:<16}{}", cell(&job[key]));
        }
    }
    Ok(())
}

/// A path segment an operator typed: an id, never a path of its own.
fn segment<'a>(raw: &'a str, what: &str) -> anyhow::Result<&'a str> {
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        bail!("`{raw}` is not a {what} id");
    }
    Ok(raw)
}

pub async fn tenants(cp: &ControlPlane, pairs: &[(&str, &str)], json: bool) -> anyhow::Result<()> {
    let page = cp.get(&format!("/v1/tenants{}", query(pairs))).await?;
    if json {
        print_json(&page);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = page["tenants"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| ["id", "name", "plan", "active_keys", "created_at"].iter().map(|k| cell(&t[*k])).collect())
        .collect();
    table(&["ID", "NAME", "PLAN", "KEYS", "CREATED"], &rows);
    if let Some(next) = page["next_cursor"].as_str() {
        println!("\nmore: --cursor {next}");
    }
    Ok(())
}

fn print_keys(keys: &Value) {
    let rows: Vec<Vec<String>> = keys["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|k| {
            ["id", "prefix", "created_at", "expires_at", "last_used_at", "revoked_at"]
                .iter()
                .map(|f| cell(&k[*f]))
                .collect()
        })
        .collect();
    table(&["ID", "PREFIX", "CREATED", "EXPIRES", "LAST USED", "REVOKED"], &rows);
}

pub async fn tenant(cp: &ControlPlane, id: &str, json: bool) -> anyhow::Result<()> {
    let id = segment(id, "tenant")?;
    let tenant = cp.get(&format!("/v1/tenants/{id}")).await?;
    let keys = cp.get(&format!("/v1/tenants/{id}/keys")).await?;
    if json {
        print_json(&json!({"tenant": tenant, "keys": keys["keys"]}));
        return Ok(());
    }
    for key in ["id", "name", "plan", "alert_webhook_url", "created_at"] {
        println!("{key:<18}{}", cell(&tenant[key]));
    }
    println!();
    print_keys(&keys);
    Ok(())
}

pub async fn keys(cp: &ControlPlane, tenant: &str, json: bool) -> anyhow::Result<()> {
    let keys = cp.get(&format!("/v1/tenants/{}/keys", segment(tenant, "tenant")?)).await?;
    if json {
        print_json(&keys);
    } else {
        print_keys(&keys);
    }
    Ok(())
}

pub async fn revoke_key(cp: &ControlPlane, tenant: &str, key: &str, manner: Manner) -> anyhow::Result<()> {
    let (tenant, key) = (segment(tenant, "tenant")?, segment(key, "key")?);
    if !agree(&format!("Revoke key {key} of tenant {tenant}? Its requests are refused within seconds."), manner)? {
        bail!("not confirmed; nothing changed");
    }
    let path = format!("{}/v1/tenants/{tenant}/keys/{key}", cp.base);
    let revoked = ControlPlane::expect_ok(cp.send(cp.http.delete(path)).await?)?;
    if manner.json {
        print_json(&revoked);
    } else {
        println!("revoked {key} at {}", cell(&revoked["revoked_at"]));
    }
    Ok(())
}

/// `switchyard events show`: one event's journey, a step a line.
pub async fn event_journey(cp: &ControlPlane, id: &str, json: bool) -> anyhow::Result<()> {
    let journey = cp.get(&format!("/v1/events/{}", segment(id, "event")?)).await?;
    if json {
        print_json(&journey);
        return Ok(());
    }
    println!(
        "event {} ({}) of {}: {}",
        cell(&journey["event_id"]),
        cell(&journey["type"]),
        cell(&journey["tenant_id"]),
        cell(&journey["status"])
    );
    let rows: Vec<Vec<String>> = journey["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            let what = ["queue", "topic", "kind", "error", "waiting_for"]
                .iter()
                .filter_map(|k| s[*k].as_str().map(str::to_owned))
                .collect::<Vec<_>>()
                .join(" · ");
            vec![cell(&s["step"]), cell(&s["state"]), cell(&s["at"]), what]
        })
        .collect();
    println!();
    table(&["STEP", "STATE", "AT", "DETAIL"], &rows);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::query;

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(query(&[]), "");
        assert_eq!(
            query(&[("from", "2026-12-01T00:00:00+01:00"), ("type", "a.b")]),
            "?from=2026-12-01T00%3A00%3A00%2B01%3A00&type=a.b"
        );
    }
}

/// Named operators, managed on the store itself (how the first one is made), each
/// change in the audit log as done by `cli`.
pub mod accounts {
    use anyhow::Context;

    use shared::domain::operators::{OperatorName, OperatorRecord, Role};
    use shared::ports::{NewAuditEntry, StoreBackend};
    use shared::Timestamp;

    /// The audit log's name for changes made by these commands.
    pub const CLI: &str = "cli";

    async fn audit(store: &dyn StoreBackend, action: &str, target: &str, outcome: &str) -> anyhow::Result<()> {
        let entry = NewAuditEntry {
            at: Timestamp::now(),
            operator: CLI.to_owned(),
            role: Role::Admin,
            action: action.to_owned(),
            target: Some(serde_json::json!({ "operator": target }).to_string()),
            tenant: None,
            count: None,
            outcome: outcome.to_owned(),
        };
        store.append_audit(&entry).await.context("writing the audit log")?;
        Ok(())
    }

    /// Creates an operator and answers its token, which is shown only this once.
    pub async fn create(store: &dyn StoreBackend, name: &str, role: &str) -> anyhow::Result<String> {
        let name = OperatorName::parse(name).map_err(anyhow::Error::msg)?;
        let role = Role::parse(role).map_err(anyhow::Error::msg)?;
        let token = control_plane::audit::new_operator_token();
        let record = OperatorRecord {
            name: name.clone(),
            role,
            token_hash: control_plane::audit::token_hash(&token),
            created_at: Timestamp::now(),
            revoked_at: None,
        };
        let created = store.create_operator(&record).await;
        let outcome = match &created {
            Ok(()) => "ok".to_owned(),
            Err(error) => format!("refused: {error}"),
        };
        audit(store, "operator create", name.as_str(), &outcome).await?;
        created?;
        Ok(token)
    }

    pub async fn list(store: &dyn StoreBackend) -> anyhow::Result<Vec<OperatorRecord>> {
        Ok(store.operators().await?)
    }

    /// Revokes `name`'s token; an error when there is no such active operator.
    pub async fn revoke(store: &dyn StoreBackend, name: &str) -> anyhow::Result<()> {
        let name = OperatorName::parse(name).map_err(anyhow::Error::msg)?;
        let revoked = store.revoke_operator(&name, Timestamp::now()).await?;
        let outcome = if revoked { "ok" } else { "refused: no such active operator" };
        audit(store, "operator revoke", name.as_str(), outcome).await?;
        if !revoked {
            anyhow::bail!("there is no active operator named {name}");
        }
        Ok(())
    }
}

pub async fn audit_log(cp: &ControlPlane, pairs: &[(&str, &str)], json: bool) -> anyhow::Result<()> {
    let page = cp.get(&format!("/v1/audit{}", query(pairs))).await?;
    if json {
        print_json(&page);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = page["entries"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| ["at", "operator", "role", "action", "count", "outcome"].iter().map(|k| cell(&e[*k])).collect())
        .collect();
    table(&["AT", "OPERATOR", "ROLE", "ACTION", "COUNT", "OUTCOME"], &rows);
    if let Some(next) = page["next_cursor"].as_str() {
        println!("\nmore: --cursor {next}");
    }
    Ok(())
}
