//! Proptest strategies shared by the property and oracle tests.
//!
//! Every generated value is one the codec can represent exactly: short
//! strings are valid UTF-8 of at most 255 bytes and floats are never NaN (so
//! `PartialEq` on the decoded value is meaningful; NaN payloads are covered
//! separately by comparing bits).

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use bytes::{Bytes, BytesMut};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::strategy::Union;
use warren_protocol::*;

/// A `shortstr`: valid UTF-8, at most 255 bytes, sometimes exactly 255.
pub fn short_str() -> BoxedStrategy<String> {
    prop_oneof![
        4 => "[a-z0-9._-]{0,16}",
        2 => any::<String>().prop_map(|s| truncate_to(s, 255)),
        1 => vec(any::<char>(), 0..120).prop_map(|c| truncate_to(c.into_iter().collect(), 255)),
        1 => Just("q".repeat(255)),
        1 => Just("é".repeat(127) + "x"),
    ]
    .boxed()
}

/// Cuts `s` to at most `max` bytes on a character boundary.
pub fn truncate_to(mut s: String, max: usize) -> String {
    let mut len = s.len().min(max);
    while !s.is_char_boundary(len) {
        len -= 1;
    }
    s.truncate(len);
    s
}

/// A `longstr`: arbitrary bytes.
pub fn long_str() -> BoxedStrategy<Bytes> {
    vec(any::<u8>(), 0..64).prop_map(Bytes::from).boxed()
}

fn f32_no_nan() -> impl Strategy<Value = f32> {
    use proptest::num::f32::*;
    POSITIVE | NEGATIVE | NORMAL | SUBNORMAL | ZERO | INFINITE
}

fn f64_no_nan() -> impl Strategy<Value = f64> {
    use proptest::num::f64::*;
    POSITIVE | NEGATIVE | NORMAL | SUBNORMAL | ZERO | INFINITE
}

/// Every field value that is not a container.
pub fn scalar_field_value() -> BoxedStrategy<FieldValue> {
    prop_oneof![
        any::<bool>().prop_map(FieldValue::Bool),
        any::<i8>().prop_map(FieldValue::I8),
        any::<u8>().prop_map(FieldValue::U8),
        any::<i16>().prop_map(FieldValue::I16),
        any::<u16>().prop_map(FieldValue::U16),
        any::<i32>().prop_map(FieldValue::I32),
        any::<u32>().prop_map(FieldValue::U32),
        any::<i64>().prop_map(FieldValue::I64),
        f32_no_nan().prop_map(FieldValue::F32),
        f64_no_nan().prop_map(FieldValue::F64),
        (any::<u8>(), any::<u32>()).prop_map(|(scale, value)| FieldValue::Decimal { scale, value }),
        long_str().prop_map(FieldValue::LongString),
        any::<u64>().prop_map(FieldValue::Timestamp),
        Just(FieldValue::Void),
        long_str().prop_map(FieldValue::ByteArray),
    ]
    .boxed()
}

/// How the entries of generated tables are laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keys {
    /// Any order, repeated keys allowed: everything the wire can carry.
    Any,
    /// Sorted by byte order and unique, as a `BTreeMap` keeps them. This is
    /// the only layout other libraries that use maps reproduce byte for byte.
    SortedUnique,
}

fn table_from(entries: BoxedStrategy<FieldValue>, keys: Keys) -> BoxedStrategy<FieldTable> {
    match keys {
        Keys::Any => vec((short_str(), entries), 0..6)
            .prop_map(FieldTable)
            .boxed(),
        Keys::SortedUnique => btree_map(short_str(), entries, 0..6)
            .prop_map(|m| m.into_iter().collect())
            .boxed(),
    }
}

/// Any field value, nesting tables and arrays a few levels deep.
pub fn field_value(keys: Keys) -> BoxedStrategy<FieldValue> {
    // 'L' (u64) only where no other library has to read it back.
    let scalar = match keys {
        Keys::Any => {
            prop_oneof![scalar_field_value(), any::<u64>().prop_map(FieldValue::U64)].boxed()
        }
        Keys::SortedUnique => scalar_field_value(),
    };
    scalar
        .prop_recursive(4, 48, 6, move |inner| {
            prop_oneof![
                vec(inner.clone(), 0..6).prop_map(FieldValue::Array),
                table_from(inner, keys).prop_map(FieldValue::Table),
            ]
        })
        .boxed()
}

/// Any field table, with nested tables and arrays.
pub fn field_table(keys: Keys) -> BoxedStrategy<FieldTable> {
    table_from(field_value(keys), keys)
}

/// A field type that can appear in a method's argument list.
pub trait ArbField: Sized + std::fmt::Debug {
    fn arb(keys: Keys) -> BoxedStrategy<Self>;
}

macro_rules! arb_any {
    ($($t:ty),*) => {$(
        impl ArbField for $t {
            fn arb(_: Keys) -> BoxedStrategy<Self> {
                any::<$t>().boxed()
            }
        }
    )*};
}
arb_any!(u8, u16, u32, u64, bool);

impl ArbField for String {
    fn arb(_: Keys) -> BoxedStrategy<Self> {
        short_str()
    }
}
impl ArbField for Bytes {
    fn arb(_: Keys) -> BoxedStrategy<Self> {
        long_str()
    }
}
impl ArbField for FieldTable {
    fn arb(keys: Keys) -> BoxedStrategy<Self> {
        prop_oneof![1 => Just(FieldTable::new()), 3 => field_table(keys)].boxed()
    }
}

/// Expands the list of every method into a strategy over all of them and a
/// few helpers that enumerate the variants.
macro_rules! method_strategy {
    ($($variant:ident { $($field:ident),* })*) => {
        /// Arbitrary instances of every [`Method`] variant, uniformly.
        pub fn method(keys: Keys) -> BoxedStrategy<Method> {
            let arms: Vec<BoxedStrategy<Method>> = vec![$(
                method_strategy!(@arm keys, $variant { $($field),* }),
            )*];
            Union::new(arms).boxed()
        }

        /// The name of every variant of [`Method`].
        pub const ALL_VARIANTS: &[&str] = &[$(stringify!($variant)),*];

        /// The variant's name. The match has no wildcard arm, so this fails
        /// to compile if the list above misses a variant of [`Method`].
        pub fn variant_name(m: &Method) -> &'static str {
            match m {
                $(Method::$variant(_) => stringify!($variant),)*
            }
        }

        /// Every method with all its fields at their default values.
        pub fn every_default_method() -> Vec<Method> {
            vec![$(Method::$variant(Default::default())),*]
        }
    };
    (@arm $keys:ident, $variant:ident { }) => {
        Just(Method::$variant($variant {})).boxed()
    };
    (@arm $keys:ident, $variant:ident { $($field:ident),+ }) => {
        ($(method_strategy!(@field $field, $keys),)+)
            .prop_map(|($($field,)+)| Method::$variant($variant { $($field),+ }))
            .boxed()
    };
    // One strategy per field; the field name only drives the repetition.
    (@field $field:ident, $keys:ident) => {
        ArbField::arb($keys)
    };
}

method_strategy! {
    ConnectionStart { version_major, version_minor, server_properties, mechanisms, locales }
    ConnectionStartOk { client_properties, mechanism, response, locale }
    ConnectionSecure { challenge }
    ConnectionSecureOk { response }
    ConnectionTune { channel_max, frame_max, heartbeat }
    ConnectionTuneOk { channel_max, frame_max, heartbeat }
    ConnectionOpen { virtual_host, capabilities, insist }
    ConnectionOpenOk { known_hosts }
    ConnectionClose { reply_code, reply_text, class_id, method_id }
    ConnectionCloseOk {}
    ConnectionBlocked { reason }
    ConnectionUnblocked {}
    ConnectionUpdateSecret { new_secret, reason }
    ConnectionUpdateSecretOk {}
    ChannelOpen { out_of_band }
    ChannelOpenOk { channel_id }
    ChannelFlow { active }
    ChannelFlowOk { active }
    ChannelClose { reply_code, reply_text, class_id, method_id }
    ChannelCloseOk {}
    AccessRequest { realm, exclusive, passive, active, write, read }
    AccessRequestOk { ticket }
    ExchangeDeclare {
        ticket, exchange, kind, passive, durable, auto_delete, internal, nowait, arguments
    }
    ExchangeDeclareOk {}
    ExchangeDelete { ticket, exchange, if_unused, nowait }
    ExchangeDeleteOk {}
    ExchangeBind { ticket, destination, source, routing_key, nowait, arguments }
    ExchangeBindOk {}
    ExchangeUnbind { ticket, destination, source, routing_key, nowait, arguments }
    ExchangeUnbindOk {}
    QueueDeclare { ticket, queue, passive, durable, exclusive, auto_delete, nowait, arguments }
    QueueDeclareOk { queue, message_count, consumer_count }
    QueueBind { ticket, queue, exchange, routing_key, nowait, arguments }
    QueueBindOk {}
    QueuePurge { ticket, queue, nowait }
    QueuePurgeOk { message_count }
    QueueDelete { ticket, queue, if_unused, if_empty, nowait }
    QueueDeleteOk { message_count }
    QueueUnbind { ticket, queue, exchange, routing_key, arguments }
    QueueUnbindOk {}
    BasicQos { prefetch_size, prefetch_count, global }
    BasicQosOk {}
    BasicConsume {
        ticket, queue, consumer_tag, no_local, no_ack, exclusive, nowait, arguments
    }
    BasicConsumeOk { consumer_tag }
    BasicCancel { consumer_tag, nowait }
    BasicCancelOk { consumer_tag }
    BasicPublish { ticket, exchange, routing_key, mandatory, immediate }
    BasicReturn { reply_code, reply_text, exchange, routing_key }
    BasicDeliver { consumer_tag, delivery_tag, redelivered, exchange, routing_key }
    BasicGet { ticket, queue, no_ack }
    BasicGetOk { delivery_tag, redelivered, exchange, routing_key, message_count }
    BasicGetEmpty { cluster_id }
    BasicAck { delivery_tag, multiple }
    BasicReject { delivery_tag, requeue }
    BasicRecoverAsync { requeue }
    BasicRecover { requeue }
    BasicRecoverOk {}
    BasicNack { delivery_tag, multiple, requeue }
    ConfirmSelect { nowait }
    ConfirmSelectOk {}
    TxSelect {}
    TxSelectOk {}
    TxCommit {}
    TxCommitOk {}
    TxRollback {}
    TxRollbackOk {}
}

/// Arbitrary basic properties, each one independently present or absent.
pub fn basic_properties(keys: Keys) -> BoxedStrategy<BasicProperties> {
    let s = || proptest::option::of(short_str());
    (
        (s(), s(), proptest::option::of(field_table(keys))),
        (any::<Option<u8>>(), any::<Option<u8>>()),
        (s(), s(), s(), s()),
        any::<Option<u64>>(),
        (s(), s(), s(), s()),
    )
        .prop_map(
            |(
                (content_type, content_encoding, headers),
                (delivery_mode, priority),
                (correlation_id, reply_to, expiration, message_id),
                timestamp,
                (kind, user_id, app_id, cluster_id),
            )| BasicProperties {
                content_type,
                content_encoding,
                headers,
                delivery_mode,
                priority,
                correlation_id,
                reply_to,
                expiration,
                message_id,
                timestamp,
                kind,
                user_id,
                app_id,
                cluster_id,
            },
        )
        .boxed()
}

/// The method payload bytes (class id, method id, arguments).
pub fn encode_method(m: &Method) -> BytesMut {
    let mut buf = BytesMut::new();
    m.encode_payload(&mut buf);
    buf
}

/// The encoded property flags and list.
pub fn encode_properties(p: &BasicProperties) -> BytesMut {
    let mut buf = BytesMut::new();
    p.encode(&mut buf);
    buf
}

/// The encoded table, length prefix included.
pub fn encode_table(t: &FieldTable) -> BytesMut {
    let mut buf = BytesMut::new();
    t.encode(&mut buf);
    buf
}

/// Decodes a whole buffer as one field table, rejecting leftovers.
pub fn decode_table(bytes: &[u8]) -> Result<FieldTable, DecodeError> {
    let mut r = Reader::new(bytes);
    let t = r.table()?;
    if !r.is_empty() {
        return Err(DecodeError::Trailing("field table"));
    }
    Ok(t)
}
