//! Content filtering: EventBridge event patterns and SNS subscription filter policies.
//!
//! One matcher serves both, because SNS filter policies use the same operators as
//! EventBridge patterns. [`EventPattern`] matches a JSON event; [`FilterPolicy`] applies
//! a pattern to a message's attributes (`MessageAttributes` scope, flat keys only) or to
//! its JSON body (`MessageBody` scope, nested keys allowed).
//!
//! Semantics (EventBridge content filtering):
//! - a pattern is an object; every key must match (AND); a key's value is either a
//!   nested object or a non-empty array of matchers, any of which may match (OR);
//! - when the event's value is an array, the key matches if any element matches;
//! - matchers: exact string, number (compared numerically) or `null`; `prefix`,
//!   `suffix` (each optionally `{"equals-ignore-case": …}`), `equals-ignore-case`,
//!   `wildcard` (`*`, with `\*` for a literal star), `anything-but` (values, or
//!   `prefix` / `suffix` / `equals-ignore-case` / `wildcard`), `numeric` ranges,
//!   `cidr` (IPv4 and IPv6), `exists` true/false;
//! - `$or` at any object level takes an array of alternative pattern objects;
//! - a missing field matches only `{"exists": false}`.
//!
//! Invalid patterns are rejected at parse time with a [`PatternError`] naming the path.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use serde_json::{Map, Value};

/// Why a pattern is invalid, and where (`detail.state[0]`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid pattern at `{path}`: {message}")]
pub struct PatternError {
    pub path: String,
    pub message: String,
}

/// A parsed EventBridge event pattern.
#[derive(Debug, Clone, PartialEq)]
pub struct EventPattern {
    root: Node,
}

#[derive(Debug, Clone, PartialEq)]
struct Node {
    fields: Vec<(String, Field)>,
    any_of: Vec<Vec<Node>>,
}

#[derive(Debug, Clone, PartialEq)]
enum Field {
    Nested(Node),
    Leaf(Vec<Matcher>),
}

#[derive(Debug, Clone, PartialEq)]
enum Matcher {
    Exact(Value),
    Prefix { text: String, case: Case },
    Suffix { text: String, case: Case },
    EqualsIgnoreCase(String),
    Wildcard(Wildcard),
    AnythingBut(AnythingBut),
    Numeric(Vec<(Comparison, f64)>),
    Cidr(Cidr),
    Exists(bool),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    Sensitive,
    Insensitive,
}

#[derive(Debug, Clone, PartialEq)]
enum AnythingBut {
    Values(Vec<Value>),
    Prefix(String),
    Suffix(String),
    EqualsIgnoreCase(Vec<String>),
    Wildcard(Vec<Wildcard>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Comparison {
    Less,
    LessOrEqual,
    Equal,
    Greater,
    GreaterOrEqual,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Cidr {
    network: u128,
    prefix_len: u8,
    v6: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum WildcardToken {
    Char(char),
    Star,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Wildcard(Vec<WildcardToken>);

struct Path<'a> {
    parent: Option<&'a Path<'a>>,
    segment: Segment<'a>,
}

enum Segment<'a> {
    Root,
    Key(&'a str),
    Index(usize),
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.parent, &self.segment) {
            (_, Segment::Root) => f.write_str("(root)"),
            (Some(parent), Segment::Key(key)) if !matches!(parent.segment, Segment::Root) => {
                write!(f, "{parent}.{key}")
            }
            (_, Segment::Key(key)) => f.write_str(key),
            (Some(parent), Segment::Index(i)) => write!(f, "{parent}[{i}]"),
            (None, Segment::Index(i)) => write!(f, "[{i}]"),
        }
    }
}

impl<'a> Path<'a> {
    fn key(&'a self, key: &'a str) -> Path<'a> {
        Path { parent: Some(self), segment: Segment::Key(key) }
    }

    fn index(&'a self, i: usize) -> Path<'a> {
        Path { parent: Some(self), segment: Segment::Index(i) }
    }

    fn error(&self, message: impl Into<String>) -> PatternError {
        PatternError { path: self.to_string(), message: message.into() }
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

const OPERATORS: &str = "prefix, suffix, equals-ignore-case, wildcard, anything-but, numeric, cidr, exists";

impl EventPattern {
    /// Parses a pattern from JSON text.
    pub fn parse_str(text: &str) -> Result<Self, PatternError> {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| PatternError { path: "(root)".into(), message: format!("not valid JSON: {e}") })?;
        Self::parse(&value)
    }

    /// Parses a pattern from a JSON value.
    pub fn parse(value: &Value) -> Result<Self, PatternError> {
        let root = Path { parent: None, segment: Segment::Root };
        match value {
            Value::Object(map) => Ok(Self { root: parse_node(map, &root, Nesting::Allowed)? }),
            other => Err(root.error(format!("a pattern must be a JSON object, found {}", kind_of(other)))),
        }
    }

    /// Whether `event` matches this pattern.
    pub fn matches(&self, event: &Value) -> bool {
        match event {
            Value::Object(map) => self.root.matches(Some(map)),
            _ => false,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Nesting {
    Allowed,
    Forbidden,
}

fn parse_node(map: &Map<String, Value>, path: &Path<'_>, nesting: Nesting) -> Result<Node, PatternError> {
    if map.is_empty() {
        return Err(path.error("a pattern object must have at least one field"));
    }
    let mut node = Node { fields: Vec::new(), any_of: Vec::new() };
    for (key, value) in map {
        let here = path.key(key);
        if key == "$or" {
            let Value::Array(alternatives) = value else {
                return Err(here.error(format!("`$or` takes an array of pattern objects, found {}", kind_of(value))));
            };
            if alternatives.len() < 2 {
                return Err(here.error("`$or` needs at least two alternatives"));
            }
            let mut parsed = Vec::with_capacity(alternatives.len());
            for (i, alternative) in alternatives.iter().enumerate() {
                let at = here.index(i);
                let Value::Object(inner) = alternative else {
                    return Err(
                        at.error(format!("each `$or` alternative must be an object, found {}", kind_of(alternative)))
                    );
                };
                parsed.push(parse_node(inner, &at, nesting)?);
            }
            node.any_of.push(parsed);
            continue;
        }
        let field = match value {
            Value::Object(inner) if nesting == Nesting::Allowed => Field::Nested(parse_node(inner, &here, nesting)?),
            Value::Object(_) => {
                return Err(here.error("nested keys are only allowed in a MessageBody-scoped filter policy"));
            }
            Value::Array(items) if items.is_empty() => {
                return Err(here.error("a match list must not be empty"));
            }
            Value::Array(items) => Field::Leaf(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| parse_matcher(item, &here.index(i)))
                    .collect::<Result<_, _>>()?,
            ),
            other => {
                return Err(here
                    .error(format!("match values must be in an array (like [\"value\"]), found {}", kind_of(other))));
            }
        };
        node.fields.push((key.clone(), field));
    }
    Ok(node)
}

fn expect_str<'v>(value: &'v Value, path: &Path<'_>, operator: &str) -> Result<&'v str, PatternError> {
    value.as_str().ok_or_else(|| path.error(format!("`{operator}` takes a string, found {}", kind_of(value))))
}

fn parse_affix(value: &Value, path: &Path<'_>, operator: &str) -> Result<(String, Case), PatternError> {
    match value {
        Value::String(text) => Ok((text.clone(), Case::Sensitive)),
        Value::Object(map) if map.len() == 1 && map.contains_key("equals-ignore-case") => {
            let text = expect_str(&map["equals-ignore-case"], path, "equals-ignore-case")?;
            Ok((text.to_lowercase(), Case::Insensitive))
        }
        other => Err(path.error(format!(
            "`{operator}` takes a string or {{\"equals-ignore-case\": string}}, found {}",
            kind_of(other)
        ))),
    }
}

fn string_list(value: &Value, path: &Path<'_>, operator: &str) -> Result<Vec<String>, PatternError> {
    match value {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) if !items.is_empty() => {
            items.iter().map(|item| expect_str(item, path, operator).map(str::to_owned)).collect()
        }
        other => Err(path
            .error(format!("`{operator}` takes a string or a non-empty array of strings, found {}", kind_of(other)))),
    }
}

fn parse_matcher(value: &Value, path: &Path<'_>) -> Result<Matcher, PatternError> {
    let map = match value {
        Value::String(_) | Value::Number(_) | Value::Null | Value::Bool(_) => return Ok(Matcher::Exact(value.clone())),
        Value::Array(_) => return Err(path.error("nested arrays are not allowed in a match list")),
        Value::Object(map) => map,
    };
    let mut entries = map.iter();
    let (Some((operator, argument)), None) = (entries.next(), entries.next()) else {
        return Err(path.error(format!("a matcher object must have exactly one operator ({OPERATORS})")));
    };
    let at = path.key(operator);
    match operator.as_str() {
        "prefix" => parse_affix(argument, &at, operator).map(|(text, case)| Matcher::Prefix { text, case }),
        "suffix" => parse_affix(argument, &at, operator).map(|(text, case)| Matcher::Suffix { text, case }),
        "equals-ignore-case" => Ok(Matcher::EqualsIgnoreCase(expect_str(argument, &at, operator)?.to_lowercase())),
        "wildcard" => Ok(Matcher::Wildcard(Wildcard::parse(expect_str(argument, &at, operator)?, &at)?)),
        "anything-but" => parse_anything_but(argument, &at).map(Matcher::AnythingBut),
        "numeric" => parse_numeric(argument, &at).map(Matcher::Numeric),
        "cidr" => Cidr::parse(expect_str(argument, &at, operator)?, &at).map(Matcher::Cidr),
        "exists" => match argument {
            Value::Bool(b) => Ok(Matcher::Exists(*b)),
            other => Err(at.error(format!("`exists` takes true or false, found {}", kind_of(other)))),
        },
        other => Err(path.error(format!("unknown operator `{other}` (expected one of {OPERATORS})"))),
    }
}

fn parse_anything_but(argument: &Value, path: &Path<'_>) -> Result<AnythingBut, PatternError> {
    match argument {
        Value::String(_) | Value::Number(_) => Ok(AnythingBut::Values(vec![argument.clone()])),
        Value::Array(items) if items.is_empty() => Err(path.error("`anything-but` list must not be empty")),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                if !(item.is_string() || item.is_number()) {
                    return Err(path.index(i).error(format!(
                        "`anything-but` lists hold strings or numbers, found {}",
                        kind_of(item)
                    )));
                }
            }
            Ok(AnythingBut::Values(items.clone()))
        }
        Value::Object(map) if map.len() == 1 => {
            let (operator, inner) = map.iter().next().map(|(k, v)| (k.as_str(), v)).unwrap_or(("", argument));
            let at = path.key(operator);
            match operator {
                "prefix" => Ok(AnythingBut::Prefix(expect_str(inner, &at, operator)?.to_owned())),
                "suffix" => Ok(AnythingBut::Suffix(expect_str(inner, &at, operator)?.to_owned())),
                "equals-ignore-case" => Ok(AnythingBut::EqualsIgnoreCase(
                    string_list(inner, &at, operator)?.into_iter().map(|s| s.to_lowercase()).collect(),
                )),
                "wildcard" => Ok(AnythingBut::Wildcard(
                    string_list(inner, &at, operator)?.iter().map(|s| Wildcard::parse(s, &at)).collect::<Result<_, _>>()?,
                )),
                other => Err(path.error(format!(
                    "unknown `anything-but` operator `{other}` (expected prefix, suffix, equals-ignore-case or wildcard)"
                ))),
            }
        }
        other => Err(path.error(format!(
            "`anything-but` takes a string, a number, a list of them, or one of prefix / suffix / equals-ignore-case / wildcard; found {}",
            kind_of(other)
        ))),
    }
}

fn parse_numeric(argument: &Value, path: &Path<'_>) -> Result<Vec<(Comparison, f64)>, PatternError> {
    let Value::Array(items) = argument else {
        return Err(
            path.error(format!("`numeric` takes an array like [\">\", 0, \"<=\", 5], found {}", kind_of(argument)))
        );
    };
    if items.is_empty() || items.len() > 4 || items.len() % 2 != 0 {
        return Err(path.error("`numeric` takes one or two (operator, number) pairs"));
    }
    let mut conditions = Vec::new();
    for (i, pair) in items.chunks(2).enumerate() {
        let op_path = path.index(i * 2);
        let comparison = match pair[0].as_str() {
            Some("<") => Comparison::Less,
            Some("<=") => Comparison::LessOrEqual,
            Some("=") => Comparison::Equal,
            Some(">") => Comparison::Greater,
            Some(">=") => Comparison::GreaterOrEqual,
            _ => return Err(op_path.error("expected one of \"<\", \"<=\", \"=\", \">\", \">=\"")),
        };
        let number = pair[1]
            .as_f64()
            .ok_or_else(|| path.index(i * 2 + 1).error(format!("expected a number, found {}", kind_of(&pair[1]))))?;
        conditions.push((comparison, number));
    }
    if let [(lower, low), (upper, high)] = conditions.as_slice() {
        let lower_ok = matches!(lower, Comparison::Greater | Comparison::GreaterOrEqual);
        let upper_ok = matches!(upper, Comparison::Less | Comparison::LessOrEqual);
        if !lower_ok || !upper_ok {
            return Err(
                path.error("a numeric range must be a lower bound (> or >=) followed by an upper bound (< or <=)")
            );
        }
        if low > high {
            return Err(path.error(format!("the lower bound {low} is above the upper bound {high}")));
        }
    }
    Ok(conditions)
}

impl Wildcard {
    fn parse(text: &str, path: &Path<'_>) -> Result<Self, PatternError> {
        let mut tokens = Vec::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some(escaped @ ('*' | '\\')) => tokens.push(WildcardToken::Char(escaped)),
                    _ => return Err(path.error("in a wildcard, `\\` must be followed by `*` or `\\`")),
                },
                '*' => {
                    if tokens.last() == Some(&WildcardToken::Star) {
                        return Err(path.error("consecutive wildcard characters (`**`) are not allowed"));
                    }
                    tokens.push(WildcardToken::Star);
                }
                other => tokens.push(WildcardToken::Char(other)),
            }
        }
        Ok(Self(tokens))
    }

    /// Classic greedy glob matching with backtracking to the last star.
    fn matches(&self, text: &str) -> bool {
        let text: Vec<char> = text.chars().collect();
        let tokens = &self.0;
        let (mut t, mut p) = (0usize, 0usize);
        let mut star: Option<(usize, usize)> = None;
        while t < text.len() {
            match tokens.get(p) {
                Some(WildcardToken::Char(c)) if *c == text[t] => {
                    t += 1;
                    p += 1;
                }
                Some(WildcardToken::Star) => {
                    star = Some((p, t));
                    p += 1;
                }
                _ => match star {
                    Some((star_p, star_t)) => {
                        p = star_p + 1;
                        t = star_t + 1;
                        star = Some((star_p, star_t + 1));
                    }
                    None => return false,
                },
            }
        }
        tokens[p..].iter().all(|token| *token == WildcardToken::Star)
    }
}

fn ip_bits(ip: IpAddr) -> (u128, bool) {
    match ip {
        IpAddr::V4(v4) => (u128::from(u32::from(v4)), false),
        IpAddr::V6(v6) => (u128::from(v6), true),
    }
}

impl Cidr {
    fn parse(text: &str, path: &Path<'_>) -> Result<Self, PatternError> {
        let invalid = || path.error(format!("`{text}` is not a CIDR block like 10.0.0.0/24 or 2001:db8::/32"));
        let (address, prefix) = text.split_once('/').ok_or_else(invalid)?;
        let ip: IpAddr = address.parse().map_err(|_| invalid())?;
        let prefix_len: u8 = prefix.parse().map_err(|_| invalid())?;
        let (bits, v6) = ip_bits(ip);
        let width = if v6 { 128 } else { 32 };
        if prefix_len > width {
            return Err(invalid());
        }
        Ok(Self { network: bits & Self::mask(prefix_len, width), prefix_len, v6 })
    }

    fn mask(prefix_len: u8, width: u8) -> u128 {
        if prefix_len == 0 {
            return 0;
        }
        let full = if width == 128 { u128::MAX } else { u128::from(u32::MAX) };
        (full << (width - prefix_len)) & full
    }

    fn contains(&self, text: &str) -> bool {
        let Ok(ip) = text.parse::<IpAddr>() else {
            return false;
        };
        let (bits, v6) = ip_bits(ip);
        let width = if self.v6 { 128 } else { 32 };
        v6 == self.v6 && bits & Self::mask(self.prefix_len, width) == self.network
    }
}

fn numbers_equal(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

fn same_scalar(pattern: &Value, value: &Value) -> bool {
    match (pattern, value) {
        (Value::Number(_), Value::Number(_)) => numbers_equal(pattern, value),
        _ => pattern == value,
    }
}

impl Matcher {
    /// Whether one present, non-array value matches.
    fn matches(&self, value: &Value) -> bool {
        let text = value.as_str();
        match self {
            Matcher::Exact(expected) => same_scalar(expected, value),
            Matcher::Prefix { text: prefix, case } => text.is_some_and(|s| match case {
                Case::Sensitive => s.starts_with(prefix.as_str()),
                Case::Insensitive => s.to_lowercase().starts_with(prefix.as_str()),
            }),
            Matcher::Suffix { text: suffix, case } => text.is_some_and(|s| match case {
                Case::Sensitive => s.ends_with(suffix.as_str()),
                Case::Insensitive => s.to_lowercase().ends_with(suffix.as_str()),
            }),
            Matcher::EqualsIgnoreCase(expected) => text.is_some_and(|s| s.to_lowercase() == *expected),
            Matcher::Wildcard(wildcard) => text.is_some_and(|s| wildcard.matches(s)),
            Matcher::AnythingBut(rule) => match rule {
                AnythingBut::Values(values) => {
                    (value.is_string() || value.is_number()) && !values.iter().any(|v| same_scalar(v, value))
                }
                AnythingBut::Prefix(prefix) => text.is_some_and(|s| !s.starts_with(prefix.as_str())),
                AnythingBut::Suffix(suffix) => text.is_some_and(|s| !s.ends_with(suffix.as_str())),
                AnythingBut::EqualsIgnoreCase(values) => text.is_some_and(|s| !values.contains(&s.to_lowercase())),
                AnythingBut::Wildcard(wildcards) => text.is_some_and(|s| !wildcards.iter().any(|w| w.matches(s))),
            },
            Matcher::Numeric(conditions) => value.as_f64().is_some_and(|n| {
                conditions.iter().all(|(comparison, bound)| match comparison {
                    Comparison::Less => n < *bound,
                    Comparison::LessOrEqual => n <= *bound,
                    Comparison::Equal => n == *bound,
                    Comparison::Greater => n > *bound,
                    Comparison::GreaterOrEqual => n >= *bound,
                })
            }),
            Matcher::Cidr(cidr) => text.is_some_and(|s| cidr.contains(s)),
            Matcher::Exists(expected) => *expected,
        }
    }
}

fn leaf_matches(matchers: &[Matcher], value: Option<&Value>) -> bool {
    match value {
        None => matchers.contains(&Matcher::Exists(false)),
        Some(Value::Array(items)) => matchers.iter().any(|m| match m {
            Matcher::Exists(expected) => *expected,
            _ => items.iter().any(|item| m.matches(item)),
        }),
        Some(value) => matchers.iter().any(|m| m.matches(value)),
    }
}

impl Node {
    fn matches(&self, object: Option<&Map<String, Value>>) -> bool {
        let fields_match = self.fields.iter().all(|(key, field)| {
            let value = object.and_then(|o| o.get(key));
            match field {
                Field::Leaf(matchers) => leaf_matches(matchers, value),
                Field::Nested(node) => match value {
                    Some(Value::Object(inner)) => node.matches(Some(inner)),
                    Some(Value::Array(items)) => {
                        items.iter().any(|item| item.as_object().is_some_and(|inner| node.matches(Some(inner))))
                    }
                    _ => node.matches(None),
                },
            }
        });
        fields_match && self.any_of.iter().all(|alternatives| alternatives.iter().any(|alt| alt.matches(object)))
    }
}

/// What an SNS filter policy is applied to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum FilterPolicyScope {
    /// The message's attributes (flat keys only). SNS's default.
    MessageAttributes,
    /// The message body, parsed as JSON (nested keys allowed).
    MessageBody,
}

/// An SNS subscription filter policy.
#[derive(Debug, Clone, PartialEq)]
pub struct FilterPolicy {
    scope: FilterPolicyScope,
    pattern: EventPattern,
}

impl FilterPolicy {
    pub fn parse(policy: &Value, scope: FilterPolicyScope) -> Result<Self, PatternError> {
        let root = Path { parent: None, segment: Segment::Root };
        let Value::Object(map) = policy else {
            return Err(root.error(format!("a filter policy must be a JSON object, found {}", kind_of(policy))));
        };
        let nesting = match scope {
            FilterPolicyScope::MessageAttributes => Nesting::Forbidden,
            FilterPolicyScope::MessageBody => Nesting::Allowed,
        };
        Ok(Self { scope, pattern: EventPattern { root: parse_node(map, &root, nesting)? } })
    }

    pub fn scope(&self) -> FilterPolicyScope {
        self.scope
    }

    /// Whether a message with these (String) attributes and this body passes the policy.
    /// A body that is not JSON never matches a MessageBody-scoped policy.
    pub fn matches_message(&self, attributes: &BTreeMap<String, String>, body: &str) -> bool {
        match self.scope {
            FilterPolicyScope::MessageAttributes => {
                let object: Map<String, Value> =
                    attributes.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
                self.pattern.root.matches(Some(&object))
            }
            FilterPolicyScope::MessageBody => match serde_json::from_str::<Value>(body) {
                Ok(value) => self.pattern.matches(&value),
                Err(_) => false,
            },
        }
    }
}

#[cfg(test)]
mod tests;
