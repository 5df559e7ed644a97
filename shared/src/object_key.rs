//! Object keys with the S3 layout every backend shares:
//! `<service>/tenant=<tenant id>/year=YYYY/month=MM/day=DD/hour=HH/<name>`.

use std::fmt;

use crate::clock::Timestamp;
use crate::ids::TenantId;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid object key `{key}`: {reason}")]
pub struct ObjectKeyError {
    key: String,
    reason: &'static str,
}

/// A validated object key: relative, `/`-separated, no empty, `.` or `..` segments,
/// at most 1,024 bytes, printable ASCII only (the same on S3 and on a filesystem).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey(String);

impl ObjectKey {
    pub fn parse(key: &str) -> Result<Self, ObjectKeyError> {
        let error = |reason| ObjectKeyError { key: key.chars().take(120).collect(), reason };
        if key.is_empty() || key.len() > 1024 {
            return Err(error("must be 1 to 1024 bytes"));
        }
        if !key.bytes().all(|b| b.is_ascii_graphic()) || key.contains('\\') {
            return Err(error("only printable ASCII without spaces or backslashes"));
        }
        if key.split('/').any(|segment| segment.is_empty() || segment == "." || segment == "..") {
            return Err(error("segments must not be empty, `.` or `..`"));
        }
        Ok(Self(key.to_owned()))
    }

    /// `<prefix>/tenant=<id>/year=YYYY/month=MM/day=DD/hour=HH/<name>` for the UTC hour of `at`.
    pub fn partitioned(prefix: &str, tenant: TenantId, at: Timestamp, name: &str) -> Result<Self, ObjectKeyError> {
        let (year, month, day, hour) = at.utc_parts();
        Self::parse(&format!(
            "{prefix}/tenant={tenant}/year={year:04}/month={month:02}/day={day:02}/hour={hour:02}/{name}"
        ))
    }

    /// A worker's result object for `event`:
    /// `<prefix>/tenant=<its tenant>/…/hour=HH/<event id>.json`, from the event's own
    /// time, so a redelivery writes the same key.
    pub fn of_event(prefix: &str, event: &crate::EventEnvelope) -> Result<Self, ObjectKeyError> {
        Self::partitioned(prefix, event.tenant_id, event.occurred_at, &format!("{}.json", event.id))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectKey({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_the_partitioned_layout() {
        let tenant = TenantId::parse("ten_0192f3a4b5c6d7e8f9a0b1c2d3e4f5a6").unwrap();
        let key = ObjectKey::partitioned("feedback", tenant, Timestamp::from_millis(1_764_201_428_123), "evt_1.json")
            .unwrap();
        assert_eq!(
            key.as_str(),
            "feedback/tenant=ten_0192f3a4b5c6d7e8f9a0b1c2d3e4f5a6/year=2025/month=11/day=26/hour=23/evt_1.json"
        );
    }

    #[test]
    fn rejects_escaping_keys() {
        for bad in ["", "/abs", "a//b", "a/../b", "a/./b", "a b", "a\\b", "trailing/"] {
            assert!(ObjectKey::parse(bad).is_err(), "{bad}");
        }
    }
}
