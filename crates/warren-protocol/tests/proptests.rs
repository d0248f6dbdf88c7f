//! Property tests: every encodable value survives encode → decode unchanged,
//! and no input, however malformed, makes a decoder panic.

mod common;

use std::collections::BTreeSet;

use bytes::{Buf, BytesMut};
use common::*;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use warren_protocol::*;

/// Frame limits the frame parser is exercised with: none, absurdly small,
/// AMQP's minimum, and RabbitMQ's default.
const FRAME_MAXES: [u32; 4] = [0, 8, 4096, 131_072];

/// Parses frames off `buf` until it needs more bytes or fails, checking
/// that every step either consumes a whole frame or leaves `buf` alone.
fn parse_all(mut buf: BytesMut, frame_max: u32) -> Vec<Frame> {
    let mut frames = Vec::new();
    loop {
        let before = buf.len();
        match parse_frame(&mut buf, frame_max) {
            Ok(Some(frame)) => {
                assert!(buf.len() < before, "a parsed frame must consume bytes");
                frames.push(frame);
            }
            Ok(None) => {
                assert_eq!(
                    buf.len(),
                    before,
                    "an incomplete frame must not be consumed"
                );
                return frames;
            }
            Err(_) => return frames,
        }
    }
}

#[test]
fn method_strategy_produces_every_variant() {
    let mut runner = TestRunner::deterministic();
    let strategy = method(Keys::Any);
    let mut seen = BTreeSet::new();
    for _ in 0..5_000 {
        let m = strategy.new_tree(&mut runner).unwrap().current();
        seen.insert(variant_name(&m));
    }
    let all: BTreeSet<&str> = ALL_VARIANTS.iter().copied().collect();
    assert_eq!(seen, all);
    assert_eq!(all.len(), every_default_method().len());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn method_round_trips(m in method(Keys::Any)) {
        let bytes = encode_method(&m);
        let decoded = Method::decode(&bytes).expect("an encoded method decodes");
        prop_assert_eq!(&decoded, &m);
        prop_assert_eq!(encode_method(&decoded), bytes.clone());

        // The payload starts with the ids the method reports.
        let mut head = &bytes[..];
        prop_assert_eq!(head.get_u16(), m.class_id());
        prop_assert_eq!(head.get_u16(), m.method_id());
        prop_assert_eq!(method_name(m.class_id(), m.method_id()), Some(m.name()));
    }

    #[test]
    fn method_frame_round_trips(m in method(Keys::Any), channel in any::<u16>()) {
        let mut buf = BytesMut::new();
        encode_method_frame(&mut buf, channel, &m);
        let len = buf.len();
        let frame = parse_frame(&mut buf, len as u32).unwrap().expect("a whole frame");
        prop_assert!(buf.is_empty());
        prop_assert_eq!(frame, Frame { channel, payload: FramePayload::Method(m) });
    }

    #[test]
    fn field_table_round_trips(t in field_table(Keys::Any)) {
        let bytes = encode_table(&t);
        let decoded = decode_table(&bytes).expect("an encoded table decodes");
        prop_assert_eq!(&decoded, &t);
        prop_assert_eq!(encode_table(&decoded), bytes);
    }

    #[test]
    fn float_bits_round_trip_including_nan(f in any::<u32>(), d in any::<u64>()) {
        let t = FieldTable(vec![
            ("f".into(), FieldValue::F32(f32::from_bits(f))),
            ("d".into(), FieldValue::F64(f64::from_bits(d))),
        ]);
        let decoded = decode_table(&encode_table(&t)).unwrap();
        match (decoded.get("f"), decoded.get("d")) {
            (Some(FieldValue::F32(f2)), Some(FieldValue::F64(d2))) => {
                prop_assert_eq!(f2.to_bits(), f);
                prop_assert_eq!(d2.to_bits(), d);
            }
            other => prop_assert!(false, "unexpected {:?}", other),
        }
    }

    #[test]
    fn basic_properties_round_trip(p in basic_properties(Keys::Any)) {
        let bytes = encode_properties(&p);
        let decoded = BasicProperties::decode(&bytes).expect("encoded properties decode");
        prop_assert_eq!(&decoded, &p);
        prop_assert_eq!(encode_properties(&decoded), bytes);
    }

    #[test]
    fn content_header_round_trips(
        p in basic_properties(Keys::Any),
        channel in any::<u16>(),
        body_size in any::<u64>(),
    ) {
        let props = encode_properties(&p);
        let mut buf = BytesMut::new();
        encode_content_header(&mut buf, channel, BASIC_CLASS_ID, body_size, &props);
        let frame = parse_frame(&mut buf, 0).unwrap().expect("a whole frame");
        prop_assert!(buf.is_empty());
        prop_assert_eq!(frame.channel, channel);
        let FramePayload::Header(h) = frame.payload else {
            return Err(TestCaseError::fail("not a header frame"));
        };
        prop_assert_eq!(h.class_id, BASIC_CLASS_ID);
        prop_assert_eq!(h.weight, 0);
        prop_assert_eq!(h.body_size, body_size);
        prop_assert_eq!(&h.properties[..], &props[..]);
        prop_assert_eq!(BasicProperties::decode(&h.properties).unwrap(), p);
    }

    #[test]
    fn body_frames_respect_frame_max(
        body in vec(any::<u8>(), 0..600),
        frame_max in 9u32..200,
        channel in any::<u16>(),
    ) {
        let mut buf = BytesMut::new();
        encode_body_frames(&mut buf, channel, &body, frame_max);
        let chunk = frame_max as usize - FRAME_OVERHEAD;
        let frames = parse_all(buf.clone(), frame_max);
        prop_assert_eq!(frames.len(), body.len().div_ceil(chunk));
        let mut joined = Vec::new();
        for f in frames {
            prop_assert_eq!(f.channel, channel);
            let FramePayload::Body(b) = f.payload else {
                return Err(TestCaseError::fail("not a body frame"));
            };
            prop_assert!(!b.is_empty() && b.len() <= chunk);
            joined.extend_from_slice(&b);
        }
        prop_assert_eq!(joined, body);
    }
}

/// Any of the methods' class and method ids, followed by arbitrary bytes:
/// this reaches the argument decoders far more often than random bytes do.
fn method_ids_then_junk() -> impl Strategy<Value = Vec<u8>> {
    let ids: Vec<(u16, u16)> = every_default_method()
        .iter()
        .map(|m| (m.class_id(), m.method_id()))
        .collect();
    (proptest::sample::select(ids), vec(any::<u8>(), 0..80)).prop_map(|((c, m), tail)| {
        let mut v = Vec::with_capacity(4 + tail.len());
        v.extend_from_slice(&c.to_be_bytes());
        v.extend_from_slice(&m.to_be_bytes());
        v.extend_from_slice(&tail);
        v
    })
}

/// A valid encoding with a few bytes overwritten and maybe cut short.
fn mutated<T: std::fmt::Debug>(
    valid: impl Strategy<Value = T>,
    encode: fn(&T) -> BytesMut,
) -> impl Strategy<Value = Vec<u8>> {
    (
        valid,
        vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        any::<prop::sample::Index>(),
        any::<bool>(),
    )
        .prop_map(move |(v, edits, cut, do_cut)| {
            let mut bytes = encode(&v).to_vec();
            if !bytes.is_empty() {
                for (at, b) in edits {
                    let i = at.index(bytes.len());
                    bytes[i] = b;
                }
                if do_cut {
                    bytes.truncate(cut.index(bytes.len()));
                }
            }
            bytes
        })
}

/// Checks that a method decoded from untrusted bytes re-encodes to bytes
/// that decode again, and that the second encoding is identical to the
/// first. (The decoded value itself may differ from the first one when the
/// input had invalid UTF-8 in a `shortstr`, which is decoded lossily.)
fn check_reencodes(m: &Method) -> Result<(), TestCaseError> {
    let first = encode_method(m);
    let again = Method::decode(&first).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(encode_method(&again), first);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn method_decode_never_panics(bytes in vec(any::<u8>(), 0..200)) {
        if let Ok(m) = Method::decode(&bytes) {
            check_reencodes(&m)?;
        }
    }

    #[test]
    fn method_decode_never_panics_on_known_ids(bytes in method_ids_then_junk()) {
        if let Ok(m) = Method::decode(&bytes) {
            check_reencodes(&m)?;
        }
    }

    #[test]
    fn method_decode_never_panics_on_mutated_methods(
        bytes in mutated(method(Keys::Any), encode_method)
    ) {
        if let Ok(m) = Method::decode(&bytes) {
            check_reencodes(&m)?;
        }
    }

    #[test]
    fn properties_decode_never_panics(bytes in vec(any::<u8>(), 0..200)) {
        if let Ok(p) = BasicProperties::decode(&bytes) {
            let first = encode_properties(&p);
            let again = BasicProperties::decode(&first).unwrap();
            prop_assert_eq!(encode_properties(&again), first);
        }
    }

    #[test]
    fn properties_decode_never_panics_on_mutated_properties(
        bytes in mutated(basic_properties(Keys::Any), encode_properties)
    ) {
        let _ = BasicProperties::decode(&bytes);
    }

    #[test]
    fn field_table_decode_never_panics(bytes in mutated(field_table(Keys::Any), encode_table)) {
        let _ = decode_table(&bytes);
    }

    #[test]
    fn parse_frame_never_panics(
        bytes in vec(any::<u8>(), 0..300),
        frame_max in proptest::sample::select(FRAME_MAXES.to_vec()),
    ) {
        parse_all(BytesMut::from(&bytes[..]), frame_max);
    }

    #[test]
    fn parse_frame_never_panics_on_plausible_frames(
        kind in proptest::sample::select(vec![1u8, 2, 3, 8, 0, 4, b'A']),
        channel in any::<u16>(),
        payload in prop_oneof![method_ids_then_junk(), vec(any::<u8>(), 0..64)],
        end in prop_oneof![Just(FRAME_END), any::<u8>()],
        frame_max in proptest::sample::select(FRAME_MAXES.to_vec()),
    ) {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&[kind]);
        buf.extend_from_slice(&channel.to_be_bytes());
        buf.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        buf.extend_from_slice(&payload);
        buf.extend_from_slice(&[end]);
        for frame in parse_all(buf, frame_max) {
            match frame.payload {
                FramePayload::Method(m) => check_reencodes(&m)?,
                FramePayload::Header(h) => {
                    let _ = BasicProperties::decode(&h.properties);
                }
                FramePayload::Body(_) | FramePayload::Heartbeat => {}
            }
        }
    }
}
