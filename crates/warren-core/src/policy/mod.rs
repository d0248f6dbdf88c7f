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
//!
//! Modules: `validate` checks a policy as RabbitMQ does (its keys, value
//! checks and pattern errors), `erlang` writes values as the Erlang terms
//! RabbitMQ's texts show.

mod erlang;
mod validate;

use std::collections::BTreeMap;
use std::sync::Arc;

use regex::Regex;
use warren_protocol::FieldValue;

use crate::queue::QueueKind;

pub use erlang::erlang_term;
use validate::integer;

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
    /// Whether the policy applies to the object `name` of this kind.
    pub fn matches(&self, name: &str, target: Target) -> bool {
        self.apply_to.covers(target) && self.regex.is_match(name)
    }
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
mod tests;
