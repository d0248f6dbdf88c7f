//! Warren's network glue: accepts TCP connections and runs one task per
//! connection that reads frames, carries out methods against the broker's
//! state, and writes replies and deliveries.
//!
//! [`run`] takes the listener and a shutdown signal from its caller, so tests
//! bind `127.0.0.1:0` and stop the server when they are done. The binary
//! instead opens the [`Broker`] first and binds afterwards ([`serve`]), so a
//! port that accepts connections means recovery has finished.

mod admin;
mod broker;
pub(crate) mod channel;
mod config;
mod connection;
mod connections;
mod definitions;
mod lifecycle;
mod persist;
mod policies;
mod queue;
mod resources;
mod staging;
pub mod stats;
mod tenants;
pub mod tls;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{info, warn};

pub use admin::GetMode;
pub use broker::{Broker, StartError, VHost};
pub use config::ServerConfig;
pub use connections::{ChannelSnapshot, ConnectionInfo, ConnectionRegistry, ConsumerSnapshot};
pub use queue::{now_ms, QueueCell, QueueSpec};
pub use resources::{
    default_memory_limit, free_disk, total_memory, AlarmConfig, Alarms, MemoryProbe,
};
pub use tenants::{salt as password_salt, Totals};

/// Opens the broker (recovering durable state from the data directory, if
/// any), accepts connections until `shutdown` completes, then asks every
/// connection to close (320 CONNECTION_FORCED), waits for them briefly and
/// syncs the stores.
pub async fn run(
    listener: TcpListener,
    config: ServerConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    serve(listener, Broker::open(config)?, shutdown).await;
    Ok(())
}

/// Accepts connections for an opened broker until `shutdown` completes, then
/// closes every connection (320 CONNECTION_FORCED), waits for them briefly
/// and syncs the stores.
pub async fn serve(listener: TcpListener, broker: Arc<Broker>, shutdown: impl Future<Output = ()>) {
    serve_listeners(Some(listener), None, broker, shutdown).await;
}

/// Like [`serve`], on a plain AMQP listener, an AMQPS one (with the
/// acceptor that does its TLS handshakes), or both.
pub async fn serve_listeners(
    plain: Option<TcpListener>,
    tls: Option<(TcpListener, tls::TlsAcceptor)>,
    broker: Arc<Broker>,
    shutdown: impl Future<Output = ()>,
) {
    async fn accept(
        listener: Option<&TcpListener>,
    ) -> std::io::Result<(tokio::net::TcpStream, std::net::SocketAddr)> {
        match listener {
            Some(l) => l.accept().await,
            None => std::future::pending().await,
        }
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    let (tls_listener, acceptor) = match tls {
        Some((l, a)) => (Some(l), Some(a)),
        None => (None, None),
    };
    loop {
        let (accepted, secure) = tokio::select! {
            a = accept(plain.as_ref()) => (a, false),
            a = accept(tls_listener.as_ref()) => (a, true),
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            _ = &mut shutdown => break,
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                let broker = Arc::clone(&broker);
                let stop = stop_rx.clone();
                match acceptor.as_ref().filter(|_| secure) {
                    Some(a) => {
                        let a = a.clone();
                        tasks.spawn(connection::serve_tls(stream, peer, a, broker, stop));
                    }
                    None => {
                        tasks.spawn(connection::serve(stream, peer, broker, stop));
                    }
                }
            }
            Err(err) => {
                warn!(%err, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
    info!(connections = tasks.len(), "shutting down");
    let _ = stop_tx.send(true);
    let drain = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(std::time::Duration::from_secs(5), drain)
        .await
        .is_err()
    {
        tasks.abort_all();
    }
    // Startup and shutdown block briefly on disk I/O; nothing else runs then.
    broker.shutdown();
}
