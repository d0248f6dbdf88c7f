//! `/api/overview` and `/api/whoami`.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use warren_server::stats::{Churn, Counter, MessageStats, Totals, N};

use crate::auth::Caller;
use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/overview", get(overview))
        .route("/api/whoami", get(whoami))
}

async fn whoami(caller: Caller) -> Json<Value> {
    Json(json!({"name": caller.user.name, "tags": caller.user.tags}))
}

/// Message counters with their rates, as RabbitMQ's `message_stats`
/// (`deliver_get` sums deliveries and gets).
pub fn message_stats((totals, rates): (Totals, [f64; N])) -> Value {
    let mut out = serde_json::Map::new();
    let mut put = |name: &str, total: u64, rate: f64| {
        out.insert(name.to_string(), json!(total));
        out.insert(format!("{name}_details"), json!({"rate": round(rate)}));
    };
    // `routed` and `received_confirm` are Prometheus series, not keys of
    // message_stats.
    for c in Counter::ALL
        .into_iter()
        .filter(|&c| !matches!(c, Counter::Routed | Counter::ReceivedConfirm))
    {
        put(c.name(), totals[c as usize], rates[c as usize]);
    }
    let sum = |f: &dyn Fn(Counter) -> f64| {
        [
            Counter::Deliver,
            Counter::DeliverNoAck,
            Counter::Get,
            Counter::GetNoAck,
        ]
        .into_iter()
        .map(f)
        .sum::<f64>()
    };
    put(
        "deliver_get",
        sum(&|c| totals[c as usize] as f64) as u64,
        sum(&|c| rates[c as usize]),
    );
    Value::Object(out)
}

/// Objects opened and closed since start, with RabbitMQ's keys (the rates
/// are not sampled: 0).
fn churn_rates(c: &Churn) -> Value {
    let mut out = serde_json::Map::new();
    for (name, counter) in [
        ("connection_created", &c.connections_opened),
        ("connection_closed", &c.connections_closed),
        ("channel_created", &c.channels_opened),
        ("channel_closed", &c.channels_closed),
        ("queue_declared", &c.queues_declared),
        ("queue_created", &c.queues_created),
        ("queue_deleted", &c.queues_deleted),
    ] {
        out.insert(name.to_string(), json!(Churn::read(counter)));
        out.insert(format!("{name}_details"), json!({"rate": 0.0}));
    }
    Value::Object(out)
}

/// Rates as RabbitMQ shows them: one decimal.
fn round(rate: f64) -> f64 {
    (rate * 10.0).round() / 10.0
}

async fn overview(State(state): State<AppState>, caller: Caller) -> Json<Value> {
    let mut body = overview_body(&state, &caller);
    // As RabbitMQ: where the node listens is for monitoring users.
    if !caller.level.can_monitor() {
        if let Some(o) = body.as_object_mut() {
            for key in ["node", "listeners", "contexts"] {
                o.remove(key);
            }
        }
    }
    Json(body)
}

fn overview_body(state: &AppState, caller: &Caller) -> Value {
    let b = &state.broker;
    let vhosts: Vec<String> = b
        .access()
        .vhosts()
        .map(|v| v.name.clone())
        .filter(|v| caller.sees_vhost(state, v))
        .collect();
    let totals = b.totals(&vhosts);
    let version = env!("CARGO_PKG_VERSION");
    let exchange_types: Vec<Value> = ["direct", "fanout", "headers", "topic"]
        .iter()
        .map(|t| json!({"name": t, "description": "", "enabled": true}))
        .collect();
    json!({
        "management_version": version,
        "rates_mode": "basic",
        "sample_retention_policies": {
            "global": [600, 3600, 28800, 86400],
            "basic": [600, 3600],
            "detailed": [600],
        },
        "exchange_types": exchange_types,
        "product_version": version,
        "product_name": "Warren",
        "rabbitmq_version": version,
        "cluster_name": state.node_name,
        "erlang_version": "none",
        "erlang_full_version": "none (Warren is written in Rust)",
        "disable_stats": false,
        "enable_queue_totals": false,
        // As RabbitMQ: monitoring users see the node's, others the sum
        // over their vhosts.
        "message_stats": message_stats(if caller.level.can_monitor() {
            b.stats.rates()
        } else {
            let each: Vec<Arc<MessageStats>> =
                vhosts.iter().map(|v| b.message_stats_of(v)).collect();
            MessageStats::summed_rates(each.iter().map(|s| &**s))
        }),
        "churn_rates": churn_rates(&b.churn),
        "queue_totals": {
            "messages": totals.ready + totals.unacked,
            "messages_ready": totals.ready,
            "messages_unacknowledged": totals.unacked,
        },
        "object_totals": {
            "channels": totals.channels,
            "connections": totals.connections,
            "consumers": totals.consumers,
            "exchanges": totals.exchanges,
            "queues": totals.queues,
        },
        "statistics_db_event_queue": 0,
        "node": state.node_name,
        "listeners": state.listeners,
        "contexts": [{
            "node": state.node_name,
            "description": "Warren Management",
            "path": "/",
            "port": state.management_port.to_string(),
        }],
    })
}
