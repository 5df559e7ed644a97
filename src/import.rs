//! `switchyard import access-requests FILE --tenant <id>`: the cut-over from the
//! backend Switchyard replaces. It reads an export of `organization_access_requests` —
//! JSON lines, or CSV with a header row — with `ticket_id`, `requester_id`,
//! `requester_email`, `organization_name`, `request_message`, `status`, `created_at`
//! and `decided_at`, and stores each request under its own ticket number (so re-running
//! it imports nothing twice, and new tickets continue after the highest imported one).
//! Each line is imported, skipped (its ticket is there) or refused with its reason.

use std::collections::HashMap;

use serde_json::Value;

use shared::domain::access::{parse_message, AccessRequestStatus, Imported, ImportedAccessRequest, TicketId};
use shared::domain::{EmailAddress, TenantName};
use shared::ports::AccessRequestStore;
use shared::{TenantId, Timestamp};

/// What happened to one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineOutcome {
    /// 1-based, as an editor shows it (a CSV record's first line).
    pub line: usize,
    pub ticket: Option<String>,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Imported,
    Skipped(String),
    Refused(String),
}

/// The fields of one exported row, by column name.
type Record = HashMap<String, String>;

/// Splits CSV `text` into records of fields (RFC 4180: quoted fields may hold commas,
/// quotes doubled, and line breaks), each with the line it starts on.
/// A CSV record's fields, with the line it starts on.
type CsvRecord = (usize, Vec<String>);

fn csv_records(text: &str) -> Result<Vec<CsvRecord>, (usize, String)> {
    let mut records = Vec::new();
    let (mut fields, mut field) = (Vec::new(), String::new());
    let (mut line, mut start, mut quoted, mut at_field_start) = (1usize, 1usize, false, true);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => {
                if c == '\n' {
                    line += 1;
                }
                field.push(c);
            }
            (false, '"') if at_field_start => {
                quoted = true;
                at_field_start = false;
                continue;
            }
            (false, ',') => {
                fields.push(std::mem::take(&mut field));
                at_field_start = true;
                continue;
            }
            (false, '\r') if chars.peek() == Some(&'\n') => {}
            (false, '\n') => {
                fields.push(std::mem::take(&mut field));
                if fields.iter().any(|f| !f.is_empty()) {
                    records.push((start, std::mem::take(&mut fields)));
                }
                fields.clear();
                line += 1;
                start = line;
                at_field_start = true;
                continue;
            }
            (false, c) => field.push(c),
        }
        at_field_start = false;
    }
    if quoted {
        return Err((start, "a quoted field is never closed".into()));
    }
    fields.push(field);
    if fields.iter().any(|f| !f.is_empty()) {
        records.push((start, fields));
    }
    Ok(records)
}

/// The rows of an export, each with its line or why it cannot be read.
pub fn read_export(text: &str) -> Vec<(usize, Result<Record, String>)> {
    let json = text.trim_start().starts_with('{');
    if json {
        return text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(n, l)| {
                let record = match serde_json::from_str::<Value>(l) {
                    Ok(Value::Object(map)) => Ok(map
                        .into_iter()
                        .filter_map(|(k, v)| match v {
                            Value::Null => None,
                            Value::String(s) => Some((k, s)),
                            other => Some((k, other.to_string())),
                        })
                        .collect()),
                    Ok(_) => Err("not a JSON object".to_owned()),
                    Err(error) => Err(format!("not JSON: {error}")),
                };
                (n + 1, record)
            })
            .collect();
    }
    let records = match csv_records(text) {
        Ok(records) => records,
        Err((line, reason)) => return vec![(line, Err(reason))],
    };
    let mut rows = records.into_iter();
    let Some((_, header)) = rows.next() else { return Vec::new() };
    let header: Vec<String> = header.iter().map(|h| h.trim().trim_start_matches('\u{feff}').to_owned()).collect();
    rows.map(|(line, fields)| {
        if fields.len() != header.len() {
            return (line, Err(format!("{} fields where the header has {}", fields.len(), header.len())));
        }
        let record = header.iter().cloned().zip(fields).filter(|(_, v)| !v.is_empty()).collect();
        (line, Ok(record))
    })
    .collect()
}

/// An exported time: RFC 3339, or PostgreSQL's `2024-05-01 10:00:00+00` (UTC when it
/// names no offset).
fn time(raw: &str) -> Result<Timestamp, String> {
    let raw = raw.trim();
    if let Ok(at) = Timestamp::parse_rfc3339(raw) {
        return Ok(at);
    }
    let mut text = raw.replacen(' ', "T", 1);
    let offset = text.rfind(['+', '-']).filter(|at| *at > 10);
    match offset {
        Some(at) if text[at..].len() == 3 => text.push_str(":00"),
        Some(_) => {}
        None if !text.ends_with('Z') => text.push('Z'),
        None => {}
    }
    Timestamp::parse_rfc3339(&text).map_err(|_| format!("`{raw}` is not a time (RFC 3339)"))
}

/// `result`'s value, or its error noted against `name` in `problems`.
fn checked<T>(problems: &mut Vec<String>, name: &str, result: Result<T, String>) -> Option<T> {
    result.map_err(|e| problems.push(format!("`{name}`: {e}"))).ok()
}

/// One row as a request to import, or every reason it is not one.
pub fn request_of(record: &Record) -> Result<ImportedAccessRequest, String> {
    let mut problems = Vec::new();
    let field = |name: &str| record.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());
    let mut required = |name: &str| {
        let value = field(name);
        if value.is_none() {
            problems.push(format!("`{name}` is missing"));
        }
        value
    };
    let (ticket, email, organization, status, created) = (
        required("ticket_id"),
        required("requester_email"),
        required("organization_name"),
        required("status"),
        required("created_at"),
    );
    let p = &mut problems;
    let ticket = ticket.and_then(|t| checked(p, "ticket_id", TicketId::parse(t)));
    let requester = email.and_then(|e| checked(p, "requester_email", EmailAddress::parse(e)));
    let organization = organization.and_then(|o| checked(p, "organization_name", TenantName::parse(o)));
    let status = status.and_then(|s| {
        let parsed =
            AccessRequestStatus::parse(&s.to_lowercase()).ok_or_else(|| "must be pending, approved or rejected".into());
        checked(p, "status", parsed)
    });
    let created_at = created.and_then(|t| checked(p, "created_at", time(t)));
    let decided_at = field("decided_at").and_then(|t| checked(p, "decided_at", time(t)));
    let message = checked(p, "request_message", field("request_message").map_or(Ok(None), parse_message)).flatten();
    if !problems.is_empty() {
        return Err(problems.join("; "));
    }
    match (ticket, requester, organization, status, created_at) {
        (Some(ticket_id), Some(requester), Some(organization), Some(status), Some(created_at)) => {
            Ok(ImportedAccessRequest {
                ticket_id,
                requester_id: field("requester_id").map(str::to_owned),
                requester,
                organization,
                message,
                status,
                created_at,
                decided_at,
            })
        }
        _ => Err("could not be read".into()),
    }
}

/// Imports every row of `text` for `tenant`, in the file's order.
pub async fn import(store: &dyn AccessRequestStore, tenant: TenantId, text: &str) -> anyhow::Result<Vec<LineOutcome>> {
    let mut outcomes = Vec::new();
    for (line, record) in read_export(text) {
        let ticket = record.as_ref().ok().and_then(|r| r.get("ticket_id").cloned());
        let outcome = match record.and_then(|r| request_of(&r)) {
            Err(reason) => Outcome::Refused(reason),
            Ok(request) => match store.import_access_request(tenant, &request).await? {
                Imported::Created => Outcome::Imported,
                Imported::AlreadyThere(why) => Outcome::Skipped(why),
                Imported::Refused(why) => Outcome::Refused(why),
            },
        };
        outcomes.push(LineOutcome { line, ticket, outcome });
    }
    Ok(outcomes)
}

#[cfg(test)]
mod tests {
    use super::{csv_records, read_export, request_of, time};

    #[test]
    fn csv_fields_may_hold_commas_quotes_and_line_breaks() {
        let text = "a,b,c\r\n1,\"x, y\",\"say \"\"hi\"\"\"\n2,\"two\nlines\",\n\n3,,z";
        let records = csv_records(text).expect("csv");
        let fields: Vec<Vec<&str>> = records.iter().map(|(_, f)| f.iter().map(String::as_str).collect()).collect();
        assert_eq!(
            fields,
            [vec!["a", "b", "c"], vec!["1", "x, y", "say \"hi\""], vec!["2", "two\nlines", ""], vec!["3", "", "z"]]
        );
        assert_eq!(records.iter().map(|(line, _)| *line).collect::<Vec<_>>(), [1, 2, 3, 6], "each record's first line");
        assert!(csv_records("a\n\"open").is_err());
    }

    #[test]
    fn rows_are_read_from_csv_and_json_lines() {
        let csv = "ticket_id,requester_email,organization_name,status,created_at\nR00001,a@x.io,Acme,pending,2024-05-01 10:00:00+00\nR00002,short\n";
        let rows = read_export(csv);
        assert_eq!(rows.len(), 2);
        let first = rows[0].1.as_ref().expect("row");
        assert!(request_of(first).is_ok(), "{:?}", request_of(first));
        assert!(rows[1].1.is_err(), "a row with too few fields");
        let json = "{\"ticket_id\": \"R00003\", \"requester_email\": \"b@x.io\", \"organization_name\": \"B\", \"status\": \"APPROVED\", \"created_at\": \"2024-05-01T10:00:00Z\", \"decided_at\": null}\n\n[1]\n";
        let rows = read_export(json);
        assert_eq!(rows.iter().map(|(l, _)| *l).collect::<Vec<_>>(), [1, 3]);
        assert!(request_of(rows[0].1.as_ref().expect("row")).is_ok());
        assert!(rows[1].1.is_err());
    }

    #[test]
    fn every_problem_of_a_row_is_named() {
        let row = [("ticket_id", "12"), ("requester_email", "nope"), ("status", "open"), ("created_at", "yesterday")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let why = request_of(&row).expect_err("bad row");
        for part in ["organization_name", "ticket_id", "requester_email", "status", "created_at"] {
            assert!(why.contains(part), "{part} in {why}");
        }
    }

    #[test]
    fn exported_times_in_either_form() {
        let rfc = time("2024-05-01T10:00:00Z").expect("rfc 3339");
        assert_eq!(time("2024-05-01 10:00:00+00").expect("postgres"), rfc);
        assert_eq!(time("2024-05-01 10:00:00").expect("no offset: UTC"), rfc);
        assert_eq!(time("2024-05-01 12:00:00+02:00").expect("offset"), rfc);
        assert!(time("01/05/2024").is_err());
    }
}
