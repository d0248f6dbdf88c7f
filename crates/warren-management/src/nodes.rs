//! `/api/nodes`: the one node Warren runs as, with the figures monitoring
//! reads (memory and disk against their alarm limits, file descriptors,
//! sockets, uptime). Monitoring users and administrators only, as in
//! RabbitMQ.

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/nodes", get(list))
        .route("/api/nodes/{name}", get(one))
}

/// The soft open-files limit of this process.
pub(crate) fn fd_total() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

pub(crate) fn fd_used() -> Option<u64> {
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count() as u64)
}

fn node(state: &AppState) -> Value {
    let b = &state.broker;
    let alarms = *b.alarms().borrow();
    let limits = &b.config.alarms;
    let fd_total = fd_total();
    json!({
        "name": state.node_name,
        "type": "disc",
        "running": true,
        "cluster_links": [],
        "mem_used": limits.memory_probe.measure(),
        "mem_limit": limits.memory_limit,
        "mem_alarm": alarms.memory,
        "disk_free": b.config.data_dir.as_ref().and_then(warren_server::free_disk),
        "disk_free_limit": limits.disk_free_limit,
        "disk_free_alarm": alarms.disk,
        "fd_used": fd_used(),
        "fd_total": fd_total,
        "sockets_used": b.connections.list().len(),
        "sockets_total": fd_total,
        "uptime": b.started.elapsed().as_millis() as u64,
        "os_pid": std::process::id().to_string(),
        "processors": std::thread::available_parallelism().map_or(1, |n| n.get()),
    })
}

async fn list(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Value>> {
    caller.require_monitor()?;
    Ok(Json(json!([node(&state)])))
}

async fn one(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require_monitor()?;
    if name != state.node_name {
        return Err(ApiError::not_found());
    }
    Ok(Json(node(&state)))
}
