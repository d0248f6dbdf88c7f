//! The result of a run: counts, rates, latencies and CPU use, as text for a
//! person or as one JSON object for scripts.

use serde_json::{json, Value};

use crate::progress::{grouped, micros};
use crate::Histogram;

/// The two phases of a `--backlog` run.
#[derive(Debug, Clone, PartialEq)]
pub struct BacklogPhases {
    /// Messages asked for.
    pub messages: u64,
    /// Messages ready in the queues between the phases.
    pub queued: u64,
    pub publish_s: f64,
    pub drain_s: f64,
}

/// End-to-end latency percentiles, in microseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencySummary {
    pub count: u64,
    pub min_us: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    pub mean_us: f64,
}

impl LatencySummary {
    pub fn of(h: &Histogram) -> Self {
        let us = |ns: u64| ns as f64 / 1e3;
        LatencySummary {
            count: h.count(),
            min_us: us(h.min()),
            p50_us: us(h.percentile(0.5)),
            p99_us: us(h.percentile(0.99)),
            p999_us: us(h.percentile(0.999)),
            max_us: us(h.max()),
            mean_us: h.mean() / 1e3,
        }
    }
}

/// What an idle-connections run (`--idle-connections`) saw.
#[derive(Debug, Clone, PartialEq)]
pub struct IdleSummary {
    /// Connections asked for.
    pub requested: usize,
    /// Connections that completed the handshake and opened their channel.
    pub connected: usize,
    /// Connections that could not be opened.
    pub failed: usize,
    /// Connections that ended during the hold (closed by the broker).
    pub dropped: usize,
    /// The heartbeat interval the broker proposed (and the tool accepted).
    pub heartbeat_s: Option<u16>,
    /// From the first connect until every connection was open (or failed).
    pub connect_s: f64,
    /// How long the connections were held once all were open.
    pub hold_s: f64,
    /// The first failure, if any.
    pub first_error: Option<String>,
}

/// What the waits after a run saw (`--wait-empty`, `--dead-letter-queue`,
/// `--wait-deleted`); `None` where not asked for or not reached in time.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WaitSummary {
    /// From the start of publishing until the queues were empty.
    pub empty_s: Option<f64>,
    /// Messages the dead-letter queue held at the end.
    pub dead_lettered: Option<u64>,
    /// From the consumers' start (the start of publishing without
    /// consumers) until the dead-letter queue held every message expected.
    pub dead_letter_s: Option<f64>,
    /// From the last queue declared until the broker had deleted them all.
    pub deleted_s: Option<f64>,
}

/// Everything a run measured.
#[derive(Debug, Clone)]
pub struct Summary {
    /// The broker, without the password.
    pub uri: String,
    /// The run's parameters.
    pub scenario: Value,
    pub producers: usize,
    pub consumers: usize,
    pub published: u64,
    pub confirmed: u64,
    pub nacked: u64,
    pub delivered: u64,
    /// Deliveries a `--count` or `--backlog` run waited for.
    pub expected: Option<u64>,
    /// Whether a bounded run got every expected delivery (`None` for runs
    /// bounded by time only).
    pub complete: Option<bool>,
    /// Stopped by Ctrl-C.
    pub interrupted: bool,
    /// From the first message published (or the consumers' start) to stop.
    pub elapsed_s: f64,
    /// How long publishing took (the backlog phase in a backlog run).
    pub publish_s: f64,
    /// How long consuming took (the drain phase in a backlog run).
    pub consume_s: f64,
    pub backlog: Option<BacklogPhases>,
    pub latency: Option<LatencySummary>,
    pub idle: Option<IdleSummary>,
    /// Queues declared before the run, and how long declaring them took.
    pub queues_declared: usize,
    pub declare_s: f64,
    pub wait: Option<WaitSummary>,
    /// CPU seconds this process used during the run.
    pub tool_cpu_s: f64,
    /// CPU seconds of `--broker-pid` during the run.
    pub broker_cpu_s: Option<f64>,
}

fn per_second(n: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        n as f64 / secs
    } else {
        0.0
    }
}

fn round(x: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (x * f).round() / f
}

impl Summary {
    pub fn publish_rate(&self) -> f64 {
        per_second(self.published, self.publish_s)
    }

    pub fn confirm_rate(&self) -> f64 {
        per_second(self.confirmed, self.publish_s)
    }

    pub fn consume_rate(&self) -> f64 {
        per_second(self.delivered, self.consume_s)
    }

    /// Messages the run moved: deliveries, or publishes if there were more
    /// (no consumers). One message published and consumed counts once.
    pub fn messages(&self) -> u64 {
        self.published.max(self.delivered)
    }

    /// CPU seconds per million messages moved.
    pub fn per_million(&self, cpu_s: f64) -> f64 {
        if self.messages() == 0 {
            0.0
        } else {
            cpu_s * 1e6 / self.messages() as f64
        }
    }

    pub fn to_json(&self) -> Value {
        json!({
            "uri": self.uri,
            "scenario": self.scenario,
            "elapsed_s": round(self.elapsed_s, 3),
            "published": self.published,
            "confirmed": self.confirmed,
            "nacked": self.nacked,
            "delivered": self.delivered,
            "expected": self.expected,
            "complete": self.complete,
            "interrupted": self.interrupted,
            "publish_s": round(self.publish_s, 3),
            "consume_s": round(self.consume_s, 3),
            "publish_rate": self.publish_rate().round(),
            "confirm_rate": self.confirm_rate().round(),
            "consume_rate": self.consume_rate().round(),
            "backlog": self.backlog.as_ref().map(|b| json!({
                "messages": b.messages,
                "queued": b.queued,
                "publish_s": round(b.publish_s, 3),
                "publish_rate": per_second(self.published, b.publish_s).round(),
                "drain_s": round(b.drain_s, 3),
                "drain_rate": per_second(self.delivered, b.drain_s).round(),
            })),
            "latency_us": self.latency.as_ref().map(|l| json!({
                "count": l.count,
                "min": round(l.min_us, 1),
                "p50": round(l.p50_us, 1),
                "p99": round(l.p99_us, 1),
                "p99.9": round(l.p999_us, 1),
                "max": round(l.max_us, 1),
                "mean": round(l.mean_us, 1),
            })),
            "idle": self.idle.as_ref().map(|i| json!({
                "requested": i.requested,
                "connected": i.connected,
                "failed": i.failed,
                "dropped": i.dropped,
                "held": i.held(),
                "heartbeat_s": i.heartbeat_s,
                "connect_s": round(i.connect_s, 3),
                "hold_s": round(i.hold_s, 3),
                "first_error": i.first_error,
            })),
            "queues_declared": self.queues_declared,
            "declare_s": round(self.declare_s, 3),
            "declare_rate": per_second(self.queues_declared as u64, self.declare_s).round(),
            "wait": self.wait.as_ref().map(|w| json!({
                "empty_s": w.empty_s.map(|t| round(t, 3)),
                "dead_lettered": w.dead_lettered,
                "dead_letter_s": w.dead_letter_s.map(|t| round(t, 3)),
                "dead_letter_rate": match (w.dead_lettered, w.dead_letter_s) {
                    (Some(n), Some(t)) => Some(per_second(n, t).round()),
                    _ => None,
                },
                "deleted_s": w.deleted_s.map(|t| round(t, 3)),
            })),
            "tool_cpu_s": round(self.tool_cpu_s, 3),
            "tool_cpu_s_per_million": round(self.per_million(self.tool_cpu_s), 3),
            "broker_cpu_s": self.broker_cpu_s.map(|c| round(c, 3)),
            "broker_cpu_s_per_million": self.broker_cpu_s.map(|c| round(self.per_million(c), 3)),
        })
    }

    /// A few lines for a person.
    pub fn text(&self) -> String {
        let rate = |r: f64| grouped(r.round() as u64);
        let mut out = format!("warren perf against {}\n", self.uri);
        if let Some(i) = &self.idle {
            out.push_str(&format!(
                "connected: {} of {} in {:.3}s ({} failed); heartbeat {}\n\
                 held:      {} for {:.3}s ({} dropped)\n",
                grouped(i.connected as u64),
                grouped(i.requested as u64),
                i.connect_s,
                grouped(i.failed as u64),
                i.heartbeat_s.map_or("-".to_string(), |h| format!("{h}s")),
                grouped(i.held() as u64),
                i.hold_s,
                grouped(i.dropped as u64),
            ));
            if let Some(err) = &i.first_error {
                out.push_str(&format!("first error: {err}\n"));
            }
        } else if let Some(b) = &self.backlog {
            out.push_str(&format!(
                "backlog:   published {} in {:.3}s ({} msgs/s); {} queued\n\
                 drain:     delivered {} in {:.3}s ({} msgs/s)\n",
                grouped(self.published),
                b.publish_s,
                rate(per_second(self.published, b.publish_s)),
                grouped(b.queued),
                grouped(self.delivered),
                b.drain_s,
                rate(per_second(self.delivered, b.drain_s)),
            ));
        } else {
            if self.producers > 0 {
                out.push_str(&format!(
                    "published: {} in {:.3}s ({} msgs/s)\n",
                    grouped(self.published),
                    self.publish_s,
                    rate(self.publish_rate())
                ));
            }
            if self.consumers > 0 {
                out.push_str(&format!(
                    "delivered: {} in {:.3}s ({} msgs/s)\n",
                    grouped(self.delivered),
                    self.consume_s,
                    rate(self.consume_rate())
                ));
            }
        }
        if self.queues_declared > 1 && self.declare_s > 0.0 {
            out.push_str(&format!(
                "declared:  {} queues in {:.3}s ({}/s)\n",
                grouped(self.queues_declared as u64),
                self.declare_s,
                rate(per_second(self.queues_declared as u64, self.declare_s))
            ));
        }
        if let Some(w) = &self.wait {
            if let Some(t) = w.empty_s {
                out.push_str(&format!("empty:     {t:.3}s after publishing began\n"));
            }
            if let Some(n) = w.dead_lettered {
                let when = w.dead_letter_s.map_or("not all in time".to_string(), |t| {
                    format!("in {t:.3}s ({} msgs/s)", rate(per_second(n, t)))
                });
                out.push_str(&format!("dead-lettered: {} {when}\n", grouped(n)));
            }
            if let Some(t) = w.deleted_s {
                out.push_str(&format!(
                    "deleted:   all queues {t:.3}s after the last was declared\n"
                ));
            }
        }
        if self.confirmed + self.nacked > 0 {
            out.push_str(&format!(
                "confirmed: {} ({} nacked)\n",
                grouped(self.confirmed),
                grouped(self.nacked)
            ));
        }
        if let Some(l) = &self.latency {
            let us = |v: f64| micros((v * 1e3) as u64);
            out.push_str(&format!(
                "latency:   p50 {}  p99 {}  p99.9 {}  max {}  ({} samples)\n",
                us(l.p50_us),
                us(l.p99_us),
                us(l.p999_us),
                us(l.max_us),
                grouped(l.count)
            ));
        }
        out.push_str(&format!(
            "tool cpu:  {:.2}s ({:.3}s per million messages)\n",
            self.tool_cpu_s,
            self.per_million(self.tool_cpu_s)
        ));
        if let Some(b) = self.broker_cpu_s {
            out.push_str(&format!(
                "broker cpu: {:.2}s ({:.3}s per million messages)\n",
                b,
                self.per_million(b)
            ));
        }
        if let (Some(false), Some(expected)) = (self.complete, self.expected) {
            out.push_str(&format!(
                "INCOMPLETE: expected {} deliveries, got {}\n",
                grouped(expected),
                grouped(self.delivered)
            ));
        }
        out
    }
}
