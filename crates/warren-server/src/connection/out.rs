//! [`Out`]: what a connection has to write to its client.
//!
//! Frames are encoded into one growing buffer, except the bodies of large
//! messages: those are queued as slices of the message's own body, so a
//! 1 MiB message goes from the publisher's read buffer to the consumer's
//! socket with no copy in between (the socket write gathers the pieces
//! with `writev`). Small bodies are copied: one contiguous buffer is
//! cheaper to write than many small pieces.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use smallvec::SmallVec;
use warren_core::Message;
use warren_protocol::{
    encode_body_frames, encode_content_header, encode_method_frame, frame_type, Method,
    BASIC_CLASS_ID, FRAME_END, FRAME_OVERHEAD,
};

/// Bodies at least this large are written from the message, not copied.
const SHARED_BODY_MIN: usize = 16 * 1024;
/// Pieces handed to one `writev`.
const MAX_IOV: usize = 64;

/// The output side of a connection: the bytes to write, in order, and the
/// frame size the client accepts.
pub struct Out {
    /// Encoded frames after everything in `queued`.
    pub buf: BytesMut,
    /// Pieces ahead of `buf`: finished parts of it and shared bodies.
    queued: VecDeque<Bytes>,
    queued_len: usize,
    pub frame_max: u32,
}

impl Out {
    pub fn new(capacity: usize, frame_max: u32) -> Self {
        Out {
            buf: BytesMut::with_capacity(capacity),
            queued: VecDeque::new(),
            queued_len: 0,
            frame_max,
        }
    }

    /// Bytes waiting to be written.
    pub fn len(&self) -> usize {
        self.queued_len + self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The next pieces to write, in order (usually one: no allocation).
    pub fn slices(&self) -> SmallVec<[IoSlice<'_>; 4]> {
        let mut v: SmallVec<[IoSlice<'_>; 4]> = self
            .queued
            .iter()
            .take(MAX_IOV - 1)
            .map(|b| IoSlice::new(b))
            .collect();
        if self.queued.len() < MAX_IOV && !self.buf.is_empty() {
            v.push(IoSlice::new(&self.buf));
        }
        v
    }

    /// `n` bytes were written.
    pub fn advance(&mut self, mut n: usize) {
        while n > 0 {
            let Some(front) = self.queued.front_mut() else {
                self.buf.advance(n);
                return;
            };
            let take = n.min(front.len());
            front.advance(take);
            self.queued_len -= take;
            n -= take;
            if front.is_empty() {
                self.queued.pop_front();
            }
        }
    }

    /// Everything still to write, as one buffer (for a last write).
    pub fn take_all(&mut self) -> Vec<u8> {
        let mut all = Vec::with_capacity(self.len());
        for piece in self.queued.drain(..) {
            all.extend_from_slice(&piece);
        }
        all.extend_from_slice(&self.buf);
        self.buf.clear();
        self.queued_len = 0;
        all
    }

    /// Whether the buffer is empty but holds more memory than it should
    /// keep.
    pub fn is_idle_and_large(&self, keep: usize) -> bool {
        self.is_empty() && self.buf.capacity() > keep
    }

    pub fn method(&mut self, channel: u16, method: impl Into<Method>) {
        encode_method_frame(&mut self.buf, channel, &method.into());
    }

    /// A content-bearing method followed by the message's header and body.
    pub fn content(&mut self, channel: u16, method: impl Into<Method>, msg: &Message) {
        encode_method_frame(&mut self.buf, channel, &method.into());
        self.message(channel, msg);
    }

    /// basic.deliver with the message, encoded without copying strings.
    pub fn deliver(
        &mut self,
        channel: u16,
        consumer_tag: &str,
        delivery_tag: u64,
        redelivered: bool,
        msg: &Message,
    ) {
        warren_protocol::encode_basic_deliver(
            &mut self.buf,
            channel,
            consumer_tag,
            delivery_tag,
            redelivered,
            &msg.exchange,
            &msg.routing_key,
        );
        self.message(channel, msg);
    }

    /// The content header and body frames of a message.
    fn message(&mut self, channel: u16, msg: &Message) {
        encode_content_header(
            &mut self.buf,
            channel,
            BASIC_CLASS_ID,
            msg.body_size(),
            &msg.properties,
        );
        if msg.body.len() < SHARED_BODY_MIN {
            encode_body_frames(&mut self.buf, channel, &msg.body, self.frame_max);
            return;
        }
        let chunk = if self.frame_max == 0 {
            msg.body.len()
        } else {
            (self.frame_max as usize)
                .saturating_sub(FRAME_OVERHEAD)
                .max(1)
        };
        let mut at = 0;
        while at < msg.body.len() {
            let end = (at + chunk).min(msg.body.len());
            self.buf.put_u8(frame_type::BODY);
            self.buf.put_u16(channel);
            self.buf.put_u32((end - at) as u32);
            let framed = self.buf.split().freeze();
            self.queue(framed);
            self.queue(msg.body.slice(at..end));
            self.buf.put_u8(FRAME_END);
            at = end;
        }
    }

    fn queue(&mut self, piece: Bytes) {
        if !piece.is_empty() {
            self.queued_len += piece.len();
            self.queued.push_back(piece);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_protocol::{parse_frame, FramePayload};

    fn message(body: Bytes) -> Message {
        Message::new(String::new(), "q".into(), Bytes::from_static(&[0, 0]), body)
            .expect("properties")
    }

    /// Writes `out` in pieces of `step` bytes, as short writes would.
    fn drain(out: &mut Out, step: usize) -> BytesMut {
        let mut wire = BytesMut::new();
        while !out.is_empty() {
            let slices = out.slices();
            let mut n = 0;
            for s in &slices {
                let take = (step - n).min(s.len());
                wire.extend_from_slice(&s[..take]);
                n += take;
                if n == step {
                    break;
                }
            }
            drop(slices);
            out.advance(n);
        }
        wire
    }

    #[test]
    fn large_bodies_are_shared_and_frames_come_out_in_order() {
        let body = Bytes::from((0..200_000u32).map(|i| i as u8).collect::<Vec<u8>>());
        for step in [1, 7, 4096, 1 << 20] {
            let mut out = Out::new(1024, 131_072);
            out.deliver(1, "ctag", 5, false, &message(body.clone()));
            out.deliver(1, "ctag", 6, false, &message(Bytes::from_static(b"small")));
            assert_eq!(
                out.len(),
                out.slices().iter().map(|s| s.len()).sum::<usize>()
            );
            let mut wire = drain(&mut out, step);
            let mut bodies = Vec::new();
            while let Some(frame) = parse_frame(&mut wire, 131_072).expect("valid frames") {
                if let FramePayload::Body(b) = frame.payload {
                    bodies.push(b);
                }
            }
            assert!(wire.is_empty(), "step {step}");
            let first: Vec<u8> = bodies[..2].iter().flat_map(|b| b.to_vec()).collect();
            assert_eq!(first, body.to_vec(), "step {step}");
            assert_eq!(&bodies[2][..], b"small", "step {step}");
        }
    }
}
