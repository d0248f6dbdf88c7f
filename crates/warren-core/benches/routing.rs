//! Routing with many bindings: topic trie, headers, direct, and a fanout
//! through the virtual host.

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use warren_core::exchange::ExchangeSpec;
use warren_core::routing::{Destination, TopicRouter};
use warren_core::{ExchangeKind, VirtualHost};
use warren_protocol::{FieldTable, FieldValue};

fn spec(name: &str, kind: ExchangeKind) -> ExchangeSpec {
    ExchangeSpec {
        name: name.into(),
        kind,
        durable: false,
        auto_delete: false,
        internal: false,
        arguments: FieldTable::new(),
    }
}

fn topic(c: &mut Criterion) {
    // 10,000 bindings of the shape `region.<n>.*.#` and `<n>.event.*`.
    let mut r = TopicRouter::default();
    for i in 0..5_000 {
        r.bind(
            &Destination::Queue(format!("q{i}")),
            &format!("region.{i}.*.#"),
        );
        r.bind(
            &Destination::Queue(format!("p{i}")),
            &format!("{i}.event.*"),
        );
    }
    c.bench_function("topic/10k bindings/match 1", |b| {
        b.iter(|| {
            let mut n = 0;
            r.route(black_box("region.4242.orders.created.eu"), &mut |_| n += 1);
            n
        })
    });
    c.bench_function("topic/10k bindings/match none", |b| {
        b.iter(|| {
            let mut n = 0;
            r.route(black_box("nothing.matches.this.key"), &mut |_| n += 1);
            n
        })
    });
}

fn vhost_routes(c: &mut Criterion) {
    let mut v: VirtualHost<u32> = VirtualHost::new("/");
    for i in 0..10_000u32 {
        v.insert_queue(format!("q{i}"), i);
    }
    let none = FieldTable::new();
    v.declare_exchange(spec("d", ExchangeKind::Direct), false)
        .unwrap();
    v.declare_exchange(spec("f", ExchangeKind::Fanout), false)
        .unwrap();
    v.declare_exchange(spec("h", ExchangeKind::Headers), false)
        .unwrap();
    for i in 0..10_000 {
        v.bind(
            "d",
            Destination::Queue(format!("q{i}")),
            &format!("key{i}"),
            &none,
        )
        .unwrap();
    }
    for i in 0..10 {
        v.bind("f", Destination::Queue(format!("q{i}")), "", &none)
            .unwrap();
    }
    for i in 0..1_000 {
        let args: FieldTable = [
            (
                "x-match".to_string(),
                FieldValue::LongString(Bytes::from_static(b"all")),
            ),
            ("tenant".to_string(), FieldValue::I32(i)),
            (
                "kind".to_string(),
                FieldValue::LongString(Bytes::from_static(b"order")),
            ),
        ]
        .into_iter()
        .collect();
        v.bind("h", Destination::Queue(format!("q{i}")), "", &args)
            .unwrap();
    }
    let headers: FieldTable = [
        ("tenant".to_string(), FieldValue::I64(512)),
        (
            "kind".to_string(),
            FieldValue::LongString(Bytes::from_static(b"order")),
        ),
    ]
    .into_iter()
    .collect();
    c.bench_function("default exchange", |b| {
        b.iter(|| {
            let mut n = 0;
            v.route("", black_box("q77"), None, &mut |_| n += 1);
            n
        })
    });
    c.bench_function("direct/10k bindings", |b| {
        b.iter(|| {
            let mut n = 0;
            v.route("d", black_box("key9876"), None, &mut |_| n += 1);
            n
        })
    });
    c.bench_function("fanout/10 queues", |b| {
        b.iter(|| {
            let mut n = 0;
            v.route("f", black_box(""), None, &mut |_| n += 1);
            n
        })
    });
    c.bench_function("headers/1k bindings", |b| {
        b.iter(|| {
            let mut n = 0;
            v.route("h", "", Some(black_box(&headers)), &mut |_| n += 1);
            n
        })
    });
}

criterion_group!(benches, topic, vhost_routes);
criterion_main!(benches);
