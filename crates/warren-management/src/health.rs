//! `/api/aliveness-test/{vhost}` and `/api/health/checks/*`: what load
//! balancers and orchestrators poll, with RabbitMQ's answers.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;
use serde_json::{json, Value};
use warren_server::GetMode;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/aliveness-test/{vhost}", get(aliveness))
        .route("/api/health/checks/alarms", get(alarms))
        .route("/api/health/checks/local-alarms", get(alarms))
        .route("/api/health/checks/virtual-hosts", get(virtual_hosts))
        .route(
            "/api/health/checks/port-listener/{port}",
            get(port_listener),
        )
        .route(
            "/api/health/checks/protocol-listener/{protocol}",
            get(protocol_listener),
        )
}

fn ok() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

fn failed(body: Value) -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
}

/// Declares the vhost's `aliveness-test` queue, publishes to it and takes
/// the message back, as RabbitMQ's check does.
async fn aliveness(
    State(state): State<AppState>,
    caller: Caller,
    Path(vhost): Path<String>,
) -> ApiResult<Response> {
    if state.broker.vhost(&vhost).is_none() {
        return Err(ApiError::not_found());
    }
    if !caller.sees_topology(&state, &vhost) {
        return Err(ApiError::not_authorised(
            "User not authorised to access virtual host",
        ));
    }
    let b = &state.broker;
    let queue = "aliveness-test";
    b.declare_queue(&vhost, queue, false, false, Default::default())
        .map_err(ApiError::from_amqp)?;
    let body = Bytes::from_static(b"test_message");
    b.publish(&vhost, "", queue, Bytes::from_static(&[0, 0]), body.clone())
        .map_err(ApiError::from_amqp)?;
    let got = b
        .get_messages(&vhost, queue, 1, GetMode::Ack)
        .map_err(ApiError::from_amqp)?
        .unwrap_or_default();
    if got.first().is_some_and(|(m, _)| m.message.body == body) {
        Ok(ok())
    } else {
        Ok(failed(
            json!({"status": "failed", "reason": "aliveness test failed"}),
        ))
    }
}

async fn alarms(State(state): State<AppState>, _caller: Caller) -> Response {
    let alarms = *state.broker.alarms().borrow();
    if !alarms.any() {
        return ok();
    }
    let mut list = Vec::new();
    if alarms.memory {
        list.push(json!({"node": state.node_name, "resource": "memory"}));
    }
    if alarms.disk {
        list.push(json!({"node": state.node_name, "resource": "disk"}));
    }
    failed(json!({
        "status": "failed",
        "reason": "There are alarms in effect in the cluster",
        "alarms": list,
    }))
}

/// Every vhost is served by this one node.
async fn virtual_hosts(_caller: Caller) -> Response {
    ok()
}

fn listener_ports(state: &AppState) -> Vec<u64> {
    state
        .listeners
        .as_array()
        .map(|l| l.iter().filter_map(|x| x["port"].as_u64()).collect())
        .unwrap_or_default()
}

async fn port_listener(
    State(state): State<AppState>,
    _caller: Caller,
    Path(port): Path<String>,
) -> ApiResult<Response> {
    let port: u64 = port
        .parse()
        .map_err(|_| ApiError::bad_request("Invalid port"))?;
    let ports = listener_ports(&state);
    if ports.contains(&port) {
        return Ok(Json(json!({"status": "ok", "port": port})).into_response());
    }
    Ok(failed(json!({
        "status": "failed",
        "reason": "No active listener",
        "missing": port,
        "ports": ports,
    })))
}

async fn protocol_listener(
    State(state): State<AppState>,
    _caller: Caller,
    Path(protocol): Path<String>,
) -> Response {
    // RabbitMQ's names for AMQP 0-9-1.
    let name = match protocol.as_str() {
        "amqp" | "amqp091" | "amqp0-9-1" | "amqp0.9.1" | "amqp0_9_1" => "amqp",
        other => other,
    };
    let protocols: Vec<String> = state
        .listeners
        .as_array()
        .map(|l| {
            l.iter()
                .filter_map(|x| x["protocol"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if protocols.iter().any(|p| p == name) {
        return Json(json!({"status": "ok", "protocol": name})).into_response();
    }
    failed(json!({
        "status": "failed",
        "reason": "No active listener",
        "missing": protocol,
        "protocols": protocols,
    }))
}
