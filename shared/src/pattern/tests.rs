//! Table-driven tests from the examples in the EventBridge "content filtering" and SNS
//! "filter policy" documentation.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::*;

/// The EC2 state-change event the EventBridge documentation uses throughout.
fn ec2_event() -> Value {
    json!({
        "version": "0",
        "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
        "detail-type": "EC2 Instance State-change Notification",
        "source": "aws.ec2",
        "account": "111122223333",
        "time": "2017-12-22T18:43:48Z",
        "region": "us-west-1",
        "resources": ["arn:aws:ec2:us-west-1:123456789012:instance/i-1234567890abcdef0"],
        "detail": {
            "instance-id": "i-1234567890abcdef0",
            "state": "terminated",
            "c-count": 5,
            "d-count": 3,
            "x-limit": 301.8,
            "source-ip": "10.0.0.123",
            "source-ipv6": "2001:db8::1",
            "responseElements": null,
            "eventVersion": "",
            "items": [{"name": "alpha", "qty": 2}, {"name": "beta", "qty": 0}],
            "path": "/usr/lib/libc.so"
        }
    })
}

fn check(cases: &[(&str, Value, bool)]) {
    let event = ec2_event();
    for (name, pattern, expected) in cases {
        let parsed = EventPattern::parse(pattern).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(parsed.matches(&event), *expected, "{name}: {pattern}");
    }
}

#[test]
fn exact_values_and_arrays() {
    check(&[
        ("source", json!({"source": ["aws.ec2"]}), true),
        ("source other", json!({"source": ["aws.s3"]}), false),
        (
            "detail-type and state list",
            json!({"detail-type": ["EC2 Instance State-change Notification"], "detail": {"state": ["terminated", "stopped"]}}),
            true,
        ),
        ("state not in list", json!({"detail": {"state": ["running", "pending"]}}), false),
        (
            "resources array intersects",
            json!({"resources": ["arn:aws:ec2:us-west-1:123456789012:instance/i-1234567890abcdef0", "arn:other"]}),
            true,
        ),
        ("resources array disjoint", json!({"resources": ["arn:other"]}), false),
        ("number exact compares numerically", json!({"detail": {"c-count": [5.0]}}), true),
        ("string does not equal number", json!({"detail": {"c-count": ["5"]}}), false),
        ("null matches null", json!({"detail": {"responseElements": [null]}}), true),
        ("empty string matches empty string", json!({"detail": {"eventVersion": [""]}}), true),
        ("empty string does not match null", json!({"detail": {"responseElements": [""]}}), false),
        ("missing field never matches a value", json!({"detail": {"nothing": ["x"]}}), false),
        ("nested object inside array", json!({"detail": {"items": {"name": ["beta"]}}}), true),
        ("nested object inside array, no element", json!({"detail": {"items": {"name": ["gamma"]}}}), false),
    ]);
}

#[test]
fn prefix_suffix_and_case() {
    check(&[
        ("prefix", json!({"time": [{"prefix": "2017-12-22"}]}), true),
        ("prefix miss", json!({"time": [{"prefix": "2018"}]}), false),
        ("prefix ignore case", json!({"detail": {"state": [{"prefix": {"equals-ignore-case": "TERM"}}]}}), true),
        ("prefix is case sensitive", json!({"detail": {"state": [{"prefix": "TERM"}]}}), false),
        ("suffix", json!({"detail": {"instance-id": [{"suffix": "cdef0"}]}}), true),
        ("suffix ignore case", json!({"detail": {"instance-id": [{"suffix": {"equals-ignore-case": "CDEF0"}}]}}), true),
        ("suffix miss", json!({"detail": {"instance-id": [{"suffix": ".png"}]}}), false),
        ("prefix on a number never matches", json!({"detail": {"c-count": [{"prefix": "5"}]}}), false),
        (
            "equals-ignore-case",
            json!({"detail-type": [{"equals-ignore-case": "ec2 instance state-change notification"}]}),
            true,
        ),
        ("equals-ignore-case miss", json!({"detail-type": [{"equals-ignore-case": "ec2"}]}), false),
    ]);
}

#[test]
fn anything_but() {
    check(&[
        ("single value", json!({"detail": {"state": [{"anything-but": "initializing"}]}}), true),
        ("list excludes", json!({"detail": {"state": [{"anything-but": ["stopped", "terminated"]}]}}), false),
        ("numeric list", json!({"detail": {"c-count": [{"anything-but": [100, 200, 300]}]}}), true),
        ("numeric list excludes", json!({"detail": {"c-count": [{"anything-but": [5, 6]}]}}), false),
        ("prefix", json!({"detail": {"state": [{"anything-but": {"prefix": "init"}}]}}), true),
        ("prefix excludes", json!({"detail": {"state": [{"anything-but": {"prefix": "term"}}]}}), false),
        ("suffix excludes", json!({"detail": {"state": [{"anything-but": {"suffix": "ated"}}]}}), false),
        ("suffix", json!({"detail": {"state": [{"anything-but": {"suffix": ".txt"}}]}}), true),
        (
            "equals-ignore-case excludes",
            json!({"detail": {"state": [{"anything-but": {"equals-ignore-case": ["Stopped", "TERMINATED"]}}]}}),
            false,
        ),
        ("wildcard excludes", json!({"detail": {"path": [{"anything-but": {"wildcard": "*/lib/*"}}]}}), false),
        ("wildcard", json!({"detail": {"state": [{"anything-but": {"wildcard": "run*"}}]}}), true),
        ("missing field does not match anything-but", json!({"detail": {"nothing": [{"anything-but": "x"}]}}), false),
    ]);
}

#[test]
fn numeric_ranges() {
    check(&[
        (
            "documentation example",
            json!({"detail": {
                "c-count": [{"numeric": [">", 0, "<=", 5]}],
                "d-count": [{"numeric": ["<", 10]}],
                "x-limit": [{"numeric": ["=", 3.018e2]}]
            }}),
            true,
        ),
        ("upper bound exclusive", json!({"detail": {"c-count": [{"numeric": [">", 0, "<", 5]}]}}), false),
        ("lower bound inclusive", json!({"detail": {"c-count": [{"numeric": [">=", 5]}]}}), true),
        ("strings are not numbers", json!({"detail": {"state": [{"numeric": [">", 0]}]}}), false),
        ("array elements", json!({"detail": {"items": {"qty": [{"numeric": [">", 1]}]}}}), true),
    ]);
}

#[test]
fn cidr_ranges() {
    check(&[
        ("ipv4 inside", json!({"detail": {"source-ip": [{"cidr": "10.0.0.0/24"}]}}), true),
        ("ipv4 outside", json!({"detail": {"source-ip": [{"cidr": "10.0.1.0/24"}]}}), false),
        ("ipv4 /32", json!({"detail": {"source-ip": [{"cidr": "10.0.0.123/32"}]}}), true),
        ("ipv4 /0", json!({"detail": {"source-ip": [{"cidr": "0.0.0.0/0"}]}}), true),
        ("ipv6 inside", json!({"detail": {"source-ipv6": [{"cidr": "2001:db8::/32"}]}}), true),
        ("ipv6 pattern, ipv4 value", json!({"detail": {"source-ip": [{"cidr": "2001:db8::/32"}]}}), false),
        ("not an address", json!({"detail": {"state": [{"cidr": "10.0.0.0/8"}]}}), false),
    ]);
}

#[test]
fn exists() {
    check(&[
        ("exists true", json!({"detail": {"state": [{"exists": true}]}}), true),
        ("exists false on a present field", json!({"detail": {"state": [{"exists": false}]}}), false),
        ("exists false on a missing field", json!({"detail": {"nothing": [{"exists": false}]}}), true),
        ("exists true on a missing field", json!({"detail": {"nothing": [{"exists": true}]}}), false),
        ("exists true on null", json!({"detail": {"responseElements": [{"exists": true}]}}), true),
        ("exists false under a missing parent", json!({"nothing": {"deeper": [{"exists": false}]}}), true),
    ]);
}

#[test]
fn wildcards() {
    check(&[
        ("documentation example", json!({"resources": [{"wildcard": "arn:aws:ec2:*:instance/i-*"}]}), true),
        ("middle", json!({"detail": {"path": [{"wildcard": "/usr/*/libc.so"}]}}), true),
        ("no star must match whole", json!({"detail": {"state": [{"wildcard": "term"}]}}), false),
        ("backtracking", json!({"detail": {"instance-id": [{"wildcard": "i-*0ab*f0"}]}}), true),
        ("miss", json!({"detail": {"instance-id": [{"wildcard": "j-*"}]}}), false),
    ]);
    let escaped = EventPattern::parse(&json!({"a": [{"wildcard": "x\\*y"}]})).unwrap();
    assert!(escaped.matches(&json!({"a": "x*y"})));
    assert!(!escaped.matches(&json!({"a": "xzy"})));
}

#[test]
fn or_alternatives() {
    check(&[
        (
            "one alternative matches",
            json!({"detail": {"$or": [
                {"c-count": [{"numeric": [">", 10]}]},
                {"d-count": [{"numeric": ["<", 10]}]},
                {"x-limit": [{"numeric": ["=", 3.018e2]}]}
            ]}}),
            true,
        ),
        (
            "no alternative matches",
            json!({"detail": {"$or": [{"c-count": [{"numeric": [">", 10]}]}, {"state": ["running"]}]}}),
            false,
        ),
        (
            "top-level or combined with fields",
            json!({"source": ["aws.ec2"], "$or": [{"detail-type": ["x"]}, {"detail": {"state": ["terminated"]}}]}),
            true,
        ),
    ]);
}

#[test]
fn invalid_patterns_say_what_and_where() {
    let cases = [
        (json!({"source": "aws.ec2"}), "source", "must be in an array"),
        (json!({"detail": {"state": [{"bogus": 1}]}}), "detail.state[0]", "unknown operator `bogus`"),
        (json!({"detail": {"c": [{"numeric": [">", "a"]}]}}), "detail.c[0].numeric[1]", "expected a number"),
        (json!({"detail": {"c": [{"numeric": ["<", 5, ">", 1]}]}}), "detail.c[0].numeric", "lower bound"),
        (json!({"detail": {"c": [{"numeric": [">", 9, "<", 1]}]}}), "detail.c[0].numeric", "above the upper bound"),
        (json!({"detail": {"c": [{"numeric": ["~", 1]}]}}), "detail.c[0].numeric[0]", "expected one of"),
        (json!({"ip": [{"cidr": "10.0.0.0/33"}]}), "ip[0].cidr", "not a CIDR block"),
        (json!({"ip": [{"cidr": "10.0.0.0"}]}), "ip[0].cidr", "not a CIDR block"),
        (json!({"a": []}), "a", "must not be empty"),
        (json!({"a": [["x"]]}), "a[0]", "nested arrays"),
        (json!({"a": [{"wildcard": "a**b"}]}), "a[0].wildcard", "consecutive"),
        (json!({"a": [{"prefix": 5}]}), "a[0].prefix", "takes a string"),
        (json!({"a": [{"exists": "yes"}]}), "a[0].exists", "true or false"),
        (json!({"a": [{"prefix": "x", "suffix": "y"}]}), "a[0]", "exactly one operator"),
        (json!({"a": [{"anything-but": {"exists": true}}]}), "a[0].anything-but", "unknown `anything-but` operator"),
        (json!({"a": [{"anything-but": [true]}]}), "a[0].anything-but[0]", "strings or numbers"),
        (json!({"$or": {"a": ["x"]}}), "$or", "array of pattern objects"),
        (json!({"$or": [{"a": ["x"]}]}), "$or", "at least two"),
        (json!({"$or": [{"a": ["x"]}, "b"]}), "$or[1]", "must be an object"),
        (json!({}), "(root)", "at least one field"),
        (json!(["x"]), "(root)", "must be a JSON object"),
    ];
    for (pattern, path, message) in cases {
        let error = EventPattern::parse(&pattern).expect_err(&pattern.to_string());
        assert_eq!(error.path, path, "{pattern}: {error}");
        assert!(error.message.contains(message), "{pattern}: {error}");
    }
    let error = EventPattern::parse_str("{not json").unwrap_err();
    assert!(error.message.contains("not valid JSON"));
}

fn attributes(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

#[test]
fn sns_attribute_scope() {
    let policy = FilterPolicy::parse(
        &json!({
            "store": ["example_corp"],
            "event": [{"anything-but": "order_cancelled"}],
            "customer_interests": ["rugby", "football", "baseball"],
            "encrypted": [{"exists": false}]
        }),
        FilterPolicyScope::MessageAttributes,
    )
    .unwrap();
    let ok = attributes(&[("store", "example_corp"), ("event", "order_placed"), ("customer_interests", "rugby")]);
    assert!(policy.matches_message(&ok, "not json"));
    let cancelled =
        attributes(&[("store", "example_corp"), ("event", "order_cancelled"), ("customer_interests", "rugby")]);
    assert!(!policy.matches_message(&cancelled, ""));
    let missing_store = attributes(&[("event", "order_placed"), ("customer_interests", "rugby")]);
    assert!(!policy.matches_message(&missing_store, ""));
    let mut encrypted = ok.clone();
    encrypted.insert("encrypted".into(), "true".into());
    assert!(!policy.matches_message(&encrypted, ""));
}

#[test]
fn sns_attribute_scope_rejects_nesting() {
    let error = FilterPolicy::parse(&json!({"a": {"b": ["c"]}}), FilterPolicyScope::MessageAttributes).unwrap_err();
    assert_eq!(error.path, "a");
    assert!(error.message.contains("MessageBody"));
}

#[test]
fn sns_body_scope() {
    let policy = FilterPolicy::parse(
        &json!({
            "store": ["example_corp"],
            "event": [{"anything-but": "order_cancelled"}],
            "customer": {"interests": ["rugby", "football"]},
            "price_usd": [{"numeric": [">=", 100]}]
        }),
        FilterPolicyScope::MessageBody,
    )
    .unwrap();
    let none = BTreeMap::new();
    let body = json!({"store": "example_corp", "event": "order_created", "customer": {"interests": ["basketball", "rugby"]}, "price_usd": 210.75});
    assert!(policy.matches_message(&none, &body.to_string()));
    let cheap = json!({"store": "example_corp", "event": "order_created", "customer": {"interests": ["rugby"]}, "price_usd": 5});
    assert!(!policy.matches_message(&none, &cheap.to_string()));
    assert!(!policy.matches_message(&none, "not json"));
}
