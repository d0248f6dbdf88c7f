//! Prometheus metrics on their own listener (`--prometheus-port`), with
//! rabbitmq_prometheus's metric names, types and labels, so the Grafana
//! dashboards written for RabbitMQ work unchanged: `/metrics` aggregated
//! over the node, `/metrics/per-object` with a series per queue. No
//! authentication, as in RabbitMQ.
//!
//! Message counters are the broker's running totals (kept per connection
//! and flushed per read); queue figures are read from each queue at
//! scrape time.

use std::fmt::Write as _;
use std::future::Future;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tracing::warn;
use warren_core::queue::QueueKind;
use warren_server::stats::{Churn, Counter};
use warren_server::{Broker, Totals};

use crate::nodes::{fd_total, fd_used};

const CONTENT: &str = "text/plain; version=0.0.4";

/// Serves the metrics on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    broker: Arc<Broker>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let app = Router::new()
        .route("/metrics", get(aggregated))
        .route("/metrics/per-object", get(per_object))
        .with_state(broker);
    if let Err(err) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        warn!(%err, "Prometheus listener failed");
    }
}

/// Text exposition format 0.0.4.
#[derive(Default)]
struct Exposition {
    out: String,
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# TYPE {name} {kind}\n# HELP {name} {help}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    /// A family with one unlabelled sample.
    fn single(&mut self, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }
}

fn respond(e: Exposition) -> impl IntoResponse {
    ([(CONTENT_TYPE, CONTENT)], e.out)
}

/// What every scrape carries: who this node is, its resources, its churn
/// and its message counters.
fn node_metrics(b: &Broker, t: &Totals, e: &mut Exposition) {
    let node = crate::node_name();
    let version = env!("CARGO_PKG_VERSION");
    e.family(
        "rabbitmq_identity_info",
        "untyped",
        "RabbitMQ node & cluster identity info",
    );
    e.sample(
        "rabbitmq_identity_info",
        &[
            ("rabbitmq_node", &node),
            ("rabbitmq_cluster", &node),
            ("rabbitmq_cluster_permanent_id", &format!("warren-{node}")),
        ],
        1,
    );
    e.family(
        "rabbitmq_build_info",
        "untyped",
        "RabbitMQ & Erlang/OTP version info",
    );
    e.sample(
        "rabbitmq_build_info",
        &[
            ("rabbitmq_version", version),
            ("prometheus_plugin_version", version),
            ("prometheus_client_version", version),
            ("erlang_version", "none"),
        ],
        1,
    );
    let limits = &b.config.alarms;
    let alarms = *b.alarms().borrow();
    e.single(
        "rabbitmq_process_resident_memory_bytes",
        "gauge",
        "Memory used in bytes",
        warren_server::MemoryProbe::resident_set().measure(),
    );
    e.single(
        "rabbitmq_resident_memory_limit_bytes",
        "gauge",
        "Memory high watermark in bytes",
        limits.memory_limit,
    );
    e.single(
        "rabbitmq_process_open_fds",
        "gauge",
        "Open file descriptors",
        fd_used().unwrap_or(0),
    );
    e.single(
        "rabbitmq_process_max_fds",
        "gauge",
        "Open file descriptors limit",
        fd_total().unwrap_or(0),
    );
    if let Some(free) = b
        .config
        .data_dir
        .as_ref()
        .and_then(warren_server::free_disk)
    {
        e.single(
            "rabbitmq_disk_space_available_bytes",
            "gauge",
            "Disk space available in bytes",
            free,
        );
    }
    e.single(
        "rabbitmq_disk_space_available_limit_bytes",
        "gauge",
        "Free disk space low watermark in bytes",
        limits.disk_free_limit,
    );
    e.single(
        "rabbitmq_alarms_memory_used_watermark",
        "untyped",
        "is 1 if VM memory watermark alarm is in effect",
        u8::from(alarms.memory),
    );
    e.single(
        "rabbitmq_alarms_free_disk_space_watermark",
        "untyped",
        "is 1 if free disk space watermark alarm is in effect",
        u8::from(alarms.disk),
    );
    let (fds, fd_limit) = (fd_used().unwrap_or(0), fd_total().unwrap_or(0));
    e.single(
        "rabbitmq_alarms_file_descriptor_limit",
        "untyped",
        "is 1 if file descriptor limit alarm is in effect",
        u8::from(fd_limit > 0 && fds >= fd_limit),
    );
    e.single(
        "rabbitmq_process_open_tcp_sockets",
        "gauge",
        "Open TCP sockets",
        b.connections.list().len(),
    );
    e.single(
        "rabbitmq_process_max_tcp_sockets",
        "gauge",
        "Open TCP sockets limit",
        fd_limit,
    );
    e.single(
        "rabbitmq_erlang_uptime_seconds",
        "gauge",
        "Node uptime",
        b.started.elapsed().as_secs_f64(),
    );
    let c = &b.churn;
    for (name, help, counter) in [
        (
            "rabbitmq_connections_opened_total",
            "Total number of connections opened",
            &c.connections_opened,
        ),
        (
            "rabbitmq_connections_closed_total",
            "Total number of connections closed or terminated",
            &c.connections_closed,
        ),
        (
            "rabbitmq_channels_opened_total",
            "Total number of channels opened",
            &c.channels_opened,
        ),
        (
            "rabbitmq_channels_closed_total",
            "Total number of channels closed",
            &c.channels_closed,
        ),
        (
            "rabbitmq_queues_declared_total",
            "Total number of queues declared",
            &c.queues_declared,
        ),
        (
            "rabbitmq_queues_created_total",
            "Total number of queues created",
            &c.queues_created,
        ),
        (
            "rabbitmq_queues_deleted_total",
            "Total number of queues deleted",
            &c.queues_deleted,
        ),
    ] {
        e.single(name, "counter", help, Churn::read(counter));
    }
    let s = &b.stats;
    let amqp = [("protocol", "amqp091")];
    for (name, help, value) in [
        (
            "rabbitmq_global_messages_received_total",
            "Total number of messages received from publishers",
            s.get(Counter::Publish),
        ),
        (
            "rabbitmq_global_messages_received_confirm_total",
            "Total number of messages received from publishers expecting confirmations",
            s.get(Counter::ReceivedConfirm),
        ),
        (
            "rabbitmq_global_messages_routed_total",
            "Total number of messages routed to queues or streams",
            s.get(Counter::Routed),
        ),
        (
            "rabbitmq_global_messages_unroutable_dropped_total",
            "Total number of messages published as non-mandatory into an exchange and dropped as unroutable",
            s.get(Counter::DropUnroutable),
        ),
        (
            "rabbitmq_global_messages_unroutable_returned_total",
            "Total number of messages published as mandatory into an exchange and returned to the publisher as unroutable",
            s.get(Counter::ReturnUnroutable),
        ),
        (
            "rabbitmq_global_messages_confirmed_total",
            "Total number of messages confirmed to publishers",
            s.get(Counter::Confirm),
        ),
    ] {
        e.family(name, "counter", help);
        e.sample(name, &amqp, value);
    }
    e.family(
        "rabbitmq_global_publishers",
        "gauge",
        "Current number of publishers",
    );
    e.sample(
        "rabbitmq_global_publishers",
        &amqp,
        Churn::read(&b.churn.publishers),
    );
    e.family(
        "rabbitmq_global_consumers",
        "gauge",
        "Current number of consumers",
    );
    e.sample("rabbitmq_global_consumers", &amqp, t.consumers);
    // Per queue type, as rabbitmq_prometheus labels them (Warren has no
    // streams: theirs are 0).
    let kinds = [
        ("rabbit_classic_queue", Some(QueueKind::Classic)),
        ("rabbit_quorum_queue", Some(QueueKind::Quorum)),
        ("rabbit_stream_queue", None),
    ];
    let delivered = [
        Counter::Deliver,
        Counter::DeliverNoAck,
        Counter::Get,
        Counter::GetNoAck,
    ];
    type ByKind<'a> = &'a dyn Fn(QueueKind) -> u64;
    let one = |c: Counter| move |k: QueueKind| s.get_for(c, k);
    let families: [(&str, &str, ByKind); 8] = [
        (
            "rabbitmq_global_messages_delivered_total",
            "Total number of messages delivered to consumers",
            &|k| delivered.iter().map(|&c| s.get_for(c, k)).sum(),
        ),
        (
            "rabbitmq_global_messages_delivered_consume_manual_ack_total",
            "Total number of messages delivered to consumers using basic.consume with manual acknowledgment",
            &one(Counter::Deliver),
        ),
        (
            "rabbitmq_global_messages_delivered_consume_auto_ack_total",
            "Total number of messages delivered to consumers using basic.consume with automatic acknowledgment",
            &one(Counter::DeliverNoAck),
        ),
        (
            "rabbitmq_global_messages_delivered_get_manual_ack_total",
            "Total number of messages delivered to consumers using basic.get with manual acknowledgment",
            &one(Counter::Get),
        ),
        (
            "rabbitmq_global_messages_delivered_get_auto_ack_total",
            "Total number of messages delivered to consumers using basic.get with automatic acknowledgment",
            &one(Counter::GetNoAck),
        ),
        (
            "rabbitmq_global_messages_get_empty_total",
            "Total number of times basic.get operations fetched no message",
            &one(Counter::GetEmpty),
        ),
        (
            "rabbitmq_global_messages_redelivered_total",
            "Total number of messages redelivered to consumers",
            &one(Counter::Redeliver),
        ),
        (
            "rabbitmq_global_messages_acknowledged_total",
            "Total number of messages acknowledged by consumers",
            &one(Counter::Ack),
        ),
    ];
    for (name, help, value) in families {
        e.family(name, "counter", help);
        for (label, kind) in kinds {
            let v = kind.map_or(0, value);
            e.sample(name, &[("protocol", "amqp091"), ("queue_type", label)], v);
        }
    }
}

/// One queue's figures at scrape time.
struct QueueFigures {
    vhost: String,
    name: String,
    ready: u64,
    unacked: u64,
    consumers: u64,
    bytes: u64,
    /// When the oldest ready message was enqueued (ms since the epoch).
    oldest_ready: Option<u64>,
    /// When the longest-outstanding delivery was made.
    oldest_unacked: Option<u64>,
}

fn queues(b: &Broker) -> Vec<QueueFigures> {
    let vhosts: Vec<String> = b.access().vhosts().map(|v| v.name.clone()).collect();
    let mut out = Vec::new();
    for vhost in vhosts {
        let Some(topo) = b.vhost(&vhost) else {
            continue;
        };
        let cells: Vec<_> = topo.read().queues().map(|(_, q)| Arc::clone(q)).collect();
        for q in cells {
            let inner = q.lock();
            out.push(QueueFigures {
                vhost: vhost.clone(),
                name: q.name().to_string(),
                ready: inner.queue.ready_count() as u64,
                unacked: inner.queue.unacked_count() as u64,
                consumers: inner.queue.reported_consumer_count() as u64,
                bytes: inner.queue.ready_bytes(),
                oldest_ready: inner.queue.oldest_ready_enqueued_at(),
                oldest_unacked: inner.queue.oldest_unacked_delivered_at(),
            });
        }
    }
    out
}

/// A queue metric: name, help, and its value for one queue.
type QueueFamily = (&'static str, &'static str, fn(&QueueFigures) -> u64);

const QUEUE_FAMILIES: [QueueFamily; 5] = [
    (
        "rabbitmq_queue_messages_ready",
        "Messages ready to be delivered to consumers",
        |q| q.ready,
    ),
    (
        "rabbitmq_queue_messages_unacked",
        "Messages delivered to consumers but not yet acknowledged",
        |q| q.unacked,
    ),
    (
        "rabbitmq_queue_messages",
        "Sum of ready and unacknowledged messages - total queue depth",
        |q| q.ready + q.unacked,
    ),
    (
        "rabbitmq_queue_messages_ready_bytes",
        "Size in bytes of ready messages",
        |q| q.bytes,
    ),
    ("rabbitmq_queue_consumers", "Consumers on a queue", |q| {
        q.consumers
    }),
];

/// The object counts, and (unless the queues are listed one by one) the
/// queue families summed over the node, from the vhosts' running totals:
/// no queue is visited.
fn node_queue_metrics(
    b: &Broker,
    vhosts: &[String],
    t: &Totals,
    e: &mut Exposition,
    per_object: bool,
) {
    let bytes: u64 = vhosts.iter().map(|v| b.gauges_of(v).ready_bytes()).sum();
    let all = QueueFigures {
        vhost: String::new(),
        name: String::new(),
        ready: t.ready,
        unacked: t.unacked,
        consumers: t.consumers,
        bytes,
        oldest_ready: None,
        oldest_unacked: None,
    };
    if !per_object {
        for (name, help, value) in QUEUE_FAMILIES {
            e.single(name, "gauge", help, value(&all));
        }
    }
    e.single(
        "rabbitmq_connections",
        "gauge",
        "Connections currently open",
        t.connections,
    );
    e.single(
        "rabbitmq_channels",
        "gauge",
        "Channels currently open",
        t.channels,
    );
    e.single(
        "rabbitmq_consumers",
        "gauge",
        "Consumers currently connected",
        t.consumers,
    );
    e.single("rabbitmq_queues", "gauge", "Queues available", t.queues);
    e.single(
        "rabbitmq_channel_consumers",
        "gauge",
        "Consumers on a channel",
        t.consumers,
    );
}

/// Warren's own queue metrics: a time, as an age in seconds at scrape
/// time (0 when the queue has no such message).
type AgeFamily = (&'static str, &'static str, fn(&QueueFigures) -> Option<u64>);

const AGE_FAMILIES: [AgeFamily; 2] = [
    (
        "warren_queue_oldest_ready_message_age_seconds",
        "Seconds since the oldest ready message was enqueued",
        |q| q.oldest_ready,
    ),
    (
        "warren_queue_oldest_unacked_message_age_seconds",
        "Seconds the longest-outstanding unacknowledged message has waited for its acknowledgement since delivery",
        |q| q.oldest_unacked,
    ),
];

/// The queue families with a series per queue, read from each queue.
fn per_queue_metrics(b: &Broker, e: &mut Exposition) {
    let qs = queues(b);
    for (name, help, value) in QUEUE_FAMILIES {
        e.family(name, "gauge", help);
        for q in &qs {
            e.sample(name, &[("vhost", &q.vhost), ("queue", &q.name)], value(q));
        }
    }
    let now = warren_server::now_ms();
    for (name, help, at) in AGE_FAMILIES {
        e.family(name, "gauge", help);
        for q in &qs {
            let age = at(q).map_or(0.0, |t| now.saturating_sub(t) as f64 / 1000.0);
            e.sample(name, &[("vhost", &q.vhost), ("queue", &q.name)], age);
        }
    }
}

/// Every vhost, and the node's totals over them (read once per scrape).
fn totals(b: &Broker) -> (Vec<String>, Totals) {
    let vhosts: Vec<String> = b.access().vhosts().map(|v| v.name.clone()).collect();
    let t = b.totals(&vhosts);
    (vhosts, t)
}

async fn aggregated(State(b): State<Arc<Broker>>) -> impl IntoResponse {
    let mut e = Exposition::default();
    let (vhosts, t) = totals(&b);
    node_metrics(&b, &t, &mut e);
    node_queue_metrics(&b, &vhosts, &t, &mut e, false);
    respond(e)
}

async fn per_object(State(b): State<Arc<Broker>>) -> impl IntoResponse {
    let mut e = Exposition::default();
    let (vhosts, t) = totals(&b);
    node_metrics(&b, &t, &mut e);
    node_queue_metrics(&b, &vhosts, &t, &mut e, true);
    per_queue_metrics(&b, &mut e);
    respond(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        let mut e = Exposition::default();
        e.family("m", "gauge", "help");
        e.sample("m", &[("queue", "a\"b\\c\nd")], 1);
        assert_eq!(
            e.out,
            "# TYPE m gauge\n# HELP m help\nm{queue=\"a\\\"b\\\\c\\nd\"} 1\n"
        );
    }
}
