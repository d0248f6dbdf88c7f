//! `/api/definitions` (and per vhost): everything that defines a broker,
//! exported and imported in RabbitMQ's JSON format, so definitions move
//! between RabbitMQ and Warren both ways. `warren serve --load-definitions`
//! imports through the same code.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use warren_core::access::{PasswordHash, Permissions, TopicPermission, User, VhostInfo};
use warren_core::exchange::ExchangeSpec;
use warren_core::policy::PolicyKind;
use warren_core::{Destination, ExchangeKind};
use warren_server::Broker;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::json::{json_to_table, table_to_json, Tags};
use crate::policies::{policy_json, validate};
use crate::tenants::{has_limits, limits_json};
use crate::tenants::{permission_json, topic_json, user_json};
use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/definitions", get(export_all).post(import_all))
        .route(
            "/api/definitions/{vhost}",
            get(export_vhost).post(import_vhost),
        )
}

/// The topology of one vhost as definitions: durable or not, but not
/// exclusive queues, predeclared exchanges or default bindings.
fn topology(
    broker: &Broker,
    vhost: &str,
    with_vhost: bool,
) -> (Vec<Value>, Vec<Value>, Vec<Value>) {
    let Some(topo) = broker.vhost(vhost) else {
        return Default::default();
    };
    let topo = topo.read();
    let tag = |mut v: Value| {
        if with_vhost {
            v["vhost"] = json!(vhost);
        }
        v
    };
    let mut queues: Vec<Value> = topo
        .queues()
        .filter(|(_, q)| q.spec.exclusive_owner.is_none())
        .map(|(name, q)| {
            tag(json!({
                "name": name,
                "durable": q.spec.durable,
                "auto_delete": q.spec.auto_delete,
                "arguments": table_to_json(&q.spec.arguments),
            }))
        })
        .collect();
    let mut exchanges = Vec::new();
    let mut bindings = Vec::new();
    for x in topo.exchanges() {
        if x.name().is_empty() {
            continue;
        }
        if !x.name().starts_with("amq.") {
            exchanges.push(tag(json!({
                "name": x.name(),
                "type": x.spec.kind.as_str(),
                "durable": x.spec.durable,
                "auto_delete": x.spec.auto_delete,
                "internal": x.spec.internal,
                "arguments": table_to_json(&x.spec.arguments),
            })));
        }
        for b in x.bindings() {
            let (dest, kind) = match &b.destination {
                Destination::Queue(q) => (q.clone(), "queue"),
                Destination::Exchange(e) => (e.clone(), "exchange"),
            };
            bindings.push(tag(json!({
                "source": x.name(),
                "destination": dest,
                "destination_type": kind,
                "routing_key": b.routing_key,
                "arguments": table_to_json(&b.arguments),
            })));
        }
    }
    let by = |keys: &'static [&'static str]| {
        move |a: &Value, b: &Value| {
            let key = |v: &Value| keys.iter().map(|k| v[*k].to_string()).collect::<Vec<_>>();
            key(a).cmp(&key(b))
        }
    };
    queues.sort_by(by(&["name"]));
    exchanges.sort_by(by(&["name"]));
    bindings.sort_by(by(&["source", "destination", "routing_key"]));
    (queues, exchanges, bindings)
}

/// The policies of every vhost, or of one, as exports list them.
fn policies_of(broker: &Broker, vhost: Option<&str>) -> Vec<Value> {
    listed(broker, PolicyKind::User, vhost)
        .iter()
        .map(|p| policy_json(p))
        .collect()
}

/// The runtime parameters, as RabbitMQ exports them: vhost limits
/// (component `vhost-limits`) and operator policies (`operator_policy`).
fn parameters_of(broker: &Broker, vhost: Option<&str>) -> Vec<Value> {
    let limits: Vec<Value> = broker
        .access()
        .vhosts()
        .filter(|v| vhost.is_none_or(|only| only == v.name) && has_limits(&v.limits))
        .map(|v| {
            json!({
                "vhost": v.name,
                "component": "vhost-limits",
                "name": "limits",
                "value": limits_json(&v.limits),
            })
        })
        .collect();
    let policies = listed(broker, PolicyKind::Operator, vhost)
        .into_iter()
        .map(|p| {
            let v = policy_json(&p);
            json!({
                "vhost": p.vhost,
                "component": "operator_policy",
                "name": p.name,
                "value": {
                    "pattern": v["pattern"],
                    "definition": v["definition"],
                    "priority": v["priority"],
                    "apply-to": v["apply-to"],
                },
            })
        });
    limits.into_iter().chain(policies).collect()
}

fn listed(
    broker: &Broker,
    kind: PolicyKind,
    vhost: Option<&str>,
) -> Vec<std::sync::Arc<warren_core::policy::Policy>> {
    let reg = broker.policies();
    match vhost {
        None => reg.list(kind),
        Some(v) => reg.vhost(v).map(|p| p.list(kind)).unwrap_or_default(),
    }
}

/// Everything, as `GET /api/definitions` returns it.
pub fn export(broker: &Broker) -> Value {
    let version = env!("CARGO_PKG_VERSION");
    let access = broker.access();
    let vhosts: Vec<String> = access.vhosts().map(|v| v.name.clone()).collect();
    let users: Vec<Value> = access.users().map(user_json).collect();
    let permissions: Vec<Value> = access
        .all_permissions()
        .map(|(u, v, p)| permission_json(u, v, p))
        .collect();
    let topic_permissions: Vec<Value> = access
        .all_topic_permissions()
        .map(|(u, v, t)| topic_json(u, v, t))
        .collect();
    let vhost_entries: Vec<Value> = access
        .vhosts()
        .map(|v| {
            json!({
                "name": v.name,
                "description": v.description,
                "tags": v.tags,
                "metadata": {"description": v.description, "tags": v.tags},
            })
        })
        .collect();
    drop(access);
    let policies = policies_of(broker, None);
    let (mut queues, mut exchanges, mut bindings) = (Vec::new(), Vec::new(), Vec::new());
    for v in &vhosts {
        let (q, x, b) = topology(broker, v, true);
        queues.extend(q);
        exchanges.extend(x);
        bindings.extend(b);
    }
    json!({
        "rabbit_version": version,
        "rabbitmq_version": version,
        "product_name": "Warren",
        "product_version": version,
        "users": users,
        "vhosts": vhost_entries,
        "permissions": permissions,
        "topic_permissions": topic_permissions,
        "parameters": parameters_of(broker, None),
        "global_parameters": [],
        "policies": policies,
        "queues": queues,
        "exchanges": exchanges,
        "bindings": bindings,
    })
}

async fn export_all(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Value>> {
    caller.require_administrator()?;
    Ok(Json(export(&state.broker)))
}

async fn export_vhost(
    State(state): State<AppState>,
    caller: Caller,
    Path(vhost): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require_administrator()?;
    if state.broker.vhost(&vhost).is_none() {
        return Err(ApiError::bad_request("vhost_not_found"));
    }
    let (queues, exchanges, bindings) = topology(&state.broker, &vhost, false);
    Ok(Json(json!({
        "rabbit_version": env!("CARGO_PKG_VERSION"),
        "parameters": parameters_of(&state.broker, Some(&vhost)),
        "policies": policies_of(&state.broker, Some(&vhost)),
        "queues": queues,
        "exchanges": exchanges,
        "bindings": bindings,
    })))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Document {
    users: Vec<UserDef>,
    vhosts: Vec<VhostDef>,
    permissions: Vec<PermissionDef>,
    topic_permissions: Vec<TopicDef>,
    exchanges: Vec<ExchangeDef>,
    queues: Vec<QueueDef>,
    bindings: Vec<BindingDef>,
    policies: Vec<Value>,
    parameters: Vec<Value>,
}

#[derive(Deserialize)]
struct UserDef {
    name: String,
    #[serde(default)]
    password_hash: String,
    hashing_algorithm: Option<String>,
    #[serde(default)]
    tags: Tags,
}

#[derive(Deserialize)]
struct VhostDef {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    tags: Tags,
    default_queue_type: Option<String>,
}

#[derive(Deserialize)]
struct PermissionDef {
    user: String,
    vhost: String,
    configure: String,
    write: String,
    read: String,
}

#[derive(Deserialize)]
struct TopicDef {
    user: String,
    vhost: String,
    exchange: String,
    write: String,
    read: String,
}

#[derive(Deserialize)]
struct ExchangeDef {
    name: String,
    vhost: Option<String>,
    #[serde(rename = "type", default = "direct")]
    kind: String,
    #[serde(default)]
    durable: bool,
    #[serde(default)]
    auto_delete: bool,
    #[serde(default)]
    internal: bool,
    #[serde(default)]
    arguments: Value,
}

fn direct() -> String {
    "direct".into()
}

#[derive(Deserialize)]
struct QueueDef {
    name: String,
    vhost: Option<String>,
    #[serde(default)]
    durable: bool,
    #[serde(default)]
    auto_delete: bool,
    #[serde(default)]
    arguments: Value,
}

#[derive(Deserialize)]
struct BindingDef {
    source: String,
    vhost: Option<String>,
    destination: String,
    #[serde(default = "queue_kind")]
    destination_type: String,
    #[serde(default)]
    routing_key: String,
    #[serde(default)]
    arguments: Value,
}

fn queue_kind() -> String {
    "queue".into()
}

fn table(v: &Value) -> warren_protocol::FieldTable {
    json_to_table(v).unwrap_or_default()
}

/// Imports a RabbitMQ definitions document as `importer` (who gets full
/// permissions in the vhosts it creates, as in RabbitMQ). With `into`, the
/// topology goes into that vhost whatever its entries say. Stops at the
/// first entry that cannot be applied.
pub fn import(
    broker: &std::sync::Arc<Broker>,
    doc: &Value,
    importer: Option<&str>,
    into: Option<&str>,
) -> Result<(), String> {
    let d: Document = serde_json::from_value(doc.clone()).map_err(|e| e.to_string())?;
    for u in &d.users {
        let password = if u.password_hash.is_empty() {
            PasswordHash::none()
        } else {
            PasswordHash::from_base64(&u.password_hash, u.hashing_algorithm.as_deref())
                .map_err(|e| format!("user '{}': {e}", u.name))?
        };
        broker.put_user(User {
            name: u.name.clone(),
            password,
            tags: u.tags.0.clone(),
        });
    }
    for v in &d.vhosts {
        let limits = broker
            .access()
            .vhost(&v.name)
            .map(|x| x.limits)
            .unwrap_or_default();
        let created = broker.put_vhost(VhostInfo {
            name: v.name.clone(),
            description: v.description.clone(),
            tags: v.tags.0.clone(),
            default_queue_type: v.default_queue_type.clone(),
            limits,
        });
        if let (true, Some(user)) = (created, importer) {
            let _ = broker.set_permissions(user, &v.name, Permissions::all());
        }
    }
    for p in &d.permissions {
        let perms = Permissions::new(&p.configure, &p.write, &p.read).map_err(|e| e.to_string())?;
        broker
            .set_permissions(&p.user, &p.vhost, perms)
            .map_err(|e| e.to_string())?;
    }
    for t in &d.topic_permissions {
        broker
            .set_topic_permission(
                &t.user,
                &t.vhost,
                TopicPermission {
                    exchange: t.exchange.clone(),
                    write: t.write.clone(),
                    read: t.read.clone(),
                },
            )
            .map_err(|e| e.to_string())?;
    }
    let vhost_of = |given: &Option<String>| -> Result<String, String> {
        into.map(str::to_string)
            .or_else(|| given.clone())
            .ok_or_else(|| "an entry names no vhost".to_string())
    };
    for p in d
        .parameters
        .iter()
        .filter(|p| p.get("component").and_then(Value::as_str) == Some("vhost-limits"))
    {
        let vhost = vhost_of(&p.get("vhost").and_then(Value::as_str).map(str::to_string))?;
        let Some(mut info) = broker.access().vhost(&vhost).cloned() else {
            return Err(format!("[\"no_such_vhost\",\"{vhost}\"]"));
        };
        let limit = |key: &str| p["value"].get(key).and_then(Value::as_i64);
        info.limits.max_connections = limit("max-connections");
        info.limits.max_queues = limit("max-queues");
        broker.put_vhost(info);
    }
    let operator_policies = d
        .parameters
        .iter()
        .filter(|p| p.get("component").and_then(Value::as_str) == Some("operator_policy"));
    let entries = d
        .policies
        .iter()
        .map(|p| (PolicyKind::User, p, p))
        .chain(operator_policies.map(|p| (PolicyKind::Operator, p, &p["value"])));
    for (kind, entry, body) in entries {
        let vhost = vhost_of(
            &entry
                .get("vhost")
                .and_then(Value::as_str)
                .map(str::to_string),
        )?;
        let name = entry
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| "a policy has no name".to_string())?;
        if broker.access().vhost(&vhost).is_none() {
            return Err(format!("[\"no_such_vhost\",\"{vhost}\"]"));
        }
        let policy =
            validate(kind, &vhost, name, body).map_err(|e| format!("{e} ({vhost}/{name})"))?;
        broker.put_policy(kind, policy);
    }
    let user = importer.unwrap_or("rmq-internal");
    for x in &d.exchanges {
        let vhost = vhost_of(&x.vhost)?;
        let kind = ExchangeKind::parse(&x.kind).map_err(|e| e.text)?;
        let spec = ExchangeSpec {
            name: x.name.clone(),
            kind,
            durable: x.durable,
            auto_delete: x.auto_delete,
            internal: x.internal,
            arguments: table(&x.arguments),
        };
        broker
            .declare_exchange(&vhost, user, spec)
            .map_err(|e| e.text)?;
    }
    for q in &d.queues {
        let vhost = vhost_of(&q.vhost)?;
        broker
            .declare_queue(
                &vhost,
                &q.name,
                q.durable,
                q.auto_delete,
                table(&q.arguments),
            )
            .map_err(|e| e.text)?;
    }
    for b in &d.bindings {
        let vhost = vhost_of(&b.vhost)?;
        let dest = if b.destination_type == "exchange" {
            Destination::Exchange(b.destination.clone())
        } else {
            Destination::Queue(b.destination.clone())
        };
        broker
            .bind(
                &vhost,
                true,
                &b.source,
                dest,
                &b.routing_key,
                &table(&b.arguments),
            )
            .map_err(|e| e.text)?;
    }
    Ok(())
}

fn parse(body: &Bytes) -> ApiResult<Value> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(Map::new()));
    }
    serde_json::from_slice(body).map_err(|_| ApiError::bad_request("failed_to_parse_json"))
}

async fn import_all(
    State(state): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> ApiResult<StatusCode> {
    caller.require_administrator()?;
    let doc = parse(&body)?;
    import(&state.broker, &doc, Some(&caller.user.name), None).map_err(ApiError::bad_request)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn import_vhost(
    State(state): State<AppState>,
    caller: Caller,
    Path(vhost): Path<String>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    caller.require_administrator()?;
    if state.broker.vhost(&vhost).is_none() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "vhost_not_found",
        ));
    }
    let doc = parse(&body)?;
    // Only the topology: users, vhosts and permissions are not a vhost's.
    let mut topo = Map::new();
    for key in ["queues", "exchanges", "bindings", "policies", "parameters"] {
        if let Some(v) = doc.get(key) {
            topo.insert(key.to_string(), v.clone());
        }
    }
    import(
        &state.broker,
        &Value::Object(topo),
        Some(&caller.user.name),
        Some(&vhost),
    )
    .map_err(ApiError::bad_request)?;
    Ok(StatusCode::NO_CONTENT)
}
