//! Validation texts, matching and merging.

use super::*;
use bytes::Bytes;
use warren_protocol::FieldTable;

fn s(v: &str) -> FieldValue {
    FieldValue::LongString(Bytes::copy_from_slice(v.as_bytes()))
}

fn def(pairs: &[(&str, FieldValue)]) -> FieldValue {
    let t: FieldTable = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    FieldValue::Table(t)
}

fn req(pattern: &str, priority: i64, d: FieldValue) -> PolicyRequest {
    PolicyRequest {
        pattern: Some(s(pattern)),
        apply_to: None,
        priority: Some(FieldValue::I64(priority)),
        definition: Some(d),
    }
}

fn policy(name: &str, pattern: &str, priority: i64, d: FieldValue) -> Policy {
    Policy::validate(PolicyKind::User, "/", name, req(pattern, priority, d)).unwrap()
}

#[test]
fn validation_texts() {
    let bad = |kind, d| {
        Policy::validate(kind, "/", "p", req(".*", 0, d))
            .unwrap_err()
            .0
    };
    assert_eq!(
        bad(PolicyKind::User, def(&[("message-ttl", s("abc"))])),
        "Validation failed\n\n<<\"abc\">> is not a valid message TTL\n"
    );
    assert_eq!(
        bad(
            PolicyKind::User,
            def(&[("max-length", FieldValue::I64(-1))])
        ),
        "Validation failed\n\n-1 is not a valid maximum length\n"
    );
    assert_eq!(
        bad(PolicyKind::User, def(&[("foo", FieldValue::I64(1))])),
        "Validation failed\n\n[{<<\"foo\">>,1}] are not recognised policy settings\n"
    );
    assert_eq!(
        bad(PolicyKind::Operator, def(&[("dead-letter-exchange", s("x"))])),
        "Validation failed\n\n[{<<\"dead-letter-exchange\">>,<<\"x\">>}] are not recognised policy settings\n"
    );
    assert_eq!(
        bad(PolicyKind::User, def(&[])),
        "Validation failed\n\nno policy provided\n"
    );
    assert!(Policy::validate(
        PolicyKind::Operator,
        "/",
        "p",
        req(".*", 0, def(&[("max-length", FieldValue::I64(5))]))
    )
    .is_ok());
}

#[test]
fn field_errors_are_reported_together_as_rabbitmq_does() {
    let r = |pattern: FieldValue, priority: Option<FieldValue>, d: FieldValue| {
        Policy::validate(
            PolicyKind::User,
            "/",
            "p",
            PolicyRequest {
                pattern: Some(pattern),
                apply_to: None,
                priority,
                definition: Some(d),
            },
        )
        .unwrap_err()
        .0
    };
    let ok = def(&[("max-length", FieldValue::I64(1))]);
    assert_eq!(
        r(s("(a"), None, ok.clone()),
        "Validation failed\n\npattern should be regular expression but is invalid: {\"missing )\",2}\n"
    );
    assert!(
        r(s("["), None, ok.clone()).contains("{\"missing terminating ] for character class\",1}")
    );
    assert_eq!(
        r(
            FieldValue::I64(5),
            Some(s("x")),
            def(&[("bogus", FieldValue::I64(1))])
        ),
        "Validation failed\n\n[{<<\"bogus\">>,1}] are not recognised policy settings\n\
         pattern should be a binary but was 5\n\
         priority should be a number, actually was <<\"x\">>\n"
    );
    assert_eq!(
        r(s(".*"), Some(FieldValue::Void), ok.clone()),
        "Validation failed\n\npriority should be a number, actually was null\n"
    );
    let missing = Policy::validate(PolicyKind::User, "/", "p", PolicyRequest::default());
    assert_eq!(
        missing.unwrap_err().0,
        "[{key_missing,pattern},{key_missing,definition}]"
    );
    let float = Policy::validate(
        PolicyKind::User,
        "/",
        "p",
        PolicyRequest {
            pattern: Some(s("")),
            priority: Some(FieldValue::F64(1.5)),
            definition: Some(ok),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(float.priority, Priority::Float(1.5));
    assert!(float.matches("anything", Target::Exchange));
}

#[test]
fn erlang_terms() {
    assert_eq!(erlang_term(&FieldValue::F64(1.5)), "1.5");
    assert_eq!(erlang_term(&FieldValue::Bool(true)), "true");
    assert_eq!(erlang_term(&s("a\"b")), "<<\"a\\\"b\">>");
    assert_eq!(
        erlang_term(&FieldValue::Array(vec![FieldValue::I64(1), s("x")])),
        "[1,<<\"x\">>]"
    );
}

#[test]
fn highest_priority_applies_alone_and_operator_limits_merge_low() {
    let mut v = VhostPolicies::default();
    v.put(
        PolicyKind::User,
        policy("low", "^q", 1, def(&[("max-length", FieldValue::I64(1))])),
    );
    v.put(
        PolicyKind::User,
        policy(
            "high",
            "q",
            5,
            def(&[
                ("message-ttl", FieldValue::I64(100)),
                ("max-length", FieldValue::I64(10)),
            ]),
        ),
    );
    let op = Policy::validate(
        PolicyKind::Operator,
        "/",
        "op",
        req("", 0, def(&[("max-length", FieldValue::I64(3))])),
    )
    .unwrap();
    v.put(PolicyKind::Operator, op);
    let a = v.applied("q1", Target::Queue(QueueKind::Classic));
    assert_eq!(a.policy.as_ref().unwrap().name, "high");
    assert_eq!(a.operator.as_ref().unwrap().name, "op");
    assert_eq!(a.get("max-length"), Some(FieldValue::I64(3)));
    assert_eq!(a.get("message-ttl"), Some(FieldValue::I64(100)));
    assert_eq!(a.effective_definition().len(), 2);
    // the pattern is searched, not anchored; exchanges get it too
    assert_eq!(
        v.applied("xq", Target::Exchange).policy.unwrap().name,
        "high"
    );
    assert!(v.applied("zz", Target::Exchange).policy.is_none());
    assert_eq!(
        v.list(PolicyKind::User)
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>(),
        ["low", "high"]
    );
}

#[test]
fn apply_to_restricts_targets() {
    let mut p = policy("p", ".*", 0, def(&[("max-length", FieldValue::I64(1))]));
    p.apply_to = ApplyTo::Exchanges;
    assert!(!p.matches("q", Target::Queue(QueueKind::Classic)));
    assert!(p.matches("q", Target::Exchange));
    p.apply_to = ApplyTo::Queues;
    assert!(p.matches("q", Target::Queue(QueueKind::Quorum)));
    assert!(!p.matches("q", Target::Exchange));
}
