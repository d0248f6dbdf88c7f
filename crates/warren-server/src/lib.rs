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
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let broker = Arc::clone(&broker);
                    let stop = stop_rx.clone();
                    tasks.spawn(async move {
                        connection::serve(stream, peer, broker, stop).await;
                    });
                }
                Err(err) => {
                    warn!(%err, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            _ = &mut shutdown => break,
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
