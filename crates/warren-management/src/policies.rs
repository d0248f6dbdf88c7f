//! `/api/policies` and `/api/operator-policies`: list, show, set and clear
//! a vhost's policies, with RabbitMQ's JSON, validation texts and tag
//! rules (policymakers and administrators set policies in the vhosts they
//! have permissions in; only administrators touch operator policies).

use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use warren_core::access::{ADMINISTRATOR, POLICYMAKER};
use warren_core::policy::{Policy, PolicyKind, PolicyRequest};

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::json::{created_or_updated, json_to_value, value_to_json, Body};
use crate::listing::{listing, ListQuery};
use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .merge(kind_routes("/api/policies", PolicyKind::User))
        .merge(kind_routes("/api/operator-policies", PolicyKind::Operator))
}

/// The list, per-vhost list and one-policy paths of a kind of policy.
fn kind_routes(base: &str, kind: PolicyKind) -> Router<AppState> {
    Router::new()
        .route(
            base,
            get(
                move |State(state): State<AppState>, caller: Caller, Query(q): Query<ListQuery>| async move {
                    list_all(&state, &caller, kind, &q)
                },
            ),
        )
        .route(
            &format!("{base}/{{vhost}}"),
            get(
                move |State(state): State<AppState>,
                      caller: Caller,
                      Path(vhost): Path<String>,
                      Query(q): Query<ListQuery>| async move {
                    list_vhost(&state, &caller, kind, &vhost, &q)
                },
            ),
        )
        .route(
            &format!("{base}/{{vhost}}/{{name}}"),
            get(
                move |State(state): State<AppState>,
                      caller: Caller,
                      Path((vhost, name)): Path<(String, String)>| async move {
                    get_one(&state, &caller, kind, &vhost, &name)
                },
            )
            .put(
                move |State(state): State<AppState>,
                      caller: Caller,
                      Path((vhost, name)): Path<(String, String)>,
                      Body(body): Body<Value>| async move {
                    put_one(&state, &caller, kind, &vhost, &name, body)
                },
            )
            .delete(
                move |State(state): State<AppState>,
                      caller: Caller,
                      Path((vhost, name)): Path<(String, String)>| async move {
                    delete_one(&state, &caller, kind, &vhost, &name)
                },
            ),
        )
}

/// A policy as the API shows it.
pub fn policy_json(p: &Policy) -> Value {
    json!({
        "vhost": p.vhost,
        "name": p.name,
        "pattern": p.pattern,
        "apply-to": p.apply_to.as_str(),
        "definition": definition_json(&p.definition),
        "priority": value_to_json(&p.priority.to_field()),
    })
}

pub fn definition_json(d: &warren_core::policy::Definition) -> Value {
    Value::Object(
        d.iter()
            .map(|(k, v)| (k.clone(), value_to_json(v)))
            .collect(),
    )
}

/// Whether the caller has a permission entry in `vhost`.
fn has_entry(state: &AppState, caller: &Caller, vhost: &str) -> bool {
    state
        .broker
        .access()
        .permissions(&caller.user.name, vhost)
        .is_some()
}

/// Who may read, set or clear one policy: administrators, and
/// policymakers in the vhosts they have permissions in; operator policies
/// are for administrators only.
fn authorise_one(
    state: &AppState,
    caller: &Caller,
    kind: PolicyKind,
    vhost: &str,
) -> ApiResult<()> {
    let admin = caller.user.has_tag(ADMINISTRATOR);
    let allowed = match kind {
        PolicyKind::Operator => admin,
        PolicyKind::User => {
            admin || (caller.user.has_tag(POLICYMAKER) && has_entry(state, caller, vhost))
        }
    };
    match (allowed, kind) {
        (true, _) => Ok(()),
        (false, PolicyKind::Operator) => Err(ApiError::not_authorised("Not administrator user")),
        (false, PolicyKind::User) => Err(ApiError::not_authorised(
            "User not authorised to access object",
        )),
    }
}

/// Whether a management user sees a vhost's policies in listings: where
/// it has a permission entry (administrators everywhere).
fn lists_vhost(state: &AppState, caller: &Caller, vhost: &str) -> bool {
    caller.user.has_tag(ADMINISTRATOR) || has_entry(state, caller, vhost)
}

fn vhost_exists(state: &AppState, vhost: &str) -> bool {
    state.broker.access().vhost(vhost).is_some()
}

fn list_all(
    state: &AppState,
    caller: &Caller,
    kind: PolicyKind,
    q: &ListQuery,
) -> ApiResult<Response> {
    let items: Vec<Value> = state
        .broker
        .policies()
        .list(kind)
        .iter()
        .filter(|p| lists_vhost(state, caller, &p.vhost))
        .map(|p| policy_json(p))
        .collect();
    listing(items, q)
}

fn list_vhost(
    state: &AppState,
    caller: &Caller,
    kind: PolicyKind,
    vhost: &str,
    q: &ListQuery,
) -> ApiResult<Response> {
    if !vhost_exists(state, vhost) {
        return Err(ApiError::not_found());
    }
    if !lists_vhost(state, caller, vhost) {
        return Err(ApiError::not_authorised(
            "User not authorised to access virtual host",
        ));
    }
    let items: Vec<Value> = state
        .broker
        .policies()
        .vhost(vhost)
        .map(|v| v.list(kind).iter().map(|p| policy_json(p)).collect())
        .unwrap_or_default();
    listing(items, q)
}

fn get_one(
    state: &AppState,
    caller: &Caller,
    kind: PolicyKind,
    vhost: &str,
    name: &str,
) -> ApiResult<Json<Value>> {
    if !vhost_exists(state, vhost) {
        return Err(ApiError::not_found());
    }
    authorise_one(state, caller, kind, vhost)?;
    state
        .broker
        .policies()
        .vhost(vhost)
        .and_then(|v| v.get(kind, name))
        .map(|p| Json(policy_json(p)))
        .ok_or_else(ApiError::not_found)
}

fn put_one(
    state: &AppState,
    caller: &Caller,
    kind: PolicyKind,
    vhost: &str,
    name: &str,
    body: Value,
) -> ApiResult<Response> {
    if !vhost_exists(state, vhost) {
        return Err(ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            "not_found",
            "vhost_not_found",
        ));
    }
    authorise_one(state, caller, kind, vhost)?;
    let policy = validate(kind, vhost, name, &body).map_err(ApiError::bad_request)?;
    Ok(created_or_updated(state.broker.put_policy(kind, policy)))
}

/// A policy from a request body (or a definitions entry), validated; the
/// reason of a refusal as RabbitMQ words it (HTML-escaped for policies,
/// as its management plugin sends it, not for operator policies).
pub fn validate(kind: PolicyKind, vhost: &str, name: &str, body: &Value) -> Result<Policy, String> {
    let field = |k: &str| body.get(k).map(json_to_value);
    let req = PolicyRequest {
        pattern: field("pattern"),
        apply_to: field("apply-to"),
        priority: field("priority"),
        definition: field("definition"),
    };
    Policy::validate(kind, vhost, name, req).map_err(|e| match kind {
        PolicyKind::User => e.0.replace('<', "&lt;").replace('>', "&gt;"),
        PolicyKind::Operator => e.0,
    })
}

fn delete_one(
    state: &AppState,
    caller: &Caller,
    kind: PolicyKind,
    vhost: &str,
    name: &str,
) -> ApiResult<axum::http::StatusCode> {
    if !vhost_exists(state, vhost) {
        return Err(ApiError::not_found());
    }
    authorise_one(state, caller, kind, vhost)?;
    if state.broker.delete_policy(kind, vhost, name) {
        Ok(axum::http::StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found())
    }
}
