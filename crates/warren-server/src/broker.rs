//! The broker: configuration, virtual hosts, connection ids. Shared by every
//! connection task through an `Arc`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;
use tokio::sync::watch;
use warren_core::{SyncTicket, VirtualHost};

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
    /// How far the message store has synced; confirms wait on it.
    synced: watch::Receiver<SyncTicket>,
    /// Kept so the channel stays open when no store reports syncs.
    _sync_source: watch::Sender<SyncTicket>,
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
        let (sync_source, synced) = watch::channel(0);
        Arc::new(Broker {
            config,
            vhosts,
            next_connection: AtomicU64::new(1),
            synced,
            _sync_source: sync_source,
        })
    }

    pub fn vhost(&self, name: &str) -> Option<Arc<VHost>> {
        self.vhosts.get(name).cloned()
    }

    pub fn synced(&self) -> watch::Receiver<SyncTicket> {
        self.synced.clone()
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
