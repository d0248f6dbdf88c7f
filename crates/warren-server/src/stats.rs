//! Message counters as messages flow, for the management API's
//! `message_stats` and the Prometheus metrics.
//!
//! Each connection counts in plain integers of its own ([`LocalStats`])
//! and adds them to the broker's atomics once per read or batch of events,
//! so the message path pays no shared write per message. Rates come from
//! samples of the totals taken once a second ([`MessageStats::sample`]),
//! over the last five seconds as RabbitMQ's are.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use warren_core::queue::QueueKind;

/// What is counted, with the names RabbitMQ's `message_stats` use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum Counter {
    /// Messages published (complete ones, routed or not).
    Publish,
    /// Publishes confirmed to their publishers.
    Confirm,
    /// Mandatory publishes returned unroutable.
    ReturnUnroutable,
    /// Publishes that reached no queue and were dropped.
    DropUnroutable,
    /// Deliveries to consumers that ack.
    Deliver,
    /// Deliveries to no-ack consumers.
    DeliverNoAck,
    /// basic.get answered with a message, acked later.
    Get,
    /// basic.get answered with a message, no ack.
    GetNoAck,
    /// basic.get answered empty.
    GetEmpty,
    /// Deliveries and gets that were redeliveries.
    Redeliver,
    /// Messages acknowledged.
    Ack,
    /// Publishes routed, once per queue reached.
    Routed,
    /// Publishes on channels in confirm mode.
    ReceivedConfirm,
}

impl Counter {
    pub const ALL: [Counter; 13] = [
        Counter::Publish,
        Counter::Confirm,
        Counter::ReturnUnroutable,
        Counter::DropUnroutable,
        Counter::Deliver,
        Counter::DeliverNoAck,
        Counter::Get,
        Counter::GetNoAck,
        Counter::GetEmpty,
        Counter::Redeliver,
        Counter::Ack,
        Counter::Routed,
        Counter::ReceivedConfirm,
    ];

    /// The key in `message_stats`.
    pub fn name(self) -> &'static str {
        match self {
            Counter::Publish => "publish",
            Counter::Confirm => "confirm",
            Counter::ReturnUnroutable => "return_unroutable",
            Counter::DropUnroutable => "drop_unroutable",
            Counter::Deliver => "deliver",
            Counter::DeliverNoAck => "deliver_no_ack",
            Counter::Get => "get",
            Counter::GetNoAck => "get_no_ack",
            Counter::GetEmpty => "get_empty",
            Counter::Redeliver => "redeliver",
            Counter::Ack => "ack",
            Counter::Routed => "routed",
            Counter::ReceivedConfirm => "received_confirm",
        }
    }
}

/// How many counters there are.
pub const N: usize = Counter::ALL.len();

/// The queue types counted apart (delivery-side counters are kept per
/// type, as rabbitmq_prometheus labels them; the others count as classic).
const KINDS: usize = 2;

fn slot(c: Counter, kind: QueueKind) -> usize {
    c as usize * KINDS + usize::from(kind == QueueKind::Quorum)
}

/// Totals since the broker started, whatever the queue type.
pub type Totals = [u64; N];

/// A connection's counts not yet added to the broker's.
#[derive(Debug)]
pub struct LocalStats {
    counts: [u64; N * KINDS],
    dirty: bool,
}

impl Default for LocalStats {
    fn default() -> Self {
        LocalStats {
            counts: [0; N * KINDS],
            dirty: false,
        }
    }
}

impl LocalStats {
    /// Counts `n` of something not tied to a queue (publishes, confirms).
    pub fn add(&mut self, c: Counter, n: u64) {
        self.add_for(c, QueueKind::Classic, n);
    }

    /// Counts `n` of something a queue of this type did.
    pub fn add_for(&mut self, c: Counter, kind: QueueKind, n: u64) {
        self.counts[slot(c, kind)] += n;
        self.dirty = true;
    }

    /// Adds the counts to the broker's and to its vhost's, and starts
    /// again from zero.
    pub fn flush(&mut self, node: &MessageStats, vhost: &MessageStats) {
        if !self.dirty {
            return;
        }
        for (i, n) in self.counts.iter_mut().enumerate() {
            if *n > 0 {
                node.totals[i].fetch_add(*n, Ordering::Relaxed);
                vhost.totals[i].fetch_add(*n, Ordering::Relaxed);
                *n = 0;
            }
        }
        self.dirty = false;
    }
}

/// Objects opened and closed (RabbitMQ's churn), counted where they
/// happen: these are rare next to messages, so a shared atomic each is
/// cheap.
#[derive(Debug, Default)]
pub struct Churn {
    pub connections_opened: AtomicU64,
    pub connections_closed: AtomicU64,
    pub channels_opened: AtomicU64,
    pub channels_closed: AtomicU64,
    /// queue.declare calls (passive ones and redeclares included).
    pub queues_declared: AtomicU64,
    pub queues_created: AtomicU64,
    pub queues_deleted: AtomicU64,
    /// Channels that have published (RabbitMQ's publishers), open now.
    pub publishers: AtomicU64,
}

impl Churn {
    pub fn bump(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn read(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub fn drop_one(counter: &AtomicU64) {
        let _ = counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }
}

/// A vhost's queue totals, kept as queues change: each queue reports the
/// difference since its last report when its lock is released, so no
/// request needs to visit every queue to sum them.
#[derive(Debug, Default)]
pub struct QueueGauges {
    ready: AtomicI64,
    unacked: AtomicI64,
    consumers: AtomicI64,
    ready_bytes: AtomicI64,
}

/// What one queue last reported.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct QueueFigures {
    pub ready: i64,
    pub unacked: i64,
    pub consumers: i64,
    pub ready_bytes: i64,
}

impl QueueGauges {
    /// Moves the totals from what a queue reported last to `now`.
    pub fn report(&self, last: &mut QueueFigures, now: QueueFigures) {
        if *last == now {
            return;
        }
        for (total, old, new) in [
            (&self.ready, last.ready, now.ready),
            (&self.unacked, last.unacked, now.unacked),
            (&self.consumers, last.consumers, now.consumers),
            (&self.ready_bytes, last.ready_bytes, now.ready_bytes),
        ] {
            if old != new {
                total.fetch_add(new - old, Ordering::Relaxed);
            }
        }
        *last = now;
    }

    /// (ready, unacked, consumers) over the vhost's queues.
    pub fn read(&self) -> (u64, u64, u64) {
        (
            Self::get(&self.ready),
            Self::get(&self.unacked),
            Self::get(&self.consumers),
        )
    }

    /// Body bytes of the vhost's ready messages.
    pub fn ready_bytes(&self) -> u64 {
        Self::get(&self.ready_bytes)
    }

    fn get(a: &AtomicI64) -> u64 {
        a.load(Ordering::Relaxed).max(0) as u64
    }
}

/// How far back rates look.
const RATE_WINDOW: Duration = Duration::from_secs(5);

/// The broker's message counters and their recent samples.
#[derive(Debug)]
pub struct MessageStats {
    totals: [AtomicU64; N * KINDS],
    samples: Mutex<VecDeque<(Instant, Totals)>>,
}

impl Default for MessageStats {
    fn default() -> Self {
        MessageStats {
            totals: std::array::from_fn(|_| AtomicU64::new(0)),
            samples: Mutex::new(VecDeque::new()),
        }
    }
}

impl MessageStats {
    pub fn totals(&self) -> Totals {
        std::array::from_fn(|i| self.get(Counter::ALL[i]))
    }

    /// A counter over every queue type.
    pub fn get(&self, c: Counter) -> u64 {
        self.get_for(c, QueueKind::Classic) + self.get_for(c, QueueKind::Quorum)
    }

    /// A counter of one queue type.
    pub fn get_for(&self, c: Counter, kind: QueueKind) -> u64 {
        self.totals[slot(c, kind)].load(Ordering::Relaxed)
    }

    /// Records the totals as of `now` (called once a second).
    pub fn sample(&self, now: Instant) {
        let totals = self.totals();
        let mut samples = self.samples.lock();
        samples.push_back((now, totals));
        while samples
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > RATE_WINDOW + Duration::from_secs(2))
        {
            samples.pop_front();
        }
    }

    /// [`rates`](Self::rates) added up over several sets of counters (a
    /// user's vhosts).
    pub fn summed_rates<'a>(all: impl IntoIterator<Item = &'a MessageStats>) -> (Totals, [f64; N]) {
        let mut sum = ([0u64; N], [0.0; N]);
        for stats in all {
            let (totals, rates) = stats.rates();
            for i in 0..N {
                sum.0[i] += totals[i];
                sum.1[i] += rates[i];
            }
        }
        sum
    }

    /// The totals and each counter's rate per second over the last few
    /// seconds (0 until two samples exist).
    pub fn rates(&self) -> (Totals, [f64; N]) {
        let samples = self.samples.lock();
        let mut rates = [0.0; N];
        let latest = samples.back().copied();
        // The oldest sample within the window, else the oldest there is.
        let base = latest.and_then(|(now, _)| {
            samples
                .iter()
                .find(|(t, _)| now.duration_since(*t) <= RATE_WINDOW)
                .copied()
        });
        if let (Some((t1, a)), Some((t0, b))) = (latest, base) {
            let dt = t1.duration_since(t0).as_secs_f64();
            if dt > 0.0 {
                for i in 0..N {
                    rates[i] = a[i].saturating_sub(b[i]) as f64 / dt;
                }
            }
        }
        drop(samples);
        (self.totals(), rates)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_counts_reach_the_totals_and_rates_follow_the_samples() {
        let stats = MessageStats::default();
        let vhost = MessageStats::default();
        let mut local = LocalStats::default();
        let t0 = Instant::now();
        stats.sample(t0);
        local.add(Counter::Publish, 10);
        local.add(Counter::Ack, 4);
        local.flush(&stats, &vhost);
        local.flush(&stats, &vhost);
        assert_eq!(stats.get(Counter::Publish), 10);
        assert_eq!(vhost.get(Counter::Publish), 10);
        stats.sample(t0 + Duration::from_secs(2));
        let (totals, rates) = stats.rates();
        assert_eq!(totals[Counter::Ack as usize], 4);
        assert!((rates[Counter::Publish as usize] - 5.0).abs() < 1e-9);
        // Samples older than the window no longer count.
        stats.sample(t0 + Duration::from_secs(20));
        let (_, rates) = stats.rates();
        assert_eq!(rates[Counter::Publish as usize], 0.0);
    }
}
