//! Message counters as messages flow, for the management API's
//! `message_stats` and the Prometheus metrics.
//!
//! Each connection counts in plain integers of its own ([`LocalStats`])
//! and adds them to the broker's atomics once per read or batch of events,
//! so the message path pays no shared write per message. Rates come from
//! samples of the totals taken once a second ([`MessageStats::sample`]),
//! over the last five seconds as RabbitMQ's are.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

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
}

impl Counter {
    pub const ALL: [Counter; 11] = [
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
        }
    }
}

const N: usize = Counter::ALL.len();

/// Totals since the broker started.
pub type Totals = [u64; N];

/// A connection's counts not yet added to the broker's.
#[derive(Debug, Default)]
pub struct LocalStats {
    counts: [u64; N],
    dirty: bool,
}

impl LocalStats {
    pub fn add(&mut self, c: Counter, n: u64) {
        self.counts[c as usize] += n;
        self.dirty = true;
    }

    /// Adds the counts to the broker's and starts again from zero.
    pub fn flush(&mut self, into: &MessageStats) {
        if !self.dirty {
            return;
        }
        for (i, n) in self.counts.iter_mut().enumerate() {
            if *n > 0 {
                into.totals[i].fetch_add(*n, Ordering::Relaxed);
                *n = 0;
            }
        }
        self.dirty = false;
    }
}

/// How far back rates look.
const RATE_WINDOW: Duration = Duration::from_secs(5);

/// The broker's message counters and their recent samples.
#[derive(Debug)]
pub struct MessageStats {
    totals: [AtomicU64; N],
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
        std::array::from_fn(|i| self.totals[i].load(Ordering::Relaxed))
    }

    pub fn get(&self, c: Counter) -> u64 {
        self.totals[c as usize].load(Ordering::Relaxed)
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
        let mut local = LocalStats::default();
        let t0 = Instant::now();
        stats.sample(t0);
        local.add(Counter::Publish, 10);
        local.add(Counter::Ack, 4);
        local.flush(&stats);
        local.flush(&stats);
        assert_eq!(stats.get(Counter::Publish), 10);
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
