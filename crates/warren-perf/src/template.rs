//! The bytes of one published message, encoded once.
//!
//! `basic.publish`, the content header and the body frames of a producer's
//! message never change except for the send time in latency mode, so they
//! are encoded once into a block of back-to-back copies (about 64 KiB).
//! Publishing `n` messages is then one `memcpy` of a prefix of that block
//! into the write buffer, plus an 8-byte store per message when stamping.
//! With priorities, the block holds the messages of each priority in turn
//! (0, 1, ..., N - 1, 0, ...) and each append starts where the last ended.

use bytes::BytesMut;
use warren_protocol::{
    encode_body_frames, encode_content_header, encode_method_frame, BasicProperties, BasicPublish,
    Method, BASIC_CLASS_ID, FRAME_HEADER_SIZE,
};

/// How many bytes of copies the block holds (at least one message).
const BLOCK_BYTES: usize = 64 * 1024;

/// A producer's pre-encoded message.
pub struct PublishTemplate {
    block: Vec<u8>,
    message_len: usize,
    copies: usize,
    /// Messages in one cycle of priorities (1 without priorities).
    cycle: usize,
    /// Where in the cycle the next message starts.
    next: usize,
    /// Offset of the body's first byte within one message, when each
    /// message carries its send time there.
    stamp_at: Option<usize>,
}

impl PublishTemplate {
    /// Encodes a message of `size` body bytes for `channel`, published to
    /// `exchange` with `routing_key`, split into body frames of at most
    /// `frame_max` bytes (0: no limit). With `stamp`, `append` writes the
    /// send time into the body's first 8 bytes (`size` must be at least 8).
    /// With `priorities` N, message i carries priority i mod N; every
    /// message carries `expiration`, if given.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        channel: u16,
        exchange: &str,
        routing_key: &str,
        size: usize,
        persistent: bool,
        stamp: bool,
        frame_max: u32,
        priorities: Option<u8>,
        expiration: Option<&str>,
    ) -> Self {
        let publish = Method::BasicPublish(BasicPublish {
            exchange: exchange.into(),
            routing_key: routing_key.into(),
            ..Default::default()
        });
        let body = vec![0u8; size];
        let cycle = priorities.map_or(1, |n| n.max(1) as usize);
        let mut body_at = 0;
        // One encoded message per priority; setting the priority adds the
        // same one byte to each, so all have the same length.
        let variants: Vec<BytesMut> = (0..cycle)
            .map(|p| {
                let mut one = BytesMut::new();
                encode_method_frame(&mut one, channel, &publish);
                let mut props = BytesMut::new();
                BasicProperties {
                    delivery_mode: persistent.then_some(2),
                    priority: priorities.map(|_| p as u8),
                    expiration: expiration.map(str::to_string),
                    ..Default::default()
                }
                .encode(&mut props);
                encode_content_header(&mut one, channel, BASIC_CLASS_ID, size as u64, &props);
                body_at = one.len() + FRAME_HEADER_SIZE;
                encode_body_frames(&mut one, channel, &body, frame_max);
                one
            })
            .collect();
        let message_len = variants[0].len();
        let copies = (BLOCK_BYTES / message_len).max(1);
        // `cycle - 1` more, so that a batch of `copies` fits from any start.
        let total = copies + cycle - 1;
        let mut block = Vec::with_capacity(total * message_len);
        for m in 0..total {
            block.extend_from_slice(&variants[m % cycle]);
        }
        PublishTemplate {
            block,
            message_len,
            copies,
            cycle,
            next: 0,
            stamp_at: (stamp && size >= 8).then_some(body_at),
        }
    }

    /// Bytes one message takes on the wire.
    pub fn message_len(&self) -> usize {
        self.message_len
    }

    /// Appends `n` messages; in stamping mode each carries `stamp` as a
    /// big-endian `u64` at the start of its body.
    pub fn append(&mut self, out: &mut BytesMut, n: usize, stamp: u64) {
        out.reserve(n * self.message_len);
        let mut left = n;
        while left > 0 {
            let batch = left.min(self.copies);
            let start = out.len();
            let from = self.next * self.message_len;
            out.extend_from_slice(&self.block[from..from + batch * self.message_len]);
            self.next = (self.next + batch) % self.cycle;
            if let Some(at) = self.stamp_at {
                let bytes = stamp.to_be_bytes();
                for i in 0..batch {
                    let p = start + i * self.message_len + at;
                    out[p..p + 8].copy_from_slice(&bytes);
                }
            }
            left -= batch;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_protocol::{parse_frame, FramePayload};

    #[test]
    fn appended_messages_decode_as_publish_header_body() {
        let mut t = PublishTemplate::new(5, "", "perf-0", 20, true, true, 131_072, None, None);
        let mut out = BytesMut::new();
        t.append(&mut out, 3, 0x0102_0304_0506_0708);
        assert_eq!(out.len(), 3 * t.message_len());
        for _ in 0..3 {
            let f = parse_frame(&mut out, 0).expect("ok").expect("frame");
            assert_eq!(f.channel, 5);
            match f.payload {
                FramePayload::Method(Method::BasicPublish(p)) => {
                    assert_eq!(p.routing_key, "perf-0")
                }
                other => panic!("{other:?}"),
            }
            match parse_frame(&mut out, 0)
                .expect("ok")
                .expect("frame")
                .payload
            {
                FramePayload::Header(h) => {
                    assert_eq!(h.body_size, 20);
                    let props = BasicProperties::decode(&h.properties).expect("props");
                    assert!(props.is_persistent());
                }
                other => panic!("{other:?}"),
            }
            match parse_frame(&mut out, 0)
                .expect("ok")
                .expect("frame")
                .payload
            {
                FramePayload::Body(b) => {
                    assert_eq!(b.len(), 20);
                    assert_eq!(&b[..8], &[1, 2, 3, 4, 5, 6, 7, 8]);
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(out.is_empty());
    }

    #[test]
    fn large_bodies_are_split_and_large_batches_repeat_the_block() {
        let mut t = PublishTemplate::new(1, "x", "", 10_000, false, false, 4096, None, None);
        let mut out = BytesMut::new();
        let n = t.copies * 2 + 1;
        t.append(&mut out, n, 0);
        assert_eq!(out.len(), n * t.message_len());
        let mut bodies = 0;
        while let Some(f) = parse_frame(&mut out, 4096).expect("ok") {
            if let FramePayload::Body(b) = f.payload {
                assert!(b.len() <= 4096 - 8);
                bodies += b.len();
            }
        }
        assert_eq!(bodies, n * 10_000);
    }

    #[test]
    fn priorities_cycle_across_appends() {
        let mut t =
            PublishTemplate::new(1, "", "q", 16, false, false, 131_072, Some(3), Some("1500"));
        let mut out = BytesMut::new();
        // Batches that end mid-cycle and one longer than the block.
        for n in [2, 1, 4, t.copies + 2] {
            t.append(&mut out, n, 0);
        }
        let mut seen = Vec::new();
        while let Some(f) = parse_frame(&mut out, 0).expect("ok") {
            if let FramePayload::Header(h) = f.payload {
                let props = BasicProperties::decode(&h.properties).expect("props");
                assert_eq!(props.expiration.as_deref(), Some("1500"));
                seen.push(props.priority.expect("priority"));
            }
        }
        assert_eq!(seen.len(), 7 + t.copies + 2);
        for (i, p) in seen.iter().enumerate() {
            assert_eq!(*p as usize, i % 3, "message {i}");
        }
    }
}
