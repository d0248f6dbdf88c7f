//! Warren's management HTTP API: RabbitMQ's management plugin's paths,
//! JSON shapes, status codes and permission rules, so that its UI's users,
//! `rabbitmqadmin`, and the scripts and monitoring written against it work
//! against Warren.
//!
//! It talks to the broker through the same handle the connections use
//! ([`warren_server::Broker`]); it holds no state of its own. Modules:
//! - `auth`: HTTP basic authentication and what each tag may do;
//! - `error`: RabbitMQ's error bodies;
//! - `overview`: `/api/overview`, `/api/whoami`;
//! - `nodes`: `/api/nodes`, the one node's figures;
//! - `tenants`: vhosts, users, permissions, topic permissions, limits;
//! - `connections`: `/api/connections`;
//! - `channels`: channels and consumers, as their connections describe them;
//! - `policies`: policies and operator policies;
//! - `prometheus`: the Prometheus metrics, on their own listener;
//! - `topology`: exchanges, queues and bindings;
//! - `messages`: basic.get and publish over HTTP;
//! - `health`: the aliveness test and health checks;
//! - `definitions`: export and import in RabbitMQ's definitions format;
//! - `listing`: the list endpoints' filters, sorting, columns and paging;
//! - `ui`: the web UI's page, script and style sheet.

mod auth;
mod channels;
mod connections;
mod definitions;
mod error;
mod health;
mod json;
mod listing;
mod messages;
mod nodes;
mod overview;
mod policies;
mod prometheus;
mod tenants;
mod topology;
mod ui;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::Router;
use serde_json::Value;
use tokio::net::TcpListener;
use tracing::warn;
use warren_server::Broker;

pub use definitions::{export as export_definitions, import as import_definitions};
pub use prometheus::serve as serve_prometheus;

/// The largest request body accepted (definitions imports are the big
/// ones).
pub const MAX_BODY: usize = 32 * 1024 * 1024;

/// What every handler sees.
#[derive(Clone)]
pub struct AppState {
    pub broker: Arc<Broker>,
    /// `warren@host`, where RabbitMQ says `rabbit@host`.
    pub node_name: String,
    /// The broker's listeners, as `/api/overview` lists them.
    pub listeners: Value,
    pub management_port: u16,
}

impl AppState {
    pub fn new(broker: Arc<Broker>, amqp: SocketAddr, management: SocketAddr) -> Self {
        let node_name = node_name();
        let listener = |protocol: &str, addr: SocketAddr| {
            serde_json::json!({
                "node": node_name,
                "protocol": protocol,
                "ip_address": addr.ip().to_string(),
                "port": addr.port(),
                "socket_opts": {},
            })
        };
        let listeners = Value::Array(vec![listener("amqp", amqp), listener("http", management)]);
        AppState {
            broker,
            node_name: node_name.clone(),
            listeners,
            management_port: management.port(),
        }
    }
}

/// `warren@host`, where RabbitMQ says `rabbit@host`.
pub(crate) fn node_name() -> String {
    format!("warren@{}", hostname())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// The API's routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(overview::routes())
        .merge(tenants::routes())
        .merge(connections::routes())
        .merge(topology::routes())
        .merge(messages::routes())
        .merge(health::routes())
        .merge(definitions::routes())
        .merge(channels::routes())
        .merge(nodes::routes())
        .merge(policies::routes())
        .merge(ui::routes())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            durable_changes,
        ))
        .layer(axum::middleware::from_fn(listing::columns_everywhere))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// A change is answered once what it saved is on stable storage.
async fn durable_changes(
    axum::extract::State(state): axum::extract::State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let changes = req.method() != axum::http::Method::GET;
    let res = next.run(req).await;
    if changes {
        state.broker.definitions_synced().await;
    }
    res
}

/// Serves the API on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    if let Err(err) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        warn!(%err, "management listener failed");
    }
}
