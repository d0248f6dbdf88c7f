//! `/api/vhosts`, `/api/users`, `/api/permissions`,
//! `/api/topic-permissions` and `/api/vhost-limits`: the tenant registry,
//! read and changed as RabbitMQ's management API does it.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use warren_core::access::{
    AccessControl, PasswordHash, Permissions, TopicPermission, User, VhostInfo, VhostLimits,
};

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::json::{created_or_updated, Body, Tags};
use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/vhosts", get(list_vhosts))
        .route(
            "/api/vhosts/{vhost}",
            get(get_vhost).put(put_vhost).delete(delete_vhost),
        )
        .route("/api/vhosts/{vhost}/permissions", get(vhost_permissions))
        .route(
            "/api/vhosts/{vhost}/topic-permissions",
            get(vhost_topic_permissions),
        )
        .route("/api/users", get(list_users))
        .route(
            "/api/users/without-permissions",
            get(users_without_permissions),
        )
        .route(
            "/api/users/{user}",
            get(get_user).put(put_user).delete(delete_user),
        )
        .route("/api/users/{user}/permissions", get(user_permissions))
        .route(
            "/api/users/{user}/topic-permissions",
            get(user_topic_permissions),
        )
        .route("/api/permissions", get(list_permissions))
        .route(
            "/api/permissions/{vhost}/{user}",
            get(get_permission)
                .put(put_permission)
                .delete(delete_permission),
        )
        .route("/api/topic-permissions", get(list_topic_permissions))
        .route(
            "/api/topic-permissions/{vhost}/{user}",
            get(get_topic_permission)
                .put(put_topic_permission)
                .delete(delete_topic_permission),
        )
        .route("/api/vhost-limits", get(list_vhost_limits))
        .route("/api/vhost-limits/{vhost}", get(get_vhost_limits))
        .route(
            "/api/vhost-limits/{vhost}/{name}",
            axum::routing::put(put_vhost_limit).delete(delete_vhost_limit),
        )
}

// --- vhosts ---

pub fn vhost_json(state: &AppState, v: &VhostInfo) -> Value {
    let (ready, unacked) = state.broker.vhost_message_counts(&v.name);
    json!({
        "name": v.name,
        "description": v.description,
        "tags": v.tags,
        "default_queue_type": v.default_queue_type.as_deref().unwrap_or("undefined"),
        "metadata": {"description": v.description, "tags": v.tags},
        "tracing": false,
        "cluster_state": {state.node_name.clone(): "running"},
        "messages": ready + unacked,
        "messages_ready": ready,
        "messages_unacknowledged": unacked,
    })
}

async fn list_vhosts(State(state): State<AppState>, caller: Caller) -> Json<Value> {
    let vhosts: Vec<VhostInfo> = state.broker.access().vhosts().cloned().collect();
    Json(Value::Array(
        vhosts
            .iter()
            .filter(|v| caller.sees_vhost(&state, &v.name))
            .map(|v| vhost_json(&state, v))
            .collect(),
    ))
}

/// One vhost: an administrator's endpoint in RabbitMQ 3.10.
async fn get_vhost(
    State(state): State<AppState>,
    caller: Caller,
    Path(vhost): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require_administrator()?;
    let info = state
        .broker
        .access()
        .vhost(&vhost)
        .cloned()
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(vhost_json(&state, &info)))
}

#[derive(Deserialize)]
struct VhostBody {
    description: Option<String>,
    tags: Option<Tags>,
    default_queue_type: Option<String>,
}

async fn put_vhost(
    State(state): State<AppState>,
    caller: Caller,
    Path(vhost): Path<String>,
    Body(body): Body<VhostBody>,
) -> ApiResult<Response> {
    caller.require_administrator()?;
    // A PUT replaces the vhost's settings; its limits are kept.
    let limits = state
        .broker
        .access()
        .vhost(&vhost)
        .map(|v| v.limits)
        .unwrap_or_default();
    let info = VhostInfo {
        name: vhost.clone(),
        description: body.description.unwrap_or_default(),
        tags: body.tags.map(|t| t.0).unwrap_or_default(),
        default_queue_type: body.default_queue_type,
        limits,
    };
    let created = state.broker.put_vhost(info);
    if created {
        // Its creator gets full permissions in it, as in RabbitMQ.
        let _ = state
            .broker
            .set_permissions(&caller.user.name, &vhost, Permissions::all());
    }
    Ok(created_or_updated(created))
}

async fn delete_vhost(
    State(state): State<AppState>,
    caller: Caller,
    Path(vhost): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require_administrator()?;
    if state.broker.delete_vhost(&vhost) {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found())
    }
}

// --- users ---

pub(crate) fn user_json(u: &User) -> Value {
    json!({
        "name": u.name,
        "password_hash": u.password.to_base64(),
        "hashing_algorithm": u.password.algorithm.as_str(),
        "tags": u.tags,
        "limits": {},
    })
}

async fn list_users(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Value>> {
    caller.require_administrator()?;
    let access = state.broker.access();
    Ok(Json(Value::Array(access.users().map(user_json).collect())))
}

async fn users_without_permissions(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Value>> {
    caller.require_administrator()?;
    let access = state.broker.access();
    let without = access
        .users()
        .filter(|u| !access.all_permissions().any(|(user, _, _)| user == u.name))
        .map(user_json)
        .collect();
    Ok(Json(Value::Array(without)))
}

async fn get_user(
    State(state): State<AppState>,
    caller: Caller,
    Path(user): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require_administrator()?;
    let access = state.broker.access();
    let u = access.user(&user).ok_or_else(ApiError::not_found)?;
    Ok(Json(user_json(u)))
}

#[derive(Deserialize)]
struct UserBody {
    password: Option<String>,
    password_hash: Option<String>,
    hashing_algorithm: Option<String>,
    tags: Option<Tags>,
}

async fn put_user(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Body(body): Body<UserBody>,
) -> ApiResult<Response> {
    caller.require_administrator()?;
    let Some(tags) = body.tags else {
        return Err(ApiError::bad_request("tags_not_present"));
    };
    // Neither a password nor a hash: a user that cannot log in with a
    // password, as RabbitMQ makes it.
    let password = match (&body.password, &body.password_hash) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "both_password_and_password_hash_are_provided",
            ))
        }
        (Some(p), None) => PasswordHash::new(Default::default(), warren_server::password_salt(), p),
        (None, Some(h)) => PasswordHash::from_base64(h, body.hashing_algorithm.as_deref())
            .map_err(|e| ApiError::bad_request(e.to_string()))?,
        (None, None) => PasswordHash::none(),
    };
    let tags = tags.0;
    let created = state.broker.put_user(User {
        name,
        password,
        tags,
    });
    Ok(created_or_updated(created))
}

async fn delete_user(
    State(state): State<AppState>,
    caller: Caller,
    Path(user): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require_administrator()?;
    if state.broker.delete_user(&user) {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found())
    }
}

// --- permissions ---

pub(crate) fn permission_json(user: &str, vhost: &str, p: &Permissions) -> Value {
    json!({
        "user": user,
        "vhost": vhost,
        "configure": p.configure.as_str(),
        "write": p.write.as_str(),
        "read": p.read.as_str(),
    })
}

fn permissions_where(ac: &AccessControl, keep: impl Fn(&str, &str) -> bool) -> Value {
    Value::Array(
        ac.all_permissions()
            .filter(|(u, v, _)| keep(u, v))
            .map(|(u, v, p)| permission_json(u, v, p))
            .collect(),
    )
}

async fn list_permissions(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Value>> {
    caller.require_administrator()?;
    Ok(Json(permissions_where(&state.broker.access(), |_, _| true)))
}

async fn vhost_permissions(
    State(state): State<AppState>,
    caller: Caller,
    Path(vhost): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require_administrator()?;
    let access = state.broker.access();
    access.vhost(&vhost).ok_or_else(ApiError::not_found)?;
    Ok(Json(permissions_where(&access, |_, v| v == vhost)))
}

async fn user_permissions(
    State(state): State<AppState>,
    caller: Caller,
    Path(user): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require_administrator()?;
    let access = state.broker.access();
    access.user(&user).ok_or_else(ApiError::not_found)?;
    Ok(Json(permissions_where(&access, |u, _| u == user)))
}

async fn get_permission(
    State(state): State<AppState>,
    caller: Caller,
    Path((vhost, user)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    caller.require_administrator()?;
    let access = state.broker.access();
    let p = access
        .permissions(&user, &vhost)
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(permission_json(&user, &vhost, p)))
}

#[derive(Deserialize)]
struct PermissionBody {
    configure: String,
    write: String,
    read: String,
}

async fn put_permission(
    State(state): State<AppState>,
    caller: Caller,
    Path((vhost, user)): Path<(String, String)>,
    Body(body): Body<PermissionBody>,
) -> ApiResult<Response> {
    caller.require_administrator()?;
    require_user_and_vhost(&state, &user, &vhost)?;
    let perms = Permissions::new(&body.configure, &body.write, &body.read)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let existed = state.broker.access().permissions(&user, &vhost).is_some();
    state
        .broker
        .set_permissions(&user, &vhost, perms)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(created_or_updated(!existed))
}

async fn delete_permission(
    State(state): State<AppState>,
    caller: Caller,
    Path((vhost, user)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    caller.require_administrator()?;
    if state.broker.clear_permissions(&user, &vhost) {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found())
    }
}

fn require_user_and_vhost(state: &AppState, user: &str, vhost: &str) -> ApiResult<()> {
    let access = state.broker.access();
    if access.user(user).is_none() || access.vhost(vhost).is_none() {
        return Err(ApiError::bad_request("vhost_or_user_not_found"));
    }
    Ok(())
}

// --- topic permissions ---

pub(crate) fn topic_json(user: &str, vhost: &str, t: &TopicPermission) -> Value {
    json!({
        "user": user,
        "vhost": vhost,
        "exchange": t.exchange,
        "write": t.write,
        "read": t.read,
    })
}

fn topics_where(ac: &AccessControl, keep: impl Fn(&str, &str) -> bool) -> Value {
    Value::Array(
        ac.all_topic_permissions()
            .filter(|(u, v, _)| keep(u, v))
            .map(|(u, v, t)| topic_json(u, v, t))
            .collect(),
    )
}

async fn list_topic_permissions(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Value>> {
    caller.require_administrator()?;
    Ok(Json(topics_where(&state.broker.access(), |_, _| true)))
}

async fn vhost_topic_permissions(
    State(state): State<AppState>,
    caller: Caller,
    Path(vhost): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require_administrator()?;
    let access = state.broker.access();
    access.vhost(&vhost).ok_or_else(ApiError::not_found)?;
    Ok(Json(topics_where(&access, |_, v| v == vhost)))
}

async fn user_topic_permissions(
    State(state): State<AppState>,
    caller: Caller,
    Path(user): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require_administrator()?;
    let access = state.broker.access();
    access.user(&user).ok_or_else(ApiError::not_found)?;
    Ok(Json(topics_where(&access, |u, _| u == user)))
}

async fn get_topic_permission(
    State(state): State<AppState>,
    caller: Caller,
    Path((vhost, user)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    caller.require_administrator()?;
    let access = state.broker.access();
    let list = access.topic_permissions(&user, &vhost);
    if list.is_empty() {
        return Err(ApiError::not_found());
    }
    Ok(Json(Value::Array(
        list.iter().map(|t| topic_json(&user, &vhost, t)).collect(),
    )))
}

#[derive(Deserialize)]
struct TopicBody {
    exchange: String,
    write: String,
    read: String,
}

async fn put_topic_permission(
    State(state): State<AppState>,
    caller: Caller,
    Path((vhost, user)): Path<(String, String)>,
    Body(body): Body<TopicBody>,
) -> ApiResult<Response> {
    caller.require_administrator()?;
    require_user_and_vhost(&state, &user, &vhost)?;
    // The resource is the (vhost, user) pair, whatever the exchange.
    let existed = !state
        .broker
        .access()
        .topic_permissions(&user, &vhost)
        .is_empty();
    state
        .broker
        .set_topic_permission(
            &user,
            &vhost,
            TopicPermission {
                exchange: body.exchange,
                write: body.write,
                read: body.read,
            },
        )
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(created_or_updated(!existed))
}

async fn delete_topic_permission(
    State(state): State<AppState>,
    caller: Caller,
    Path((vhost, user)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    caller.require_administrator()?;
    if state.broker.clear_topic_permissions(&user, &vhost, None) {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found())
    }
}

// --- vhost limits ---

pub(crate) fn limits_json(limits: &VhostLimits) -> Value {
    let mut value = serde_json::Map::new();
    if let Some(n) = limits.max_connections {
        value.insert("max-connections".into(), json!(n));
    }
    if let Some(n) = limits.max_queues {
        value.insert("max-queues".into(), json!(n));
    }
    Value::Object(value)
}

pub(crate) fn has_limits(limits: &VhostLimits) -> bool {
    limits.max_connections.is_some() || limits.max_queues.is_some()
}

async fn list_vhost_limits(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Value>> {
    let vhosts: Vec<VhostInfo> = state.broker.access().vhosts().cloned().collect();
    Ok(Json(Value::Array(
        vhosts
            .iter()
            .filter(|v| has_limits(&v.limits) && caller.sees_vhost(&state, &v.name))
            .map(|v| json!({"vhost": v.name, "value": limits_json(&v.limits)}))
            .collect(),
    )))
}

async fn get_vhost_limits(
    State(state): State<AppState>,
    caller: Caller,
    Path(vhost): Path<String>,
) -> ApiResult<Json<Value>> {
    let Some(v) = state.broker.access().vhost(&vhost).cloned() else {
        return Err(ApiError::not_found());
    };
    if !caller.sees_vhost(&state, &vhost) {
        return Err(ApiError::not_authorised(
            "User not authorised to access virtual host",
        ));
    }
    if !has_limits(&v.limits) {
        return Ok(Json(json!([])));
    }
    Ok(Json(
        json!([{"vhost": v.name, "value": limits_json(&v.limits)}]),
    ))
}

/// A JSON value as Erlang prints it in RabbitMQ's validation messages.
fn erlang_term(v: &Value) -> String {
    match v {
        Value::String(s) => format!("<<\"{s}\">>"),
        other => other.to_string(),
    }
}

async fn put_vhost_limit(
    State(state): State<AppState>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<StatusCode> {
    caller.require_administrator()?;
    let mut info = state
        .broker
        .access()
        .vhost(&vhost)
        .cloned()
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "not_found", "vhost_not_found"))?;
    let is_json = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.contains("json"));
    if !is_json {
        return Err(ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "", ""));
    }
    let doc: Value =
        serde_json::from_slice(&body).map_err(|_| ApiError::bad_request("not_json"))?;
    let Some(obj) = doc.as_object() else {
        return Err(ApiError::bad_request("not_json"));
    };
    let Some(value) = obj.get("value") else {
        return Err(ApiError::bad_request("[{key_missing,value}]"));
    };
    let slot = match name.as_str() {
        "max-connections" => &mut info.limits.max_connections,
        "max-queues" => &mut info.limits.max_queues,
        other => {
            return Err(ApiError::bad_request(format!(
                "Validation failed\n\nUnrecognised terms [{{<<\"{other}\">>,{}}}] in limits\n",
                erlang_term(value)
            )))
        }
    };
    let Some(n) = value.as_i64() else {
        return Err(ApiError::bad_request(format!(
            "Validation failed\n\n{name} should be a number, actually was {}\n",
            erlang_term(value)
        )));
    };
    *slot = Some(n);
    state.broker.put_vhost(info);
    Ok(StatusCode::NO_CONTENT)
}

/// Removes a limit; as in RabbitMQ, removing one that is not set (or
/// unknown) succeeds.
async fn delete_vhost_limit(
    State(state): State<AppState>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    caller.require_administrator()?;
    let mut info = state
        .broker
        .access()
        .vhost(&vhost)
        .cloned()
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "not_found", "vhost_not_found"))?;
    match name.as_str() {
        "max-connections" => info.limits.max_connections = None,
        "max-queues" => info.limits.max_queues = None,
        _ => return Ok(StatusCode::NO_CONTENT),
    }
    state.broker.put_vhost(info);
    Ok(StatusCode::NO_CONTENT)
}
