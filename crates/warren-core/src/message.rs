//! Messages as the broker holds them.

use std::sync::Arc;

use bytes::Bytes;
use warren_protocol::{DecodeError, FieldTable, FieldValue, PropertiesRef};

/// Where a queue reports that a consumer settled a copy of a message
/// whose publisher waits for a confirm (see [`ConfirmRef`]). Implemented by
/// the runtime; the queue only hands it the tags.
pub trait ConfirmSink: Send + Sync {
    /// A queue stored one copy of each of these publishes, whose confirm
    /// waits for the disk there. Reported under the queue's lock, so
    /// before any consumer can settle the copy.
    fn expect(&self, tags: &[u64]);
    /// Consumers settled (acked, rejected, or took without ack) one copy
    /// of each of these publishes that [`expect`](Self::expect) announced.
    fn settled(&self, tags: &[u64]);
    /// A copy of each of these publishes could not be written and was
    /// dropped: their confirms must be nacks.
    fn failed(&self, tags: &[u64]);
}

/// A publish waiting for its confirm: the publisher's sink and the
/// publish's sequence number there. A persistent message consumed and
/// acknowledged before it reached the disk no longer needs the disk for
/// its confirm (the broker has taken responsibility for it), so a queue
/// that settles such a copy says so through this.
#[derive(Clone)]
pub struct ConfirmRef {
    pub sink: Arc<dyn ConfirmSink>,
    pub tag: u64,
}

impl std::fmt::Debug for ConfirmRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfirmRef")
            .field("tag", &self.tag)
            .finish()
    }
}

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
    /// The `BCC` header's routing keys: the header is removed at publish
    /// (no consumer sees it), but the keys still route the message, and a
    /// dead letter of it.
    pub bcc: Vec<String>,
    pub body: Bytes,
    /// The publisher's confirm, when it waits for one. Only the message as
    /// published carries it: copies (dead letters, messages read back from
    /// disk) do not.
    pub confirm: Option<ConfirmRef>,
}

/// Reads an `expiration` property: milliseconds, if valid (see
/// [`crate::arguments::check_expiration`]).
pub fn parse_expiration(raw: &[u8]) -> Option<u64> {
    crate::arguments::check_expiration(raw).ok()
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
            bcc: Vec::new(),
            body,
            confirm: None,
        })
    }

    /// Every routing key the message is routed with: its own, then the
    /// keys of its `CC` header and the `BCC` keys (sender-selected
    /// distribution).
    pub fn routing_keys(&self) -> impl Iterator<Item = &str> {
        let cc = match self.headers.as_ref().and_then(|h| h.get("CC")) {
            Some(FieldValue::Array(keys)) => keys.as_slice(),
            _ => &[],
        };
        std::iter::once(self.routing_key.as_str())
            .chain(
                cc.iter()
                    .filter_map(|k| k.as_bytes().and_then(|b| std::str::from_utf8(b).ok())),
            )
            .chain(self.bcc.iter().map(String::as_str))
    }

    /// Whether it routes with more than its own routing key.
    pub fn has_extra_routing_keys(&self) -> bool {
        !self.bcc.is_empty()
            || matches!(self.headers.as_ref().and_then(|h| h.get("CC")), Some(FieldValue::Array(k)) if !k.is_empty())
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
    /// How often it was returned to the queue after a delivery (counted
    /// by quorum queues, as `x-delivery-count`).
    pub delivery_count: u32,
}

impl Message {
    /// A copy whose headers carry `x-delivery-count` (the body is shared),
    /// as a quorum queue delivers a message.
    pub fn with_delivery_count(&self, count: u32) -> Arc<Message> {
        let mut props =
            warren_protocol::BasicProperties::decode(&self.properties).unwrap_or_default();
        let mut headers = props.headers.take().unwrap_or_default();
        headers.insert(
            "x-delivery-count",
            warren_protocol::FieldValue::I64(i64::from(count)),
        );
        props.headers = Some(headers);
        let mut raw = bytes::BytesMut::new();
        props.encode(&mut raw);
        Arc::new(Message {
            exchange: self.exchange.clone(),
            routing_key: self.routing_key.clone(),
            properties: raw.freeze(),
            persistent: self.persistent,
            headers: props.headers,
            expiration: self.expiration,
            priority: self.priority,
            bcc: self.bcc.clone(),
            body: self.body.clone(),
            confirm: None,
        })
    }
}
