//! Helpers shared by the store's integration tests.

#![allow(dead_code)]

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use warren_core::{Message, MessageStore, QueuedMessage};
use warren_protocol::{BasicProperties, FieldTable, FieldValue};
use warren_store::StoreOptions;

/// Options small enough that a few messages span several segments and
/// several read chunks, and the ack log is compacted often.
pub fn tiny_options() -> StoreOptions {
    StoreOptions {
        segment_size: 2048,
        read_chunk_size: 300,
        ack_log_compact_records: 32,
        ..StoreOptions::default()
    }
}

/// A message built the way the broker builds one: raw properties encoded
/// from parsed ones.
pub fn message(
    exchange: &str,
    routing_key: &str,
    props: BasicProperties,
    body: Vec<u8>,
) -> Arc<Message> {
    let mut raw = BytesMut::new();
    props.encode(&mut raw);
    Arc::new(
        Message::new(
            exchange.into(),
            routing_key.into(),
            raw.freeze(),
            Bytes::from(body),
        )
        .expect("valid properties"),
    )
}

/// A simple message whose body is `body`.
pub fn simple(body: &str, persistent: bool) -> Arc<Message> {
    let props = BasicProperties {
        delivery_mode: Some(if persistent { 2 } else { 1 }),
        ..Default::default()
    };
    message("", "q", props, body.as_bytes().to_vec())
}

/// A message with every kind of field set, from `n`.
pub fn rich(n: u64, persistent: bool, body_len: usize) -> Arc<Message> {
    let mut headers = FieldTable::new();
    headers.insert("n", FieldValue::I64(n as i64));
    headers.insert(
        "tag",
        FieldValue::LongString(Bytes::from(format!("tag-{n}"))),
    );
    let props = BasicProperties {
        content_type: Some("application/octet-stream".into()),
        headers: (n % 2 == 1).then_some(headers),
        delivery_mode: Some(if persistent { 2 } else { 1 }),
        priority: Some((n % 10) as u8),
        message_id: Some(format!("id-{n}")),
        timestamp: Some(1_700_000_000 + n),
        ..Default::default()
    };
    let body = (0..body_len).map(|i| (i as u64 * 31 + n) as u8).collect();
    message(
        &format!("ex-{}", n % 3),
        &format!("key.{}", n % 7),
        props,
        body,
    )
}

pub fn queued(seq: u64, message: Arc<Message>) -> QueuedMessage {
    QueuedMessage {
        seq,
        message,
        redelivered: false,
        // Every third message carries a deadline, which must round-trip.
        expires_at: seq.is_multiple_of(3).then_some(1_700_000_000_000 + seq),
        delivery_count: 0,
    }
}

/// Asserts two messages are byte-for-byte the same.
pub fn assert_same(got: &Message, want: &Message) {
    assert_eq!(got.exchange, want.exchange, "exchange");
    assert_eq!(got.routing_key, want.routing_key, "routing key");
    assert_eq!(got.properties, want.properties, "raw properties");
    assert_eq!(got.persistent, want.persistent, "persistent");
    assert_eq!(got.headers, want.headers, "headers");
    assert_eq!(got.body, want.body, "body");
}

/// Pops everything ready.
pub fn drain(store: &mut dyn MessageStore) -> Vec<QueuedMessage> {
    std::iter::from_fn(|| store.pop().expect("pop")).collect()
}

pub fn body(m: &QueuedMessage) -> String {
    String::from_utf8_lossy(&m.message.body).into_owned()
}
