//! Codec micro-benchmarks: the hot paths of publishing and delivering.

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use warren_protocol::*;

const FRAME_MAX: u32 = 131_072;

fn publish_triple(buf: &mut BytesMut, body: &[u8]) {
    let publish = Method::BasicPublish(BasicPublish {
        ticket: 0,
        exchange: "amq.topic".into(),
        routing_key: "orders.eu.created".into(),
        mandatory: false,
        immediate: false,
    });
    let props = BasicProperties {
        content_type: Some("application/json".into()),
        delivery_mode: Some(2),
        message_id: Some("4f1c2e1a-7d7b-4d1e-9d8e-0a5b7c6e9f10".into()),
        ..Default::default()
    };
    let mut raw = BytesMut::new();
    props.encode(&mut raw);
    encode_method_frame(buf, 1, &publish);
    encode_content_header(buf, 1, BASIC_CLASS_ID, body.len() as u64, &raw);
    encode_body_frames(buf, 1, body, FRAME_MAX);
}

fn ten_entry_table() -> FieldTable {
    FieldTable(vec![
        ("x-message-ttl".into(), FieldValue::I32(60_000)),
        ("x-max-length".into(), FieldValue::I64(100_000)),
        (
            "x-dead-letter-exchange".into(),
            FieldValue::LongString(Bytes::from_static(b"dlx")),
        ),
        (
            "x-dead-letter-routing-key".into(),
            FieldValue::LongString(Bytes::from_static(b"dead")),
        ),
        (
            "x-queue-type".into(),
            FieldValue::LongString(Bytes::from_static(b"classic")),
        ),
        ("x-single-active-consumer".into(), FieldValue::Bool(true)),
        ("x-priority".into(), FieldValue::U8(5)),
        ("x-expires".into(), FieldValue::U32(3_600_000)),
        ("timestamp".into(), FieldValue::Timestamp(1_700_000_000)),
        (
            "nested".into(),
            FieldValue::Table(FieldTable(vec![("k".into(), FieldValue::I16(-1))])),
        ),
    ])
}

/// Takes every frame off `buf`, reading content header properties too (in
/// place, as the broker does).
fn parse_everything(mut buf: BytesMut) -> usize {
    let mut frames = 0;
    while let Some(frame) = parse_frame(&mut buf, FRAME_MAX).unwrap() {
        if let FramePayload::Header(h) = &frame.payload {
            black_box(PropertiesRef::decode(&h.properties).unwrap());
        }
        black_box(frame);
        frames += 1;
    }
    frames
}

fn bench_codec(c: &mut Criterion) {
    // basic.publish + content header + body, as one read off the socket.
    let mut triple = BytesMut::new();
    publish_triple(&mut triple, &[b'x'; 64]);
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(1));
    group.bench_function("publish_header_body", |b| {
        b.iter_batched(
            || triple.clone(),
            |buf| assert_eq!(parse_everything(buf), 3),
            BatchSize::SmallInput,
        )
    });

    let table = ten_entry_table();
    let mut table_bytes = BytesMut::new();
    table.encode(&mut table_bytes);
    group.bench_function("field_table_10_entries", |b| {
        b.iter(|| Reader::new(black_box(&table_bytes)).table().unwrap())
    });
    group.finish();

    // basic.deliver + content header (properties forwarded raw) + 16 bytes.
    let deliver = Method::BasicDeliver(BasicDeliver {
        consumer_tag: "amq.ctag-Qm9yIHRoZSBiZW5jaA".into(),
        delivery_tag: 123_456,
        redelivered: false,
        exchange: "amq.topic".into(),
        routing_key: "orders.eu.created".into(),
    });
    let mut props = BytesMut::new();
    BasicProperties {
        content_type: Some("application/json".into()),
        delivery_mode: Some(2),
        ..Default::default()
    }
    .encode(&mut props);
    let body = [7u8; 16];
    let mut out = BytesMut::with_capacity(4096);
    let mut group = c.benchmark_group("encode");
    group.throughput(Throughput::Elements(1));
    group.bench_function("deliver_header_body16", |b| {
        b.iter(|| {
            out.clear();
            encode_method_frame(&mut out, 1, black_box(&deliver));
            encode_content_header(&mut out, 1, BASIC_CLASS_ID, body.len() as u64, &props);
            encode_body_frames(&mut out, 1, black_box(&body), FRAME_MAX);
            black_box(out.len())
        })
    });
    group.finish();

    // A 64 KiB read full of publishes (method, header and 64-byte body each).
    let mut stream = BytesMut::new();
    let mut one = BytesMut::new();
    publish_triple(&mut one, &[b'x'; 64]);
    while stream.len() + one.len() <= 64 * 1024 {
        stream.extend_from_slice(&one);
    }
    let frames = 3 * (stream.len() / one.len());
    let mut group = c.benchmark_group("parse");
    group.throughput(Throughput::Bytes(stream.len() as u64));
    group.bench_function("64KiB_of_publishes", |b| {
        b.iter_batched(
            || stream.clone(),
            |buf| assert_eq!(parse_everything(buf), frames),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench_codec);
criterion_main!(benches);
