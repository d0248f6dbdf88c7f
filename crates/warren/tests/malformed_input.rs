//! Raw TCP: malformed input gets the reply code AMQP prescribes, closes only
//! what it must, and leaves other connections working; frames pipelined in
//! one write are handled in order.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use common::TestServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use warren_protocol::*;
use warren_server::ServerConfig;

struct Raw {
    stream: TcpStream,
    buf: BytesMut,
}

impl Raw {
    async fn connect(addr: SocketAddr) -> Raw {
        Raw {
            stream: TcpStream::connect(addr).await.expect("connect"),
            buf: BytesMut::new(),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    async fn method(&mut self, channel: u16, m: impl Into<Method>) {
        let mut b = BytesMut::new();
        encode_method_frame(&mut b, channel, &m.into());
        self.send(&b).await;
    }

    /// The next frame, or None at EOF.
    async fn frame(&mut self) -> Option<Frame> {
        loop {
            if let Some(f) = parse_frame(&mut self.buf, 0).expect("server sent a bad frame") {
                return Some(f);
            }
            let n =
                tokio::time::timeout(Duration::from_secs(5), self.stream.read_buf(&mut self.buf))
                    .await
                    .expect("timed out waiting for the server")
                    .unwrap_or(0);
            if n == 0 {
                return None;
            }
        }
    }

    async fn expect_method(&mut self) -> Method {
        loop {
            match self.frame().await.expect("connection closed").payload {
                FramePayload::Method(m) => return m,
                FramePayload::Heartbeat => continue,
                other => panic!("expected a method, got {other:?}"),
            }
        }
    }

    /// Reads until connection.close, answers close-ok, and expects EOF.
    async fn expect_connection_close(&mut self) -> ConnectionClose {
        loop {
            match self.expect_method().await {
                Method::ConnectionClose(c) => {
                    self.method(0, ConnectionCloseOk {}).await;
                    self.expect_eof().await;
                    return c;
                }
                _ => continue,
            }
        }
    }

    async fn expect_eof(&mut self) {
        while let Some(f) = self.frame().await {
            assert!(
                matches!(f.payload, FramePayload::Heartbeat | FramePayload::Method(_)),
                "unexpected {f:?}"
            );
        }
    }

    /// Protocol header through open-ok, with the given tune-ok values.
    async fn handshake_with(addr: SocketAddr, frame_max: u32, heartbeat: u16) -> Raw {
        Self::handshake_tuned(addr, 2047, frame_max, heartbeat).await
    }

    /// Protocol header through open-ok, with the given tune-ok values.
    async fn handshake_tuned(
        addr: SocketAddr,
        channel_max: u16,
        frame_max: u32,
        heartbeat: u16,
    ) -> Raw {
        let mut raw = Raw::connect(addr).await;
        raw.send(PROTOCOL_HEADER).await;
        assert!(matches!(
            raw.expect_method().await,
            Method::ConnectionStart(_)
        ));
        raw.method(
            0,
            ConnectionStartOk {
                client_properties: FieldTable::new(),
                mechanism: "PLAIN".into(),
                response: Bytes::from_static(b"\0guest\0guest"),
                locale: "en_US".into(),
            },
        )
        .await;
        assert!(matches!(
            raw.expect_method().await,
            Method::ConnectionTune(_)
        ));
        raw.method(
            0,
            ConnectionTuneOk {
                channel_max,
                frame_max,
                heartbeat,
            },
        )
        .await;
        raw.method(
            0,
            ConnectionOpen {
                virtual_host: "/".into(),
                ..Default::default()
            },
        )
        .await;
        assert!(matches!(
            raw.expect_method().await,
            Method::ConnectionOpenOk(_)
        ));
        raw
    }

    async fn handshake(addr: SocketAddr) -> Raw {
        Self::handshake_with(addr, 131_072, 0).await
    }

    /// Declares a queue on `channel` and waits for declare-ok.
    async fn declare(&mut self, channel: u16, queue: &str) {
        self.method(
            channel,
            QueueDeclare {
                queue: queue.into(),
                ..Default::default()
            },
        )
        .await;
        assert!(matches!(
            self.expect_method().await,
            Method::QueueDeclareOk(_)
        ));
    }

    async fn open_channel(&mut self, id: u16) {
        self.method(id, ChannelOpen::default()).await;
        assert!(matches!(
            self.expect_method().await,
            Method::ChannelOpenOk(_)
        ));
    }
}

/// A fresh connection can still declare a queue and use it.
async fn assert_healthy(addr: SocketAddr) {
    let mut raw = Raw::handshake(addr).await;
    raw.open_channel(1).await;
    raw.declare(1, "health").await;
}

async fn server() -> (TestServer, SocketAddr) {
    let s = TestServer::start().await;
    let addr = s.addr;
    (s, addr)
}

fn frame(kind: u8, channel: u16, payload: &[u8], end: u8) -> Vec<u8> {
    let mut b = Vec::new();
    b.push(kind);
    b.extend_from_slice(&channel.to_be_bytes());
    b.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    b.extend_from_slice(payload);
    b.push(end);
    b
}

#[tokio::test]
async fn wrong_protocol_header_gets_ours_back_and_socket_closed() {
    let (_s, addr) = server().await;
    for header in [
        &b"AMQP\x00\x00\x09\x00"[..],
        b"AMQP\x01\x01\x00\x09",
        b"GET / HTTP/1.1\r\n\r\n",
    ] {
        let mut raw = Raw::connect(addr).await;
        raw.send(header).await;
        let mut reply = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), raw.stream.read_to_end(&mut reply))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(reply, PROTOCOL_HEADER);
    }
    assert_healthy(addr).await;
}

#[tokio::test]
async fn frame_over_frame_max_is_501() {
    let (_s, addr) = server().await;
    let mut raw = Raw::handshake_with(addr, 4096, 0).await;
    raw.open_channel(1).await;
    // Only the header of a huge frame: refused before its payload arrives.
    let mut b = vec![1u8, 0, 1];
    b.extend_from_slice(&100_000u32.to_be_bytes());
    raw.send(&b).await;
    let close = raw.expect_connection_close().await;
    assert_eq!(close.reply_code, 501);
    assert_healthy(addr).await;
}

#[tokio::test]
async fn bad_frame_end_and_unknown_frame_type_are_501() {
    let (_s, addr) = server().await;
    let mut payload = BytesMut::new();
    Method::from(ChannelOpen::default()).encode_payload(&mut payload);
    for bytes in [
        frame(1, 1, &payload, 0xAB),
        frame(9, 1, &payload, FRAME_END),
    ] {
        let mut raw = Raw::handshake(addr).await;
        raw.send(&bytes).await;
        let close = raw.expect_connection_close().await;
        assert_eq!(close.reply_code, 501);
    }
    assert_healthy(addr).await;
}

#[tokio::test]
async fn unknown_method_is_503_naming_it() {
    let (_s, addr) = server().await;
    let mut raw = Raw::handshake(addr).await;
    raw.open_channel(1).await;
    let mut p = Vec::new();
    p.extend_from_slice(&99u16.to_be_bytes());
    p.extend_from_slice(&7u16.to_be_bytes());
    raw.send(&frame(1, 1, &p, FRAME_END)).await;
    let close = raw.expect_connection_close().await;
    assert_eq!(
        (close.reply_code, close.class_id, close.method_id),
        (503, 99, 7)
    );
    assert_healthy(addr).await;
}

#[tokio::test]
async fn truncated_method_is_501() {
    let (_s, addr) = server().await;
    let mut raw = Raw::handshake(addr).await;
    raw.open_channel(1).await;
    let mut payload = BytesMut::new();
    Method::from(QueueDeclare {
        queue: "truncated".into(),
        ..Default::default()
    })
    .encode_payload(&mut payload);
    raw.send(&frame(1, 1, &payload[..payload.len() - 3], FRAME_END))
        .await;
    let close = raw.expect_connection_close().await;
    assert_eq!(close.reply_code, 501);
    assert!(
        close.reply_text.starts_with("FRAME_ERROR - cannot decode"),
        "{}",
        close.reply_text
    );
    assert_eq!((close.class_id, close.method_id), (50, 10));
    assert_healthy(addr).await;
}

#[tokio::test]
async fn deeply_nested_table_is_501_without_crashing() {
    let (_s, addr) = server().await;
    let mut raw = Raw::handshake(addr).await;
    raw.open_channel(1).await;
    // 10k levels of nested tables (70 KB, inside frame_max), built from
    // the inside out.
    let mut inner: Vec<u8> = Vec::new();
    for _ in 0..10_000 {
        let mut t = Vec::with_capacity(inner.len() + 8);
        t.extend_from_slice(&[1, b'k', b'F']);
        t.extend_from_slice(&(inner.len() as u32).to_be_bytes());
        t.extend_from_slice(&inner);
        inner = t;
    }
    let mut p = BytesMut::new();
    p.put_u16(50);
    p.put_u16(10);
    p.put_u16(0);
    p.put_u8(4);
    p.put_slice(b"deep");
    p.put_u8(0);
    p.put_u32(inner.len() as u32);
    p.put_slice(&inner);
    let raw_frame = frame(1, 1, &p, FRAME_END);
    raw.send(&raw_frame).await;
    let close = raw.expect_connection_close().await;
    assert_eq!(close.reply_code, 501);
    assert_healthy(addr).await;
}

async fn publish_frames(raw: &mut Raw, declared_size: u64, body: &[u8]) {
    raw.method(
        1,
        BasicPublish {
            routing_key: "health".into(),
            ..Default::default()
        },
    )
    .await;
    let mut b = BytesMut::new();
    encode_content_header(&mut b, 1, 60, declared_size, &[0, 0]);
    b.extend_from_slice(&frame(3, 1, body, FRAME_END));
    raw.send(&b).await;
}

#[tokio::test]
async fn body_beyond_declared_size_is_505() {
    let (_s, addr) = server().await;
    let mut raw = Raw::handshake(addr).await;
    raw.open_channel(1).await;
    publish_frames(&mut raw, 5, b"0123456789").await;
    let close = raw.expect_connection_close().await;
    assert_eq!(close.reply_code, 505);
    assert_healthy(addr).await;
}

#[tokio::test]
async fn content_frames_without_a_publish_are_505() {
    let (_s, addr) = server().await;
    let mut raw = Raw::handshake(addr).await;
    raw.open_channel(1).await;
    raw.send(&frame(3, 1, b"stray", FRAME_END)).await;
    assert_eq!(raw.expect_connection_close().await.reply_code, 505);

    let mut raw = Raw::handshake(addr).await;
    raw.open_channel(1).await;
    raw.method(1, BasicPublish::default()).await;
    // A method where the content header should be.
    raw.method(1, BasicQos::default()).await;
    assert_eq!(raw.expect_connection_close().await.reply_code, 505);
    assert_healthy(addr).await;
}

#[tokio::test]
async fn channel_misuse_is_504() {
    let (_s, addr) = server().await;
    let mut raw = Raw::handshake(addr).await;
    raw.method(5, QueueDeclare::default()).await;
    assert_eq!(raw.expect_connection_close().await.reply_code, 504);

    let mut raw = Raw::handshake(addr).await;
    raw.open_channel(1).await;
    raw.method(1, ChannelOpen::default()).await;
    assert_eq!(raw.expect_connection_close().await.reply_code, 504);
    assert_healthy(addr).await;
}

#[tokio::test]
async fn misplaced_frames_are_refused_like_rabbitmq() {
    let (_s, addr) = server().await;
    // A heartbeat belongs on channel 0.
    let mut raw = Raw::handshake(addr).await;
    raw.open_channel(1).await;
    raw.send(&frame(8, 1, b"", FRAME_END)).await;
    assert_eq!(raw.expect_connection_close().await.reply_code, 505);
    // A channel method on channel 0.
    let mut raw = Raw::handshake(addr).await;
    raw.method(0, QueueDeclare::default()).await;
    let close = raw.expect_connection_close().await;
    assert_eq!(
        (close.reply_code, close.reply_text.as_str()),
        (
            504,
            "CHANNEL_ERROR - unexpected method in connection state running"
        )
    );
    // An unsolicited channel.close-ok.
    let mut raw = Raw::handshake(addr).await;
    raw.open_channel(1).await;
    raw.method(1, ChannelCloseOk {}).await;
    assert_eq!(raw.expect_connection_close().await.reply_code, 503);
    // Channel numbers above channel_max open, as in RabbitMQ.
    let mut raw = Raw::handshake(addr).await;
    raw.open_channel(4000).await;
    assert_healthy(addr).await;
}

#[tokio::test]
async fn message_over_max_size_closes_only_the_channel() {
    let config = ServerConfig {
        max_message_size: 1024,
        ..Default::default()
    };
    let s = TestServer::with_config(config).await;
    let mut raw = Raw::handshake(s.addr).await;
    raw.open_channel(1).await;
    raw.declare(1, "health").await;
    publish_frames(&mut raw, 2048, &[0u8; 2048]).await;
    match raw.expect_method().await {
        Method::ChannelClose(c) => {
            assert_eq!(
            (c.reply_code, c.reply_text.as_str()),
            (406, "PRECONDITION_FAILED - message size 2048 is larger than configured max size 1024")
        )
        }
        other => panic!("expected channel.close, got {other:?}"),
    }
    raw.method(1, ChannelCloseOk {}).await;
    // The same connection opens another channel and carries on.
    raw.open_channel(2).await;
    raw.method(
        2,
        QueueDeclare {
            queue: "health".into(),
            passive: true,
            ..Default::default()
        },
    )
    .await;
    match raw.expect_method().await {
        Method::QueueDeclareOk(ok) => assert_eq!(ok.message_count, 0),
        other => panic!("expected declare-ok, got {other:?}"),
    }
}

#[tokio::test]
async fn silent_clients_are_dropped_after_the_handshake_timeout() {
    let config = ServerConfig {
        handshake_timeout: Duration::from_millis(300),
        ..Default::default()
    };
    let s = TestServer::with_config(config).await;
    let mut raw = Raw::connect(s.addr).await;
    raw.expect_eof().await;
    let mut raw = Raw::connect(s.addr).await;
    raw.send(PROTOCOL_HEADER).await;
    assert!(matches!(
        raw.expect_method().await,
        Method::ConnectionStart(_)
    ));
    raw.expect_eof().await;
    assert_healthy(s.addr).await;
}

#[tokio::test]
async fn heartbeats_are_sent_and_a_silent_peer_is_dropped() {
    let (_s, addr) = server().await;
    let mut raw = Raw::handshake_with(addr, 131_072, 1).await;
    let started = std::time::Instant::now();
    let mut heartbeats = 0;
    while let Some(f) = raw.frame().await {
        if f.payload == FramePayload::Heartbeat {
            heartbeats += 1;
        }
    }
    assert!(heartbeats >= 1, "server sent no heartbeat");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1500) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    assert_healthy(addr).await;
}

#[tokio::test]
async fn frame_max_negotiation_is_checked() {
    let (_s, addr) = server().await;
    for frame_max in [0u32, 200_000, 100] {
        let mut raw = Raw::connect(addr).await;
        raw.send(PROTOCOL_HEADER).await;
        raw.expect_method().await;
        raw.method(
            0,
            ConnectionStartOk {
                mechanism: "PLAIN".into(),
                response: Bytes::from_static(b"\0guest\0guest"),
                ..Default::default()
            },
        )
        .await;
        raw.expect_method().await;
        raw.method(
            0,
            ConnectionTuneOk {
                channel_max: 0,
                frame_max,
                heartbeat: 0,
            },
        )
        .await;
        assert_eq!(
            raw.expect_connection_close().await.reply_code,
            530,
            "frame_max {frame_max}"
        );
    }
    assert_healthy(addr).await;
}

async fn start_ok(raw: &mut Raw, mechanism: &str, response: &[u8], failure_close: bool) {
    raw.send(PROTOCOL_HEADER).await;
    raw.expect_method().await;
    let caps: FieldTable = [(
        "authentication_failure_close".to_string(),
        FieldValue::Bool(failure_close),
    )]
    .into_iter()
    .collect();
    let props: FieldTable = [("capabilities".to_string(), FieldValue::Table(caps))]
        .into_iter()
        .collect();
    raw.method(
        0,
        ConnectionStartOk {
            client_properties: props,
            mechanism: mechanism.into(),
            response: Bytes::copy_from_slice(response),
            ..Default::default()
        },
    )
    .await;
}

#[tokio::test]
async fn bad_credentials_and_mechanisms_are_refused() {
    let (_s, addr) = server().await;
    for (mechanism, response, code) in [
        ("PLAIN", &b"\0guest\0nope"[..], 403),
        ("PLAIN", b"garbage", 403),
        ("EXTERNAL", b"", 503),
    ] {
        let mut raw = Raw::connect(addr).await;
        start_ok(&mut raw, mechanism, response, true).await;
        let close = raw.expect_connection_close().await;
        assert_eq!(close.reply_code, code);
        if code == 403 {
            assert_eq!(
                close.reply_text,
                "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. For details see the broker logfile."
            );
        }
    }
    // A client that did not announce authentication_failure_close is just
    // disconnected, as RabbitMQ does.
    let mut raw = Raw::connect(addr).await;
    start_ok(&mut raw, "PLAIN", b"\0guest\0nope", false).await;
    raw.expect_eof().await;
    assert_healthy(addr).await;
}

#[tokio::test]
async fn random_garbage_never_takes_the_server_down() {
    let (_s, addr) = server().await;
    let mut rng = 0x2545F4914F6CDD1Du64;
    for round in 0..50 {
        let mut raw = Raw::handshake(addr).await;
        raw.open_channel(1).await;
        let mut junk = Vec::new();
        for _ in 0..(64 + round * 16) {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            junk.push(rng as u8);
        }
        // Keep the frame header plausible so the payload gets parsed.
        let kind = [1u8, 2, 3][round % 3];
        let _ = raw
            .stream
            .write_all(&frame(kind, 1, &junk, FRAME_END))
            .await;
        let _ = raw.stream.write_all(&junk).await;
        drop(raw);
    }
    assert_healthy(addr).await;
}

/// Publishes are enqueued in batches per read; a method in the same read
/// after them must still see them, and confirms still cover them.
#[tokio::test]
async fn methods_pipelined_after_publishes_see_them() {
    let (_s, addr) = server().await;
    let mut raw = Raw::handshake(addr).await;
    raw.open_channel(1).await;
    raw.method(1, ConfirmSelect { nowait: false }).await;
    assert!(matches!(
        raw.expect_method().await,
        Method::ConfirmSelectOk(_)
    ));
    let mut b = BytesMut::new();
    let declare = QueueDeclare {
        queue: "pipelined".into(),
        ..Default::default()
    };
    encode_method_frame(&mut b, 1, &declare.into());
    for body in [b"a", b"b", b"c"] {
        let publish = BasicPublish {
            routing_key: "pipelined".into(),
            ..Default::default()
        };
        encode_method_frame(&mut b, 1, &publish.into());
        encode_content_header(&mut b, 1, 60, 1, &[0, 0]);
        b.extend_from_slice(&frame(3, 1, body, FRAME_END));
    }
    let get = BasicGet {
        queue: "pipelined".into(),
        no_ack: true,
        ..Default::default()
    };
    encode_method_frame(&mut b, 1, &get.into());
    let purge = QueuePurge {
        queue: "pipelined".into(),
        ..Default::default()
    };
    encode_method_frame(&mut b, 1, &purge.into());
    raw.send(&b).await;

    assert!(matches!(
        raw.expect_method().await,
        Method::QueueDeclareOk(_)
    ));
    match raw.expect_method().await {
        Method::BasicGetOk(ok) => assert_eq!(ok.message_count, 2),
        other => panic!("expected get-ok, got {other:?}"),
    }
    assert!(matches!(
        raw.frame().await.map(|f| f.payload),
        Some(FramePayload::Header(_))
    ));
    match raw.frame().await.map(|f| f.payload) {
        Some(FramePayload::Body(body)) => assert_eq!(&body[..], b"a"),
        other => panic!("expected the first body, got {other:?}"),
    }
    match raw.expect_method().await {
        Method::QueuePurgeOk(ok) => assert_eq!(ok.message_count, 2),
        other => panic!("expected purge-ok, got {other:?}"),
    }
    let mut confirmed = 0;
    while confirmed < 3 {
        match raw.expect_method().await {
            Method::BasicAck(ack) => {
                assert!(ack.multiple || ack.delivery_tag == confirmed + 1);
                confirmed = ack.delivery_tag;
            }
            other => panic!("expected confirms, got {other:?}"),
        }
    }
}

/// Channels beyond the negotiated channel_max close the connection with
/// 530, as in RabbitMQ; a closed channel's slot can be used again.
#[tokio::test]
async fn channels_beyond_channel_max_are_530() {
    let (_s, addr) = server().await;
    let mut raw = Raw::handshake_tuned(addr, 2, 131_072, 0).await;
    raw.open_channel(1).await;
    raw.open_channel(7).await;
    raw.method(7, ChannelClose::default()).await;
    assert!(matches!(
        raw.expect_method().await,
        Method::ChannelCloseOk(_)
    ));
    raw.open_channel(2).await;
    raw.method(3, ChannelOpen::default()).await;
    let close = raw.expect_connection_close().await;
    assert_eq!(close.reply_code, 530);
    assert_eq!(
        close.reply_text,
        "NOT_ALLOWED - number of channels opened (2) has reached the negotiated channel_max (2)"
    );
    assert_healthy(addr).await;
}

/// Publishes `bodies` to `queue` through the default exchange in one write.
async fn publish_all(raw: &mut Raw, channel: u16, queue: &str, bodies: &[&[u8]]) {
    let mut b = BytesMut::new();
    for body in bodies {
        let publish = BasicPublish {
            routing_key: queue.into(),
            ..Default::default()
        };
        encode_method_frame(&mut b, channel, &publish.into());
        encode_content_header(&mut b, channel, 60, body.len() as u64, &[0, 0]);
        b.extend_from_slice(&frame(3, channel, body, FRAME_END));
    }
    raw.send(&b).await;
}

/// The next delivery: its tag and body.
async fn delivery(raw: &mut Raw) -> (u64, Bytes) {
    let tag = match raw.expect_method().await {
        Method::BasicDeliver(d) => d.delivery_tag,
        other => panic!("expected a delivery, got {other:?}"),
    };
    assert!(matches!(
        raw.frame().await.map(|f| f.payload),
        Some(FramePayload::Header(_))
    ));
    match raw.frame().await.map(|f| f.payload) {
        Some(FramePayload::Body(body)) => (tag, body),
        other => panic!("expected a body, got {other:?}"),
    }
}

fn ack(b: &mut BytesMut, channel: u16, delivery_tag: u64) {
    let m = BasicAck {
        delivery_tag,
        multiple: false,
    };
    encode_method_frame(b, channel, &m.into());
}

/// Acks are applied per read; each still takes effect before whatever
/// follows it, and frees its consumer's prefetch slot.
#[tokio::test]
async fn acks_pipelined_in_one_write_take_effect_in_order() {
    let (_s, addr) = server().await;
    let mut raw = Raw::handshake(addr).await;
    raw.open_channel(1).await;
    raw.declare(1, "acked").await;
    publish_all(&mut raw, 1, "acked", &[b"0", b"1", b"2", b"3", b"4", b"5"]).await;
    raw.method(
        1,
        BasicQos {
            prefetch_count: 2,
            ..Default::default()
        },
    )
    .await;
    assert!(matches!(raw.expect_method().await, Method::BasicQosOk(_)));
    let consume = BasicConsume {
        queue: "acked".into(),
        consumer_tag: "c".into(),
        ..Default::default()
    };
    raw.method(1, consume).await;
    assert!(matches!(
        raw.expect_method().await,
        Method::BasicConsumeOk(_)
    ));
    assert_eq!(delivery(&mut raw).await, (1, Bytes::from_static(b"0")));
    assert_eq!(delivery(&mut raw).await, (2, Bytes::from_static(b"1")));
    // Both slots freed in one read: the next two come.
    let mut b = BytesMut::new();
    ack(&mut b, 1, 1);
    ack(&mut b, 1, 2);
    raw.send(&b).await;
    assert_eq!(delivery(&mut raw).await, (3, Bytes::from_static(b"2")));
    assert_eq!(delivery(&mut raw).await, (4, Bytes::from_static(b"3")));
    // An ack, then basic.recover in the same read: only the unacked one
    // comes back (with the next message, which the ack made room for).
    let mut b = BytesMut::new();
    ack(&mut b, 1, 3);
    encode_method_frame(&mut b, 1, &BasicRecover { requeue: true }.into());
    raw.send(&b).await;
    assert!(matches!(
        raw.expect_method().await,
        Method::BasicRecoverOk(_)
    ));
    let (fifth, sixth) = (delivery(&mut raw).await, delivery(&mut raw).await);
    assert_eq!((fifth.0, sixth.0), (5, 6));
    let mut bodies = [fifth.1, sixth.1.clone()];
    bodies.sort();
    assert_eq!(bodies, [Bytes::from_static(b"3"), Bytes::from_static(b"4")]);
    // Ack 5, an unknown tag, then 6: the channel closes at the unknown
    // tag, so 5 stays acked and 6 is requeued, ahead of "5".
    let mut b = BytesMut::new();
    ack(&mut b, 1, 5);
    ack(&mut b, 1, 99);
    ack(&mut b, 1, 6);
    raw.send(&b).await;
    match raw.expect_method().await {
        Method::ChannelClose(c) => {
            assert_eq!(c.reply_code, 406);
            assert_eq!(
                c.reply_text,
                "PRECONDITION_FAILED - unknown delivery tag 99"
            );
        }
        other => panic!("expected channel.close, got {other:?}"),
    }
    raw.method(1, ChannelCloseOk {}).await;
    raw.open_channel(2).await;
    let get = BasicGet {
        queue: "acked".into(),
        no_ack: true,
        ..Default::default()
    };
    raw.method(2, get.clone()).await;
    match raw.expect_method().await {
        Method::BasicGetOk(ok) => {
            assert!(ok.redelivered);
            assert_eq!(ok.message_count, 1);
        }
        other => panic!("expected get-ok, got {other:?}"),
    }
    raw.frame().await;
    match raw.frame().await.map(|f| f.payload) {
        Some(FramePayload::Body(body)) => assert_eq!(body, sixth.1),
        other => panic!("expected a body, got {other:?}"),
    }
    raw.method(2, get.clone()).await;
    match raw.expect_method().await {
        Method::BasicGetOk(ok) => assert_eq!(ok.message_count, 0),
        other => panic!("expected get-ok, got {other:?}"),
    }
    raw.frame().await;
    match raw.frame().await.map(|f| f.payload) {
        Some(FramePayload::Body(body)) => assert_eq!(&body[..], b"5"),
        other => panic!("expected a body, got {other:?}"),
    }
    raw.method(2, get).await;
    assert!(matches!(
        raw.expect_method().await,
        Method::BasicGetEmpty(_)
    ));
}
