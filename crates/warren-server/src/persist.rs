//! Durable definitions kept incrementally: one record per object in
//! warren-store's [`DefinitionsStore`], so a change costs one appended
//! record whatever the number of queues, and its sync is grouped with the
//! message syncs by the same coordinator (a confirmed message's queue
//! definition is therefore durable before the confirm goes out).
//!
//! Keys are a kind byte followed by length-prefixed parts (names may hold
//! any byte); values are the JSON of the `definitions` types:
//!
//! | kind | parts | value |
//! |---|---|---|
//! | `v` | vhost | [`VhostDef`] |
//! | `u` | user | [`UserDef`] |
//! | `p` | user, vhost | [`PermissionDef`] |
//! | `t` | user, vhost | list of [`TopicPermissionDef`] |
//! | `x` | vhost, exchange | [`ExchangeDef`] |
//! | `q` | vhost, queue | [`QueueDef`] |
//! | `b` | vhost, source, `q`/`x`, destination, key, arguments | [`BindingDef`] |
//! | `y` | vhost, policy | [`PolicyDef`] |
//! | `o` | vhost, operator policy | [`PolicyDef`] |
//! | `m` | `tenants` | marks that the tenant registry is saved |
//!
//! Topology changes come from the vhost's journal
//! ([`TopologyChange`]), taken and written while the topology's write lock
//! is held, so records are written in the order the changes happened.
//! Tenant changes are rare: the registry's records are rebuilt and diffed
//! against the last written set.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::BytesMut;
use parking_lot::Mutex;
use serde::Serialize;
use tracing::warn;
use warren_core::access::AccessControl;
use warren_core::exchange::Binding;
use warren_core::policy::PolicyRegistry;
use warren_core::vhost::TopologyChange;
use warren_core::{Destination, StoreError, SyncTicket, VirtualHost};
use warren_store::{Change, DefinitionsStore, Disk, SyncCoordinator};

use crate::definitions::{
    BindingDef, Definitions, ExchangeDef, PermissionDef, PolicyDef, QueueDef, Table,
    TenantDefinitions, TopicPermissionDef, UserDef, VhostDef,
};
use crate::queue::QueueCell;

type Topology = VirtualHost<Arc<QueueCell>>;

/// The broker's durable definitions on disk.
pub struct DefinitionRecords {
    store: Arc<DefinitionsStore>,
    /// The tenant records last written, to diff against.
    tenants: Mutex<BTreeMap<Vec<u8>, Vec<u8>>>,
    compacting: Arc<AtomicBool>,
    /// The sync ticket of the last record written.
    last_ticket: AtomicU64,
}

fn key(kind: u8, parts: &[&str]) -> Vec<u8> {
    let mut k = vec![kind];
    for p in parts {
        k.extend_from_slice(&(p.len() as u32).to_be_bytes());
        k.extend_from_slice(p.as_bytes());
    }
    k
}

fn parts(key: &[u8]) -> Option<(u8, Vec<String>)> {
    let (&kind, mut rest) = key.split_first()?;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let len = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
        let part = rest.get(4..4 + len)?;
        out.push(String::from_utf8_lossy(part).into_owned());
        rest = &rest[4 + len..];
    }
    Some((kind, out))
}

fn json(value: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

fn binding_key(vhost: &str, source: &str, b: &Binding) -> Vec<u8> {
    let (kind, dest) = match &b.destination {
        Destination::Queue(q) => ("q", q.as_str()),
        Destination::Exchange(x) => ("x", x.as_str()),
    };
    let mut args = BytesMut::new();
    b.arguments.encode(&mut args);
    let args = hex::encode(&args);
    key(b'b', &[vhost, source, kind, dest, &b.routing_key, &args])
}

fn binding_def(source: &str, b: &Binding) -> BindingDef {
    let (destination, destination_is_queue) = match &b.destination {
        Destination::Queue(q) => (q.clone(), true),
        Destination::Exchange(x) => (x.clone(), false),
    };
    BindingDef {
        source: source.to_string(),
        destination,
        destination_is_queue,
        routing_key: b.routing_key.clone(),
        arguments: Table(b.arguments.clone()),
    }
}

fn is_predeclared(name: &str) -> bool {
    name.is_empty() || name.starts_with("amq.")
}

/// Whether a queue's definition outlives a restart.
fn persists(q: &QueueCell) -> bool {
    q.spec.durable && q.spec.exclusive_owner.is_none()
}

/// The tenant registry and the policies as records.
fn tenant_records(ac: &AccessControl, policies: &PolicyRegistry) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let t = TenantDefinitions::from_access(ac).with_policies(policies);
    let mut out = BTreeMap::new();
    out.insert(key(b'm', &["tenants"]), b"1".to_vec());
    for v in &t.vhosts {
        out.insert(key(b'v', &[&v.name]), json(v));
    }
    for u in &t.users {
        out.insert(key(b'u', &[&u.name]), json(u));
    }
    for p in &t.permissions {
        out.insert(key(b'p', &[&p.user, &p.vhost]), json(p));
    }
    let mut topics: BTreeMap<(String, String), Vec<TopicPermissionDef>> = BTreeMap::new();
    for tp in t.topic_permissions {
        topics
            .entry((tp.user.clone(), tp.vhost.clone()))
            .or_default()
            .push(tp);
    }
    for ((user, vhost), list) in topics {
        out.insert(key(b't', &[&user, &vhost]), json(&list));
    }
    for p in &t.policies {
        out.insert(key(b'y', &[&p.vhost, &p.name]), json(p));
    }
    for p in &t.operator_policies {
        out.insert(key(b'o', &[&p.vhost, &p.name]), json(p));
    }
    out
}

impl DefinitionRecords {
    /// Opens the store in `dir` and reads every definition back.
    pub fn open(
        disk: Arc<dyn Disk>,
        dir: PathBuf,
        sync: Arc<SyncCoordinator>,
    ) -> Result<(Self, Definitions), StoreError> {
        let (store, entries) = DefinitionsStore::open(disk, dir, sync)?;
        let mut defs = Definitions::default();
        let mut tenants = TenantDefinitions::default();
        let mut has_tenants = false;
        let mut tenant_set = BTreeMap::new();
        for (k, v) in entries {
            let Some((kind, p)) = parts(&k) else {
                warn!("unreadable definition key skipped");
                continue;
            };
            let bad = |e: serde_json::Error| warn!(kind = %(kind as char), %e, "unreadable definition skipped");
            match (kind, p.as_slice()) {
                (b'm', _) => has_tenants = true,
                (b'v', _) => match serde_json::from_slice::<VhostDef>(&v) {
                    Ok(d) => tenants.vhosts.push(d),
                    Err(e) => bad(e),
                },
                (b'u', _) => match serde_json::from_slice::<UserDef>(&v) {
                    Ok(d) => tenants.users.push(d),
                    Err(e) => bad(e),
                },
                (b'p', _) => match serde_json::from_slice::<PermissionDef>(&v) {
                    Ok(d) => tenants.permissions.push(d),
                    Err(e) => bad(e),
                },
                (b't', _) => match serde_json::from_slice::<Vec<TopicPermissionDef>>(&v) {
                    Ok(d) => tenants.topic_permissions.extend(d),
                    Err(e) => bad(e),
                },
                (b'y', _) => match serde_json::from_slice::<PolicyDef>(&v) {
                    Ok(d) => tenants.policies.push(d),
                    Err(e) => bad(e),
                },
                (b'o', _) => match serde_json::from_slice::<PolicyDef>(&v) {
                    Ok(d) => tenants.operator_policies.push(d),
                    Err(e) => bad(e),
                },
                (b'x', [vhost, _]) => match serde_json::from_slice::<ExchangeDef>(&v) {
                    Ok(d) => defs
                        .vhosts
                        .entry(vhost.clone())
                        .or_default()
                        .exchanges
                        .push(d),
                    Err(e) => bad(e),
                },
                (b'q', [vhost, _]) => match serde_json::from_slice::<QueueDef>(&v) {
                    Ok(d) => {
                        defs.next_queue_id = defs.next_queue_id.max(d.id + 1);
                        defs.vhosts.entry(vhost.clone()).or_default().queues.push(d)
                    }
                    Err(e) => bad(e),
                },
                (b'b', [vhost, ..]) => match serde_json::from_slice::<BindingDef>(&v) {
                    Ok(d) => defs
                        .vhosts
                        .entry(vhost.clone())
                        .or_default()
                        .bindings
                        .push(d),
                    Err(e) => bad(e),
                },
                _ => {
                    warn!(kind = %(kind as char), "unknown definition skipped");
                    continue;
                }
            }
            if matches!(kind, b'm' | b'v' | b'u' | b'p' | b't' | b'y' | b'o') {
                tenant_set.insert(k, v);
            }
        }
        if has_tenants {
            defs.tenants = Some(tenants);
        }
        let records = DefinitionRecords {
            store: Arc::new(store),
            tenants: Mutex::new(tenant_set),
            compacting: Arc::new(AtomicBool::new(false)),
            last_ticket: AtomicU64::new(0),
        };
        Ok((records, defs))
    }

    /// The ticket after whose sync everything written so far is durable.
    pub fn last_ticket(&self) -> SyncTicket {
        self.last_ticket.load(Ordering::Acquire)
    }

    /// Whether nothing has been saved yet.
    pub fn is_empty(&self) -> bool {
        self.store.is_empty()
    }

    /// Writes a whole set of definitions as one batch (a data directory
    /// from before the incremental store is carried over this way).
    pub fn import(&self, defs: &Definitions) -> Result<(), StoreError> {
        let mut changes = Vec::new();
        for (vhost, v) in &defs.vhosts {
            for x in &v.exchanges {
                changes.push(Change::Put {
                    key: key(b'x', &[vhost, &x.name]),
                    value: json(x),
                });
            }
            for q in &v.queues {
                changes.push(Change::Put {
                    key: key(b'q', &[vhost, &q.name]),
                    value: json(q),
                });
            }
            for b in &v.bindings {
                let binding = Binding {
                    destination: if b.destination_is_queue {
                        Destination::Queue(b.destination.clone())
                    } else {
                        Destination::Exchange(b.destination.clone())
                    },
                    routing_key: b.routing_key.clone(),
                    arguments: b.arguments.0.clone(),
                };
                changes.push(Change::Put {
                    key: binding_key(vhost, &b.source, &binding),
                    value: json(b),
                });
            }
        }
        self.write(&changes)
    }

    /// Writes what the vhost's journal recorded since the last call. Called
    /// with the topology's write lock held.
    pub fn topology(&self, vhost: &str, topo: &mut Topology) {
        let changes = topo.take_changes();
        if changes.is_empty() {
            return;
        }
        let mut out = Vec::with_capacity(changes.len());
        for change in changes {
            match change {
                TopologyChange::ExchangeDeclared(name) => {
                    let Ok(x) = topo.exchange(&name) else {
                        continue;
                    };
                    if x.spec.durable && !is_predeclared(&name) {
                        out.push(Change::Put {
                            key: key(b'x', &[vhost, &name]),
                            value: json(&ExchangeDef {
                                name: name.clone(),
                                created_by: x.created_by.clone(),
                                kind: x.spec.kind.as_str().to_string(),
                                auto_delete: x.spec.auto_delete,
                                internal: x.spec.internal,
                                arguments: Table(x.spec.arguments.clone()),
                            }),
                        });
                    }
                }
                TopologyChange::ExchangeDeleted(name) => {
                    out.push(Change::Delete {
                        key: key(b'x', &[vhost, &name]),
                    });
                }
                TopologyChange::QueueAdded(name) => {
                    let Some(q) = topo.queue(&name) else { continue };
                    if persists(q) {
                        out.push(Change::Put {
                            key: key(b'q', &[vhost, &name]),
                            value: json(&QueueDef {
                                name: name.clone(),
                                id: q.spec.id,
                                auto_delete: q.spec.auto_delete,
                                arguments: Table(q.spec.arguments.clone()),
                            }),
                        });
                    }
                }
                TopologyChange::QueueRemoved(name) => {
                    out.push(Change::Delete {
                        key: key(b'q', &[vhost, &name]),
                    });
                }
                TopologyChange::Bound { source, binding } => {
                    if topo.binding_is_durable(&source, &binding.destination, |q| persists(q)) {
                        out.push(Change::Put {
                            key: binding_key(vhost, &source, &binding),
                            value: json(&binding_def(&source, &binding)),
                        });
                    }
                }
                TopologyChange::Unbound { source, binding } => {
                    out.push(Change::Delete {
                        key: binding_key(vhost, &source, &binding),
                    });
                }
            }
        }
        // Deletions of what was never saved (transient queues, say) are
        // not written at all.
        out.retain(|c| match c {
            Change::Delete { key } => self.store.contains(key),
            Change::Put { .. } => true,
        });
        if let Err(err) = self.write(&out) {
            warn!(vhost, %err, "cannot save definitions");
        }
    }

    /// Deletes every durable record of a vhost's topology (the vhost is
    /// being deleted).
    pub fn forget_topology(&self, vhost: &str, topo: &Topology) {
        let mut out = Vec::new();
        for x in topo.exchanges() {
            out.push(Change::Delete {
                key: key(b'x', &[vhost, x.name()]),
            });
            for b in x.bindings() {
                out.push(Change::Delete {
                    key: binding_key(vhost, x.name(), &b),
                });
            }
        }
        for (name, _) in topo.queues() {
            out.push(Change::Delete {
                key: key(b'q', &[vhost, name]),
            });
        }
        out.retain(|c| match c {
            Change::Delete { key } => self.store.contains(key),
            Change::Put { .. } => true,
        });
        if let Err(err) = self.write(&out) {
            warn!(vhost, %err, "cannot save definitions");
        }
    }

    /// Writes the tenant and policy records that differ from the last ones
    /// written.
    pub fn tenants(&self, ac: &AccessControl, policies: &PolicyRegistry) {
        let now = tenant_records(ac, policies);
        let mut last = self.tenants.lock();
        let mut out = Vec::new();
        for (k, v) in &now {
            if last.get(k) != Some(v) {
                out.push(Change::Put {
                    key: k.clone(),
                    value: v.clone(),
                });
            }
        }
        for k in last.keys() {
            if !now.contains_key(k) {
                out.push(Change::Delete { key: k.clone() });
            }
        }
        match self.write(&out) {
            Ok(()) => *last = now,
            Err(err) => warn!(%err, "cannot save the users, vhosts and permissions"),
        }
    }

    fn write(&self, changes: &[Change]) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        let ticket = self.store.apply(changes)?;
        self.last_ticket.fetch_max(ticket, Ordering::AcqRel);
        if self.store.needs_compaction() && !self.compacting.swap(true, Ordering::AcqRel) {
            // Off the caller's thread: it may be a tokio worker.
            let store = Arc::clone(&self.store);
            let flag = Arc::clone(&self.compacting);
            let spawned = std::thread::Builder::new()
                .name("warren-defs-compact".into())
                .spawn(move || {
                    if let Err(err) = store.compact() {
                        warn!(%err, "cannot compact the definitions");
                    }
                    flag.store(false, Ordering::Release);
                });
            if spawned.is_err() {
                self.compacting.store(false, Ordering::Release);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_take_any_name_apart_again() {
        let k = key(b'b', &["/", "a\u{0}b", "", "q", "x.y", "00"]);
        let (kind, p) = parts(&k).unwrap();
        assert_eq!(kind, b'b');
        assert_eq!(p, vec!["/", "a\u{0}b", "", "q", "x.y", "00"]);
        assert_ne!(key(b'q', &["ab", "c"]), key(b'q', &["a", "bc"]));
        assert!(parts(&[b'q', 0, 0, 0, 9, b'x']).is_none());
    }
}
