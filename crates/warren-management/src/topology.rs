//! `/api/exchanges`, `/api/queues` and `/api/bindings`: a vhost's topology,
//! listed, declared and deleted as RabbitMQ's management API does it.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use bytes::BytesMut;
use serde::Deserialize;
use serde_json::{json, Value};
use warren_core::exchange::{Binding, ExchangeSpec};
use warren_core::{Destination, Exchange, ExchangeKind};
use warren_server::{QueueCell, VHost};

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::json::{created_or_updated, json_to_table, loose_bool, table_to_json, Body};
use crate::listing::{listing, listing_lazy, ListQuery};
use crate::policies::definition_json;
use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/exchanges", get(all_exchanges))
        .route("/api/exchanges/{vhost}", get(vhost_exchanges))
        .route(
            "/api/exchanges/{vhost}/{name}",
            get(get_exchange).put(put_exchange).delete(delete_exchange),
        )
        .route(
            "/api/exchanges/{vhost}/{name}/bindings/source",
            get(exchange_bindings_source),
        )
        .route(
            "/api/exchanges/{vhost}/{name}/bindings/destination",
            get(exchange_bindings_destination),
        )
        .route("/api/queues", get(all_queues))
        .route("/api/queues/{vhost}", get(vhost_queues))
        .route(
            "/api/queues/{vhost}/{name}",
            get(get_queue).put(put_queue).delete(delete_queue),
        )
        .route(
            "/api/queues/{vhost}/{name}/contents",
            axum::routing::delete(purge_queue),
        )
        .route("/api/queues/{vhost}/{name}/bindings", get(queue_bindings))
        .route("/api/bindings", get(all_bindings))
        .route("/api/bindings/{vhost}", get(vhost_bindings))
        .route(
            "/api/bindings/{vhost}/e/{source}/{kind}/{destination}",
            get(list_between).post(post_binding),
        )
        .route(
            "/api/bindings/{vhost}/e/{source}/{kind}/{destination}/{props}",
            get(get_binding).delete(delete_binding),
        )
}

/// `amq.default` in a path names the default exchange.
fn exchange_name(name: &str) -> &str {
    if name == "amq.default" {
        ""
    } else {
        name
    }
}

/// The vhosts a listing over all of them shows the caller.
fn visible_vhosts(state: &AppState, caller: &Caller) -> Vec<String> {
    let names: Vec<String> = state
        .broker
        .access()
        .vhosts()
        .map(|v| v.name.clone())
        .collect();
    names
        .into_iter()
        .filter(|v| caller.sees_topology(state, v))
        .collect()
}

/// The topology of a vhost the caller may look into.
fn topology(state: &AppState, caller: &Caller, vhost: &str) -> ApiResult<Arc<VHost>> {
    let topo = state.broker.vhost(vhost).ok_or_else(ApiError::not_found)?;
    if !caller.sees_topology(state, vhost) {
        return Err(ApiError::not_authorised(
            "User not authorised to access virtual host",
        ));
    }
    Ok(topo)
}

/// The topology of a vhost to change, or RabbitMQ's 404 for a missing one.
fn topology_to_change(state: &AppState, caller: &Caller, vhost: &str) -> ApiResult<Arc<VHost>> {
    let topo = state
        .broker
        .vhost(vhost)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "not_found", "vhost_not_found"))?;
    if !caller.sees_topology(state, vhost) {
        return Err(ApiError::not_authorised(
            "User not authorised to access virtual host",
        ));
    }
    Ok(topo)
}

// --- exchanges ---

fn exchange_json(vhost: &str, x: &Exchange) -> Value {
    let mut v = json!({
        "name": x.name(),
        "vhost": vhost,
        "type": x.spec.kind.as_str(),
        "durable": x.spec.durable,
        "auto_delete": x.spec.auto_delete,
        "internal": x.spec.internal,
        "arguments": table_to_json(&x.spec.arguments),
        "user_who_performed_action": x.created_by.as_deref().unwrap_or("rmq-internal"),
        "message_stats": {},
    });
    // As RabbitMQ: the key is there only when a policy applies.
    if let (Some(p), Some(o)) = (&x.policies.policy, v.as_object_mut()) {
        o.insert("policy".into(), Value::String(p.name.clone()));
    }
    v
}

fn exchanges_of(vhost: &str, topo: &VHost) -> Vec<Value> {
    let topo = topo.read();
    let mut list: Vec<Value> = topo.exchanges().map(|x| exchange_json(vhost, x)).collect();
    list.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    list
}

async fn all_exchanges(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> ApiResult<Response> {
    let mut all = Vec::new();
    for v in visible_vhosts(&state, &caller) {
        if let Some(topo) = state.broker.vhost(&v) {
            all.extend(exchanges_of(&v, &topo));
        }
    }
    listing(all, &q)
}

async fn vhost_exchanges(
    State(state): State<AppState>,
    caller: Caller,
    Path(vhost): Path<String>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Response> {
    let topo = topology(&state, &caller, &vhost)?;
    listing(exchanges_of(&vhost, &topo), &q)
}

async fn get_exchange(
    State(state): State<AppState>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let topo = topology(&state, &caller, &vhost)?;
    let topo = topo.read();
    let x = topo
        .exchange(exchange_name(&name))
        .map_err(|_| ApiError::not_found())?;
    Ok(Json(exchange_json(&vhost, x)))
}

#[derive(Deserialize)]
struct ExchangeBody {
    #[serde(rename = "type")]
    kind: Option<String>,
    #[serde(default, deserialize_with = "loose_bool")]
    durable: bool,
    #[serde(default, deserialize_with = "loose_bool")]
    auto_delete: bool,
    #[serde(default, deserialize_with = "loose_bool")]
    internal: bool,
    #[serde(default)]
    arguments: Option<Value>,
}

async fn put_exchange(
    State(state): State<AppState>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    Body(body): Body<ExchangeBody>,
) -> ApiResult<Response> {
    topology_to_change(&state, &caller, &vhost)?;
    let name = exchange_name(&name).to_string();
    let kind_name = body.kind.unwrap_or_else(|| "direct".into());
    let kind = ExchangeKind::parse(&kind_name)
        .map_err(|_| ApiError::bad_request(format!("unknown exchange type '{kind_name}'")))?;
    if name.is_empty() {
        return Err(ApiError::not_authorised("Access refused."));
    }
    caller.check_amqp(
        &state,
        &vhost,
        &warren_core::access::Operation::ExchangeDeclare {
            exchange: &name,
            passive: false,
            alternate_exchange: None,
        },
    )?;
    let spec = ExchangeSpec {
        name,
        kind,
        durable: body.durable,
        auto_delete: body.auto_delete,
        internal: body.internal,
        arguments: body
            .arguments
            .as_ref()
            .and_then(json_to_table)
            .unwrap_or_default(),
    };
    let created = state
        .broker
        .declare_exchange(&vhost, &caller.user.name, spec)
        .map_err(ApiError::from_amqp)?;
    Ok(created_or_updated(created))
}

#[derive(Deserialize, Default)]
struct DeleteQuery {
    #[serde(rename = "if-unused", default)]
    if_unused: Option<String>,
    #[serde(rename = "if-empty", default)]
    if_empty: Option<String>,
}

fn flag(v: &Option<String>) -> bool {
    v.as_deref() == Some("true")
}

async fn delete_exchange(
    State(state): State<AppState>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    Query(q): Query<DeleteQuery>,
) -> ApiResult<StatusCode> {
    topology(&state, &caller, &vhost)?;
    let name = exchange_name(&name);
    if name.is_empty() || name.starts_with("amq.") {
        return Err(ApiError::not_authorised("Access refused."));
    }
    caller.check_amqp(
        &state,
        &vhost,
        &warren_core::access::Operation::ExchangeDelete { exchange: name },
    )?;
    match state
        .broker
        .delete_exchange(&vhost, name, flag(&q.if_unused))
        .map_err(ApiError::from_amqp)?
    {
        true => Ok(StatusCode::NO_CONTENT),
        false => Err(ApiError::not_found()),
    }
}

/// A policy's name as listings show it: null when there is none.
fn policy_name(p: &Option<Arc<warren_core::policy::Policy>>) -> Value {
    p.as_ref()
        .map_or(Value::Null, |p| Value::String(p.name.clone()))
}

// --- queues ---

fn queue_json(state: &AppState, vhost: &str, q: &QueueCell) -> Value {
    let (ready, unacked, consumers, bytes, policies) = {
        let inner = q.lock();
        (
            inner.queue.ready_count() as u64,
            inner.queue.unacked_count() as u64,
            inner.queue.reported_consumer_count() as u64,
            inner.queue.ready_bytes(),
            inner.policies.clone(),
        )
    };
    json!({
        "name": q.name(),
        "vhost": vhost,
        "durable": q.spec.durable,
        "auto_delete": q.spec.auto_delete,
        "exclusive": q.spec.exclusive_owner.is_some(),
        "arguments": table_to_json(&q.spec.arguments),
        "type": if q.is_quorum() { "quorum" } else { "classic" },
        "node": state.node_name,
        "state": "running",
        "policy": policy_name(&policies.policy),
        "operator_policy": policy_name(&policies.operator),
        "effective_policy_definition": definition_json(&policies.effective_definition()),
        "messages": ready + unacked,
        "messages_ready": ready,
        "messages_unacknowledged": unacked,
        "message_bytes_ready": bytes,
        "consumers": consumers,
        "memory": 0,
    })
}

/// A vhost's queues in name order, not yet visited.
fn queues_of(vhost: &str, topo: &VHost) -> Vec<(String, Arc<QueueCell>)> {
    let mut cells: Vec<(String, Arc<QueueCell>)> = topo
        .read()
        .queues()
        .map(|(_, q)| (vhost.to_string(), Arc::clone(q)))
        .collect();
    cells.sort_by(|a, b| a.1.name().cmp(b.1.name()));
    cells
}

/// Queues listed: only a page's queues are visited when a page is asked
/// for in name order.
fn list_queues(
    state: &AppState,
    cells: Vec<(String, Arc<QueueCell>)>,
    q: &ListQuery,
) -> ApiResult<Response> {
    listing_lazy(
        cells,
        q,
        |(_, cell)| cell.name(),
        |(vhost, cell)| queue_json(state, &vhost, &cell),
    )
}

async fn all_queues(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> ApiResult<Response> {
    let mut all = Vec::new();
    for v in visible_vhosts(&state, &caller) {
        if let Some(topo) = state.broker.vhost(&v) {
            all.extend(queues_of(&v, &topo));
        }
    }
    list_queues(&state, all, &q)
}

async fn vhost_queues(
    State(state): State<AppState>,
    caller: Caller,
    Path(vhost): Path<String>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Response> {
    let topo = topology(&state, &caller, &vhost)?;
    list_queues(&state, queues_of(&vhost, &topo), &q)
}

async fn get_queue(
    State(state): State<AppState>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    let topo = topology(&state, &caller, &vhost)?;
    let cell = topo
        .read()
        .queue(&name)
        .cloned()
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(q.columns_of(queue_json(&state, &vhost, &cell))))
}

#[derive(Deserialize)]
struct QueueBody {
    #[serde(default, deserialize_with = "loose_bool")]
    durable: bool,
    #[serde(default, deserialize_with = "loose_bool")]
    auto_delete: bool,
    #[serde(default)]
    arguments: Option<Value>,
}

fn locked(name: &str, vhost: &str) -> ApiError {
    ApiError::bad_request(format!(
        "cannot obtain exclusive access to locked queue '{name}' in vhost '{vhost}'. It could be originally declared on another connection or the exclusive property value does not match that of the original declaration."
    ))
}

async fn put_queue(
    State(state): State<AppState>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    Body(body): Body<QueueBody>,
) -> ApiResult<Response> {
    let topo = topology_to_change(&state, &caller, &vhost)?;
    if name.starts_with("amq.") {
        return Err(ApiError::not_authorised("Access refused."));
    }
    caller.check_amqp(
        &state,
        &vhost,
        &warren_core::access::Operation::QueueDeclare {
            queue: &name,
            passive: false,
            dead_letter_exchange: None,
        },
    )?;
    if topo
        .read()
        .queue(&name)
        .is_some_and(|q| q.spec.exclusive_owner.is_some())
    {
        return Err(locked(&name, &vhost));
    }
    let arguments = body
        .arguments
        .as_ref()
        .and_then(json_to_table)
        .unwrap_or_default();
    let created = state
        .broker
        .declare_queue(&vhost, &name, body.durable, body.auto_delete, arguments)
        .map_err(ApiError::from_amqp)?;
    Ok(created_or_updated(created))
}

async fn delete_queue(
    State(state): State<AppState>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    Query(q): Query<DeleteQuery>,
) -> ApiResult<StatusCode> {
    let topo = topology(&state, &caller, &vhost)?;
    if topo
        .read()
        .queue(&name)
        .is_some_and(|q| q.spec.exclusive_owner.is_some())
    {
        return Err(locked(&name, &vhost));
    }
    caller.check_amqp(
        &state,
        &vhost,
        &warren_core::access::Operation::QueueDelete { queue: &name },
    )?;
    match state
        .broker
        .delete_queue(&vhost, &name, flag(&q.if_unused), flag(&q.if_empty))
        .map_err(ApiError::from_amqp)?
    {
        Some(_) => Ok(StatusCode::NO_CONTENT),
        None => Err(ApiError::not_found()),
    }
}

async fn purge_queue(
    State(state): State<AppState>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    topology(&state, &caller, &vhost)?;
    caller.check_amqp(
        &state,
        &vhost,
        &warren_core::access::Operation::Purge { queue: &name },
    )?;
    match state
        .broker
        .purge_queue(&vhost, &name)
        .map_err(ApiError::from_amqp)?
    {
        Some(_) => Ok(StatusCode::NO_CONTENT),
        None => Err(ApiError::not_found()),
    }
}

// --- bindings ---

/// The routing key, form-encoded, plus a hash of the arguments if any:
/// what names one binding among those between the same two ends.
pub fn properties_key(b: &Binding) -> String {
    let mut key = if b.routing_key.is_empty() {
        "~".to_string()
    } else {
        form_encode(&b.routing_key)
    };
    if !b.arguments.is_empty() {
        // In any order, the same arguments are the same binding.
        let mut sorted = b.arguments.clone();
        sorted.0.sort_by(|x, y| x.0.cmp(&y.0));
        let mut buf = BytesMut::new();
        sorted.encode(&mut buf);
        let hash = short_hash(&buf).to_be_bytes();
        let text = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(hash);
        if b.routing_key.is_empty() {
            key.clear();
        }
        key.push('~');
        key.push_str(&text[..6]);
    }
    key
}

fn short_hash(data: &[u8]) -> u32 {
    // A small, stable hash is all the key needs (FNV-1a).
    data.iter().fold(0x811c_9dc5u32, |h, b| {
        (h ^ *b as u32).wrapping_mul(0x0100_0193)
    })
}

/// `application/x-www-form-urlencoded` escaping, `~` included.
fn form_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => out.push(b as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn binding_json(vhost: &str, source: &str, b: &Binding) -> Value {
    let (destination, kind) = match &b.destination {
        Destination::Queue(q) => (q.as_str(), "queue"),
        Destination::Exchange(x) => (x.as_str(), "exchange"),
    };
    json!({
        "source": source,
        "vhost": vhost,
        "destination": destination,
        "destination_type": kind,
        "routing_key": b.routing_key,
        "arguments": table_to_json(&b.arguments),
        "properties_key": properties_key(b),
    })
}

/// Every binding of a vhost, the default exchange's implicit ones first
/// (one per queue, keyed by its name), then by source.
fn bindings_of(vhost: &str, topo: &VHost, keep: impl Fn(&str, &Binding) -> bool) -> Vec<Value> {
    let topo = topo.read();
    let mut out = Vec::new();
    let mut queues: Vec<&str> = topo.queues().map(|(n, _)| n).collect();
    queues.sort_unstable();
    for q in queues {
        let b = Binding {
            destination: Destination::Queue(q.to_string()),
            routing_key: q.to_string(),
            arguments: Default::default(),
        };
        if keep("", &b) {
            out.push(binding_json(vhost, "", &b));
        }
    }
    let mut exchanges: Vec<&Exchange> = topo.exchanges().filter(|x| !x.name().is_empty()).collect();
    exchanges.sort_by(|a, b| a.name().cmp(b.name()));
    for x in exchanges {
        let mut list: Vec<Binding> = x.bindings().filter(|b| keep(x.name(), b)).collect();
        list.sort_by(|a, b| {
            (dest_name(&a.destination), &a.routing_key)
                .cmp(&(dest_name(&b.destination), &b.routing_key))
        });
        out.extend(list.iter().map(|b| binding_json(vhost, x.name(), b)));
    }
    out
}

fn dest_name(d: &Destination) -> &str {
    match d {
        Destination::Queue(q) | Destination::Exchange(q) => q,
    }
}

async fn all_bindings(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> ApiResult<Response> {
    let mut all = Vec::new();
    for v in visible_vhosts(&state, &caller) {
        if let Some(topo) = state.broker.vhost(&v) {
            all.extend(bindings_of(&v, &topo, |_, _| true));
        }
    }
    listing(all, &q)
}

async fn vhost_bindings(
    State(state): State<AppState>,
    caller: Caller,
    Path(vhost): Path<String>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Response> {
    let topo = topology(&state, &caller, &vhost)?;
    listing(bindings_of(&vhost, &topo, |_, _| true), &q)
}

async fn queue_bindings(
    State(state): State<AppState>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let topo = topology(&state, &caller, &vhost)?;
    if topo.read().queue(&name).is_none() {
        return Err(ApiError::not_found());
    }
    let dest = Destination::Queue(name);
    Ok(Json(Value::Array(bindings_of(&vhost, &topo, |_, b| {
        b.destination == dest
    }))))
}

async fn exchange_bindings_source(
    State(state): State<AppState>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let topo = topology(&state, &caller, &vhost)?;
    let name = exchange_name(&name).to_string();
    if topo.read().exchange(&name).is_err() {
        return Err(ApiError::not_found());
    }
    Ok(Json(Value::Array(bindings_of(&vhost, &topo, |s, _| {
        s == name
    }))))
}

async fn exchange_bindings_destination(
    State(state): State<AppState>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let topo = topology(&state, &caller, &vhost)?;
    let name = exchange_name(&name).to_string();
    if topo.read().exchange(&name).is_err() {
        return Err(ApiError::not_found());
    }
    let dest = Destination::Exchange(name);
    Ok(Json(Value::Array(bindings_of(&vhost, &topo, |_, b| {
        b.destination == dest
    }))))
}

fn destination(kind: &str, name: String) -> ApiResult<Destination> {
    match kind {
        "q" => Ok(Destination::Queue(name)),
        "e" => Ok(Destination::Exchange(name)),
        _ => Err(ApiError::not_found()),
    }
}

/// The bindings between two ends (none if either is missing).
fn between(
    state: &AppState,
    caller: &Caller,
    vhost: &str,
    source: &str,
    dest: &Destination,
) -> ApiResult<Vec<Value>> {
    let topo = topology(state, caller, vhost)?;
    Ok(bindings_of(vhost, &topo, |s, b| {
        s == source && &b.destination == dest
    }))
}

async fn list_between(
    State(state): State<AppState>,
    caller: Caller,
    Path((vhost, source, kind, name)): Path<(String, String, String, String)>,
) -> ApiResult<Json<Value>> {
    let dest = destination(&kind, name)?;
    let source = exchange_name(&source).to_string();
    Ok(Json(Value::Array(between(
        &state, &caller, &vhost, &source, &dest,
    )?)))
}

#[derive(Deserialize)]
struct BindingBody {
    #[serde(default)]
    routing_key: String,
    #[serde(default)]
    arguments: Option<Value>,
}

async fn post_binding(
    State(state): State<AppState>,
    caller: Caller,
    Path((vhost, source, kind, name)): Path<(String, String, String, String)>,
    Body(body): Body<BindingBody>,
) -> ApiResult<Response> {
    let dest = destination(&kind, name.clone())?;
    let source = exchange_name(&source).to_string();
    topology(&state, &caller, &vhost)?;
    if source.is_empty() {
        return Err(ApiError::not_authorised("Access refused."));
    }
    let op = match &dest {
        Destination::Queue(q) => warren_core::access::Operation::QueueBind {
            queue: q,
            exchange: &source,
        },
        Destination::Exchange(x) => warren_core::access::Operation::ExchangeBind {
            destination: x,
            source: &source,
        },
    };
    caller.check_amqp(&state, &vhost, &op)?;
    let arguments = body
        .arguments
        .as_ref()
        .and_then(json_to_table)
        .unwrap_or_default();
    state
        .broker
        .bind(
            &vhost,
            true,
            &source,
            dest.clone(),
            &body.routing_key,
            &arguments,
        )
        .map_err(ApiError::from_amqp)?;
    let b = Binding {
        destination: dest,
        routing_key: body.routing_key,
        arguments,
    };
    let location = format!("{}/{}", crate::json::path_encode(&name), properties_key(&b));
    Ok((StatusCode::CREATED, [(header::LOCATION, location)]).into_response())
}

fn find_binding(
    state: &AppState,
    caller: &Caller,
    vhost: &str,
    source: &str,
    dest: &Destination,
    props: &str,
) -> ApiResult<(Value, Binding)> {
    let topo = topology(state, caller, vhost)?;
    let t = topo.read();
    let x = t.exchange(source).map_err(|_| ApiError::not_found())?;
    let b = x
        .bindings()
        .find(|b| &b.destination == dest && properties_key(b) == props)
        .ok_or_else(ApiError::not_found)?;
    Ok((binding_json(vhost, source, &b), b))
}

async fn get_binding(
    State(state): State<AppState>,
    caller: Caller,
    Path((vhost, source, kind, name, props)): Path<(String, String, String, String, String)>,
) -> ApiResult<Json<Value>> {
    let dest = destination(&kind, name)?;
    let source = exchange_name(&source).to_string();
    if source.is_empty() {
        if let Destination::Queue(q) = &dest {
            if &props == q && state.broker.find_queue(&vhost, q).is_some() {
                let b = Binding {
                    destination: dest.clone(),
                    routing_key: q.clone(),
                    arguments: Default::default(),
                };
                return Ok(Json(binding_json(&vhost, "", &b)));
            }
        }
        return Err(ApiError::not_found());
    }
    Ok(Json(
        find_binding(&state, &caller, &vhost, &source, &dest, &props)?.0,
    ))
}

async fn delete_binding(
    State(state): State<AppState>,
    caller: Caller,
    Path((vhost, source, kind, name, props)): Path<(String, String, String, String, String)>,
) -> ApiResult<StatusCode> {
    let dest = destination(&kind, name)?;
    let source = exchange_name(&source).to_string();
    if source.is_empty() {
        return Err(ApiError::not_authorised("Access refused."));
    }
    let (_, b) = find_binding(&state, &caller, &vhost, &source, &dest, &props)?;
    let op = match &dest {
        Destination::Queue(q) => warren_core::access::Operation::QueueBind {
            queue: q,
            exchange: &source,
        },
        Destination::Exchange(x) => warren_core::access::Operation::ExchangeBind {
            destination: x,
            source: &source,
        },
    };
    caller.check_amqp(&state, &vhost, &op)?;
    state
        .broker
        .bind(&vhost, false, &source, dest, &b.routing_key, &b.arguments)
        .map_err(ApiError::from_amqp)?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_protocol::{FieldTable, FieldValue};

    fn binding(key: &str, args: FieldTable) -> Binding {
        Binding {
            destination: Destination::Queue("q".into()),
            routing_key: key.into(),
            arguments: args,
        }
    }

    #[test]
    fn properties_keys_are_the_form_encoded_key_and_an_arguments_hash() {
        let none = FieldTable::default();
        assert_eq!(properties_key(&binding("", none.clone())), "~");
        assert_eq!(properties_key(&binding("k.*", none.clone())), "k.%2A");
        assert_eq!(properties_key(&binding("a~b", none.clone())), "a%7Eb");
        assert_eq!(
            properties_key(&binding("a b/c%", none.clone())),
            "a+b%2Fc%25"
        );
        let mut args = FieldTable::default();
        args.insert("x-a", FieldValue::I64(1));
        let with = properties_key(&binding("k", args.clone()));
        assert!(with.starts_with("k~") && with.len() == 8, "{with}");
        assert_eq!(with, properties_key(&binding("k", args)), "stable");
        let mut other = FieldTable::default();
        other.insert("x-a", FieldValue::I64(2));
        assert_ne!(with, properties_key(&binding("k", other)));
        let mut ab = FieldTable::default();
        ab.insert("a", FieldValue::I64(1));
        ab.insert("b", FieldValue::I64(2));
        let mut ba = FieldTable::default();
        ba.insert("b", FieldValue::I64(2));
        ba.insert("a", FieldValue::I64(1));
        assert_eq!(
            properties_key(&binding("k", ab)),
            properties_key(&binding("k", ba))
        );
    }
}
