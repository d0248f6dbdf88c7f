//! The registry of open connections: who is connected where, for vhost
//! connection limits, the management API's listings and forced closes
//! (a vhost or user deleted, an operator closing a connection).
//!
//! A connection registers once it is open (after `connection.open`) and
//! leaves when its task ends. The registry's lock is taken only then and
//! by listings and closes, never on the message path.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::mpsc::UnboundedSender;
use warren_core::AmqpError;
use warren_protocol::FieldTable;

use crate::connection::ConnEvent;

/// What the broker knows of one open connection.
#[derive(Clone)]
pub struct ConnectionInfo {
    pub id: u64,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub user: String,
    pub vhost: String,
    /// Milliseconds since the epoch at `connection.open`.
    pub opened_at: u64,
    pub client_properties: FieldTable,
    /// Open channels, kept up to date by the connection.
    pub channels: Arc<AtomicUsize>,
    pub frame_max: u32,
    pub channel_max: u16,
    /// Negotiated heartbeat timeout, seconds.
    pub heartbeat: u16,
    pub auth_mechanism: String,
    /// The TLS version of an AMQPS connection (`tlsv1.3`), `None` for a
    /// plain one.
    pub tls: Option<String>,
    pub(crate) tx: UnboundedSender<ConnEvent>,
}

impl ConnectionInfo {
    /// RabbitMQ's connection name: `peer -> local`.
    pub fn name(&self) -> String {
        format!("{} -> {}", self.peer, self.local)
    }
}

/// One channel of a connection, as listings show it.
#[derive(Debug, Clone)]
pub struct ChannelSnapshot {
    pub number: u16,
    pub prefetch_count: u32,
    pub global_prefetch_count: u32,
    pub unacked: usize,
    pub confirm: bool,
    pub transactional: bool,
    pub consumers: Vec<ConsumerSnapshot>,
}

/// One consumer of a channel.
#[derive(Debug, Clone)]
pub struct ConsumerSnapshot {
    pub tag: String,
    pub queue: String,
    pub ack_required: bool,
    pub prefetch_count: u32,
    pub exclusive: bool,
    pub arguments: FieldTable,
    pub active: bool,
}

#[derive(Default)]
pub struct ConnectionRegistry {
    open: Mutex<HashMap<u64, ConnectionInfo>>,
}

impl ConnectionRegistry {
    /// Registers a connection unless its vhost already has `limit`
    /// connections; returns whether it was registered.
    pub fn register(&self, info: ConnectionInfo, limit: Option<u64>) -> bool {
        let mut open = self.open.lock();
        if let Some(limit) = limit {
            let n = open.values().filter(|c| c.vhost == info.vhost).count() as u64;
            if n >= limit {
                return false;
            }
        }
        open.insert(info.id, info);
        true
    }

    pub fn unregister(&self, id: u64) {
        self.open.lock().remove(&id);
    }

    pub fn list(&self) -> Vec<ConnectionInfo> {
        let mut all: Vec<ConnectionInfo> = self.open.lock().values().cloned().collect();
        all.sort_by_key(|c| c.id);
        all
    }

    pub fn get(&self, id: u64) -> Option<ConnectionInfo> {
        self.open.lock().get(&id).cloned()
    }

    pub fn count_in_vhost(&self, vhost: &str) -> usize {
        self.open
            .lock()
            .values()
            .filter(|c| c.vhost == vhost)
            .count()
    }

    /// Asks a connection for its channels and consumers (its task answers
    /// between frames); `None` if it is gone or does not answer in time.
    pub async fn describe(&self, id: u64) -> Option<Vec<ChannelSnapshot>> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.get(id)?.tx.send(ConnEvent::Describe(tx)).ok()?;
        tokio::time::timeout(std::time::Duration::from_secs(2), rx)
            .await
            .ok()?
            .ok()
    }

    /// Asks one connection to close; false if it is not open.
    pub fn close(&self, id: u64, error: &AmqpError) -> bool {
        self.close_where(|c| c.id == id, error) > 0
    }

    /// Asks every connection that `select` picks to close with `error`
    /// (connection.close from the server); returns how many were asked.
    pub fn close_where(
        &self,
        select: impl Fn(&ConnectionInfo) -> bool,
        error: &AmqpError,
    ) -> usize {
        let open = self.open.lock();
        let mut n = 0;
        for c in open.values().filter(|c| select(c)) {
            if c.tx.send(ConnEvent::Close(error.clone())).is_ok() {
                n += 1;
            }
        }
        n
    }
}
