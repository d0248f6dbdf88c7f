//! AMQP 0-9-1 wire codec for Warren.
//!
//! This crate owns the bytes on the wire and nothing else: frames, every method
//! of every class (with RabbitMQ's extensions), field tables, basic content
//! properties and reply codes. It performs no I/O and knows nothing of the
//! broker: input is a byte buffer, output is typed values or bytes appended to
//! a [`bytes::BytesMut`].
//!
//! Decoding never panics on any input: every malformed byte sequence becomes a
//! [`DecodeError`] that maps to the reply code AMQP prescribes.

mod codec;
mod error;
mod field;
mod frame;
mod method;
mod properties;
mod reply;

pub use codec::{Reader, Writer};
pub use error::DecodeError;
pub use field::{FieldTable, FieldValue, MAX_TABLE_DEPTH};
pub use frame::{
    encode_basic_deliver, encode_body_frames, encode_content_header, encode_heartbeat,
    encode_method_frame, parse_frame, ContentHeader, Frame, FrameError, FramePayload, FRAME_END,
    FRAME_HEADER_SIZE, FRAME_OVERHEAD, PROTOCOL_HEADER,
};
pub use method::*;
pub use properties::{BasicProperties, PropertiesRef};
pub use reply::ReplyCode;

/// Frame type octets (AMQP 0-9-1 section 4.2.3).
pub mod frame_type {
    pub const METHOD: u8 = 1;
    pub const HEADER: u8 = 2;
    pub const BODY: u8 = 3;
    pub const HEARTBEAT: u8 = 8;
}

/// Class ids of the classes that carry content.
pub const BASIC_CLASS_ID: u16 = 60;
