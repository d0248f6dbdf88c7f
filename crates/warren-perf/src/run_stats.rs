//! The stats of every producer and consumer of a run, and their sums.

use std::sync::Arc;
use std::time::Instant;

use crate::{Histogram, RoleStats};

/// Sums over all producers and consumers at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub published: u64,
    pub confirmed: u64,
    pub nacked: u64,
    pub delivered: u64,
}

/// Every role's counters, and the instant their `*_at` fields count from.
#[derive(Debug)]
pub struct RunStats {
    pub producers: Vec<Arc<RoleStats>>,
    pub consumers: Vec<Arc<RoleStats>>,
    pub origin: Instant,
}

impl RunStats {
    pub fn new(producers: usize, consumers: usize, latency: bool) -> Self {
        RunStats {
            producers: (0..producers)
                .map(|_| Arc::new(RoleStats::new(false)))
                .collect(),
            consumers: (0..consumers)
                .map(|_| Arc::new(RoleStats::new(latency)))
                .collect(),
            origin: Instant::now(),
        }
    }

    pub fn totals(&self) -> Totals {
        let sum = |roles: &[Arc<RoleStats>], f: fn(&RoleStats) -> u64| -> u64 {
            roles.iter().map(|r| f(r)).sum()
        };
        Totals {
            published: sum(&self.producers, |r| RoleStats::get(&r.published)),
            confirmed: sum(&self.producers, |r| RoleStats::get(&r.confirmed)),
            nacked: sum(&self.producers, |r| RoleStats::get(&r.nacked)),
            delivered: sum(&self.consumers, |r| RoleStats::get(&r.delivered)),
        }
    }

    /// Messages each producer has published, in plan order.
    pub fn published_by_producer(&self) -> Vec<u64> {
        self.producers
            .iter()
            .map(|r| RoleStats::get(&r.published))
            .collect()
    }

    /// Whether every producer has finished (vacuously true with none).
    pub fn producers_done(&self) -> bool {
        self.producers
            .iter()
            .all(|r| RoleStats::get(&r.done_at) != 0)
    }

    /// The latest time a producer finished.
    pub fn last_producer_done(&self) -> Option<Instant> {
        self.producers
            .iter()
            .filter_map(|r| RoleStats::instant(&r.done_at, self.origin))
            .max()
    }

    /// The latest time a consumer received a message.
    pub fn last_delivery(&self) -> Option<Instant> {
        self.consumers
            .iter()
            .filter_map(|r| RoleStats::instant(&r.last_delivery_at, self.origin))
            .max()
    }

    /// Whether every consumer's `basic.consume-ok` has arrived.
    pub fn all_consuming(&self) -> bool {
        self.consumers
            .iter()
            .all(|r| r.consuming.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// All latencies of the run (`interval == false`), or those since the
    /// last call with `interval == true`, which then starts a new interval.
    pub fn latencies(&self, interval: bool) -> Histogram {
        let mut all = Histogram::new();
        for r in &self.consumers {
            if let Some(Ok(mut hists)) = r.latency.as_ref().map(|m| m.lock()) {
                let h = &mut hists[usize::from(interval)];
                all.merge(h);
                if interval {
                    h.reset();
                }
            }
        }
        all
    }
}
