//! Unit tests of frame parsing and writing.

mod common;

use bytes::{BufMut, Bytes, BytesMut};
use common::*;
use warren_protocol::*;

fn publish() -> Method {
    Method::BasicPublish(BasicPublish {
        ticket: 0,
        exchange: "amq.direct".into(),
        routing_key: "key".into(),
        mandatory: true,
        immediate: false,
    })
}

fn method_frame(channel: u16, m: &Method) -> BytesMut {
    let mut buf = BytesMut::new();
    encode_method_frame(&mut buf, channel, m);
    buf
}

/// A frame with the given type and payload, written by hand.
fn raw_frame(kind: u8, channel: u16, payload: &[u8], end: u8) -> BytesMut {
    let mut buf = BytesMut::new();
    buf.put_u8(kind);
    buf.put_u16(channel);
    buf.put_u32(payload.len() as u32);
    buf.put_slice(payload);
    buf.put_u8(end);
    buf
}

#[test]
fn a_method_frame_has_the_documented_layout() {
    let buf = method_frame(3, &Method::TxCommit(TxCommit {}));
    assert_eq!(&buf[..], [1, 0, 3, 0, 0, 0, 4, 0, 90, 0, 20, FRAME_END]);
}

#[test]
fn a_method_frame_round_trips() {
    let mut buf = method_frame(7, &publish());
    let frame = parse_frame(&mut buf, 4096).unwrap().unwrap();
    assert_eq!(
        frame,
        Frame {
            channel: 7,
            payload: FramePayload::Method(publish())
        }
    );
    assert!(buf.is_empty());
}

#[test]
fn partial_frames_return_none_and_consume_nothing() {
    let whole = method_frame(1, &publish());
    for cut in 0..whole.len() {
        let mut buf = BytesMut::from(&whole[..cut]);
        assert_eq!(parse_frame(&mut buf, 4096), Ok(None), "cut at {cut}");
        assert_eq!(&buf[..], &whole[..cut], "cut at {cut}");
    }
}

#[test]
fn frames_are_taken_one_at_a_time_off_a_stream() {
    let mut buf = method_frame(1, &publish());
    let props = encode_properties(&BasicProperties::default());
    encode_content_header(&mut buf, 1, BASIC_CLASS_ID, 3, &props);
    encode_body_frames(&mut buf, 1, b"abc", 4096);
    encode_heartbeat(&mut buf);
    buf.put_slice(&[1, 0]); // the start of the next frame

    let mut kinds = Vec::new();
    while let Some(frame) = parse_frame(&mut buf, 4096).unwrap() {
        kinds.push(match frame.payload {
            FramePayload::Method(_) => "method",
            FramePayload::Header(_) => "header",
            FramePayload::Body(b) => {
                assert_eq!(&b[..], b"abc");
                "body"
            }
            FramePayload::Heartbeat => "heartbeat",
        });
    }
    assert_eq!(kinds, ["method", "header", "body", "heartbeat"]);
    assert_eq!(&buf[..], [1, 0]);
}

#[test]
fn a_frame_over_frame_max_is_refused_from_its_header_alone() {
    // Only the 7-byte header has arrived; the size says 100,000 bytes.
    let mut buf = BytesMut::new();
    buf.put_slice(&[frame_type::BODY, 0, 1]);
    buf.put_u32(100_000);
    assert_eq!(
        parse_frame(&mut buf, 4096),
        Err(FrameError::TooLarge {
            size: 100_008,
            max: 4096
        })
    );
    assert!(
        buf.capacity() < 100_000,
        "nothing was reserved for the payload"
    );

    // The limit counts the header and the frame end: a frame of exactly
    // frame_max bytes is fine, one more byte is not.
    let fits = raw_frame(frame_type::BODY, 1, &[0; 4088], FRAME_END);
    assert_eq!(fits.len(), 4096);
    assert!(parse_frame(&mut fits.clone(), 4096).unwrap().is_some());
    let over = raw_frame(frame_type::BODY, 1, &[0; 4089], FRAME_END);
    assert_eq!(
        parse_frame(&mut over.clone(), 4096),
        Err(FrameError::TooLarge {
            size: 4097,
            max: 4096
        })
    );
    // frame_max 0 means no limit.
    assert!(parse_frame(&mut over.clone(), 0).unwrap().is_some());
}

#[test]
fn a_huge_size_field_does_not_reserve_the_whole_frame() {
    // With no frame_max, a peer can announce a 4 GiB frame in 7 bytes; the
    // parser must wait for the bytes rather than allocate for them up front.
    let mut buf = BytesMut::new();
    buf.put_slice(&[frame_type::BODY, 0, 1]);
    buf.put_u32(u32::MAX - 8);
    assert_eq!(parse_frame(&mut buf, 0), Ok(None));
    assert_eq!(buf.len(), 7);
    assert!(
        buf.capacity() <= 1 << 20,
        "reserved {} bytes for an announced frame",
        buf.capacity()
    );
}

#[test]
fn a_bad_frame_end_is_refused() {
    let mut buf = method_frame(1, &publish());
    let last = buf.len() - 1;
    buf[last] = 0xCD;
    assert_eq!(
        parse_frame(&mut buf, 4096),
        Err(FrameError::BadFrameEnd(0xCD))
    );
}

#[test]
fn an_unknown_frame_type_is_refused_before_its_payload_arrives() {
    for kind in [0, 4, 5, 9, b'A'] {
        let mut buf = BytesMut::from(&[kind, 0, 0, 0, 0, 0, 50][..]);
        assert_eq!(
            parse_frame(&mut buf, 4096),
            Err(FrameError::UnknownType(kind))
        );
    }
}

#[test]
fn an_unknown_method_is_command_invalid() {
    let mut buf = raw_frame(frame_type::METHOD, 5, &[0, 60, 0, 99], FRAME_END);
    let err = parse_frame(&mut buf, 4096).unwrap_err();
    assert_eq!(
        err,
        FrameError::Method {
            channel: 5,
            class_id: 60,
            method_id: 99,
            error: DecodeError::UnknownMethod {
                class_id: 60,
                method_id: 99
            },
        }
    );
    let FrameError::Method { error, .. } = err else {
        unreachable!()
    };
    assert_eq!(error.reply_code(), ReplyCode::CommandInvalid);
    assert_eq!(error.reply_code().code(), 503);

    // An unknown class too.
    let mut buf = raw_frame(frame_type::METHOD, 1, &[0, 11, 0, 10], FRAME_END);
    assert!(matches!(
        parse_frame(&mut buf, 4096),
        Err(FrameError::Method {
            class_id: 11,
            method_id: 10,
            error: DecodeError::UnknownMethod { .. },
            ..
        })
    ));
}

#[test]
fn trailing_bytes_after_a_method_are_a_syntax_error() {
    let mut payload = encode_method(&publish()).to_vec();
    payload.push(0);
    let mut buf = raw_frame(frame_type::METHOD, 2, &payload, FRAME_END);
    let err = parse_frame(&mut buf, 4096).unwrap_err();
    assert_eq!(
        err,
        FrameError::Method {
            channel: 2,
            class_id: 60,
            method_id: 40,
            error: DecodeError::Trailing("basic.publish"),
        }
    );
    let FrameError::Method { error, .. } = err else {
        unreachable!()
    };
    assert_eq!(error.reply_code(), ReplyCode::FrameError);
    assert!(buf.is_empty(), "the bad frame itself was consumed");
}

#[test]
fn a_truncated_method_payload_is_a_syntax_error() {
    let payload = encode_method(&publish());
    let mut buf = raw_frame(frame_type::METHOD, 2, &payload[..6], FRAME_END);
    assert!(matches!(
        parse_frame(&mut buf, 4096),
        Err(FrameError::Method {
            class_id: 60,
            method_id: 40,
            error: DecodeError::Truncated(_),
            ..
        })
    ));
    // Too short even for the method id: the ids that could be read are kept.
    let mut buf = raw_frame(frame_type::METHOD, 2, &[0, 60], FRAME_END);
    assert!(matches!(
        parse_frame(&mut buf, 4096),
        Err(FrameError::Method {
            class_id: 60,
            method_id: 0,
            error: DecodeError::Truncated(_),
            ..
        })
    ));
}

#[test]
fn a_content_header_round_trips() {
    let props = BasicProperties {
        content_type: Some("application/json".into()),
        headers: Some(FieldTable(vec![("x-retries".into(), FieldValue::I32(3))])),
        delivery_mode: Some(2),
        message_id: Some("m-1".into()),
        ..Default::default()
    };
    let raw = encode_properties(&props);
    let mut buf = BytesMut::new();
    encode_content_header(&mut buf, 9, BASIC_CLASS_ID, 1234, &raw);

    // type, channel, size, class, weight, body size, properties, end
    assert_eq!(buf[0], frame_type::HEADER);
    assert_eq!(&buf[1..3], [0, 9]);
    assert_eq!(&buf[3..7], (12 + raw.len() as u32).to_be_bytes());
    assert_eq!(&buf[7..9], [0, 60]);
    assert_eq!(&buf[9..11], [0, 0]);
    assert_eq!(&buf[11..19], 1234u64.to_be_bytes());
    assert_eq!(&buf[19..buf.len() - 1], &raw[..]);
    assert_eq!(buf[buf.len() - 1], FRAME_END);

    let frame = parse_frame(&mut buf, 4096).unwrap().unwrap();
    assert_eq!(frame.channel, 9);
    assert_eq!(
        frame.payload,
        FramePayload::Header(ContentHeader {
            class_id: BASIC_CLASS_ID,
            weight: 0,
            body_size: 1234,
            properties: raw.freeze(),
        })
    );
    let FramePayload::Header(h) = frame.payload else {
        unreachable!()
    };
    assert_eq!(BasicProperties::decode(&h.properties).unwrap(), props);
}

#[test]
fn a_content_header_without_property_flags_is_short() {
    // class, weight and body size, but no flags word
    let mut payload = vec![0, 60, 0, 0];
    payload.extend_from_slice(&5u64.to_be_bytes());
    let mut buf = raw_frame(frame_type::HEADER, 4, &payload, FRAME_END);
    assert_eq!(
        parse_frame(&mut buf, 4096),
        Err(FrameError::ShortHeader { channel: 4 })
    );
}

#[test]
fn body_frames_split_by_frame_max() {
    let body: Vec<u8> = (0..10).collect();
    let mut buf = BytesMut::new();
    encode_body_frames(&mut buf, 1, &body, 13);
    // 13 bytes per frame leave 5 for the payload.
    assert_eq!(buf.len(), 2 * 13);
    let first = parse_frame(&mut buf, 13).unwrap().unwrap();
    let second = parse_frame(&mut buf, 13).unwrap().unwrap();
    assert!(buf.is_empty());
    assert_eq!(
        first.payload,
        FramePayload::Body(Bytes::from_static(&[0, 1, 2, 3, 4]))
    );
    assert_eq!(
        second.payload,
        FramePayload::Body(Bytes::from_static(&[5, 6, 7, 8, 9]))
    );

    // One byte more and the last frame carries one byte.
    let mut buf = BytesMut::new();
    encode_body_frames(&mut buf, 1, &[0; 11], 13);
    assert_eq!(buf.len(), 2 * 13 + 9);
}

#[test]
fn body_frames_without_a_limit_or_without_a_body() {
    let mut buf = BytesMut::new();
    encode_body_frames(&mut buf, 1, &[7; 100_000], 0);
    assert_eq!(buf.len(), 100_000 + FRAME_OVERHEAD);

    let mut buf = BytesMut::new();
    encode_body_frames(&mut buf, 1, &[], 4096);
    assert!(buf.is_empty(), "an empty body has no body frame");
}

#[test]
fn heartbeat_frames() {
    let mut buf = BytesMut::new();
    encode_heartbeat(&mut buf);
    assert_eq!(&buf[..], [8, 0, 0, 0, 0, 0, 0, FRAME_END]);
    assert_eq!(
        parse_frame(&mut buf, 4096),
        Ok(Some(Frame {
            channel: 0,
            payload: FramePayload::Heartbeat
        }))
    );
    assert!(buf.is_empty());
}

#[test]
fn the_protocol_header_is_not_a_frame() {
    assert_eq!(PROTOCOL_HEADER, b"AMQP\x00\x00\x09\x01");
    let mut buf = BytesMut::from(&PROTOCOL_HEADER[..]);
    assert_eq!(parse_frame(&mut buf, 0), Err(FrameError::UnknownType(b'A')));
}

#[test]
fn the_basic_deliver_fast_path_encodes_like_the_method() {
    use warren_protocol::{encode_basic_deliver, encode_method_frame, BasicDeliver, Method};
    for redelivered in [false, true] {
        let mut fast = bytes::BytesMut::new();
        encode_basic_deliver(
            &mut fast,
            7,
            "amq.ctag-x",
            42,
            redelivered,
            "amq.topic",
            "a.b.c",
        );
        let mut slow = bytes::BytesMut::new();
        encode_method_frame(
            &mut slow,
            7,
            &Method::BasicDeliver(BasicDeliver {
                consumer_tag: "amq.ctag-x".into(),
                delivery_tag: 42,
                redelivered,
                exchange: "amq.topic".into(),
                routing_key: "a.b.c".into(),
            }),
        );
        assert_eq!(fast, slow);
    }
}
