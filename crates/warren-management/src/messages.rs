//! `/api/queues/{vhost}/{name}/get` and `/api/exchanges/{vhost}/{name}/publish`:
//! messages taken and published over HTTP, as RabbitMQ's management API
//! does it (for testing and debugging, not for throughput).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine;
use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use warren_core::access::Operation;
use warren_protocol::BasicProperties;
use warren_server::GetMode;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::json::{json_to_table, loose_count, loose_count_opt, table_to_json, Body};
use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/queues/{vhost}/{name}/get", post(get_messages))
        .route("/api/exchanges/{vhost}/{name}/publish", post(publish))
}

fn vhost_refused() -> ApiError {
    ApiError::not_authorised("User not authorised to access virtual host")
}

/// A message's properties as RabbitMQ shows them: an object of those set,
/// or an empty *array* when none is.
fn properties_json(raw: &[u8]) -> Value {
    let Ok(p) = BasicProperties::decode(raw) else {
        return json!([]);
    };
    let mut m = Map::new();
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            m.insert(k.to_string(), v);
        }
    };
    put("content_type", p.content_type.map(Value::from));
    put("content_encoding", p.content_encoding.map(Value::from));
    put("priority", p.priority.map(Value::from));
    put("correlation_id", p.correlation_id.map(Value::from));
    put("reply_to", p.reply_to.map(Value::from));
    put("expiration", p.expiration.map(Value::from));
    put("message_id", p.message_id.map(Value::from));
    put("timestamp", p.timestamp.map(Value::from));
    put("type", p.kind.map(Value::from));
    put("user_id", p.user_id.map(Value::from));
    put("app_id", p.app_id.map(Value::from));
    put("cluster_id", p.cluster_id.map(Value::from));
    put("delivery_mode", p.delivery_mode.map(Value::from));
    put("headers", p.headers.as_ref().map(table_to_json));
    if m.is_empty() {
        json!([])
    } else {
        Value::Object(m)
    }
}

#[derive(Deserialize)]
struct GetBody {
    #[serde(deserialize_with = "loose_count")]
    count: usize,
    ackmode: String,
    encoding: String,
    #[serde(default, deserialize_with = "loose_count_opt")]
    truncate: Option<usize>,
}

async fn get_messages(
    State(state): State<AppState>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    Body(body): Body<GetBody>,
) -> ApiResult<Json<Value>> {
    if state.broker.vhost(&vhost).is_none() {
        return Err(ApiError::not_found());
    }
    if !caller.sees_topology(&state, &vhost) {
        return Err(vhost_refused());
    }
    caller.check_amqp(&state, &vhost, &Operation::Get { queue: &name })?;
    let mode = match body.ackmode.as_str() {
        "ack_requeue_true" | "reject_requeue_true" => GetMode::Requeue,
        "ack_requeue_false" => GetMode::Ack,
        "reject_requeue_false" => GetMode::Reject,
        other => return Err(ApiError::bad_request(format!("unknown ackmode '{other}'"))),
    };
    let base64_only = match body.encoding.as_str() {
        "auto" => false,
        "base64" => true,
        other => return Err(ApiError::bad_request(format!("unknown encoding '{other}'"))),
    };
    let got = state
        .broker
        .get_messages(&vhost, &name, body.count, mode)
        .map_err(ApiError::from_amqp)?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("NOT_FOUND - no queue '{name}' in vhost '{vhost}'"),
            )
        })?;
    let out = got
        .iter()
        .map(|(m, remaining)| {
            let msg = &m.message;
            let body = &msg.body[..body.truncate.unwrap_or(usize::MAX).min(msg.body.len())];
            let (payload, encoding) = match std::str::from_utf8(body) {
                Ok(text) if !base64_only => (text.to_string(), "string"),
                _ => (
                    base64::engine::general_purpose::STANDARD.encode(body),
                    "base64",
                ),
            };
            json!({
                "payload_bytes": msg.body.len(),
                "redelivered": m.redelivered,
                "exchange": msg.exchange,
                "routing_key": msg.routing_key,
                "message_count": remaining,
                "properties": properties_json(&msg.properties),
                "payload": payload,
                "payload_encoding": encoding,
            })
        })
        .collect();
    Ok(Json(Value::Array(out)))
}

#[derive(Deserialize)]
struct PublishBody {
    #[serde(default)]
    properties: Map<String, Value>,
    routing_key: String,
    payload: String,
    payload_encoding: String,
}

fn string(p: &Map<String, Value>, key: &str) -> Option<String> {
    p.get(key).and_then(Value::as_str).map(str::to_string)
}

fn number(p: &Map<String, Value>, key: &str) -> Option<u64> {
    p.get(key).and_then(Value::as_u64)
}

/// The properties a publish gives, as AMQP encodes them.
fn encode_properties(p: &Map<String, Value>) -> Bytes {
    let props = BasicProperties {
        content_type: string(p, "content_type"),
        content_encoding: string(p, "content_encoding"),
        headers: p.get("headers").and_then(json_to_table),
        delivery_mode: number(p, "delivery_mode").map(|n| n as u8),
        priority: number(p, "priority").map(|n| n as u8),
        correlation_id: string(p, "correlation_id"),
        reply_to: string(p, "reply_to"),
        expiration: string(p, "expiration"),
        message_id: string(p, "message_id"),
        timestamp: number(p, "timestamp"),
        kind: string(p, "type"),
        user_id: string(p, "user_id"),
        app_id: string(p, "app_id"),
        cluster_id: string(p, "cluster_id"),
    };
    let mut buf = BytesMut::new();
    props.encode(&mut buf);
    buf.freeze()
}

/// A refusal the broker raised on the channel, as the API reports it.
fn channel_error(e: warren_core::AmqpError) -> ApiError {
    ApiError::bad_request(format!("{} {}", e.code as u16, e.reply_text()))
}

async fn publish(
    State(state): State<AppState>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    Body(body): Body<PublishBody>,
) -> ApiResult<Json<Value>> {
    if state.broker.vhost(&vhost).is_none() {
        return Err(ApiError::not_found());
    }
    if !caller.sees_topology(&state, &vhost) {
        return Err(vhost_refused());
    }
    let exchange = if name == "amq.default" { "" } else { &name };
    state
        .broker
        .grants(&caller.user.name, &vhost)
        .check(&Operation::Publish { exchange })
        .map_err(channel_error)?;
    let payload = match body.payload_encoding.as_str() {
        "string" => Bytes::from(body.payload.into_bytes()),
        "base64" => Bytes::from(
            base64::engine::general_purpose::STANDARD
                .decode(body.payload.as_bytes())
                .map_err(|_| ApiError::bad_request("payload is not valid base64"))?,
        ),
        other => {
            return Err(ApiError::bad_request(format!(
                "unknown payload_encoding '{other}'"
            )))
        }
    };
    if let Some(claimed) = string(&body.properties, "user_id") {
        if claimed != caller.user.name {
            return Err(channel_error(warren_core::AmqpError::precondition_failed(
                format!(
                    "user_id property set to '{claimed}' but authenticated user was '{}'",
                    caller.user.name
                ),
            )));
        }
    }
    let routed = state
        .broker
        .publish(
            &vhost,
            exchange,
            &body.routing_key,
            encode_properties(&body.properties),
            payload,
        )
        .map_err(channel_error)?;
    Ok(Json(json!({"routed": routed})))
}
