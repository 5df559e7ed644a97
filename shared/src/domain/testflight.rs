//! TestFlight invitations: a beta tester invited into a beta group through App Store
//! Connect.

use serde::Serialize;

use crate::clock::Timestamp;
use crate::domain::EmailAddress;
use crate::ids::{EventId, InvitationId, TenantId};

const MAX_NAME_CHARS: usize = 100;

/// A tester's first or last name: 1 to 100 characters, no control characters.
pub fn parse_name(value: &str) -> Result<String, String> {
    let trimmed = value.trim();
    if trimmed.is_empty() || trimmed.chars().count() > MAX_NAME_CHARS || trimmed.chars().any(char::is_control) {
        return Err(format!("must be 1 to {MAX_NAME_CHARS} characters without control characters"));
    }
    Ok(trimmed.to_owned())
}

/// An App Store Connect beta group id (opaque; letters, digits and dashes).
pub fn parse_group_id(value: &str) -> Result<String, String> {
    let ok = !value.is_empty() && value.len() <= 64 && value.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if ok {
        Ok(value.to_owned())
    } else {
        Err("must be an App Store Connect beta group id (letters, digits and dashes)".into())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewInvitation {
    pub id: InvitationId,
    pub email: EmailAddress,
    pub first_name: String,
    pub last_name: String,
    pub group_id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InvitationStatus {
    Accepted,
    Invited,
    Failed,
}

impl InvitationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Invited => "invited",
            Self::Failed => "failed",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        [Self::Accepted, Self::Invited, Self::Failed].into_iter().find(|s| s.as_str() == value)
    }
}

/// How an invitation ended, recorded with the inbox row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvitationOutcome {
    pub status: InvitationStatus,
    pub tester_id: Option<String>,
    /// The tester existed already (added to the group).
    pub already_existed: bool,
    pub failure_reason: Option<String>,
    pub result_key: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InvitationRecord {
    pub id: InvitationId,
    pub tenant_id: TenantId,
    pub event_id: EventId,
    pub email: EmailAddress,
    pub first_name: String,
    pub last_name: String,
    pub group_id: String,
    pub status: InvitationStatus,
    pub tester_id: Option<String>,
    pub already_existed: bool,
    pub failure_reason: Option<String>,
    pub result_key: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_groups() {
        assert_eq!(parse_name("  Ana "), Ok("Ana".into()));
        assert!(parse_name("").is_err());
        assert!(parse_name(&"a".repeat(101)).is_err());
        assert!(parse_group_id("5f1c2a7e-1d2b-4c3d-9e8f-0a1b2c3d4e5f").is_ok());
        assert!(parse_group_id("").is_err());
        assert!(parse_group_id("a/b").is_err());
    }
}
