//! The channels of one connection and what arrives for them.
//!
//! [`Channels`] owns the connection's write buffer and its producers and
//! consumers (one per channel). The connection task hands it every frame it
//! reads; the hot methods (`basic.deliver`, `basic.ack`, `basic.nack`) and
//! content frames are read in place from the payload, everything else is
//! decoded with `warren_protocol::Method::decode`.

use std::time::Instant;

use bytes::BytesMut;
use warren_protocol::{
    encode_method_frame, frame_type, ChannelCloseOk, ChannelFlowOk, ConnectionClose,
    ConnectionCloseOk, Method,
};

use crate::frames::{u64_at, FrameHead};
use crate::{Consumer, PerfError, Producer};

/// Producers stop adding to the write buffer once it holds this much, so one
/// write takes about this many bytes.
const FILL_TARGET: usize = 64 * 1024;

/// Which role a channel number belongs to.
#[derive(Debug, Clone, Copy)]
enum Slot {
    Unused,
    Producer(usize),
    Consumer(usize),
}

/// What a frame meant for the connection as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Continue,
    /// The closing handshake is over.
    Closed,
}

/// A connection's channels and write buffer.
pub struct Channels {
    /// Bytes waiting to be written.
    pub out: BytesMut,
    producers: Vec<Producer>,
    consumers: Vec<Consumer>,
    slots: Vec<Slot>,
    /// Consumers that completed messages since the last `flush_stats`.
    dirty: Vec<usize>,
    next_producer: usize,
    /// False once closing: arrivals are no longer counted.
    counting: bool,
    addr: String,
}

impl Channels {
    pub fn new(addr: String, producers: Vec<Producer>, consumers: Vec<Consumer>) -> Self {
        let highest = producers
            .iter()
            .map(|p| p.channel)
            .chain(consumers.iter().map(|c| c.channel))
            .max()
            .unwrap_or(0);
        let mut slots = vec![Slot::Unused; highest as usize + 1];
        for (i, p) in producers.iter().enumerate() {
            slots[p.channel as usize] = Slot::Producer(i);
        }
        for (i, c) in consumers.iter().enumerate() {
            slots[c.channel as usize] = Slot::Consumer(i);
        }
        Channels {
            out: BytesMut::with_capacity(2 * FILL_TARGET),
            producers,
            consumers,
            slots,
            dirty: Vec::new(),
            next_producer: 0,
            counting: true,
            addr,
        }
    }

    /// Starts every consumer (appends their `basic.consume`).
    pub fn start_consuming(&mut self) {
        for c in &mut self.consumers {
            c.start(&mut self.out);
        }
    }

    /// Starts the producers' clocks.
    pub fn start_publishing(&mut self, now: Instant) {
        for p in &mut self.producers {
            p.start(now);
        }
    }

    /// Lets the producers, in turn, top the write buffer up to about
    /// `FILL_TARGET` bytes; `stamp` is the send time for latency mode.
    pub fn fill(&mut self, now: Instant, stamp: u64) {
        let n = self.producers.len();
        if !self.counting || n == 0 {
            return;
        }
        for k in 0..n {
            let room = FILL_TARGET.saturating_sub(self.out.len());
            if room == 0 {
                break;
            }
            let i = (self.next_producer + k) % n;
            self.producers[i].fill(&mut self.out, room, now, stamp);
        }
        self.next_producer = (self.next_producer + 1) % n;
    }

    /// Whether `fill` would add anything now.
    pub fn can_publish(&mut self, now: Instant) -> bool {
        self.counting
            && self.out.len() < FILL_TARGET
            && self.producers.iter_mut().any(|p| p.can_publish(now))
    }

    /// The earliest moment a rate-limited producer may publish again.
    pub fn wake_at(&self) -> Option<Instant> {
        self.producers.iter().filter_map(|p| p.wake_at()).min()
    }

    /// Handles one frame whose payload is `payload`; `now_ns` is the wall
    /// clock when it was read (for latencies).
    pub fn on_frame(
        &mut self,
        head: FrameHead,
        payload: &[u8],
        now_ns: u64,
    ) -> Result<Event, PerfError> {
        let slot = self
            .slots
            .get(head.channel as usize)
            .copied()
            .unwrap_or(Slot::Unused);
        match head.kind {
            frame_type::METHOD => {
                if payload.len() < 4 {
                    return Err(self.protocol("method frame shorter than 4 bytes"));
                }
                let id = (
                    u16::from_be_bytes([payload[0], payload[1]]),
                    u16::from_be_bytes([payload[2], payload[3]]),
                );
                match (id, slot) {
                    ((60, 60), Slot::Consumer(i)) => {
                        if self.counting {
                            let tag_at = 5 + *payload.get(4).unwrap_or(&0) as usize;
                            let tag = u64_at(payload, tag_at)
                                .ok_or_else(|| self.protocol("truncated basic.deliver"))?;
                            self.consumers[i]
                                .on_deliver(tag)
                                .map_err(|e| self.protocol(&e))?;
                        }
                        Ok(Event::Continue)
                    }
                    ((60, 80) | (60, 120), Slot::Producer(i)) => {
                        if self.counting {
                            let tag = u64_at(payload, 4)
                                .ok_or_else(|| self.protocol("truncated basic.ack"))?;
                            let multiple = payload.get(12).is_some_and(|b| b & 1 != 0);
                            self.producers[i]
                                .on_confirm(tag, multiple, id.1 == 120)
                                .map_err(|e| self.protocol(&e))?;
                        }
                        Ok(Event::Continue)
                    }
                    _ => {
                        let method =
                            Method::decode(payload).map_err(|e| self.protocol(&e.to_string()))?;
                        self.on_method(head.channel, slot, method)
                    }
                }
            }
            frame_type::HEADER => {
                if let (true, Slot::Consumer(i)) = (self.counting, slot) {
                    let size = u64_at(payload, 4)
                        .ok_or_else(|| self.protocol("truncated content header"))?;
                    let first = self.consumers[i]
                        .on_header(size, &mut self.out)
                        .map_err(|e| self.protocol(&e))?;
                    if first {
                        self.dirty.push(i);
                    }
                }
                Ok(Event::Continue)
            }
            frame_type::BODY => {
                if let (true, Slot::Consumer(i)) = (self.counting, slot) {
                    let first = self.consumers[i]
                        .on_body(payload, &mut self.out, now_ns)
                        .map_err(|e| self.protocol(&e))?;
                    if first {
                        self.dirty.push(i);
                    }
                }
                Ok(Event::Continue)
            }
            _ => Ok(Event::Continue),
        }
    }

    fn on_method(&mut self, channel: u16, slot: Slot, method: Method) -> Result<Event, PerfError> {
        match method {
            Method::ConnectionClose(close) => {
                encode_method_frame(&mut self.out, 0, &ConnectionCloseOk {}.into());
                if self.counting {
                    Err(PerfError::ConnectionClosed {
                        addr: self.addr.clone(),
                        code: close.reply_code,
                        text: close.reply_text,
                    })
                } else {
                    Ok(Event::Closed)
                }
            }
            Method::ConnectionCloseOk(_) => Ok(Event::Closed),
            Method::ChannelClose(close) => {
                encode_method_frame(&mut self.out, channel, &ChannelCloseOk {}.into());
                Err(PerfError::ChannelClosed {
                    addr: self.addr.clone(),
                    channel,
                    code: close.reply_code,
                    text: close.reply_text,
                })
            }
            Method::BasicCancel(cancel) if self.counting => Err(PerfError::Cancelled {
                addr: self.addr.clone(),
                tag: cancel.consumer_tag,
            }),
            Method::BasicConsumeOk(_) => {
                if let Slot::Consumer(i) = slot {
                    self.consumers[i].on_consume_ok();
                }
                Ok(Event::Continue)
            }
            Method::QueueDeclareOk(_) | Method::ExchangeDeclareOk(_) => {
                if let Slot::Producer(i) = slot {
                    self.producers[i].on_sync_reply();
                }
                Ok(Event::Continue)
            }
            Method::ChannelFlow(flow) => {
                if let Slot::Producer(i) = slot {
                    self.producers[i].set_flow(flow.active);
                }
                let ok = ChannelFlowOk {
                    active: flow.active,
                };
                encode_method_frame(&mut self.out, channel, &ok.into());
                Ok(Event::Continue)
            }
            Method::ConnectionBlocked(blocked) => {
                eprintln!("note: {} blocked publishing: {}", self.addr, blocked.reason);
                Ok(Event::Continue)
            }
            Method::ConnectionUnblocked(_) => {
                eprintln!("note: {} unblocked publishing", self.addr);
                Ok(Event::Continue)
            }
            _ => Ok(Event::Continue),
        }
    }

    /// Publishes the consumers' counts gathered since the last call.
    pub fn flush_stats(&mut self, now: Instant) {
        for i in self.dirty.drain(..) {
            self.consumers[i].flush(now);
        }
    }

    /// Stops counting, acks what is unacked and appends `connection.close`.
    pub fn begin_close(&mut self, now: Instant) {
        self.flush_stats(now);
        self.counting = false;
        for c in &mut self.consumers {
            c.final_ack(&mut self.out);
        }
        let close = ConnectionClose {
            reply_code: 200,
            reply_text: "perf run finished".into(),
            ..Default::default()
        };
        encode_method_frame(&mut self.out, 0, &close.into());
    }

    fn protocol(&self, what: &str) -> PerfError {
        PerfError::Protocol {
            addr: self.addr.clone(),
            what: what.to_string(),
        }
    }
}
