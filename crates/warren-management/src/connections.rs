//! `/api/connections`: open AMQP connections, listed and closed.

use std::sync::atomic::Ordering;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use warren_core::AmqpError;
use warren_protocol::ReplyCode;
use warren_server::ConnectionInfo;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::json::table_to_json;
use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/connections", get(list))
        .route("/api/vhosts/{vhost}/connections", get(list_in_vhost))
        .route("/api/connections/{name}", get(get_one).delete(close))
}

fn connection_json(state: &AppState, c: &ConnectionInfo) -> Value {
    json!({
        "name": c.name(),
        "node": state.node_name,
        "vhost": c.vhost,
        "user": c.user,
        "user_who_performed_action": c.user,
        "protocol": "AMQP 0-9-1",
        "type": "network",
        "state": "running",
        "peer_host": c.peer.ip().to_string(),
        "peer_port": c.peer.port(),
        "host": c.local.ip().to_string(),
        "port": c.local.port(),
        "channels": c.channels.load(Ordering::Relaxed),
        "channel_max": c.channel_max,
        "frame_max": c.frame_max,
        "timeout": c.heartbeat,
        "connected_at": c.opened_at,
        "auth_mechanism": c.auth_mechanism,
        "ssl": c.tls.is_some(),
        "ssl_protocol": c.tls,
        "client_properties": table_to_json(&c.client_properties),
    })
}

/// Whether the caller sees a connection: monitors see all, others their
/// own.
fn sees(caller: &Caller, c: &ConnectionInfo) -> bool {
    caller.level.can_monitor() || c.user == caller.user.name
}

async fn list(State(state): State<AppState>, caller: Caller) -> Json<Value> {
    let all = state.broker.connections.list();
    Json(Value::Array(
        all.iter()
            .filter(|c| sees(&caller, c))
            .map(|c| connection_json(&state, c))
            .collect(),
    ))
}

async fn list_in_vhost(
    State(state): State<AppState>,
    caller: Caller,
    Path(vhost): Path<String>,
) -> ApiResult<Json<Value>> {
    if state.broker.access().vhost(&vhost).is_none() {
        return Err(ApiError::not_found());
    }
    caller.require_vhost(&state, &vhost)?;
    let all = state.broker.connections.list();
    Ok(Json(Value::Array(
        all.iter()
            .filter(|c| c.vhost == vhost && sees(&caller, c))
            .map(|c| connection_json(&state, c))
            .collect(),
    )))
}

fn find(state: &AppState, caller: &Caller, name: &str) -> ApiResult<ConnectionInfo> {
    state
        .broker
        .connections
        .list()
        .into_iter()
        .find(|c| c.name() == name && sees(caller, c))
        .ok_or_else(ApiError::not_found)
}

async fn get_one(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let c = find(&state, &caller, &name)?;
    Ok(Json(connection_json(&state, &c)))
}

/// Closes a connection with 320, giving the `X-Reason` header as the
/// reason if there is one.
async fn close(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    let c = find(&state, &caller, &name)?;
    let reason = headers
        .get("x-reason")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("Closed via management plugin");
    state.broker.connections.close(
        c.id,
        &AmqpError::new(ReplyCode::ConnectionForced, reason.to_string()),
    );
    Ok(StatusCode::NO_CONTENT)
}
