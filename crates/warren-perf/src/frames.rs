//! The read side of a connection: one buffer that frames are split off in
//! place, with no allocation or copy per frame.
//!
//! [`FrameReader::next_frame`] returns a frame's type, channel and the position of
//! its payload in the buffer; the hot path reads the few fields it needs
//! (delivery tag, body size, the send time in the body) straight from there,
//! and everything rarer goes through `warren_protocol::Method::decode`.

use std::io;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use warren_protocol::{frame_type, FRAME_END, FRAME_HEADER_SIZE, FRAME_OVERHEAD};

use crate::PerfError;

/// The buffer size: large enough that one read takes many small messages.
const INITIAL_CAPACITY: usize = 256 * 1024;
/// Compact the buffer when less than this much room is left after its data.
const MIN_READ: usize = 32 * 1024;
/// The largest frame accepted before `connection.tune` (AMQP caps those at
/// 4 KiB; this leaves room for brokers that send more).
const HANDSHAKE_FRAME_MAX: usize = 128 * 1024;
/// The largest frame accepted when the broker tunes `frame_max` to 0 (no
/// limit).
const UNLIMITED_FRAME_MAX: usize = 256 * 1024 * 1024;

/// Where one complete frame lies in the reader's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHead {
    pub kind: u8,
    pub channel: u16,
    start: usize,
    end: usize,
}

/// A read buffer holding `buf[start..end]` of not yet consumed bytes.
pub struct FrameReader {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    frame_max: usize,
}

impl Default for FrameReader {
    fn default() -> Self {
        FrameReader::new()
    }
}

impl FrameReader {
    pub fn new() -> Self {
        FrameReader {
            buf: vec![0; INITIAL_CAPACITY],
            start: 0,
            end: 0,
            frame_max: HANDSHAKE_FRAME_MAX,
        }
    }

    /// Limits frames to the negotiated `frame_max` (overhead included; 0
    /// means no limit).
    pub fn set_frame_max(&mut self, frame_max: u32) {
        self.frame_max = if frame_max == 0 {
            UNLIMITED_FRAME_MAX
        } else {
            frame_max as usize
        };
    }

    /// Reads once from the socket without waiting. `Ok(0)` means the peer
    /// closed the connection; `WouldBlock` means nothing is there.
    pub fn try_read(&mut self, stream: &TcpStream) -> io::Result<usize> {
        self.make_room();
        let n = stream.try_read(&mut self.buf[self.end..])?;
        self.end += n;
        Ok(n)
    }

    /// Waits for bytes and reads them. `Ok(0)` means the peer closed.
    pub async fn read(&mut self, stream: &mut TcpStream) -> io::Result<usize> {
        self.make_room();
        let n = stream.read(&mut self.buf[self.end..]).await?;
        self.end += n;
        Ok(n)
    }

    /// [`FrameReader::next_frame`], with a malformed frame reported as a
    /// protocol error of the broker at `addr`.
    pub fn next_frame_from(&mut self, addr: &str) -> Result<Option<FrameHead>, PerfError> {
        self.next_frame().map_err(|what| PerfError::Protocol {
            addr: addr.to_string(),
            what,
        })
    }

    /// Splits the next complete frame off the buffer, or `Ok(None)` if more
    /// bytes are needed. The payload stays readable through
    /// [`FrameReader::payload`] until the next read.
    pub fn next_frame(&mut self) -> Result<Option<FrameHead>, String> {
        let avail = &self.buf[self.start..self.end];
        if avail.len() < FRAME_HEADER_SIZE {
            return Ok(None);
        }
        let kind = avail[0];
        let channel = u16::from_be_bytes([avail[1], avail[2]]);
        let size = u32::from_be_bytes([avail[3], avail[4], avail[5], avail[6]]) as usize;
        if size + FRAME_OVERHEAD > self.frame_max {
            return Err(format!(
                "frame of {} bytes exceeds frame_max {}",
                size + FRAME_OVERHEAD,
                self.frame_max
            ));
        }
        if !matches!(
            kind,
            frame_type::METHOD | frame_type::HEADER | frame_type::BODY | frame_type::HEARTBEAT
        ) {
            return Err(format!("unknown frame type {kind}"));
        }
        if avail.len() < size + FRAME_OVERHEAD {
            return Ok(None);
        }
        if avail[FRAME_HEADER_SIZE + size] != FRAME_END {
            return Err(format!(
                "bad frame end octet {:#04x}",
                avail[FRAME_HEADER_SIZE + size]
            ));
        }
        let start = self.start + FRAME_HEADER_SIZE;
        self.start += size + FRAME_OVERHEAD;
        Ok(Some(FrameHead {
            kind,
            channel,
            start,
            end: start + size,
        }))
    }

    /// The payload of a frame returned by the last calls to `next_frame`.
    pub fn payload(&self, head: &FrameHead) -> &[u8] {
        &self.buf[head.start..head.end]
    }

    /// Makes room after the buffered bytes: moves them to the front when
    /// the tail is short, and grows the buffer when the frame being
    /// received is larger than it.
    fn make_room(&mut self) {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        let pending = self.end - self.start;
        let needed = if pending >= FRAME_HEADER_SIZE {
            let b = &self.buf[self.start..];
            let size = u32::from_be_bytes([b[3], b[4], b[5], b[6]]) as usize;
            (size + FRAME_OVERHEAD).min(self.frame_max)
        } else {
            0
        };
        if self.buf.len() - self.end < MIN_READ.max(needed.saturating_sub(pending)) {
            self.buf.copy_within(self.start..self.end, 0);
            self.start = 0;
            self.end = pending;
            let want = needed.max(pending + MIN_READ);
            if self.buf.len() < want {
                self.buf.resize(want.next_power_of_two(), 0);
            }
        }
    }
}

/// Reads a big-endian `u64` at `at`, if the slice is long enough.
pub fn u64_at(payload: &[u8], at: usize) -> Option<u64> {
    let bytes = payload.get(at..at + 8)?;
    let mut b = [0u8; 8];
    b.copy_from_slice(bytes);
    Some(u64::from_be_bytes(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use warren_protocol::{encode_body_frames, encode_method_frame, BasicAck, Method};

    fn fill(reader: &mut FrameReader, bytes: &[u8]) {
        reader.make_room();
        reader.buf[reader.end..reader.end + bytes.len()].copy_from_slice(bytes);
        reader.end += bytes.len();
    }

    #[test]
    fn splits_frames_and_waits_for_partial_ones() {
        let mut wire = BytesMut::new();
        let ack = Method::BasicAck(BasicAck {
            delivery_tag: 7,
            multiple: true,
        });
        encode_method_frame(&mut wire, 3, &ack);
        encode_body_frames(&mut wire, 3, b"hello", 0);
        let mut r = FrameReader::new();
        fill(&mut r, &wire[..10]);
        assert_eq!(r.next_frame(), Ok(None));
        fill(&mut r, &wire[10..]);
        let head = r.next_frame().expect("ok").expect("frame");
        assert_eq!((head.kind, head.channel), (frame_type::METHOD, 3));
        assert_eq!(Method::decode(r.payload(&head)), Ok(ack));
        let head = r.next_frame().expect("ok").expect("frame");
        assert_eq!(r.payload(&head), b"hello");
        assert_eq!(r.next_frame(), Ok(None));
    }

    #[test]
    fn grows_for_large_frames_and_rejects_bad_ones() {
        let mut wire = BytesMut::new();
        let body = vec![9u8; 600_000];
        encode_body_frames(&mut wire, 1, &body, 0);
        let mut r = FrameReader::new();
        r.set_frame_max(0);
        let mut at = 0;
        let mut got = None;
        while got.is_none() {
            r.make_room();
            let n = (r.buf.len() - r.end).min(wire.len() - at);
            fill(&mut r, &wire[at..at + n]);
            at += n;
            got = r.next_frame().expect("ok");
        }
        let head = got.expect("frame");
        assert_eq!(r.payload(&head).len(), 600_000);

        let mut r = FrameReader::new();
        r.set_frame_max(4096);
        fill(&mut r, &wire[..100]);
        assert!(r.next_frame().is_err());

        let mut r = FrameReader::new();
        fill(&mut r, &[3, 0, 1, 0, 0, 0, 1, b'x', 0]);
        assert!(r.next_frame().is_err());
    }
}
