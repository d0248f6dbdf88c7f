//! The broker's policies: setting and clearing them (the management API
//! and `warren ctl` do), and applying them to the queues and exchanges of
//! their vhost, existing and new.
//!
//! A change is validated before it gets here ([`Policy::validate`]), saved
//! with the tenant definitions, then applied: each exchange and queue of
//! the vhost is matched again, and a queue whose policies changed resolves
//! its configuration anew ([`QueueCell::set_policies`]), so limits and
//! TTLs take effect at once, as in RabbitMQ.
//!
//! Lock order: the policy registry's lock is released before a topology
//! lock is taken; a topology lock may be held while reading the registry
//! (declares do).

use std::sync::Arc;

use parking_lot::RwLockReadGuard;
use tracing::info;
use warren_core::policy::{Applied, Policy, PolicyKind, PolicyRegistry, Target, VhostPolicies};
use warren_core::queue::QueueKind;

use crate::broker::Broker;
use crate::queue::QueueCell;

impl Broker {
    /// The registry, for reading.
    pub fn policies(&self) -> RwLockReadGuard<'_, PolicyRegistry> {
        self.policies.read()
    }

    /// The policies a queue of this name and kind gets in `vhost`.
    pub fn queue_policies(&self, vhost: &str, name: &str, kind: QueueKind) -> Applied {
        self.policies
            .read()
            .vhost(vhost)
            .map(|v| v.applied(name, Target::Queue(kind)))
            .unwrap_or_default()
    }

    /// The policies an exchange of this name gets in `vhost`.
    pub fn exchange_policies(&self, vhost: &str, name: &str) -> Applied {
        self.policies
            .read()
            .vhost(vhost)
            .map(|v| v.applied(name, Target::Exchange))
            .unwrap_or_default()
    }

    /// Sets (creates or replaces) a policy in its vhost, which must exist;
    /// true if it is new.
    pub fn put_policy(&self, kind: PolicyKind, policy: Policy) -> bool {
        let vhost = policy.vhost.clone();
        let name = policy.name.clone();
        let created = self.policies.write().vhost_mut(&vhost).put(kind, policy);
        self.persist_tenants();
        info!(%vhost, policy = %name, ?kind, "policy set");
        self.apply_policies(&vhost);
        created
    }

    /// Clears a policy; false if there is none of that name.
    pub fn delete_policy(&self, kind: PolicyKind, vhost: &str, name: &str) -> bool {
        let removed = self.policies.write().vhost_mut(vhost).remove(kind, name);
        if removed {
            self.persist_tenants();
            info!(%vhost, policy = %name, ?kind, "policy cleared");
            self.apply_policies(vhost);
        }
        removed
    }

    /// Matches every exchange and queue of a vhost against its policies
    /// again, and applies what changed.
    pub(crate) fn apply_policies(&self, vhost: &str) {
        let Some(topo) = self.vhost(vhost) else {
            return;
        };
        let policies: VhostPolicies = self
            .policies
            .read()
            .vhost(vhost)
            .cloned()
            .unwrap_or_default();
        let queues: Vec<Arc<QueueCell>> = {
            let mut topo = topo.write();
            topo.set_exchange_policies(None, |name| policies.applied(name, Target::Exchange));
            topo.queues().map(|(_, q)| Arc::clone(q)).collect()
        };
        // With no topology lock held: a queue dropping messages over a new
        // limit routes its dead letters through the topology.
        for q in queues {
            q.set_policies(policies.applied(q.name(), Target::Queue(q.kind())));
        }
    }
}
