//! Validation of a policy as RabbitMQ's runtime parameters do it: the
//! keys a policy and an operator policy may set, the check of each value,
//! and the reason texts (with PCRE's words for a bad pattern).

use regex::Regex;
use warren_protocol::FieldValue;

use super::erlang::{erlang_term, write_binary, write_term};
use super::{ApplyTo, Definition, Policy, PolicyError, PolicyKind, PolicyRequest, Priority};

/// The keys a policy may set, with the check of each value (RabbitMQ
/// 3.10's validators, the mirroring and locator ones included).
const POLICY_KEYS: &[(&str, Check)] = &[
    (
        "alternate-exchange",
        Check::Text("is not a valid alternate exchange name"),
    ),
    (
        "dead-letter-exchange",
        Check::Text("is not a valid dead letter exchange name"),
    ),
    (
        "dead-letter-routing-key",
        Check::Text("is not a valid dead letter routing key"),
    ),
    (
        "dead-letter-strategy",
        Check::OneOf(
            &["at-most-once", "at-least-once"],
            "is not a valid dead letter strategy",
        ),
    ),
    (
        "message-ttl",
        Check::Integer(0, "is not a valid message TTL"),
    ),
    ("expires", Check::Integer(1, "is not a valid queue expiry")),
    (
        "max-length",
        Check::Integer(0, "is not a valid maximum length"),
    ),
    (
        "max-length-bytes",
        Check::Integer(0, "is not a valid maximum length in bytes"),
    ),
    (
        "max-in-memory-length",
        Check::Integer(0, "is not a valid maximum memory in bytes"),
    ),
    (
        "max-in-memory-bytes",
        Check::Integer(0, "is not a valid maximum memory in bytes"),
    ),
    (
        "queue-mode",
        Check::OneOf(&["default", "lazy"], "is not a valid queue-mode value"),
    ),
    (
        "queue-version",
        Check::IntegerIn(1, 2, "is not a valid queue-version value"),
    ),
    (
        "overflow",
        Check::OneOf(
            &["drop-head", "reject-publish", "reject-publish-dlx"],
            "is not a valid overflow value",
        ),
    ),
    (
        "delivery-limit",
        Check::Integer(0, "is not a valid delivery limit"),
    ),
    ("max-age", Check::MaxAge("is not a valid max age")),
    (
        "stream-max-segment-size-bytes",
        Check::IntegerIn(0, 3_000_000_000, "is not a valid segment size"),
    ),
    (
        "queue-leader-locator",
        Check::OneOf(
            &["client-local", "random", "least-leaders", "balanced"],
            "is not a valid queue leader locator value",
        ),
    ),
    (
        "initial-cluster-size",
        Check::Integer(0, "is not a valid cluster size"),
    ),
    (
        "queue-master-locator",
        Check::OneOf(
            &["client-local", "min-masters", "random"],
            "is not a valid queue-master-locator value",
        ),
    ),
    (
        "ha-mode",
        Check::OneOf(&["all", "exactly", "nodes"], "is not a valid ha-mode value"),
    ),
    ("ha-params", Check::Any),
    (
        "ha-sync-mode",
        Check::OneOf(
            &["automatic", "manual"],
            "is not a valid ha-sync-mode value",
        ),
    ),
    (
        "ha-sync-batch-size",
        Check::Integer(1, "is not a valid ha-sync-batch-size value"),
    ),
    (
        "ha-promote-on-shutdown",
        Check::OneOf(
            &["always", "when-synced"],
            "is not a valid ha-promote-on-shutdown value",
        ),
    ),
    (
        "ha-promote-on-failure",
        Check::OneOf(
            &["always", "when-synced"],
            "is not a valid ha-promote-on-failure value",
        ),
    ),
];

/// The keys an operator policy may set: limits only, merged by taking the
/// lower value.
const OPERATOR_KEYS: &[&str] = &[
    "expires",
    "message-ttl",
    "max-length",
    "max-length-bytes",
    "max-in-memory-length",
    "max-in-memory-bytes",
    "delivery-limit",
];

#[derive(Debug, Clone, Copy)]
enum Check {
    Any,
    Text(&'static str),
    OneOf(&'static [&'static str], &'static str),
    /// An integer at least this large.
    Integer(i64, &'static str),
    IntegerIn(i64, i64, &'static str),
    /// A stream retention age: digits and a unit (`Y`, `M`, `D`, `h`, `m`,
    /// `s`).
    MaxAge(&'static str),
}

pub(super) fn integer(v: &FieldValue) -> Option<i64> {
    match v {
        FieldValue::Timestamp(_) | FieldValue::Bool(_) => None,
        v => v.as_i64(),
    }
}

fn text(v: &FieldValue) -> Option<&str> {
    match v {
        FieldValue::LongString(b) => std::str::from_utf8(b).ok(),
        _ => None,
    }
}

impl Check {
    fn run(self, v: &FieldValue) -> Result<(), String> {
        let fail = |what: &str| Err(format!("{} {what}", erlang_term(v)));
        match self {
            Check::Any => Ok(()),
            Check::Text(what) => match v {
                FieldValue::LongString(_) => Ok(()),
                _ => fail(what),
            },
            Check::OneOf(allowed, what) => match text(v) {
                Some(s) if allowed.contains(&s) => Ok(()),
                _ => fail(what),
            },
            Check::Integer(min, what) => match integer(v) {
                Some(n) if n >= min => Ok(()),
                _ => fail(what),
            },
            Check::IntegerIn(min, max, what) => match integer(v) {
                Some(n) if (min..=max).contains(&n) => Ok(()),
                _ => fail(what),
            },
            Check::MaxAge(what) => match text(v) {
                Some(s) if is_max_age(s) => Ok(()),
                _ => fail(what),
            },
        }
    }
}

fn is_max_age(s: &str) -> bool {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    digits > 0 && matches!(&s[digits..], "Y" | "M" | "D" | "h" | "m" | "s")
}

impl Policy {
    /// Validates a policy as RabbitMQ's runtime parameters do: missing
    /// keys first, then every field, each failure a line of the reason
    /// (the definition's first, the priority's last).
    pub fn validate(
        kind: PolicyKind,
        vhost: &str,
        name: &str,
        req: PolicyRequest,
    ) -> Result<Policy, PolicyError> {
        let missing: Vec<&str> = [("pattern", &req.pattern), ("definition", &req.definition)]
            .into_iter()
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| k)
            .collect();
        if !missing.is_empty() {
            let list: Vec<String> = missing
                .iter()
                .map(|k| format!("{{key_missing,{k}}}"))
                .collect();
            return Err(PolicyError(format!("[{}]", list.join(","))));
        }
        let mut errors = Vec::new();
        let definition = match req.definition.as_ref() {
            Some(FieldValue::Table(t)) => {
                let d: Definition = t.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
                if let Err(e) = validate_definition(kind, &d) {
                    errors.push(e);
                }
                d
            }
            Some(other) => {
                errors.push(format!(
                    "definition must be a dictionary: {}",
                    erlang_term(other)
                ));
                Definition::new()
            }
            None => Definition::new(),
        };
        let apply_to = match req.apply_to.as_ref() {
            None => Some(ApplyTo::All),
            Some(v) => {
                let parsed = text(v).and_then(ApplyTo::parse);
                if parsed.is_none() {
                    let shown = match v {
                        FieldValue::LongString(b) => String::from_utf8_lossy(b).into_owned(),
                        other => erlang_term(other),
                    };
                    errors.push(format!(
                        "apply-to '{shown}' unrecognised; should be 'queues', 'exchanges' or 'all'"
                    ));
                }
                parsed
            }
        };
        let pattern = match req.pattern.as_ref() {
            Some(FieldValue::LongString(b)) => {
                let p = String::from_utf8_lossy(b).into_owned();
                match compile(&p) {
                    Ok(re) => Some((p, re)),
                    Err(e) => {
                        errors.push(format!(
                            "pattern should be regular expression but is invalid: {e}"
                        ));
                        None
                    }
                }
            }
            Some(other) => {
                errors.push(format!(
                    "pattern should be a binary but was {}",
                    erlang_term(other)
                ));
                None
            }
            None => None,
        };
        let priority = match req.priority.as_ref() {
            None => Some(Priority::Integer(0)),
            Some(FieldValue::F64(f)) => Some(Priority::Float(*f)),
            Some(FieldValue::F32(f)) => Some(Priority::Float(f64::from(*f))),
            Some(v) => match integer(v) {
                Some(n) => Some(Priority::Integer(n)),
                None => {
                    errors.push(format!(
                        "priority should be a number, actually was {}",
                        erlang_term(v)
                    ));
                    None
                }
            },
        };
        match (errors.is_empty(), pattern, apply_to, priority) {
            (true, Some((pattern, regex)), Some(apply_to), Some(priority)) => Ok(Policy {
                vhost: vhost.to_string(),
                name: name.to_string(),
                pattern,
                regex,
                apply_to,
                priority,
                definition,
            }),
            _ => {
                let mut reason = String::from("Validation failed\n\n");
                for e in errors {
                    reason.push_str(&e);
                    reason.push('\n');
                }
                Err(PolicyError(reason))
            }
        }
    }
}

/// Compiles a pattern, or says what is wrong with it as PCRE (RabbitMQ's
/// regular expressions) would: `{"message",offset}`.
fn compile(pattern: &str) -> Result<Regex, String> {
    use regex_syntax::ast::ErrorKind;
    if let Err(e) = regex_syntax::ast::parse::Parser::new().parse(pattern) {
        let end = pattern.len();
        let (what, at) = match e.kind() {
            ErrorKind::GroupUnclosed => ("missing )".to_string(), end),
            ErrorKind::GroupUnopened => (
                "unmatched closing parenthesis".to_string(),
                e.span().start.offset,
            ),
            ErrorKind::ClassUnclosed => {
                ("missing terminating ] for character class".to_string(), end)
            }
            ErrorKind::RepetitionMissing => (
                "quantifier does not follow a repeatable item".to_string(),
                e.span().start.offset,
            ),
            other => (one_line(&other.to_string()), e.span().start.offset),
        };
        return Err(format!("{{\"{what}\",{at}}}"));
    }
    Regex::new(pattern).map_err(|e| format!("{{\"{}\",0}}", one_line(&e.to_string())))
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn validate_definition(kind: PolicyKind, def: &Definition) -> Result<(), String> {
    if def.is_empty() {
        return Err("no policy provided".into());
    }
    let mut unknown = Vec::new();
    for (key, value) in def {
        let known = match kind {
            PolicyKind::User => POLICY_KEYS.iter().find(|(k, _)| k == key).map(|(_, c)| *c),
            PolicyKind::Operator => OPERATOR_KEYS
                .contains(&key.as_str())
                .then(|| POLICY_KEYS.iter().find(|(k, _)| k == key).map(|(_, c)| *c))
                .flatten(),
        };
        match known {
            Some(check) => check.run(value)?,
            None => unknown.push((key, value)),
        }
    }
    if unknown.is_empty() {
        return Ok(());
    }
    let mut list = String::from("[");
    for (i, (k, v)) in unknown.iter().enumerate() {
        if i > 0 {
            list.push(',');
        }
        list.push('{');
        write_binary(&mut list, k.as_bytes());
        list.push(',');
        write_term(&mut list, v);
        list.push('}');
    }
    list.push(']');
    Err(format!("{list} are not recognised policy settings"))
}
