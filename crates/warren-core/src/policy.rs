//! Policies: arguments applied to queues and exchanges in bulk, by name
//! pattern, as RabbitMQ's policies and operator policies are.
//!
//! A vhost holds any number of policies and operator policies. Each names
//! a regular expression (searched, not anchored, in the object's name),
//! what it applies to, a priority and a definition (RabbitMQ's keys,
//! `message-ttl`, `max-length`, `dead-letter-exchange`, ...). Of the
//! policies matching an object only one applies, the highest priority one
//! (ties go to the first name); the same holds for operator policies, and
//! the two are then merged: for the keys an operator policy may set (all
//! limits) the lower value wins.
//!
//! [`Applied`] is what an object got; [`crate::QueueConfig::resolve`]
//! combines it with the queue's own `x-` arguments. Validation reports
//! RabbitMQ's texts, with values written as Erlang terms, as its
//! management API shows them.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use regex::Regex;
use warren_protocol::FieldValue;

use crate::queue::QueueKind;

/// User policies or operator policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PolicyKind {
    User,
    Operator,
}

/// What a policy applies to (`apply-to`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyTo {
    All,
    Queues,
    Exchanges,
}

/// A policy's priority: any JSON number, as RabbitMQ keeps it (a float
/// stays a float).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Priority {
    Integer(i64),
    Float(f64),
}

impl Priority {
    pub fn as_f64(self) -> f64 {
        match self {
            Priority::Integer(n) => n as f64,
            Priority::Float(f) => f,
        }
    }

    pub fn to_field(self) -> FieldValue {
        match self {
            Priority::Integer(n) => FieldValue::I64(n),
            Priority::Float(f) => FieldValue::F64(f),
        }
    }

    fn cmp(self, other: Priority) -> std::cmp::Ordering {
        self.as_f64().total_cmp(&other.as_f64())
    }
}

impl ApplyTo {
    /// The values RabbitMQ 3.10 accepts.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "all" => ApplyTo::All,
            "queues" => ApplyTo::Queues,
            "exchanges" => ApplyTo::Exchanges,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ApplyTo::All => "all",
            ApplyTo::Queues => "queues",
            ApplyTo::Exchanges => "exchanges",
        }
    }

    fn covers(self, target: Target) -> bool {
        matches!(
            (self, target),
            (ApplyTo::All, _)
                | (ApplyTo::Exchanges, Target::Exchange)
                | (ApplyTo::Queues, Target::Queue(_))
        )
    }
}

/// What a policy is matched against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Exchange,
    Queue(QueueKind),
}

/// A policy's definition: RabbitMQ's keys (without `x-`) and their values.
pub type Definition = BTreeMap<String, FieldValue>;

/// A validated policy.
#[derive(Debug, Clone)]
pub struct Policy {
    pub vhost: String,
    pub name: String,
    pub pattern: String,
    regex: Regex,
    pub apply_to: ApplyTo,
    pub priority: Priority,
    pub definition: Definition,
}

impl PartialEq for Policy {
    fn eq(&self, other: &Self) -> bool {
        self.vhost == other.vhost
            && self.name == other.name
            && self.pattern == other.pattern
            && self.apply_to == other.apply_to
            && self.priority == other.priority
            && self.definition == other.definition
    }
}

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

fn integer(v: &FieldValue) -> Option<i64> {
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

/// A value as Erlang's `~p` writes the term RabbitMQ decoded it to.
pub fn erlang_term(v: &FieldValue) -> String {
    let mut out = String::new();
    write_term(&mut out, v);
    out
}

fn write_binary(out: &mut String, b: &[u8]) {
    out.push_str("<<\"");
    for &c in b {
        match c {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(c as char),
            _ => {
                let _ = write!(out, "\\{c:o}");
            }
        }
    }
    out.push_str("\">>");
}

fn write_float(out: &mut String, f: f64) {
    // Erlang prints the shortest form that reads back, always with a
    // fraction, in scientific notation outside [0.1, 1e21).
    let plain = format!("{f:?}");
    if plain.contains('e') {
        let (mantissa, exp) = plain.split_once('e').unwrap_or((&plain, "0"));
        let mantissa = if mantissa.contains('.') {
            mantissa.to_string()
        } else {
            format!("{mantissa}.0")
        };
        let _ = write!(out, "{mantissa}e{exp}");
    } else {
        out.push_str(&plain);
    }
}

fn write_term(out: &mut String, v: &FieldValue) {
    match v {
        FieldValue::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        FieldValue::LongString(b) | FieldValue::ByteArray(b) => write_binary(out, b),
        FieldValue::F32(f) => write_float(out, f64::from(*f)),
        FieldValue::F64(f) => write_float(out, *f),
        FieldValue::Void => out.push_str("null"),
        FieldValue::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_term(out, item);
            }
            out.push(']');
        }
        FieldValue::Table(t) => {
            out.push_str("#{");
            for (i, (k, item)) in t.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_binary(out, k.as_bytes());
                out.push_str(" => ");
                write_term(out, item);
            }
            out.push('}');
        }
        other => match other.as_i64() {
            Some(n) => {
                let _ = write!(out, "{n}");
            }
            None => out.push_str(&other.display()),
        },
    }
}

/// A policy as set through the API, not yet validated: each field as
/// given (`None` when absent; a JSON `null` is [`FieldValue::Void`]).
#[derive(Debug, Clone, Default)]
pub struct PolicyRequest {
    pub pattern: Option<FieldValue>,
    pub apply_to: Option<FieldValue>,
    pub priority: Option<FieldValue>,
    pub definition: Option<FieldValue>,
}

/// Why a policy was refused: RabbitMQ's reason text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PolicyError(pub String);

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

    /// Whether the policy applies to the object `name` of this kind.
    pub fn matches(&self, name: &str, target: Target) -> bool {
        self.apply_to.covers(target) && self.regex.is_match(name)
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

/// The policies of one vhost.
#[derive(Debug, Clone, Default)]
pub struct VhostPolicies {
    user: BTreeMap<String, Arc<Policy>>,
    operator: BTreeMap<String, Arc<Policy>>,
}

impl VhostPolicies {
    fn of(&self, kind: PolicyKind) -> &BTreeMap<String, Arc<Policy>> {
        match kind {
            PolicyKind::User => &self.user,
            PolicyKind::Operator => &self.operator,
        }
    }

    fn of_mut(&mut self, kind: PolicyKind) -> &mut BTreeMap<String, Arc<Policy>> {
        match kind {
            PolicyKind::User => &mut self.user,
            PolicyKind::Operator => &mut self.operator,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.user.is_empty() && self.operator.is_empty()
    }

    pub fn get(&self, kind: PolicyKind, name: &str) -> Option<&Arc<Policy>> {
        self.of(kind).get(name)
    }

    /// The policies of a kind in RabbitMQ's listing order: by priority,
    /// lowest first, then by name.
    pub fn list(&self, kind: PolicyKind) -> Vec<Arc<Policy>> {
        let mut all: Vec<Arc<Policy>> = self.of(kind).values().cloned().collect();
        sort_for_listing(&mut all);
        all
    }

    /// Adds or replaces a policy; returns whether it is new.
    pub fn put(&mut self, kind: PolicyKind, policy: Policy) -> bool {
        self.of_mut(kind)
            .insert(policy.name.clone(), Arc::new(policy))
            .is_none()
    }

    /// Removes a policy; returns whether it existed.
    pub fn remove(&mut self, kind: PolicyKind, name: &str) -> bool {
        self.of_mut(kind).remove(name).is_some()
    }

    fn matching(&self, kind: PolicyKind, name: &str, target: Target) -> Option<Arc<Policy>> {
        self.of(kind)
            .values()
            .filter(|p| p.matches(name, target))
            // Highest priority; among equals the first name.
            .min_by(|a, b| b.priority.cmp(a.priority).then_with(|| a.name.cmp(&b.name)))
            .cloned()
    }

    /// The policies that apply to an object.
    pub fn applied(&self, name: &str, target: Target) -> Applied {
        Applied {
            policy: self.matching(PolicyKind::User, name, target),
            operator: self.matching(PolicyKind::Operator, name, target),
        }
    }
}

fn sort_for_listing(list: &mut [Arc<Policy>]) {
    list.sort_by(|a, b| {
        a.priority
            .cmp(b.priority)
            .then_with(|| a.vhost.cmp(&b.vhost))
            .then_with(|| a.name.cmp(&b.name))
    });
}

/// The policy and operator policy an object got.
#[derive(Debug, Clone, Default)]
pub struct Applied {
    pub policy: Option<Arc<Policy>>,
    pub operator: Option<Arc<Policy>>,
}

impl PartialEq for Applied {
    fn eq(&self, other: &Self) -> bool {
        fn same(a: &Option<Arc<Policy>>, b: &Option<Arc<Policy>>) -> bool {
            match (a, b) {
                (None, None) => true,
                (Some(a), Some(b)) => Arc::ptr_eq(a, b) || a == b,
                _ => false,
            }
        }
        same(&self.policy, &other.policy) && same(&self.operator, &other.operator)
    }
}

impl Applied {
    pub fn is_empty(&self) -> bool {
        self.policy.is_none() && self.operator.is_none()
    }

    /// The value of a key once policy and operator policy are merged: the
    /// lower of two integers, else the operator policy's.
    pub fn get(&self, key: &str) -> Option<FieldValue> {
        let p = self.policy.as_ref().and_then(|p| p.definition.get(key));
        let o = self.operator.as_ref().and_then(|p| p.definition.get(key));
        match (p, o) {
            (None, None) => None,
            (Some(v), None) | (None, Some(v)) => Some(v.clone()),
            (Some(a), Some(b)) => match (integer(a), integer(b)) {
                (Some(x), Some(y)) => Some(if x <= y { a.clone() } else { b.clone() }),
                _ => Some(b.clone()),
            },
        }
    }

    /// Policy and operator policy merged, as `effective_policy_definition`
    /// shows them.
    pub fn effective_definition(&self) -> Definition {
        let mut keys: Vec<&String> = Vec::new();
        for p in [&self.policy, &self.operator].into_iter().flatten() {
            keys.extend(p.definition.keys());
        }
        keys.sort();
        keys.dedup();
        keys.into_iter()
            .filter_map(|k| self.get(k).map(|v| (k.clone(), v)))
            .collect()
    }
}

/// Every vhost's policies.
#[derive(Debug, Clone, Default)]
pub struct PolicyRegistry {
    vhosts: BTreeMap<String, VhostPolicies>,
}

impl PolicyRegistry {
    pub fn vhost(&self, vhost: &str) -> Option<&VhostPolicies> {
        self.vhosts.get(vhost)
    }

    pub fn vhost_mut(&mut self, vhost: &str) -> &mut VhostPolicies {
        self.vhosts.entry(vhost.to_string()).or_default()
    }

    /// Forgets a deleted vhost's policies.
    pub fn remove_vhost(&mut self, vhost: &str) {
        self.vhosts.remove(vhost);
    }

    /// Every policy of a kind in RabbitMQ's listing order: by priority,
    /// lowest first, then by vhost and name.
    pub fn list(&self, kind: PolicyKind) -> Vec<Arc<Policy>> {
        let mut all: Vec<Arc<Policy>> = self
            .vhosts
            .values()
            .flat_map(|v| v.of(kind).values().cloned())
            .collect();
        sort_for_listing(&mut all);
        all
    }
}

#[cfg(test)]
mod tests {
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
        assert!(r(s("["), None, ok.clone())
            .contains("{\"missing terminating ] for character class\",1}"));
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
}
