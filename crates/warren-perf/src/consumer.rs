//! One consuming channel: follows `basic.deliver` → content header → body
//! frames, counts completed messages, reads the send time from the body in
//! latency mode, and acks every N messages with one `multiple` ack (or, to
//! reject them, one `multiple` nack with requeue=false).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use warren_protocol::{encode_method_frame, BasicAck, BasicConsume, BasicNack, Method};

use crate::frames::u64_at;
use crate::RoleStats;

/// Where the consumer is within a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Content {
    Idle,
    Header,
    Body { left: u64, first: bool },
}

/// A consumer's state inside its connection task.
pub struct Consumer {
    pub channel: u16,
    queue: String,
    tag: String,
    /// Ack every this many messages; 0 consumes with no-ack.
    ack_every: u32,
    /// Nack (requeue=false) instead of acking.
    reject: bool,
    state: Content,
    delivery_tag: u64,
    unacked: u32,
    /// Messages completed since the last `flush`.
    pending: u64,
    /// Latencies (ns) measured since the last `flush`, when stamping.
    latencies: Option<Vec<u64>>,
    stats: Arc<RoleStats>,
    origin: Instant,
    started: bool,
}

impl Consumer {
    pub fn new(
        channel: u16,
        queue: &str,
        tag: String,
        ack_every: u32,
        reject: bool,
        stats: Arc<RoleStats>,
        origin: Instant,
    ) -> Self {
        let latencies = stats.latency.is_some().then(|| Vec::with_capacity(1024));
        Consumer {
            channel,
            queue: queue.into(),
            tag,
            ack_every,
            reject,
            state: Content::Idle,
            delivery_tag: 0,
            unacked: 0,
            pending: 0,
            latencies,
            stats,
            origin,
            started: false,
        }
    }

    /// Appends `basic.consume` (once).
    pub fn start(&mut self, out: &mut BytesMut) {
        if self.started {
            return;
        }
        self.started = true;
        let consume = Method::BasicConsume(BasicConsume {
            queue: self.queue.clone(),
            consumer_tag: self.tag.clone(),
            no_ack: self.ack_every == 0,
            ..Default::default()
        });
        encode_method_frame(out, self.channel, &consume);
    }

    pub fn on_consume_ok(&self) {
        self.stats.consuming.store(true, Ordering::Relaxed);
    }

    pub fn on_deliver(&mut self, delivery_tag: u64) -> Result<(), String> {
        if self.state != Content::Idle {
            return Err("basic.deliver before the previous message was complete".into());
        }
        self.state = Content::Header;
        self.delivery_tag = delivery_tag;
        Ok(())
    }

    /// A content header; returns true when this completed the first message
    /// since the last `flush`.
    pub fn on_header(&mut self, body_size: u64, out: &mut BytesMut) -> Result<bool, String> {
        if self.state != Content::Header {
            return Err("content header without basic.deliver".into());
        }
        if body_size == 0 {
            return Ok(self.complete(out));
        }
        self.state = Content::Body {
            left: body_size,
            first: true,
        };
        Ok(false)
    }

    /// A body frame, received when the wall clock read `now_ns`; returns
    /// true as `on_header` does.
    pub fn on_body(
        &mut self,
        payload: &[u8],
        out: &mut BytesMut,
        now_ns: u64,
    ) -> Result<bool, String> {
        let Content::Body { left, first } = self.state else {
            return Err("body frame without content header".into());
        };
        let len = payload.len() as u64;
        if len > left {
            return Err("body frames longer than the content header announced".into());
        }
        if first {
            if let (Some(latencies), Some(sent)) = (&mut self.latencies, u64_at(payload, 0)) {
                latencies.push(now_ns.saturating_sub(sent));
            }
        }
        if len == left {
            Ok(self.complete(out))
        } else {
            self.state = Content::Body {
                left: left - len,
                first: false,
            };
            Ok(false)
        }
    }

    fn complete(&mut self, out: &mut BytesMut) -> bool {
        self.state = Content::Idle;
        self.pending += 1;
        if self.ack_every > 0 {
            self.unacked += 1;
            if self.unacked >= self.ack_every {
                self.ack(out);
            }
        }
        self.pending == 1
    }

    fn ack(&mut self, out: &mut BytesMut) {
        let ack = if self.reject {
            Method::BasicNack(BasicNack {
                delivery_tag: self.delivery_tag,
                multiple: true,
                requeue: false,
            })
        } else {
            Method::BasicAck(BasicAck {
                delivery_tag: self.delivery_tag,
                multiple: true,
            })
        };
        encode_method_frame(out, self.channel, &ack);
        self.unacked = 0;
    }

    /// Acks (or rejects) what is still unacked (before closing).
    pub fn final_ack(&mut self, out: &mut BytesMut) {
        if self.unacked > 0 {
            self.ack(out);
        }
    }

    /// Publishes the counts (and latencies) gathered since the last call.
    pub fn flush(&mut self, now: Instant) {
        if self.pending > 0 {
            self.stats
                .delivered
                .fetch_add(self.pending, Ordering::Relaxed);
            RoleStats::mark(&self.stats.last_delivery_at, self.origin, now);
            self.pending = 0;
        }
        if let (Some(latencies), Some(shared)) = (&mut self.latencies, &self.stats.latency) {
            if !latencies.is_empty() {
                if let Ok(mut hists) = shared.lock() {
                    for &l in latencies.iter() {
                        hists[0].record(l);
                        hists[1].record(l);
                    }
                }
                latencies.clear();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_protocol::{parse_frame, FramePayload};

    fn consume(reject: bool, messages: u64) -> Vec<Method> {
        let stats = Arc::new(RoleStats::default());
        let mut c = Consumer::new(3, "q", "t".into(), 2, reject, stats, Instant::now());
        let mut out = BytesMut::new();
        for tag in 1..=messages {
            c.on_deliver(tag).expect("deliver");
            c.on_header(0, &mut out).expect("header");
        }
        c.final_ack(&mut out);
        let mut methods = Vec::new();
        while let Some(f) = parse_frame(&mut out, 0).expect("ok") {
            assert_eq!(f.channel, 3);
            if let FramePayload::Method(m) = f.payload {
                methods.push(m);
            }
        }
        methods
    }

    #[test]
    fn acks_every_n_with_multiple() {
        let tags: Vec<_> = consume(false, 5)
            .into_iter()
            .map(|m| match m {
                Method::BasicAck(a) if a.multiple => a.delivery_tag,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(tags, vec![2, 4, 5]);
    }

    #[test]
    fn rejects_with_multiple_nacks_that_do_not_requeue() {
        let tags: Vec<_> = consume(true, 5)
            .into_iter()
            .map(|m| match m {
                Method::BasicNack(n) if n.multiple && !n.requeue => n.delivery_tag,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(tags, vec![2, 4, 5]);
    }
}
