//! Messages as the broker holds them.

use std::sync::Arc;

use bytes::Bytes;
use warren_protocol::{DecodeError, FieldTable, PropertiesRef};

/// A published message. Routed to many queues, it is one allocation shared
/// through [`Arc`]; the body is a [`Bytes`] that usually points straight into
/// the buffer the frame was read into.
#[derive(Debug)]
pub struct Message {
    pub exchange: String,
    pub routing_key: String,
    /// The content header's raw property flags and list, forwarded verbatim.
    pub properties: Bytes,
    /// The properties the broker acts on, parsed once at publish.
    pub persistent: bool,
    pub headers: Option<FieldTable>,
    /// The `expiration` property in milliseconds, if set and valid.
    pub expiration: Option<u64>,
    /// The `priority` property (0 if absent).
    pub priority: u8,
    pub body: Bytes,
}

/// Reads an `expiration` property: a non-negative integer of milliseconds.
pub fn parse_expiration(raw: &[u8]) -> Option<u64> {
    std::str::from_utf8(raw).ok()?.parse::<u64>().ok()
}

impl Message {
    /// Builds a message, reading what the broker needs from its raw
    /// properties (which must be a valid property list).
    pub fn new(
        exchange: String,
        routing_key: String,
        raw_properties: Bytes,
        body: Bytes,
    ) -> Result<Self, DecodeError> {
        let props = PropertiesRef::decode(&raw_properties)?;
        let persistent = props.is_persistent();
        let expiration = props.expiration.and_then(parse_expiration);
        let priority = props.priority.unwrap_or(0);
        let headers = props.headers;
        Ok(Message {
            exchange,
            routing_key,
            properties: raw_properties,
            persistent,
            headers,
            expiration,
            priority,
            body,
        })
    }

    pub fn body_size(&self) -> u64 {
        self.body.len() as u64
    }
}

/// A message as one queue holds it: its position in that queue and whether
/// it has been delivered before.
#[derive(Debug, Clone)]
pub struct QueuedMessage {
    /// Position in publication order within the queue; requeued messages go
    /// back to this position.
    pub seq: u64,
    pub message: Arc<Message>,
    pub redelivered: bool,
    /// When it expires (milliseconds since the Unix epoch), from the
    /// queue's message TTL and the message's own expiration.
    pub expires_at: Option<u64>,
}
