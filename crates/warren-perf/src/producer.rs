//! One publishing channel: how many messages it may put into the write
//! buffer now (confirm window, rate, remaining count), and what the
//! broker's confirms settle.
//!
//! A bounded producer ends with a passive `queue.declare` (or
//! `exchange.declare` for fanout) on its channel: the broker answers it only
//! after handling every publish sent before it, so the reply marks the
//! moment all of them are in the queue, with or without confirms.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use warren_protocol::{encode_method_frame, ExchangeDeclare, Method, QueueDeclare};

use crate::{ConfirmTracker, PublishTemplate, RateLimiter, RoleStats};

/// Where the final passive declare stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sync {
    NotSent,
    Sent,
    Answered,
}

/// A producer's state inside its connection task.
pub struct Producer {
    pub channel: u16,
    template: PublishTemplate,
    /// A different first message (`--first-expiration`), until it is sent.
    first: Option<PublishTemplate>,
    /// Messages still to publish; `None` when unbounded.
    remaining: Option<u64>,
    confirms: Option<(ConfirmTracker, u64)>,
    rate_per_sec: Option<f64>,
    /// How long after the start of publishing a rate-limited producer
    /// sends its first message.
    phase: Duration,
    rate: Option<RateLimiter>,
    /// False while the broker has paused the channel (channel.flow).
    flow: bool,
    sync: Sync,
    done: bool,
    /// The passive declare that ends a bounded run.
    sync_method: Method,
    stats: Arc<RoleStats>,
    origin: Instant,
}

impl Producer {
    /// A producer on `channel` that publishes `template` messages;
    /// `target` is the queue name (or, with `fanout`, the exchange).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        channel: u16,
        template: PublishTemplate,
        target: &str,
        fanout: bool,
        messages: Option<u64>,
        confirm_window: u32,
        rate: Option<f64>,
        stats: Arc<RoleStats>,
        origin: Instant,
    ) -> Self {
        let sync_method = if fanout {
            Method::ExchangeDeclare(ExchangeDeclare {
                exchange: target.into(),
                kind: "fanout".into(),
                passive: true,
                ..Default::default()
            })
        } else {
            Method::QueueDeclare(QueueDeclare {
                queue: target.into(),
                passive: true,
                ..Default::default()
            })
        };
        Producer {
            channel,
            template,
            first: None,
            remaining: messages,
            confirms: (confirm_window > 0).then(|| (ConfirmTracker::new(), confirm_window as u64)),
            rate_per_sec: rate,
            phase: Duration::ZERO,
            rate: rate.map(|r| RateLimiter::new(r, Instant::now())),
            flow: true,
            sync: Sync::NotSent,
            done: false,
            sync_method,
            stats,
            origin,
        }
    }

    /// Delays a rate-limited producer's first message by `phase` after the
    /// start of publishing.
    pub fn with_phase(mut self, phase: Duration) -> Self {
        self.phase = phase;
        self
    }

    /// Publishes `first` as the first message, before the others.
    pub fn with_first(mut self, first: Option<PublishTemplate>) -> Self {
        self.first = first;
        self
    }

    /// Restarts the rate limiter's clock (when publishing begins).
    pub fn start(&mut self, now: Instant) {
        let first = now.checked_add(self.phase).unwrap_or(now);
        self.rate = self.rate_per_sec.map(|r| RateLimiter::new(r, first));
    }

    /// How many messages may go out now, at most `limit`.
    fn credit(&mut self, now: Instant, limit: u64) -> u64 {
        if !self.flow {
            return 0;
        }
        let mut n = limit;
        if let Some(left) = self.remaining {
            n = n.min(left);
        }
        if let Some((tracker, window)) = &self.confirms {
            n = n.min(window.saturating_sub(tracker.outstanding()));
        }
        if n > 0 {
            if let Some(rate) = &mut self.rate {
                n = n.min(rate.available(now));
            }
        }
        n
    }

    /// Whether `fill` would add anything now.
    pub fn can_publish(&mut self, now: Instant) -> bool {
        self.credit(now, 1) > 0 || (self.remaining == Some(0) && self.sync == Sync::NotSent)
    }

    /// Appends as many messages as allowed and as fit in `room` bytes (at
    /// least one if `room` is smaller than a message but not zero), each
    /// stamped with `stamp`. Returns the bytes appended.
    pub fn fill(&mut self, out: &mut BytesMut, room: usize, now: Instant, stamp: u64) -> usize {
        let before = out.len();
        let fit = (room / self.template.message_len()).max(usize::from(room > 0)) as u64;
        let n = self.credit(now, fit);
        if n > 0 {
            let mut rest = n as usize;
            if let Some(mut first) = self.first.take() {
                first.append(out, 1, stamp);
                rest -= 1;
            }
            self.template.append(out, rest, stamp);
            if let Some((tracker, _)) = &mut self.confirms {
                tracker.published(n);
            }
            if let Some(rate) = &mut self.rate {
                rate.spend(n);
            }
            if let Some(left) = &mut self.remaining {
                *left -= n;
            }
            self.stats.published.fetch_add(n, Ordering::Relaxed);
        }
        if self.remaining == Some(0) && self.sync == Sync::NotSent {
            encode_method_frame(out, self.channel, &self.sync_method);
            self.sync = Sync::Sent;
        }
        out.len() - before
    }

    /// When the rate limiter will next allow a message, if that is all
    /// that holds this producer back.
    pub fn wake_at(&self) -> Option<Instant> {
        let rate = self.rate.as_ref()?;
        if !self.flow || self.remaining == Some(0) {
            return None;
        }
        if let Some((tracker, window)) = &self.confirms {
            if tracker.outstanding() >= *window {
                return None;
            }
        }
        Some(rate.next_at())
    }

    /// A `basic.ack` (or with `nack`, a `basic.nack`) from the broker.
    pub fn on_confirm(&mut self, tag: u64, multiple: bool, nack: bool) -> Result<(), String> {
        let Some((tracker, _)) = &mut self.confirms else {
            return Err("confirm on a channel not in confirm mode".into());
        };
        let settled = tracker.settle(tag, multiple)?;
        let counter = if nack {
            &self.stats.nacked
        } else {
            &self.stats.confirmed
        };
        counter.fetch_add(settled, Ordering::Relaxed);
        self.check_done();
        Ok(())
    }

    /// The reply to the final passive declare.
    pub fn on_sync_reply(&mut self) {
        if self.sync == Sync::Sent {
            self.sync = Sync::Answered;
            self.check_done();
        }
    }

    /// `channel.flow` from the broker.
    pub fn set_flow(&mut self, active: bool) {
        self.flow = active;
    }

    fn check_done(&mut self) {
        let confirmed = match &self.confirms {
            Some((tracker, _)) => tracker.outstanding() == 0,
            None => true,
        };
        if self.sync == Sync::Answered && confirmed && !self.done {
            self.done = true;
            RoleStats::mark(&self.stats.done_at, self.origin, Instant::now());
        }
    }
}
