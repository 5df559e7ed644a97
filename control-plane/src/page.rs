//! What every listing of the control plane shares: reading its query parameters, each
//! problem collected into one validation error, and cutting a page with the cursor of
//! the next one.

use core_api::problem::FieldError;

/// The largest page, and the page when none is asked for.
const MAX_LIMIT: u32 = 100;
const DEFAULT_LIMIT: u32 = 50;

/// `raw` parsed by `parse`, when given; when it does not parse, `message` is collected
/// for `name` in `errors`.
pub(crate) fn field<T>(
    errors: &mut Vec<FieldError>,
    name: &str,
    raw: Option<&str>,
    message: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> Option<T> {
    let parsed = parse(raw?);
    if parsed.is_none() {
        errors.push(FieldError::new(name, message));
    }
    parsed
}

/// The page size `raw` asks for: 1 to 100, 50 when absent.
pub(crate) fn limit(errors: &mut Vec<FieldError>, raw: Option<&str>) -> u32 {
    field(errors, "limit", raw, "must be a whole number from 1 to 100", |r| {
        r.parse::<u32>().ok().filter(|n| (1..=MAX_LIMIT).contains(n))
    })
    .unwrap_or(DEFAULT_LIMIT)
}

/// A cursor that is a row's number, as the previous page's `next_cursor` gave it.
pub(crate) fn seq_cursor(errors: &mut Vec<FieldError>, raw: Option<&str>) -> Option<i64> {
    field(errors, "cursor", raw, "must be the next_cursor of a previous page", |r| {
        r.parse::<i64>().ok().filter(|n| *n > 0)
    })
}

/// `items`, fetched one more than `limit`, as the page and the cursor of the next page
/// (none on the last).
pub(crate) fn split<T>(mut items: Vec<T>, limit: u32, cursor: impl Fn(&T) -> String) -> (Vec<T>, Option<String>) {
    let limit = limit as usize;
    let more = items.len() > limit;
    items.truncate(limit);
    let next = if more { items.last().map(cursor) } else { None };
    (items, next)
}

#[cfg(test)]
mod tests {
    use super::{limit, seq_cursor, split};

    #[test]
    fn pages_and_their_parameters() {
        let mut errors = Vec::new();
        assert_eq!((limit(&mut errors, None), limit(&mut errors, Some("7"))), (50, 7));
        assert_eq!(seq_cursor(&mut errors, Some("12")), Some(12));
        assert!(errors.is_empty());
        limit(&mut errors, Some("0"));
        seq_cursor(&mut errors, Some("-1"));
        assert_eq!(errors.iter().map(|e| e.field.as_str()).collect::<Vec<_>>(), ["limit", "cursor"]);
        assert_eq!(split(vec![1, 2, 3], 2, ToString::to_string), (vec![1, 2], Some("2".to_owned())));
        assert_eq!(split(vec![1, 2], 2, ToString::to_string), (vec![1, 2], None));
    }
}
