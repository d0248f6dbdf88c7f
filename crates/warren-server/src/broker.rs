//! The broker: configuration, virtual hosts, connection ids. Shared by every
//! connection task through an `Arc`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;
use warren_core::VirtualHost;

use crate::queue::QueueCell;
use crate::ServerConfig;

/// A virtual host's topology behind a read-write lock: publishes take it for
/// reading while they route; declarations, bindings and deletions take it
/// for writing.
pub type VHost = RwLock<VirtualHost<Arc<QueueCell>>>;

pub struct Broker {
    pub config: ServerConfig,
    vhosts: HashMap<String, Arc<VHost>>,
    next_connection: AtomicU64,
}

impl Broker {
    pub fn new(config: ServerConfig) -> Arc<Self> {
        let vhosts = config
            .vhosts
            .iter()
            .map(|name| {
                (
                    name.clone(),
                    Arc::new(RwLock::new(VirtualHost::new(name.clone()))),
                )
            })
            .collect();
        Arc::new(Broker {
            config,
            vhosts,
            next_connection: AtomicU64::new(1),
        })
    }

    pub fn vhost(&self, name: &str) -> Option<Arc<VHost>> {
        self.vhosts.get(name).cloned()
    }

    pub fn next_connection_id(&self) -> u64 {
        self.next_connection.fetch_add(1, Ordering::Relaxed)
    }

    /// Checks a user's password.
    pub fn authenticate(&self, user: &str, password: &str) -> bool {
        self.config
            .users
            .iter()
            .any(|u| u.name == user && u.password == password)
    }
}
