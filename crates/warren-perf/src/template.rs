//! The bytes of one published message, encoded once.
//!
//! `basic.publish`, the content header and the body frames of a producer's
//! message never change except for the send time in latency mode, so they
//! are encoded once into a block of back-to-back copies (about 64 KiB).
//! Publishing `n` messages is then one `memcpy` of a prefix of that block
//! into the write buffer, plus an 8-byte store per message when stamping.

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
    /// Offset of the body's first byte within one message, when each
    /// message carries its send time there.
    stamp_at: Option<usize>,
}

impl PublishTemplate {
    /// Encodes a message of `size` body bytes for `channel`, published to
    /// `exchange` with `routing_key`, split into body frames of at most
    /// `frame_max` bytes (0: no limit). With `stamp`, `append` writes the
    /// send time into the body's first 8 bytes (`size` must be at least 8).
    pub fn new(
        channel: u16,
        exchange: &str,
        routing_key: &str,
        size: usize,
        persistent: bool,
        stamp: bool,
        frame_max: u32,
    ) -> Self {
        let mut one = BytesMut::new();
        let publish = Method::BasicPublish(BasicPublish {
            exchange: exchange.into(),
            routing_key: routing_key.into(),
            ..Default::default()
        });
        encode_method_frame(&mut one, channel, &publish);
        let mut props = BytesMut::new();
        BasicProperties {
            delivery_mode: persistent.then_some(2),
            ..Default::default()
        }
        .encode(&mut props);
        encode_content_header(&mut one, channel, BASIC_CLASS_ID, size as u64, &props);
        let body_at = one.len() + FRAME_HEADER_SIZE;
        encode_body_frames(&mut one, channel, &vec![0u8; size], frame_max);
        let message_len = one.len();
        let copies = (BLOCK_BYTES / message_len).max(1);
        let mut block = Vec::with_capacity(copies * message_len);
        for _ in 0..copies {
            block.extend_from_slice(&one);
        }
        PublishTemplate {
            block,
            message_len,
            copies,
            stamp_at: (stamp && size >= 8).then_some(body_at),
        }
    }

    /// Bytes one message takes on the wire.
    pub fn message_len(&self) -> usize {
        self.message_len
    }

    /// Appends `n` messages; in stamping mode each carries `stamp` as a
    /// big-endian `u64` at the start of its body.
    pub fn append(&self, out: &mut BytesMut, n: usize, stamp: u64) {
        out.reserve(n * self.message_len);
        let mut left = n;
        while left > 0 {
            let batch = left.min(self.copies);
            let start = out.len();
            out.extend_from_slice(&self.block[..batch * self.message_len]);
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
        let t = PublishTemplate::new(5, "", "perf-0", 20, true, true, 131_072);
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
        let t = PublishTemplate::new(1, "x", "", 10_000, false, false, 4096);
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
}
