//! Operators of a deployment: named accounts with a role, and what they did (the audit
//! log).

use std::fmt;

use crate::clock::Timestamp;

/// What an operator may do; each role may do all the roles below it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Reads everything.
    Viewer,
    /// Also redrives dead letters, retries failed outbox rows, cancels jobs, and
    /// approves or rejects access requests.
    Operator,
    /// Also purges and restores dead letters, discards failed outbox rows, and manages
    /// tenants, keys and operators.
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Operator, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        Self::ALL.into_iter().find(|r| r.as_str() == text).ok_or_else(|| {
            format!("`{}` is not a role (viewer, operator, admin)", text.chars().take(40).collect::<String>())
        })
    }

    /// Whether this role may do what `needed` may.
    pub fn allows(self, needed: Role) -> bool {
        self >= needed
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An operator's name: 1 to 64 lowercase letters, digits, `.`, `_` or `-`, starting
/// with a letter (it appears in the audit log and in the console).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OperatorName(String);

impl OperatorName {
    pub fn parse(text: &str) -> Result<Self, String> {
        let ok = (1..=64).contains(&text.len())
            && text.starts_with(|c: char| c.is_ascii_lowercase())
            && text.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'));
        if ok {
            Ok(Self(text.to_owned()))
        } else {
            Err("an operator's name is 1 to 64 lowercase letters, digits, `.`, `_` or `-`, starting with a letter"
                .into())
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OperatorName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A stored operator: only the SHA-256 of the token is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorRecord {
    pub name: OperatorName,
    pub role: Role,
    /// Lowercase hex SHA-256 of the token as shown once.
    pub token_hash: String,
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
}

#[cfg(test)]
mod tests {
    use super::{OperatorName, Role};

    #[test]
    fn roles_include_the_ones_below_them() {
        assert!(Role::Admin.allows(Role::Operator) && Role::Admin.allows(Role::Viewer));
        assert!(Role::Operator.allows(Role::Viewer) && !Role::Operator.allows(Role::Admin));
        assert!(!Role::Viewer.allows(Role::Operator));
        assert_eq!(Role::parse("operator"), Ok(Role::Operator));
        assert!(Role::parse("root").is_err());
    }

    #[test]
    fn operator_names_are_plain() {
        for good in ["ana", "ops-1", "j.doe_2"] {
            assert!(OperatorName::parse(good).is_ok(), "{good}");
        }
        for bad in ["", "Ana", "1ana", "a b", "<script>", &"a".repeat(65)] {
            assert!(OperatorName::parse(bad).is_err(), "{bad}");
        }
    }
}
