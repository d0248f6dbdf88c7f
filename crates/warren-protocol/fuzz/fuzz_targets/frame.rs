//! Feeds arbitrary bytes to the frame parser (under several `frame_max`
//! limits), to the method decoder and to the basic-properties decoder.
//! Nothing may panic, and everything that decodes must re-encode to bytes
//! that decode to the same thing.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use warren_protocol::{parse_frame, BasicProperties, FramePayload, Method};

/// No limit, AMQP's minimum frame size, RabbitMQ's default.
const FRAME_MAXES: [u32; 3] = [0, 4096, 131_072];

fuzz_target!(|data: &[u8]| {
    for frame_max in FRAME_MAXES {
        let mut buf = BytesMut::from(data);
        loop {
            let before = buf.len();
            match parse_frame(&mut buf, frame_max) {
                Ok(Some(frame)) => {
                    assert!(buf.len() < before, "a frame consumes its bytes");
                    match frame.payload {
                        FramePayload::Method(m) => check_method(&m),
                        FramePayload::Header(h) => {
                            if let Ok(p) = BasicProperties::decode(&h.properties) {
                                check_properties(&p);
                            }
                        }
                        FramePayload::Body(_) | FramePayload::Heartbeat => {}
                    }
                }
                Ok(None) => {
                    assert_eq!(buf.len(), before, "an incomplete frame is left alone");
                    break;
                }
                Err(_) => break,
            }
        }
    }

    if let Ok(m) = Method::decode(data) {
        check_method(&m);
    }
    if let Ok(p) = BasicProperties::decode(data) {
        check_properties(&p);
    }
});

/// Whether decoding replaced invalid UTF-8 in some `shortstr`. Such a string
/// can grow past 255 bytes (each bad byte becomes a 3-byte U+FFFD), and the
/// writer then truncates it, so the value legitimately changes once.
fn was_lossy(debug: &str) -> bool {
    debug.contains('\u{FFFD}')
}

fn check_method(m: &Method) {
    let mut first = BytesMut::new();
    m.encode_payload(&mut first);
    let again = Method::decode(&first).expect("a re-encoded method decodes");
    let mut second = BytesMut::new();
    again.encode_payload(&mut second);
    assert_eq!(first, second, "re-encoding is stable");

    // Compared through Debug so that NaN floats compare equal to
    // themselves; their bits are already covered by the byte comparison.
    let before = format!("{m:?}");
    if !was_lossy(&before) {
        assert_eq!(before, format!("{again:?}"), "decode(encode(m)) == m");
    }
}

fn check_properties(p: &BasicProperties) {
    let mut first = BytesMut::new();
    p.encode(&mut first);
    let again = BasicProperties::decode(&first).expect("re-encoded properties decode");
    let mut second = BytesMut::new();
    again.encode(&mut second);
    assert_eq!(first, second, "re-encoding is stable");

    let before = format!("{p:?}");
    if !was_lossy(&before) {
        assert_eq!(before, format!("{again:?}"), "decode(encode(p)) == p");
    }
}
