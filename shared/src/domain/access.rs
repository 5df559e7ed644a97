//! Access requests: an organization asks for access to the deployment; operators
//! approve (which creates its tenant) or reject it.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::clock::Timestamp;
use crate::domain::{EmailAddress, TenantName};
use crate::ids::TenantId;

pub const MAX_ORGANIZATION_CHARS: usize = 200;
pub const MAX_MESSAGE_CHARS: usize = 2_000;

/// A ticket id, `R00001`, `R00002`, … numbered per deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TicketId(u64);

impl TicketId {
    pub fn from_number(number: u64) -> Self {
        Self(number)
    }

    pub fn number(self) -> u64 {
        self.0
    }

    /// `R` followed by at least five digits.
    pub fn parse(value: &str) -> Result<Self, String> {
        let digits = value.strip_prefix('R').filter(|d| d.len() >= 5 && d.bytes().all(|b| b.is_ascii_digit()));
        digits
            .and_then(|d| d.parse::<u64>().ok())
            .filter(|n| *n > 0)
            .map(Self)
            .ok_or_else(|| format!("`{}` is not a ticket id like R00001", value.chars().take(40).collect::<String>()))
    }
}

impl fmt::Display for TicketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "R{:05}", self.0)
    }
}

impl Serialize for TicketId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TicketId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessRequestStatus {
    Pending,
    Approved,
    Rejected,
}

impl AccessRequestStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Rejected => "rejected",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        [Self::Pending, Self::Approved, Self::Rejected].into_iter().find(|s| s.as_str() == value)
    }
}

/// An optional note from the requester: at most 2,000 characters.
pub fn parse_message(value: &str) -> Result<Option<String>, String> {
    let trimmed = value.trim();
    if trimmed.chars().count() > MAX_MESSAGE_CHARS {
        return Err(format!("must be at most {MAX_MESSAGE_CHARS} characters"));
    }
    Ok((!trimmed.is_empty()).then(|| trimmed.to_owned()))
}

/// A request as submitted. The organization name becomes the tenant's name on approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAccessRequest {
    pub requester: EmailAddress,
    pub organization: TenantName,
    pub message: Option<String>,
}

/// A stored request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessRequest {
    pub ticket_id: TicketId,
    /// The tenant whose application submitted it (its emails go out under this tenant).
    pub tenant_id: TenantId,
    pub requester: EmailAddress,
    pub organization: TenantName,
    pub message: Option<String>,
    pub status: AccessRequestStatus,
    /// The operator's reason, for a rejection.
    pub decision_reason: Option<String>,
    /// The tenant an approval created.
    pub created_tenant_id: Option<TenantId>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// What [`crate::ports::AccessRequestStore::submit_access_request`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Submitted {
    Created(AccessRequest),
    /// The requester already has a pending request; nothing was written.
    PendingExists(AccessRequest),
}

/// One access request exported from the backend Switchyard replaces
/// (`organization_access_requests`), to import under its own ticket number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedAccessRequest {
    pub ticket_id: TicketId,
    /// The old backend's id of the requesting user, kept for tracing back.
    pub requester_id: Option<String>,
    pub requester: EmailAddress,
    pub organization: TenantName,
    pub message: Option<String>,
    pub status: AccessRequestStatus,
    pub created_at: Timestamp,
    pub decided_at: Option<Timestamp>,
}

/// What importing one request did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Imported {
    Created,
    /// Its ticket number is taken: imported before (or, if the data differs, that is
    /// said).
    AlreadyThere(String),
    /// Not imported, and why.
    Refused(String),
}

/// An operator's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Approve and create this tenant.
    Approve {
        tenant: TenantId,
    },
    Reject {
        reason: Option<String>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticket_ids() {
        assert_eq!(TicketId::from_number(1).to_string(), "R00001");
        assert_eq!(TicketId::from_number(123_456).to_string(), "R123456");
        assert_eq!(TicketId::parse("R00042"), Ok(TicketId::from_number(42)));
        for bad in ["", "R", "R1", "r00001", "R0000x", "R00000", "00001"] {
            assert!(TicketId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn messages() {
        assert_eq!(parse_message("  "), Ok(None));
        assert_eq!(parse_message(" hi "), Ok(Some("hi".into())));
        assert!(parse_message(&"é".repeat(2_000)).is_ok());
        assert!(parse_message(&"é".repeat(2_001)).is_err());
    }
}
