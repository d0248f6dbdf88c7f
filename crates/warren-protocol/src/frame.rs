//! Frames: splitting a byte stream into frames, and writing frames.
//!
//! [`parse_frame`] checks that a whole frame is buffered before it looks at
//! the payload, enforces the negotiated `frame_max` from the size field alone
//! (so an oversized frame is refused before it is read), and checks the
//! frame-end octet.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::{frame_type, DecodeError, Method, Reader};

/// The protocol header a client sends first, and the one a server answers
/// with when it does not support the version the client asked for.
pub const PROTOCOL_HEADER: &[u8; 8] = b"AMQP\x00\x00\x09\x01";
/// Type, channel and size.
pub const FRAME_HEADER_SIZE: usize = 7;
/// The octet that ends every frame.
pub const FRAME_END: u8 = 0xCE;
/// Header plus frame-end octet: what a frame costs beyond its payload.
pub const FRAME_OVERHEAD: usize = FRAME_HEADER_SIZE + 1;

/// The most [`parse_frame`] reserves for a frame whose header has arrived but
/// whose payload has not (RabbitMQ's default `frame_max`). Without a cap, a
/// 7-byte header could make it allocate 4 GiB when `frame_max` is 0; larger
/// frames grow the buffer as their bytes arrive instead.
const MAX_RESERVE_AHEAD: usize = 128 * 1024;

/// A content header frame's payload. Properties are kept as the raw bytes
/// (flags and property list) so the broker can forward them without
/// re-encoding; [`crate::BasicProperties::decode`] parses them.
#[derive(Debug, Clone, PartialEq)]
pub struct ContentHeader {
    pub class_id: u16,
    pub weight: u16,
    pub body_size: u64,
    pub properties: Bytes,
}

/// What a frame carries.
#[derive(Debug, Clone, PartialEq)]
pub enum FramePayload {
    Method(Method),
    Header(ContentHeader),
    Body(Bytes),
    Heartbeat,
}

/// One decoded frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub channel: u16,
    pub payload: FramePayload,
}

/// A frame that cannot be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame size {size} exceeds the negotiated maximum {max}")]
    TooLarge { size: u64, max: u32 },
    #[error("invalid frame end marker {0:#04x}")]
    BadFrameEnd(u8),
    #[error("unknown frame type {0}")]
    UnknownType(u8),
    #[error("content header frame too short")]
    ShortHeader { channel: u16 },
    /// A method frame whose payload did not decode.
    #[error("{error}")]
    Method {
        channel: u16,
        class_id: u16,
        method_id: u16,
        error: DecodeError,
    },
}

/// Takes one complete frame off the front of `buf`, or returns `Ok(None)` if
/// more bytes are needed. `frame_max` is the largest frame accepted,
/// overhead included; 0 means no limit.
pub fn parse_frame(buf: &mut BytesMut, frame_max: u32) -> Result<Option<Frame>, FrameError> {
    if buf.len() < FRAME_HEADER_SIZE {
        return Ok(None);
    }
    let kind = buf[0];
    let channel = u16::from_be_bytes([buf[1], buf[2]]);
    let size = u32::from_be_bytes([buf[3], buf[4], buf[5], buf[6]]) as usize;
    let total = size as u64 + FRAME_OVERHEAD as u64;
    if frame_max != 0 && total > frame_max as u64 {
        return Err(FrameError::TooLarge {
            size: total,
            max: frame_max,
        });
    }
    if !matches!(
        kind,
        frame_type::METHOD | frame_type::HEADER | frame_type::BODY | frame_type::HEARTBEAT
    ) {
        return Err(FrameError::UnknownType(kind));
    }
    if buf.len() < FRAME_HEADER_SIZE + size + 1 {
        buf.reserve((FRAME_HEADER_SIZE + size + 1 - buf.len()).min(MAX_RESERVE_AHEAD));
        return Ok(None);
    }
    let end = buf[FRAME_HEADER_SIZE + size];
    if end != FRAME_END {
        return Err(FrameError::BadFrameEnd(end));
    }
    if kind == frame_type::METHOD {
        // Decoded straight from the buffer: a method keeps no slice of it.
        let payload = &buf[FRAME_HEADER_SIZE..FRAME_HEADER_SIZE + size];
        let decoded = Method::decode(payload).map_err(|error| {
            let mut r = Reader::new(payload);
            FrameError::Method {
                channel,
                class_id: r.u16().unwrap_or(0),
                method_id: r.u16().unwrap_or(0),
                error,
            }
        });
        buf.advance(FRAME_HEADER_SIZE + size + 1);
        return decoded.map(|m| {
            Some(Frame {
                channel,
                payload: FramePayload::Method(m),
            })
        });
    }
    buf.advance(FRAME_HEADER_SIZE);
    let payload = buf.split_to(size).freeze();
    buf.advance(1);
    let payload = match kind {
        frame_type::HEADER => {
            if payload.len() < 14 {
                return Err(FrameError::ShortHeader { channel });
            }
            let mut p = payload;
            let class_id = p.get_u16();
            let weight = p.get_u16();
            let body_size = p.get_u64();
            FramePayload::Header(ContentHeader {
                class_id,
                weight,
                body_size,
                properties: p,
            })
        }
        frame_type::BODY => FramePayload::Body(payload),
        _ => FramePayload::Heartbeat,
    };
    Ok(Some(Frame { channel, payload }))
}

fn begin_frame(buf: &mut BytesMut, kind: u8, channel: u16) -> usize {
    buf.put_u8(kind);
    buf.put_u16(channel);
    let at = buf.len();
    buf.put_u32(0);
    at
}

fn finish_frame(buf: &mut BytesMut, size_at: usize) {
    let size = (buf.len() - size_at - 4) as u32;
    buf[size_at..size_at + 4].copy_from_slice(&size.to_be_bytes());
    buf.put_u8(FRAME_END);
}

/// Appends a method frame.
pub fn encode_method_frame(buf: &mut BytesMut, channel: u16, method: &Method) {
    let at = begin_frame(buf, frame_type::METHOD, channel);
    method.encode_payload(buf);
    finish_frame(buf, at);
}

/// Appends a `basic.deliver` method frame without building a [`Method`]:
/// the hot path of every delivery, so no string is copied.
pub fn encode_basic_deliver(
    buf: &mut BytesMut,
    channel: u16,
    consumer_tag: &str,
    delivery_tag: u64,
    redelivered: bool,
    exchange: &str,
    routing_key: &str,
) {
    let at = begin_frame(buf, frame_type::METHOD, channel);
    let mut w = crate::Writer::new(buf);
    w.u16(crate::BasicDeliver::CLASS_ID);
    w.u16(crate::BasicDeliver::METHOD_ID);
    w.short_str(consumer_tag);
    w.u64(delivery_tag);
    w.bit(redelivered);
    w.short_str(exchange);
    w.short_str(routing_key);
    finish_frame(buf, at);
}

/// Appends a content header frame; `properties` is the raw flags and
/// property list (see [`crate::BasicProperties::encode`]).
pub fn encode_content_header(
    buf: &mut BytesMut,
    channel: u16,
    class_id: u16,
    body_size: u64,
    properties: &[u8],
) {
    buf.put_u8(frame_type::HEADER);
    buf.put_u16(channel);
    buf.put_u32(12 + properties.len() as u32);
    buf.put_u16(class_id);
    buf.put_u16(0);
    buf.put_u64(body_size);
    buf.put_slice(properties);
    buf.put_u8(FRAME_END);
}

/// Appends the body as as many body frames as `frame_max` requires
/// (none for an empty body).
pub fn encode_body_frames(buf: &mut BytesMut, channel: u16, body: &[u8], frame_max: u32) {
    let chunk = if frame_max == 0 {
        usize::MAX
    } else {
        (frame_max as usize).saturating_sub(FRAME_OVERHEAD).max(1)
    };
    buf.reserve(body.len() + FRAME_OVERHEAD * body.len().div_ceil(chunk.min(body.len().max(1))));
    for part in body.chunks(chunk) {
        buf.put_u8(frame_type::BODY);
        buf.put_u16(channel);
        buf.put_u32(part.len() as u32);
        buf.put_slice(part);
        buf.put_u8(FRAME_END);
    }
}

/// Appends a heartbeat frame.
pub fn encode_heartbeat(buf: &mut BytesMut) {
    buf.put_slice(&[frame_type::HEARTBEAT, 0, 0, 0, 0, 0, 0, FRAME_END]);
}
