//! The checked, spelled-out form of the options: which queues exist, what
//! each producer and consumer does, and which connection carries it.

use std::time::Duration;

use crate::{PerfArgs, PerfError};

/// Name of the exchange that `--fanout` publishes to.
pub const FANOUT_EXCHANGE: &str = "perf-fanout";
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
        if args.producers + consumers == 0 {
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
        if connection_count == 0 {
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
