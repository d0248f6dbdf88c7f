//! Counters that a connection task updates and the runner reads.
//!
//! Each producer and consumer has its own [`RoleStats`], aligned to a cache
//! line so that tasks on different threads never share one. Tasks add to
//! them once per batch of messages, not once per message.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use crate::Histogram;

/// What one producer or consumer has done so far.
#[repr(align(128))]
#[derive(Debug, Default)]
pub struct RoleStats {
    pub published: AtomicU64,
    pub confirmed: AtomicU64,
    pub nacked: AtomicU64,
    pub delivered: AtomicU64,
    /// When a producer finished (all published, confirmed and seen by the
    /// broker), as nanoseconds since the run's origin plus one; 0 = not yet.
    pub done_at: AtomicU64,
    /// When a consumer last received a message, in the same units.
    pub last_delivery_at: AtomicU64,
    /// A consumer's `basic.consume-ok` has arrived.
    pub consuming: AtomicBool,
    /// End-to-end latencies (ns) in latency mode: for the whole run, and
    /// since the last progress line.
    pub latency: Option<Mutex<[Histogram; 2]>>,
}

impl RoleStats {
    /// Stats for a consumer that records latencies, or for any other role.
    pub fn new(latency: bool) -> Self {
        RoleStats {
            latency: latency.then(|| Mutex::new([Histogram::new(), Histogram::new()])),
            ..Default::default()
        }
    }

    /// Stores `at` (relative to `origin`) into a `*_at` field.
    pub fn mark(field: &AtomicU64, origin: Instant, at: Instant) {
        let ns = at.saturating_duration_since(origin).as_nanos() as u64;
        field.store(ns + 1, Ordering::Relaxed);
    }

    /// Reads a `*_at` field: `None` if never marked.
    pub fn instant(field: &AtomicU64, origin: Instant) -> Option<Instant> {
        match field.load(Ordering::Relaxed) {
            0 => None,
            ns => Some(origin + std::time::Duration::from_nanos(ns - 1)),
        }
    }

    pub fn get(field: &AtomicU64) -> u64 {
        field.load(Ordering::Relaxed)
    }
}
