//! Unit tests of the primitive codec: bit packing, field tables, nesting
//! limits and malformed lengths.

mod common;

use bytes::{BufMut, Bytes, BytesMut};
use common::*;
use warren_protocol::*;

fn write(f: impl FnOnce(&mut Writer<'_>)) -> Vec<u8> {
    let mut buf = BytesMut::new();
    f(&mut Writer::new(&mut buf));
    buf.to_vec()
}

// ---------------------------------------------------------------- bit packing

#[test]
fn consecutive_bits_share_an_octet() {
    let bytes = write(|w| {
        w.bit(true);
        w.bit(false);
        w.bit(true);
    });
    assert_eq!(bytes, [0b101]);

    let mut r = Reader::new(&bytes);
    assert!(r.bit().unwrap());
    assert!(!r.bit().unwrap());
    assert!(r.bit().unwrap());
    assert!(r.is_empty());
}

#[test]
fn a_ninth_bit_starts_a_new_octet() {
    let bytes = write(|w| {
        for i in 0..9 {
            w.bit(i % 2 == 0 || i == 8);
        }
    });
    assert_eq!(bytes, [0b0101_0101, 0b1]);

    let mut r = Reader::new(&bytes);
    let bits: Vec<bool> = (0..9).map(|_| r.bit().unwrap()).collect();
    assert_eq!(
        bits,
        [true, false, true, false, true, false, true, false, true]
    );
    assert!(r.is_empty());
}

#[test]
fn a_non_bit_field_resets_bit_packing() {
    let bytes = write(|w| {
        w.bit(true);
        w.u8(0xAA);
        w.bit(true);
        w.short_str("x");
        w.bit(false);
        w.bit(true);
        w.table(&FieldTable::new());
        w.bit(true);
        w.u64(7);
        w.bit(true);
    });
    assert_eq!(
        bytes,
        [0b1, 0xAA, 0b1, 1, b'x', 0b10, 0, 0, 0, 0, 0b1, 0, 0, 0, 0, 0, 0, 0, 7, 0b1]
    );

    let mut r = Reader::new(&bytes);
    assert!(r.bit().unwrap());
    assert_eq!(r.u8().unwrap(), 0xAA);
    assert!(r.bit().unwrap());
    assert_eq!(r.short_str().unwrap(), "x");
    assert!(!r.bit().unwrap());
    assert!(r.bit().unwrap());
    assert!(r.table().unwrap().is_empty());
    assert!(r.bit().unwrap());
    assert_eq!(r.u64().unwrap(), 7);
    assert!(r.bit().unwrap());
    assert!(r.is_empty());
}

#[test]
fn bit_fields_of_methods_pack_per_the_spec() {
    let nack = Method::BasicNack(BasicNack {
        delivery_tag: 0x0102_0304_0506_0708,
        multiple: false,
        requeue: true,
    });
    assert_eq!(
        &encode_method(&nack)[..],
        [0, 60, 0, 120, 1, 2, 3, 4, 5, 6, 7, 8, 0b10]
    );

    // Five flags in one octet, then the (empty) arguments table.
    let declare = Method::QueueDeclare(QueueDeclare {
        ticket: 0,
        queue: "q".into(),
        passive: false,
        durable: true,
        exclusive: false,
        auto_delete: true,
        nowait: true,
        arguments: FieldTable::new(),
    });
    assert_eq!(
        &encode_method(&declare)[..],
        [0, 50, 0, 10, 0, 0, 1, b'q', 0b11010, 0, 0, 0, 0]
    );
    assert_eq!(Method::decode(&encode_method(&declare)).unwrap(), declare);

    // A bit between two short strings takes an octet of its own.
    let publish = Method::BasicDeliver(BasicDeliver {
        consumer_tag: "c".into(),
        delivery_tag: 1,
        redelivered: true,
        exchange: "e".into(),
        routing_key: "k".into(),
    });
    assert_eq!(
        &encode_method(&publish)[..],
        [0, 60, 0, 60, 1, b'c', 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, b'e', 1, b'k']
    );
}

#[test]
fn unused_high_bits_of_a_bit_octet_are_ignored() {
    // basic.ack with every bit of the flags octet set: only `multiple` exists.
    let bytes = [0, 60, 0, 80, 0, 0, 0, 0, 0, 0, 0, 9, 0xFF];
    assert_eq!(
        Method::decode(&bytes).unwrap(),
        Method::BasicAck(BasicAck {
            delivery_tag: 9,
            multiple: true
        })
    );
}

// --------------------------------------------------------------- short strings

#[test]
fn short_strings_are_truncated_to_255_bytes_on_a_char_boundary() {
    let bytes = write(|w| w.short_str(&"a".repeat(300)));
    assert_eq!(bytes[0], 255);
    assert_eq!(bytes.len(), 256);

    // 'é' is two bytes: 128 of them cannot all fit, and the cut may not
    // split one.
    let bytes = write(|w| w.short_str(&"é".repeat(128)));
    assert_eq!(bytes[0], 254);
    let mut r = Reader::new(&bytes);
    assert_eq!(r.short_str().unwrap(), "é".repeat(127));
}

#[test]
fn invalid_utf8_in_short_strings_is_replaced() {
    let mut r = Reader::new(&[3, b'a', 0xFF, b'b']);
    assert_eq!(r.short_str().unwrap(), "a\u{FFFD}b");
}

// ---------------------------------------------------------------- field tables

/// Every type tag, the exact bytes Warren writes for it and the value
/// they decode to. The tags are RabbitMQ's.
fn every_tag() -> Vec<(u8, FieldValue, Vec<u8>)> {
    vec![
        (b't', FieldValue::Bool(true), vec![1]),
        (b't', FieldValue::Bool(false), vec![0]),
        (b'b', FieldValue::I8(-2), vec![0xFE]),
        (b'B', FieldValue::U8(0xFE), vec![0xFE]),
        (b's', FieldValue::I16(-2), vec![0xFF, 0xFE]),
        (b'u', FieldValue::U16(0xFFFE), vec![0xFF, 0xFE]),
        (b'I', FieldValue::I32(-2), vec![0xFF, 0xFF, 0xFF, 0xFE]),
        (
            b'i',
            FieldValue::U32(0xFFFF_FFFE),
            vec![0xFF, 0xFF, 0xFF, 0xFE],
        ),
        (
            b'l',
            FieldValue::I64(-2),
            vec![0xFF; 7].into_iter().chain([0xFE]).collect(),
        ),
        (b'f', FieldValue::F32(1.5), 1.5f32.to_be_bytes().to_vec()),
        (
            b'd',
            FieldValue::F64(-0.25),
            (-0.25f64).to_be_bytes().to_vec(),
        ),
        (
            b'D',
            FieldValue::Decimal {
                scale: 2,
                value: 12345,
            },
            vec![2, 0, 0, 0x30, 0x39],
        ),
        (
            b'S',
            FieldValue::LongString(Bytes::from_static(b"hi")),
            vec![0, 0, 0, 2, b'h', b'i'],
        ),
        (
            b'x',
            FieldValue::ByteArray(Bytes::from_static(&[0, 0xFF])),
            vec![0, 0, 0, 2, 0, 0xFF],
        ),
        (
            b'T',
            FieldValue::Timestamp(1_700_000_000),
            1_700_000_000u64.to_be_bytes().to_vec(),
        ),
        (b'V', FieldValue::Void, vec![]),
        (
            b'F',
            FieldValue::Table(FieldTable(vec![("k".into(), FieldValue::U8(7))])),
            vec![0, 0, 0, 4, 1, b'k', b'B', 7],
        ),
        (
            b'A',
            FieldValue::Array(vec![FieldValue::I8(1), FieldValue::Void]),
            vec![0, 0, 0, 3, b'b', 1, b'V'],
        ),
    ]
}

#[test]
fn every_field_type_tag_round_trips_with_rabbitmq_layout() {
    let tags: std::collections::BTreeSet<u8> = every_tag().iter().map(|(t, ..)| *t).collect();
    assert_eq!(tags.len(), 17, "all 17 tags are covered");

    for (tag, value, payload) in every_tag() {
        let mut encoded = BytesMut::new();
        value.encode(&mut encoded);
        assert_eq!(encoded[0], tag, "tag of {value:?}");
        assert_eq!(&encoded[1..], &payload[..], "payload of {value:?}");

        // The same value inside a table, decoded back.
        let table = FieldTable(vec![("key".into(), value.clone())]);
        let bytes = encode_table(&table);
        let mut expected = Vec::new();
        expected.put_u32(4 + 1 + payload.len() as u32);
        expected.extend_from_slice(&[3, b'k', b'e', b'y', tag]);
        expected.extend_from_slice(&payload);
        assert_eq!(&bytes[..], &expected[..], "table holding {value:?}");
        assert_eq!(decode_table(&bytes).unwrap(), table);
    }
}

#[test]
fn a_table_keeps_order_and_repeated_keys() {
    let t = FieldTable(vec![
        ("b".into(), FieldValue::I32(1)),
        ("a".into(), FieldValue::I32(2)),
        ("b".into(), FieldValue::I32(3)),
    ]);
    let decoded = decode_table(&encode_table(&t)).unwrap();
    assert_eq!(decoded, t);
    assert_eq!(decoded.get("b"), Some(&FieldValue::I32(1)));
}

#[test]
fn a_nonzero_bool_octet_is_true() {
    assert_eq!(
        decode_table(&[0, 0, 0, 4, 1, b'k', b't', 7]).unwrap(),
        FieldTable(vec![("k".into(), FieldValue::Bool(true))])
    );
}

#[test]
fn an_unknown_field_type_is_an_error() {
    // 'U' is the 0-9-1 spec's tag for i16, which RabbitMQ does not use;
    // 'Z' is nobody's.
    for tag in [b'U', b'Z', 0] {
        assert_eq!(
            decode_table(&[0, 0, 0, 3, 1, b'k', tag]),
            Err(DecodeError::UnknownFieldType(tag as char))
        );
    }
}

// --------------------------------------------------------------- nesting depth

/// A table nested `levels` tables deep, written byte by byte so that even
/// very deep inputs are cheap to build: each level is `{"a": F <inner>}`.
fn nested_tables(levels: usize) -> Vec<u8> {
    let mut buf = Vec::with_capacity(levels * 7 + 4);
    for i in 0..levels {
        buf.put_u32((7 * (levels - i)) as u32);
        buf.extend_from_slice(&[1, b'a', b'F']);
    }
    buf.put_u32(0);
    buf
}

/// A table holding an array nested `levels` arrays deep (the table counts
/// as the first level): `{"a": A[A[...A[]...]]}`.
fn nested_arrays(levels: usize) -> Vec<u8> {
    let mut buf = Vec::with_capacity(levels * 5 + 8);
    buf.put_u32((3 + 4 + 5 * (levels - 1)) as u32);
    buf.extend_from_slice(&[1, b'a', b'A']);
    for i in 1..levels {
        buf.put_u32((5 * (levels - i)) as u32);
        buf.push(b'A');
    }
    buf.put_u32(0);
    buf
}

fn depth_of(t: &FieldTable) -> usize {
    fn value_depth(v: &FieldValue) -> usize {
        match v {
            FieldValue::Table(t) => 1 + depth_of(t),
            FieldValue::Array(a) => 1 + a.iter().map(value_depth).max().unwrap_or(0),
            _ => 0,
        }
    }
    t.0.iter().map(|(_, v)| value_depth(v)).max().unwrap_or(0)
}

/// Runs `f` on a thread with a small stack, so that unbounded recursion
/// would overflow it rather than pass by luck.
fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap()
}

#[test]
fn tables_nested_to_the_limit_decode() {
    let t = decode_table(&nested_tables(MAX_TABLE_DEPTH)).unwrap();
    assert_eq!(depth_of(&t), MAX_TABLE_DEPTH);
    assert_eq!(&encode_table(&t)[..], &nested_tables(MAX_TABLE_DEPTH)[..]);

    let t = decode_table(&nested_arrays(MAX_TABLE_DEPTH)).unwrap();
    assert_eq!(depth_of(&t), MAX_TABLE_DEPTH);
}

#[test]
fn tables_nested_past_the_limit_are_too_deep() {
    assert_eq!(
        decode_table(&nested_tables(MAX_TABLE_DEPTH + 1)),
        Err(DecodeError::TooDeep)
    );
    assert_eq!(
        decode_table(&nested_arrays(MAX_TABLE_DEPTH + 1)),
        Err(DecodeError::TooDeep)
    );
}

#[test]
fn a_ten_thousand_deep_input_is_refused_without_overflowing_the_stack() {
    let result = on_small_stack(|| {
        (
            decode_table(&nested_tables(10_000)),
            decode_table(&nested_arrays(10_000)),
        )
    });
    assert_eq!(
        result,
        (Err(DecodeError::TooDeep), Err(DecodeError::TooDeep))
    );
}

#[test]
fn deep_tables_inside_methods_and_properties_are_refused() {
    let deep = nested_tables(10_000);

    let mut method = BytesMut::new();
    method.extend_from_slice(&[0, 50, 0, 10, 0, 0, 1, b'q', 0]);
    method.extend_from_slice(&deep);
    assert_eq!(
        on_small_stack(move || Method::decode(&method)),
        Err(DecodeError::TooDeep)
    );

    let mut props = BytesMut::new();
    props.put_u16(1 << 13); // headers only
    props.extend_from_slice(&deep);
    assert_eq!(
        on_small_stack(move || BasicProperties::decode(&props)),
        Err(DecodeError::TooDeep)
    );
}

// ----------------------------------------------------------------- bad lengths

#[test]
fn a_table_length_past_the_end_is_an_error() {
    assert_eq!(
        decode_table(&[0, 0, 0, 10, 1, b'k', b'V']),
        Err(DecodeError::BadLength("field table"))
    );
    assert_eq!(
        decode_table(&[0xFF, 0xFF, 0xFF, 0xFF]),
        Err(DecodeError::BadLength("field table"))
    );
    assert_eq!(
        decode_table(&[0, 0, 0]),
        Err(DecodeError::Truncated("long"))
    );
}

#[test]
fn a_huge_long_string_length_is_an_error() {
    let mut r = Reader::new(&[0xFF, 0xFF, 0xFF, 0xFF, b'a']);
    assert_eq!(r.long_str(), Err(DecodeError::BadLength("longstr")));

    for tag in [b'S', b'x'] {
        assert_eq!(
            decode_table(&[0, 0, 0, 9, 1, b'k', tag, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0]),
            Err(DecodeError::BadLength("longstr"))
        );
    }
}

#[test]
fn an_array_length_past_the_end_is_an_error() {
    assert_eq!(
        decode_table(&[0, 0, 0, 8, 1, b'k', b'A', 0, 0, 0, 9, b'V']),
        Err(DecodeError::BadLength("field array"))
    );
}

#[test]
fn a_value_may_not_run_past_its_table() {
    // The table claims 7 bytes; its long string claims 4 more than that.
    // The bytes exist in the buffer after the table, but are not the table's.
    let bytes = [
        0, 0, 0, 7, 1, b'k', b'S', 0, 0, 0, 4, b'a', b'b', b'c', b'd',
    ];
    assert_eq!(
        Reader::new(&bytes).table(),
        Err(DecodeError::BadLength("longstr"))
    );
    // An entry cut inside its key.
    assert_eq!(
        decode_table(&[0, 0, 0, 2, 5, b'k']),
        Err(DecodeError::Truncated("shortstr"))
    );
    // A key with no value.
    assert_eq!(
        decode_table(&[0, 0, 0, 2, 1, b'k']),
        Err(DecodeError::Truncated("octet"))
    );
}

#[test]
fn a_short_string_length_past_the_end_is_an_error() {
    let mut r = Reader::new(&[200, b'a']);
    assert_eq!(r.short_str(), Err(DecodeError::Truncated("shortstr")));
}

#[test]
fn every_method_with_defaults_round_trips() {
    for m in every_default_method() {
        let bytes = encode_method(&m);
        assert_eq!(Method::decode(&bytes).unwrap(), m, "{}", m.name());
        assert_eq!(method_name(m.class_id(), m.method_id()), Some(m.name()));
        // Every strict prefix is truncated.
        for cut in 0..bytes.len() {
            assert!(
                matches!(
                    Method::decode(&bytes[..cut]),
                    Err(DecodeError::Truncated(_))
                ),
                "{} cut at {cut}",
                m.name()
            );
        }
    }
}

#[test]
fn content_methods_are_the_four_of_class_basic() {
    let mut with_content: Vec<&str> = every_default_method()
        .iter()
        .filter(|m| m.has_content())
        .map(|m| m.name())
        .collect();
    with_content.sort_unstable();
    assert_eq!(
        with_content,
        [
            "basic.deliver",
            "basic.get_ok",
            "basic.publish",
            "basic.return"
        ]
    );
}

#[test]
fn method_decode_errors_map_to_reply_codes() {
    let unknown = Method::decode(&[0, 60, 0, 99]).unwrap_err();
    assert_eq!(
        unknown,
        DecodeError::UnknownMethod {
            class_id: 60,
            method_id: 99
        }
    );
    assert_eq!(unknown.reply_code(), ReplyCode::CommandInvalid);
    assert_eq!(unknown.reply_code().code(), 503);

    let trailing = Method::decode(&[0, 90, 0, 20, 0]).unwrap_err();
    assert_eq!(trailing, DecodeError::Trailing("tx.commit"));
    assert_eq!(trailing.reply_code().code(), 501);
    assert_eq!(DecodeError::TooDeep.reply_code(), ReplyCode::FrameError);
}

// ------------------------------------------------------------------ properties

#[test]
fn properties_flags_follow_the_spec_order() {
    let p = BasicProperties {
        content_type: Some("text/plain".into()),
        delivery_mode: Some(2),
        timestamp: Some(5),
        cluster_id: Some("c".into()),
        ..Default::default()
    };
    let bytes = encode_properties(&p);
    assert_eq!(u16::from_be_bytes([bytes[0], bytes[1]]), 0x9044);
    assert_eq!(BasicProperties::decode(&bytes).unwrap(), p);
    assert!(p.is_persistent());

    let none = BasicProperties::default();
    assert_eq!(&encode_properties(&none)[..], [0, 0]);
    assert_eq!(BasicProperties::decode(&[0, 0]).unwrap(), none);
}

#[test]
fn properties_errors() {
    // A flag set with nothing behind it.
    assert_eq!(
        BasicProperties::decode(&[0x80, 0]),
        Err(DecodeError::Truncated("octet"))
    );
    // Bytes after the last property.
    assert_eq!(
        BasicProperties::decode(&[0x10, 0, 2, 9]),
        Err(DecodeError::Trailing("content header"))
    );
    // A continuation word announcing properties class basic does not have.
    assert_eq!(
        BasicProperties::decode(&[0, 1, 0x80, 0]),
        Err(DecodeError::BadLength("property flags"))
    );
    // An empty continuation word is accepted.
    assert_eq!(
        BasicProperties::decode(&[0, 1, 0, 0]).unwrap(),
        BasicProperties::default()
    );
    assert_eq!(
        BasicProperties::decode(&[0]),
        Err(DecodeError::Truncated("short"))
    );
}
