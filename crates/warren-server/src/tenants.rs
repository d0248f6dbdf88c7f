//! The broker's tenant operations: logins, opening a vhost, and the changes
//! to vhosts, users and permissions that the management API and `warren
//! ctl` make. Each change updates the registry, bumps its generation (so
//! open channels check against fresh grants), saves the definitions and
//! closes what RabbitMQ closes: a deleted vhost's or user's connections.
//!
//! Lock order: the registry lock is released before any topology lock or
//! the definitions' save lock is taken.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use parking_lot::{RwLock, RwLockReadGuard};
use tracing::{error, info};
use warren_core::access::{
    AccessControl, AccessError, Grants, LoginRefused, Permissions, TopicPermission, User,
    VhostInfo, SALT_LEN,
};
use warren_core::{AmqpError, Effects, VirtualHost};
use warren_protocol::ReplyCode;

use crate::broker::{Broker, VHost};
use crate::connection::ConnEvent;

/// A fresh random salt for a password hash.
pub fn salt() -> [u8; SALT_LEN] {
    let mut salt = [0u8; SALT_LEN];
    if getrandom::fill(&mut salt).is_err() {
        // No OS randomness: still salted, if predictably.
        salt = fastrand::u32(..).to_be_bytes();
    }
    salt
}

impl Broker {
    /// The registry, for reading.
    pub fn access(&self) -> RwLockReadGuard<'_, AccessControl> {
        self.access.read()
    }

    /// Changes to the registry since start; a connection whose grants are
    /// older refreshes them.
    pub fn access_generation(&self) -> u64 {
        self.access_generation.load(Ordering::Acquire)
    }

    /// Checks a password login from `peer`.
    pub fn login(&self, user: &str, password: &str, peer: IpAddr) -> Result<(), LoginRefused> {
        self.access
            .read()
            .authenticate(user, password, peer.is_loopback())
            .map(|_| ())
    }

    /// What `user` may do in `vhost` now.
    pub fn grants(&self, user: &str, vhost: &str) -> Grants {
        self.access.read().grants(user, vhost)
    }

    /// `connection.open`: the vhost's topology and the user's grants in
    /// it, or the 530 RabbitMQ sends.
    pub fn open_vhost(&self, user: &str, vhost: &str) -> Result<(Arc<VHost>, Grants), AmqpError> {
        let grants = self.access.read().open_vhost(user, vhost)?;
        let topo = self
            .vhost(vhost)
            .ok_or_else(|| AmqpError::not_allowed(format!("vhost {vhost} not found")))?;
        Ok((topo, grants))
    }

    /// The vhost's connection limit, if it has one.
    pub fn vhost_connection_limit(&self, vhost: &str) -> Option<u64> {
        self.access
            .read()
            .vhost(vhost)
            .and_then(|v| v.limits.connections())
    }

    /// The vhost's queue limit, if it has one.
    pub fn vhost_queue_limit(&self, vhost: &str) -> Option<u64> {
        self.access
            .read()
            .vhost(vhost)
            .and_then(|v| v.limits.queues())
    }

    /// Applies a change to the registry, then bumps the generation and
    /// saves the definitions.
    fn change_access<T>(&self, f: impl FnOnce(&mut AccessControl) -> T) -> T {
        let out = f(&mut self.access.write());
        self.access_generation.fetch_add(1, Ordering::AcqRel);
        self.persist_tenants();
        out
    }

    /// Creates a vhost, or updates an existing one's settings; true if it
    /// is new.
    pub fn put_vhost(&self, info: VhostInfo) -> bool {
        let name = info.name.clone();
        let created = self.change_access(|ac| ac.put_vhost(info));
        if created {
            let durable = self.is_durable();
            self.vhosts.write().entry(name.clone()).or_insert_with(|| {
                let mut topo = VirtualHost::new(name.clone());
                topo.record_changes(durable);
                Arc::new(RwLock::new(topo))
            });
            info!(vhost = %name, "vhost created");
        }
        created
    }

    /// Deletes a vhost with everything in it, closing its connections;
    /// false if there is no such vhost.
    pub fn delete_vhost(&self, name: &str) -> bool {
        let Some(topo) = self.vhosts.write().remove(name) else {
            return false;
        };
        self.policies.write().remove_vhost(name);
        self.gauges.write().remove(name);
        self.vhost_stats.write().remove(name);
        self.change_access(|ac| ac.delete_vhost(name));
        self.connections.close_where(
            |c| c.vhost == name,
            &AmqpError::new(
                ReplyCode::ConnectionForced,
                format!("vhost '{name}' is deleted"),
            ),
        );
        let queues: Vec<_> = {
            let mut topo = topo.write();
            self.forget_topology(name, &topo);
            topo.record_changes(false);
            topo.drain_queues()
        };
        crate::stats::Churn::bump(&self.churn.queues_deleted, queues.len() as u64);
        for q in queues {
            let mut fx = Effects::default();
            let mut inner = q.lock();
            inner.deleted = true;
            if let Err(err) = inner.queue.delete(&mut fx) {
                error!(queue = q.name(), %err, "cannot remove stored messages");
            }
            drop(inner);
            for c in fx.cancelled {
                c.cancelled.store(true, Ordering::SeqCst);
                let _ = c.tx.send(ConnEvent::Cancelled {
                    consumer: Arc::clone(&c),
                });
            }
        }
        info!(vhost = %name, "vhost deleted");
        true
    }

    /// Creates or replaces a user; true if it is new. Connections of a
    /// replaced user stay open, as in RabbitMQ.
    pub fn put_user(&self, user: User) -> bool {
        self.change_access(|ac| ac.put_user(user))
    }

    /// Deletes a user and its permissions, closing its connections; false
    /// if there is no such user.
    pub fn delete_user(&self, name: &str) -> bool {
        if self.change_access(|ac| ac.delete_user(name)).is_none() {
            return false;
        }
        self.connections.close_where(
            |c| c.user == name,
            &AmqpError::new(
                ReplyCode::ConnectionForced,
                format!("user '{name}' is deleted"),
            ),
        );
        true
    }

    pub fn set_permissions(
        &self,
        user: &str,
        vhost: &str,
        permissions: Permissions,
    ) -> Result<(), AccessError> {
        self.change_access(|ac| ac.set_permissions(user, vhost, permissions))
    }

    /// true if the user had permissions in the vhost.
    pub fn clear_permissions(&self, user: &str, vhost: &str) -> bool {
        self.change_access(|ac| ac.clear_permissions(user, vhost))
    }

    pub fn set_topic_permission(
        &self,
        user: &str,
        vhost: &str,
        permission: TopicPermission,
    ) -> Result<(), AccessError> {
        self.change_access(|ac| ac.set_topic_permission(user, vhost, permission))
    }

    /// true if any were removed.
    pub fn clear_topic_permissions(&self, user: &str, vhost: &str, exchange: Option<&str>) -> bool {
        self.change_access(|ac| ac.clear_topic_permissions(user, vhost, exchange))
    }
}

/// Object and message counts over some vhosts, for `/api/overview`.
#[derive(Debug, Default, Clone, Copy)]
pub struct Totals {
    pub ready: u64,
    pub unacked: u64,
    pub connections: u64,
    pub channels: u64,
    pub consumers: u64,
    pub exchanges: u64,
    pub queues: u64,
}

impl Broker {
    /// Ready and unacknowledged messages in a vhost's queues.
    pub fn vhost_message_counts(&self, vhost: &str) -> (u64, u64) {
        let (ready, unacked, _) = self.gauges_of(vhost).read();
        (ready, unacked)
    }

    /// Totals over `vhosts`.
    pub fn totals(&self, vhosts: &[String]) -> Totals {
        let mut t = Totals::default();
        for name in vhosts {
            let Some(topo) = self.vhost(name) else {
                continue;
            };
            {
                let topo = topo.read();
                t.exchanges += topo.exchanges().count() as u64;
                t.queues += topo.queue_count() as u64;
            }
            let (ready, unacked, consumers) = self.gauges_of(name).read();
            t.ready += ready;
            t.unacked += unacked;
            t.consumers += consumers;
        }
        for c in self.connections.list() {
            if vhosts.contains(&c.vhost) {
                t.connections += 1;
                t.channels += c.channels.load(Ordering::Relaxed) as u64;
            }
        }
        t
    }
}
