//! `/api/channels` and `/api/consumers`: each connection's task is asked
//! for a snapshot of its channels (nothing is tracked for listings on the
//! message path).

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use warren_server::{ChannelSnapshot, ConnectionInfo};

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::json::table_to_json;
use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/channels", get(all_channels))
        .route("/api/channels/{name}", get(one_channel))
        .route("/api/vhosts/{vhost}/channels", get(vhost_channels))
        .route("/api/connections/{name}/channels", get(connection_channels))
        .route("/api/consumers", get(all_consumers))
        .route("/api/consumers/{vhost}", get(vhost_consumers))
}

/// The connections the caller sees, with their channels.
async fn snapshots(
    state: &AppState,
    caller: &Caller,
    keep: impl Fn(&ConnectionInfo) -> bool,
) -> Vec<(ConnectionInfo, Vec<ChannelSnapshot>)> {
    let conns: Vec<ConnectionInfo> = state
        .broker
        .connections
        .list()
        .into_iter()
        .filter(|c| (caller.level.can_monitor() || c.user == caller.user.name) && keep(c))
        .collect();
    let mut out = Vec::with_capacity(conns.len());
    for c in conns {
        if let Some(channels) = state.broker.connections.describe(c.id).await {
            out.push((c, channels));
        }
    }
    out
}

fn channel_name(c: &ConnectionInfo, number: u16) -> String {
    format!("{} ({number})", c.name())
}

fn channel_json(state: &AppState, c: &ConnectionInfo, ch: &ChannelSnapshot) -> Value {
    json!({
        "name": channel_name(c, ch.number),
        "number": ch.number,
        "connection_details": {
            "name": c.name(),
            "peer_host": c.peer.ip().to_string(),
            "peer_port": c.peer.port(),
        },
        "user": c.user,
        "user_who_performed_action": c.user,
        "vhost": c.vhost,
        "node": state.node_name,
        "state": "running",
        "consumer_count": ch.consumers.len(),
        "messages_unacknowledged": ch.unacked,
        "prefetch_count": ch.prefetch_count,
        "global_prefetch_count": ch.global_prefetch_count,
        "confirm": ch.confirm,
        "transactional": ch.transactional,
    })
}

fn consumers_json(state: &AppState, c: &ConnectionInfo, ch: &ChannelSnapshot) -> Vec<Value> {
    ch.consumers
        .iter()
        .map(|k| {
            json!({
                "consumer_tag": k.tag,
                "queue": {"name": k.queue, "vhost": c.vhost},
                "channel_details": {
                    "name": channel_name(c, ch.number),
                    "number": ch.number,
                    "connection_name": c.name(),
                    "peer_host": c.peer.ip().to_string(),
                    "peer_port": c.peer.port(),
                    "user": c.user,
                    "node": state.node_name,
                },
                "ack_required": k.ack_required,
                "prefetch_count": k.prefetch_count,
                "exclusive": k.exclusive,
                "arguments": table_to_json(&k.arguments),
                "active": k.active,
                "activity_status": if k.active { "up" } else { "waiting" },
            })
        })
        .collect()
}

fn channels_of(state: &AppState, all: &[(ConnectionInfo, Vec<ChannelSnapshot>)]) -> Value {
    Value::Array(
        all.iter()
            .flat_map(|(c, chs)| chs.iter().map(move |ch| channel_json(state, c, ch)))
            .collect(),
    )
}

fn consumers_of(state: &AppState, all: &[(ConnectionInfo, Vec<ChannelSnapshot>)]) -> Value {
    Value::Array(
        all.iter()
            .flat_map(|(c, chs)| chs.iter().flat_map(move |ch| consumers_json(state, c, ch)))
            .collect(),
    )
}

async fn all_channels(State(state): State<AppState>, caller: Caller) -> Json<Value> {
    let all = snapshots(&state, &caller, |_| true).await;
    Json(channels_of(&state, &all))
}

async fn vhost_channels(
    State(state): State<AppState>,
    caller: Caller,
    Path(vhost): Path<String>,
) -> ApiResult<Json<Value>> {
    if state.broker.vhost(&vhost).is_none() {
        return Err(ApiError::not_found());
    }
    let all = snapshots(&state, &caller, |c| c.vhost == vhost).await;
    Ok(Json(channels_of(&state, &all)))
}

async fn connection_channels(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let all = snapshots(&state, &caller, |c| c.name() == name).await;
    if all.is_empty() {
        return Err(ApiError::not_found());
    }
    Ok(Json(channels_of(&state, &all)))
}

async fn one_channel(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    // "<connection name> (<number>)"
    let (conn, number) = name
        .rsplit_once(" (")
        .and_then(|(c, n)| Some((c.to_string(), n.strip_suffix(')')?.parse::<u16>().ok()?)))
        .ok_or_else(ApiError::not_found)?;
    let all = snapshots(&state, &caller, |c| c.name() == conn).await;
    all.iter()
        .flat_map(|(c, chs)| chs.iter().map(move |ch| (c, ch)))
        .find(|(_, ch)| ch.number == number)
        .map(|(c, ch)| Json(channel_json(&state, c, ch)))
        .ok_or_else(ApiError::not_found)
}

async fn all_consumers(State(state): State<AppState>, caller: Caller) -> Json<Value> {
    let all = snapshots(&state, &caller, |_| true).await;
    Json(consumers_of(&state, &all))
}

async fn vhost_consumers(
    State(state): State<AppState>,
    caller: Caller,
    Path(vhost): Path<String>,
) -> ApiResult<Json<Value>> {
    if state.broker.vhost(&vhost).is_none() {
        return Err(ApiError::not_found());
    }
    let all = snapshots(&state, &caller, |c| c.vhost == vhost).await;
    Ok(Json(consumers_of(&state, &all)))
}
