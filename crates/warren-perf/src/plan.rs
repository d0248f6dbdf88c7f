//! The checked, spelled-out form of the options: which queues exist, what
//! each producer and consumer does, and which connection carries it.

use std::time::Duration;

use bytes::Bytes;
use warren_protocol::{FieldTable, FieldValue};

use crate::{PerfArgs, PerfError};

/// Name of the exchange that `--fanout` publishes to.
pub const FANOUT_EXCHANGE: &str = "perf-fanout";
/// Name of the fanout exchange that `--dead-letter-queue` declares.
pub const DEAD_LETTER_EXCHANGE: &str = "perf-dead-letter";
/// The largest body `--size` accepts.
const MAX_SIZE: usize = 512 << 20;
/// Run length when neither `--duration`, `--count` nor `--backlog` is given.
const DEFAULT_DURATION: Duration = Duration::from_secs(10);

/// One producer: where it publishes and how many messages (if bounded).
#[derive(Debug, Clone, PartialEq)]
pub struct ProducerPlan {
    /// The queue it publishes to through the default exchange; `None`
    /// publishes to the fanout exchange.
    pub queue: Option<usize>,
    /// Messages to publish; `None` until the run stops.
    pub messages: Option<u64>,
}

/// One consumer and its queue.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsumerPlan {
    pub queue: usize,
}

/// The producers and consumers (indexes into the plan) that share one
/// connection, each on its own channel, consumers first.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConnectionPlan {
    pub producers: Vec<usize>,
    pub consumers: Vec<usize>,
}

/// A run, checked and spelled out.
#[derive(Debug, Clone)]
pub struct Plan {
    pub queues: Vec<String>,
    pub fanout: bool,
    pub producers: Vec<ProducerPlan>,
    pub consumers: Vec<ConsumerPlan>,
    pub connections: Vec<ConnectionPlan>,
    pub size: usize,
    pub persistent: bool,
    pub durable: bool,
    pub confirm: u32,
    pub prefetch: u16,
    pub ack_every: u32,
    pub rate: Option<f64>,
    pub latency: bool,
    pub duration: Option<Duration>,
    pub count: Option<u64>,
    pub backlog: Option<u64>,
    pub keep_queues: bool,
    /// Arguments of the queues' `queue.declare` (`--queue-arg`, and
    /// x-dead-letter-exchange with `--dead-letter-queue`).
    pub queue_args: FieldTable,
    /// Message i gets priority i mod N.
    pub priorities: Option<u8>,
    /// The `expiration` property of every message, and of each producer's
    /// first one.
    pub expiration: Option<String>,
    pub first_expiration: Option<String>,
    pub reject: bool,
    pub dead_letter_queue: Option<String>,
    pub wait_empty: bool,
    pub wait_deleted: bool,
}

impl Plan {
    pub fn new(args: &PerfArgs) -> Result<Plan, PerfError> {
        let usage = |s: &str| Err(PerfError::Usage(s.to_string()));
        let queue_count = match args.fanout {
            Some(0) => return usage("--fanout needs at least one queue"),
            Some(n) => n,
            None => args.queues,
        };
        if queue_count == 0 {
            return usage("--queues must be at least 1");
        }
        let consumers = args.consumers.unwrap_or(args.fanout.unwrap_or(1));
        if args.producers + consumers == 0 && !args.wait_deleted {
            return usage("nothing to do: no producers and no consumers");
        }
        if queue_count > 1 && !args.queue_pattern.contains("%d") {
            return usage("--queue-pattern needs %d when there is more than one queue");
        }
        let queues: Vec<String> = (0..queue_count)
            .map(|i| args.queue_pattern.replace("%d", &i.to_string()))
            .collect();
        if queues.iter().any(|q| q.is_empty() || q.len() > 255) {
            return usage("queue names must be 1 to 255 bytes long");
        }
        if args.size > MAX_SIZE {
            return usage("--size may be at most 512 MiB");
        }
        if args.latency && args.size < 8 {
            return usage("--latency needs --size of at least 8 (the send time takes 8 bytes)");
        }
        if let Some(rate) = args.rate {
            if !(rate.is_finite() && rate > 0.0) {
                return usage("--rate must be a positive number");
            }
        }
        if args.ack_every > 0 && args.prefetch > 0 && args.ack_every > args.prefetch as u32 {
            return usage(
                "--ack-every must not exceed --prefetch: the broker would stop delivering \
                 before the ack is due",
            );
        }
        let duration = match args.duration.map(Duration::try_from_secs_f64) {
            Some(Ok(d)) if !d.is_zero() => Some(d),
            Some(_) => return usage("--duration must be a positive number of seconds"),
            None if args.count.is_none() && args.backlog.is_none() => Some(DEFAULT_DURATION),
            None => None,
        };
        if args.backlog.is_some() && args.producers == 0 {
            return usage("--backlog needs at least one producer");
        }
        if args.threads == 0 {
            return usage("--threads must be at least 1");
        }
        if args.connect_concurrency == 0 {
            return usage("--connect-concurrency must be at least 1");
        }
        if args.reject && args.ack_every == 0 {
            return usage(
                "--reject needs --ack-every of at least 1 (no-ack consumers cannot reject)",
            );
        }
        let priorities = match args.priorities {
            None => None,
            Some(n @ 1..=255) => Some(n as u8),
            Some(_) => return usage("--priorities must be 1 to 255"),
        };
        let mut queue_args = FieldTable::new();
        if args.dead_letter_queue.is_some() {
            queue_args.insert(
                "x-dead-letter-exchange",
                FieldValue::LongString(Bytes::from_static(DEAD_LETTER_EXCHANGE.as_bytes())),
            );
        }
        for item in &args.queue_arg {
            let (key, value) = parse_queue_arg(item)?;
            queue_args.insert(key, value);
        }
        if let Some(dlq) = &args.dead_letter_queue {
            if dlq.is_empty() || dlq.len() > 255 || queues.contains(dlq) {
                return usage("--dead-letter-queue must be 1 to 255 bytes and not a run's queue");
            }
        }
        let bounded = args.count.or(args.backlog);
        let producers = (0..args.producers)
            .map(|i| ProducerPlan {
                queue: args.fanout.is_none().then_some(i % queue_count),
                messages: bounded.map(|n| share(n, args.producers, i)),
            })
            .collect();
        let consumers: Vec<ConsumerPlan> = (0..consumers)
            .map(|j| ConsumerPlan {
                queue: j % queue_count,
            })
            .collect();
        let roles = args.producers + consumers.len();
        let connection_count = args.connections.unwrap_or(roles);
        if connection_count == 0 && roles > 0 {
            return usage("--connections must be at least 1");
        }
        let mut connections = vec![ConnectionPlan::default(); connection_count];
        let mut next = 0;
        for k in 0..args.producers.max(consumers.len()) {
            if k < consumers.len() {
                connections[next % connection_count].consumers.push(k);
                next += 1;
            }
            if k < args.producers {
                connections[next % connection_count].producers.push(k);
                next += 1;
            }
        }
        Ok(Plan {
            queues,
            fanout: args.fanout.is_some(),
            producers,
            consumers,
            connections,
            size: args.size,
            persistent: args.persistent,
            durable: args.durable,
            confirm: args.confirm,
            prefetch: args.prefetch,
            ack_every: args.ack_every,
            rate: args.rate,
            latency: args.latency,
            duration,
            count: args.count,
            backlog: args.backlog,
            keep_queues: args.keep_queues,
            queue_args,
            priorities,
            expiration: args.expiration.map(|ms| ms.to_string()),
            first_expiration: args.first_expiration.map(|ms| ms.to_string()),
            reject: args.reject,
            dead_letter_queue: args.dead_letter_queue.clone(),
            wait_empty: args.wait_empty,
            wait_deleted: args.wait_deleted,
        })
    }

    /// When rate-limited producer `i` first publishes, after the start:
    /// the producers' first messages are spread evenly over one period
    /// (1 / rate), so that N producers at R msgs/s publish N × R messages
    /// a second at an even pace rather than N at once every 1 / R seconds.
    pub fn phase(&self, i: usize) -> Duration {
        match self.rate {
            Some(rate) if self.producers.len() > 1 => {
                let fraction = i as f64 / self.producers.len() as f64;
                Duration::try_from_secs_f64(fraction / rate).unwrap_or(Duration::ZERO)
            }
            _ => Duration::ZERO,
        }
    }

    /// Deliveries the consumers should see once producer `i` has published
    /// `published[i]` messages: one per message and queue it reaches that
    /// has a consumer.
    pub fn expected_deliveries(&self, published: &[u64]) -> u64 {
        let mut consumed = vec![false; self.queues.len()];
        for c in &self.consumers {
            consumed[c.queue] = true;
        }
        let fanout_copies = consumed.iter().filter(|&&c| c).count() as u64;
        self.producers
            .iter()
            .zip(published)
            .map(|(p, &n)| match p.queue {
                Some(q) => n * consumed[q] as u64,
                None => n * fanout_copies,
            })
            .sum()
    }
}

/// A `--queue-arg KEY=VALUE`: integers as signed 32-bit ints (64-bit when
/// they do not fit), `true`/`false` as bools, anything else as a long
/// string.
pub fn parse_queue_arg(item: &str) -> Result<(String, FieldValue), PerfError> {
    let Some((key, value)) = item.split_once('=').filter(|(k, _)| !k.is_empty()) else {
        return Err(PerfError::Usage(format!(
            "--queue-arg takes KEY=VALUE, not {item:?}"
        )));
    };
    let value = if let Ok(n) = value.parse::<i32>() {
        FieldValue::I32(n)
    } else if let Ok(n) = value.parse::<i64>() {
        FieldValue::I64(n)
    } else if value == "true" || value == "false" {
        FieldValue::Bool(value == "true")
    } else {
        FieldValue::LongString(Bytes::copy_from_slice(value.as_bytes()))
    };
    Ok((key.to_string(), value))
}

/// Producer `i`'s part of `total` split between `parts`.
fn share(total: u64, parts: usize, i: usize) -> u64 {
    let parts = parts as u64;
    total / parts + u64::from((i as u64) < total % parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn plan(args: &[&str]) -> Result<Plan, PerfError> {
        let mut all = vec!["perf"];
        all.extend_from_slice(args);
        Plan::new(&PerfArgs::try_parse_from(all).expect("parse"))
    }

    #[test]
    fn defaults_to_one_producer_one_consumer_for_ten_seconds() {
        let p = plan(&[]).expect("plan");
        assert_eq!(p.queues, vec!["perf-0"]);
        assert_eq!(p.connections.len(), 2);
        assert_eq!(p.duration, Some(Duration::from_secs(10)));
        assert_eq!(p.producers[0].messages, None);
    }

    #[test]
    fn counts_split_between_producers_and_roles_spread_over_connections() {
        let p = plan(&[
            "--producers",
            "3",
            "--consumers",
            "2",
            "--queues",
            "2",
            "--count",
            "10",
            "--connections",
            "2",
        ])
        .expect("plan");
        let shares: Vec<_> = p.producers.iter().map(|p| p.messages).collect();
        assert_eq!(shares, vec![Some(4), Some(3), Some(3)]);
        assert_eq!(p.connections[0].consumers, vec![0, 1]);
        assert_eq!(p.connections[1].producers, vec![0, 1]);
        assert_eq!(p.connections[0].producers, vec![2]);
        assert_eq!(p.duration, None);
        assert_eq!(p.expected_deliveries(&[4, 3, 3]), 10);
    }

    #[test]
    fn fanout_has_a_consumer_per_queue_and_multiplies_deliveries() {
        let p = plan(&["--fanout", "10", "--count", "100"]).expect("plan");
        assert!(p.fanout);
        assert_eq!(p.queues.len(), 10);
        assert_eq!(p.consumers.len(), 10);
        assert_eq!(p.producers[0].queue, None);
        assert_eq!(p.expected_deliveries(&[100]), 1000);
    }

    #[test]
    fn rate_limited_producers_start_spread_over_one_period() {
        let p = plan(&["--producers", "4", "--rate", "10"]).expect("plan");
        let phases: Vec<_> = (0..4).map(|i| p.phase(i).as_millis()).collect();
        assert_eq!(phases, vec![0, 25, 50, 75]);
        let p = plan(&["--producers", "4"]).expect("plan");
        assert_eq!(p.phase(3), Duration::ZERO);
    }

    #[test]
    fn queue_args_are_typed_and_dead_lettering_adds_its_exchange() {
        let p = plan(&[
            "--queue-arg",
            "x-message-ttl=1000",
            "--queue-arg",
            "x-big=5000000000",
            "--queue-arg",
            "x-single-active-consumer=true",
            "--queue-arg",
            "x-overflow=reject-publish",
            "--dead-letter-queue",
            "perf-dead",
        ])
        .expect("plan");
        let args = &p.queue_args;
        let text = |s: &'static str| FieldValue::LongString(Bytes::from_static(s.as_bytes()));
        assert_eq!(
            args.get("x-dead-letter-exchange"),
            Some(&text(DEAD_LETTER_EXCHANGE))
        );
        assert_eq!(args.get("x-message-ttl"), Some(&FieldValue::I32(1000)));
        assert_eq!(args.get("x-big"), Some(&FieldValue::I64(5_000_000_000)));
        assert_eq!(
            args.get("x-single-active-consumer"),
            Some(&FieldValue::Bool(true))
        );
        assert_eq!(args.get("x-overflow"), Some(&text("reject-publish")));
        assert_eq!(p.dead_letter_queue.as_deref(), Some("perf-dead"));
        assert!(plan(&["--queue-arg", "novalue"]).is_err());
        assert!(plan(&["--queue-arg", "=1"]).is_err());
        let p = plan(&[
            "--queue-arg",
            "x-dead-letter-exchange=mine",
            "--dead-letter-queue",
            "d",
        ])
        .expect("plan");
        assert_eq!(
            p.queue_args.get("x-dead-letter-exchange"),
            Some(&text("mine"))
        );
    }

    #[test]
    fn priorities_reject_and_declare_only_runs() {
        let p = plan(&["--priorities", "10", "--reject", "--ack-every", "10"]).expect("plan");
        assert_eq!(p.priorities, Some(10));
        assert!(p.reject);
        assert!(plan(&["--reject"]).is_err());
        assert!(plan(&["--priorities", "0"]).is_err());
        assert!(plan(&["--priorities", "256"]).is_err());
        let p = plan(&[
            "--producers",
            "0",
            "--consumers",
            "0",
            "--queues",
            "3",
            "--wait-deleted",
        ])
        .expect("plan");
        assert!(p.wait_deleted && p.producers.is_empty() && p.consumers.is_empty());
        assert!(p.connections.is_empty());
        assert!(plan(&["--dead-letter-queue", "perf-0"]).is_err());
        let p = plan(&["--expiration", "2000", "--first-expiration", "5000"]).expect("plan");
        assert_eq!(p.expiration.as_deref(), Some("2000"));
        assert_eq!(p.first_expiration.as_deref(), Some("5000"));
        assert!(PerfArgs::try_parse_from(["perf", "--first-expiration", "5"]).is_err());
    }

    #[test]
    fn rejects_contradictions() {
        assert!(plan(&["--latency", "--rate", "10", "--size", "4"]).is_err());
        assert!(plan(&["--ack-every", "500", "--prefetch", "100"]).is_err());
        assert!(plan(&["--queues", "2", "--queue-pattern", "q"]).is_err());
        assert!(plan(&["--producers", "0", "--consumers", "0"]).is_err());
        assert!(plan(&["--duration", "0"]).is_err());
        assert!(PerfArgs::try_parse_from(["perf", "--latency"]).is_err());
        assert!(PerfArgs::try_parse_from(["perf", "--backlog", "5", "--count", "5"]).is_err());
    }
}
