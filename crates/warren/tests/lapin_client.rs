//! Black-box tests with the lapin client against a real server on an
//! ephemeral port: every class of method, and the errors a client can see.

mod common;

use std::time::Duration;

use common::{within, TestServer};
use futures_util::StreamExt;
use lapin::options::*;
use lapin::publisher_confirm::Confirmation;
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};

async fn connect(server: &TestServer) -> Connection {
    Connection::connect(&server.uri(), ConnectionProperties::default())
        .await
        .expect("connect")
}

async fn setup() -> (TestServer, Connection, Channel) {
    let server = TestServer::start().await;
    let conn = connect(&server).await;
    let ch = conn.create_channel().await.expect("channel");
    (server, conn, ch)
}

async fn declare(ch: &Channel, name: &str) -> lapin::Queue {
    ch.queue_declare(name, QueueDeclareOptions::default(), FieldTable::default())
        .await
        .expect("queue.declare")
}

async fn publish(ch: &Channel, exchange: &str, key: &str, body: &[u8]) {
    ch.basic_publish(
        exchange,
        key,
        BasicPublishOptions::default(),
        body,
        BasicProperties::default(),
    )
    .await
    .expect("publish");
}

async fn get(ch: &Channel, queue: &str, no_ack: bool) -> Option<lapin::message::BasicGetMessage> {
    ch.basic_get(queue, BasicGetOptions { no_ack })
        .await
        .expect("basic.get")
}

/// queue.declare with passive=true.
async fn passive(ch: &Channel, name: &str) -> lapin::Result<lapin::Queue> {
    ch.queue_declare(
        name,
        QueueDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
}

/// basic.consume with no-ack.
async fn consume_no_ack(ch: &Channel, queue: &str, tag: &str) -> lapin::Result<lapin::Consumer> {
    ch.basic_consume(
        queue,
        tag,
        BasicConsumeOptions {
            no_ack: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
}

/// Errors that close `ch`, as they arrive. Register before the action
/// that causes one: the broker reports it asynchronously.
fn errors(ch: &Channel) -> tokio::sync::mpsc::UnboundedReceiver<lapin::Error> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    ch.on_error(move |e| {
        let _ = tx.send(e);
    });
    rx
}

async fn next_error(errs: &mut tokio::sync::mpsc::UnboundedReceiver<lapin::Error>) -> lapin::Error {
    within(errs.recv()).await.expect("channel error")
}

/// The reply code of a protocol error.
fn code(err: &lapin::Error) -> u16 {
    match err {
        lapin::Error::ProtocolError(e) => e.get_id(),
        other => panic!("expected a protocol error, got {other:?}"),
    }
}

fn text(err: &lapin::Error) -> String {
    match err {
        lapin::Error::ProtocolError(e) => e.get_message().to_string(),
        other => panic!("expected a protocol error, got {other:?}"),
    }
}

async fn next_delivery(consumer: &mut lapin::Consumer) -> lapin::message::Delivery {
    within(consumer.next())
        .await
        .expect("consumer ended")
        .expect("delivery")
}

#[tokio::test]
async fn publish_consume_roundtrip_keeps_properties() {
    let (_s, _c, ch) = setup().await;
    declare(&ch, "hello").await;
    let mut headers = FieldTable::default();
    headers.insert("x-trace".into(), AMQPValue::LongString("abc".into()));
    headers.insert("n".into(), AMQPValue::LongInt(42));
    let props = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_correlation_id("c-1".into())
        .with_reply_to("replies".into())
        .with_delivery_mode(2)
        .with_priority(3)
        .with_message_id("m-1".into())
        .with_timestamp(1_700_000_000)
        .with_app_id("tests".into())
        .with_headers(headers.clone());
    ch.basic_publish(
        "",
        "hello",
        BasicPublishOptions::default(),
        br#"{"name":"John"}"#,
        props.clone(),
    )
    .await
    .unwrap();
    let mut consumer = ch
        .basic_consume(
            "hello",
            "",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    assert!(consumer.tag().as_str().starts_with("amq.ctag-"));
    let d = next_delivery(&mut consumer).await;
    assert_eq!(d.data, br#"{"name":"John"}"#);
    assert_eq!(d.routing_key.as_str(), "hello");
    assert_eq!(d.exchange.as_str(), "");
    assert!(!d.redelivered);
    assert_eq!(d.properties, props);
    d.ack(BasicAckOptions::default()).await.unwrap();
}

#[tokio::test]
async fn large_messages_span_frames_byte_exact() {
    let (_s, _c, ch) = setup().await;
    declare(&ch, "big").await;
    let body: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    publish(&ch, "", "big", &body).await;
    publish(&ch, "", "big", b"").await;
    let m = get(&ch, "big", true).await.unwrap();
    assert_eq!(m.delivery.data.len(), body.len());
    assert!(m.delivery.data == body);
    let m = get(&ch, "big", true).await.unwrap();
    assert!(m.delivery.data.is_empty());
}

#[tokio::test]
async fn basic_get_counts_and_get_empty() {
    let (_s, _c, ch) = setup().await;
    declare(&ch, "g").await;
    assert!(get(&ch, "g", true).await.is_none());
    for i in 0..3u8 {
        publish(&ch, "", "g", &[i]).await;
    }
    let q = passive(&ch, "g").await.unwrap();
    assert_eq!(q.message_count(), 3);
    let m = get(&ch, "g", false).await.unwrap();
    assert_eq!(m.message_count, 2);
    assert_eq!(m.delivery.data, vec![0]);
    m.delivery.ack(BasicAckOptions::default()).await.unwrap();
    let m = get(&ch, "g", true).await.unwrap();
    assert_eq!((m.message_count, m.delivery.data.clone()), (1, vec![1]));
}

#[tokio::test]
async fn fifo_order_and_round_robin_across_consumers() {
    let (_s, _c, ch) = setup().await;
    declare(&ch, "rr").await;
    let mut a = consume_no_ack(&ch, "rr", "a").await.unwrap();
    let mut b = consume_no_ack(&ch, "rr", "b").await.unwrap();
    for i in 0..10u8 {
        publish(&ch, "", "rr", &[i]).await;
    }
    let mut got_a = Vec::new();
    let mut got_b = Vec::new();
    for _ in 0..5 {
        got_a.push(next_delivery(&mut a).await.data[0]);
        got_b.push(next_delivery(&mut b).await.data[0]);
    }
    assert_eq!(got_a, vec![0, 2, 4, 6, 8]);
    assert_eq!(got_b, vec![1, 3, 5, 7, 9]);
}

#[tokio::test]
async fn prefetch_limits_unacked_deliveries() {
    let (_s, _c, ch) = setup().await;
    declare(&ch, "pf").await;
    ch.basic_qos(2, BasicQosOptions::default()).await.unwrap();
    for i in 0..5u8 {
        publish(&ch, "", "pf", &[i]).await;
    }
    let mut consumer = ch
        .basic_consume(
            "pf",
            "c",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let d1 = next_delivery(&mut consumer).await;
    let d2 = next_delivery(&mut consumer).await;
    assert!(
        tokio::time::timeout(Duration::from_millis(300), consumer.next())
            .await
            .is_err()
    );
    let q = passive(&ch, "pf").await.unwrap();
    assert_eq!(q.message_count(), 3);
    d1.ack(BasicAckOptions::default()).await.unwrap();
    let d3 = next_delivery(&mut consumer).await;
    assert_eq!(d3.data, vec![2]);
    assert!(
        tokio::time::timeout(Duration::from_millis(200), consumer.next())
            .await
            .is_err()
    );
    // Multiple ack frees both slots.
    d3.ack(BasicAckOptions { multiple: true }).await.unwrap();
    let _ = d2;
    assert_eq!(next_delivery(&mut consumer).await.data, vec![3]);
    assert_eq!(next_delivery(&mut consumer).await.data, vec![4]);
}

#[tokio::test]
async fn global_qos_limits_the_channel() {
    let (_s, _c, ch) = setup().await;
    declare(&ch, "gq1").await;
    declare(&ch, "gq2").await;
    ch.basic_qos(1, BasicQosOptions { global: true })
        .await
        .unwrap();
    publish(&ch, "", "gq1", b"1").await;
    publish(&ch, "", "gq2", b"2").await;
    let mut c1 = ch
        .basic_consume(
            "gq1",
            "c1",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut c2 = ch
        .basic_consume(
            "gq2",
            "c2",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let first = next_delivery(&mut c1).await;
    assert!(tokio::time::timeout(Duration::from_millis(300), c2.next())
        .await
        .is_err());
    first.ack(BasicAckOptions::default()).await.unwrap();
    let second = next_delivery(&mut c2).await;
    assert_eq!(second.data, b"2");
}

#[tokio::test]
async fn reject_and_nack_requeue_set_redelivered() {
    let (_s, _c, ch) = setup().await;
    declare(&ch, "rq").await;
    for b in [b"a", b"b", b"c"] {
        publish(&ch, "", "rq", b).await;
    }
    let a = get(&ch, "rq", false).await.unwrap();
    assert!(!a.delivery.redelivered);
    a.delivery
        .reject(BasicRejectOptions { requeue: true })
        .await
        .unwrap();
    let a = get(&ch, "rq", false).await.unwrap();
    assert!(a.delivery.redelivered);
    assert_eq!(a.delivery.data, b"a");
    let b = get(&ch, "rq", false).await.unwrap();
    // nack multiple requeues both, back in their original order.
    b.delivery
        .nack(BasicNackOptions {
            multiple: true,
            requeue: true,
        })
        .await
        .unwrap();
    let again: Vec<Vec<u8>> = vec![
        get(&ch, "rq", true).await.unwrap().delivery.data,
        get(&ch, "rq", true).await.unwrap().delivery.data,
        get(&ch, "rq", true).await.unwrap().delivery.data,
    ];
    assert_eq!(again, vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
    // reject without requeue drops it.
    publish(&ch, "", "rq", b"d").await;
    let d = get(&ch, "rq", false).await.unwrap();
    d.delivery
        .reject(BasicRejectOptions { requeue: false })
        .await
        .unwrap();
    assert!(get(&ch, "rq", true).await.is_none());
}

#[tokio::test]
async fn unacked_messages_return_in_order_when_channel_closes() {
    let (_s, conn, ch) = setup().await;
    declare(&ch, "ord").await;
    for i in 0..5u8 {
        publish(&ch, "", "ord", &[i]).await;
    }
    let ch2 = conn.create_channel().await.unwrap();
    let mut consumer = ch2
        .basic_consume(
            "ord",
            "c",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    for i in 0..5u8 {
        assert_eq!(next_delivery(&mut consumer).await.data, vec![i]);
    }
    ch2.close(200, "bye").await.unwrap();
    for i in 0..5u8 {
        let m = get(&ch, "ord", true).await.unwrap();
        assert_eq!(m.delivery.data, vec![i]);
        assert!(m.delivery.redelivered);
    }
}

#[tokio::test]
async fn unknown_and_double_ack_close_the_channel_with_406() {
    let (_s, conn, ch) = setup().await;
    declare(&ch, "da").await;
    publish(&ch, "", "da", b"x").await;
    let m = get(&ch, "da", false).await.unwrap();
    m.delivery.ack(BasicAckOptions::default()).await.unwrap();
    let mut errs = errors(&ch);
    ch.basic_ack(m.delivery.delivery_tag, BasicAckOptions::default())
        .await
        .unwrap();
    let err = next_error(&mut errs).await;
    assert_eq!(code(&err), 406);
    assert_eq!(
        text(&err),
        format!(
            "PRECONDITION_FAILED - unknown delivery tag {}",
            m.delivery.delivery_tag
        )
    );
    // The connection is unaffected.
    let ch2 = conn.create_channel().await.unwrap();
    declare(&ch2, "da").await;
}

async fn declare_err(ch: &Channel, name: &str) -> lapin::Error {
    ch.queue_declare(name, QueueDeclareOptions::default(), FieldTable::default())
        .await
        .expect_err("expected an error")
}

#[tokio::test]
async fn queue_declare_errors() {
    let (_s, conn, _ch) = setup().await;
    let ch = conn.create_channel().await.unwrap();
    let err = passive(&ch, "missing").await.unwrap_err();
    assert_eq!(code(&err), 404);
    assert_eq!(text(&err), "NOT_FOUND - no queue 'missing' in vhost '/'");

    let ch = conn.create_channel().await.unwrap();
    declare(&ch, "dur").await;
    let err = ch
        .queue_declare(
            "dur",
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(code(&err), 406);
    assert_eq!(
        text(&err),
        "PRECONDITION_FAILED - inequivalent arg 'durable' for queue 'dur' in vhost '/': received 'true' but current is 'false'"
    );

    let ch = conn.create_channel().await.unwrap();
    let err = declare_err(&ch, "amq.mine").await;
    assert_eq!(code(&err), 403);

    let ch = conn.create_channel().await.unwrap();
    let q = declare(&ch, "").await;
    assert!(q.name().as_str().starts_with("amq.gen-"));
    assert!(conn.status().connected());
}

#[tokio::test]
async fn exclusive_queue_is_private_and_dies_with_its_connection() {
    let (s, conn, ch) = setup().await;
    ch.queue_declare(
        "ex",
        QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    let other = connect(&s).await;
    let och = other.create_channel().await.unwrap();
    let err = passive(&och, "ex").await.unwrap_err();
    assert_eq!(code(&err), 405);
    let och = other.create_channel().await.unwrap();
    let err = och
        .basic_consume(
            "ex",
            "",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(code(&err), 405);
    conn.close(200, "bye").await.unwrap();
    let och = other.create_channel().await.unwrap();
    let err = passive(&och, "ex").await.unwrap_err();
    assert_eq!(code(&err), 404);
}

#[tokio::test]
async fn auto_delete_queue_goes_with_its_last_consumer() {
    let (_s, conn, ch) = setup().await;
    ch.queue_declare(
        "ad",
        QueueDeclareOptions {
            auto_delete: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    // lapin cancels a consumer when its handle is dropped, so keep them.
    let _c1 = ch
        .basic_consume(
            "ad",
            "c1",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let _c2 = ch
        .basic_consume(
            "ad",
            "c2",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    ch.basic_cancel("c1", BasicCancelOptions::default())
        .await
        .unwrap();
    let ch2 = conn.create_channel().await.unwrap();
    passive(&ch2, "ad").await.unwrap();
    ch.basic_cancel("c2", BasicCancelOptions::default())
        .await
        .unwrap();
    let err = passive(&ch2, "ad").await.unwrap_err();
    assert_eq!(code(&err), 404);
}

#[tokio::test]
async fn exclusive_consumer_refuses_others() {
    let (_s, conn, ch) = setup().await;
    declare(&ch, "xc").await;
    let _c1 = ch
        .basic_consume(
            "xc",
            "c1",
            BasicConsumeOptions {
                exclusive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let ch2 = conn.create_channel().await.unwrap();
    let err = ch2
        .basic_consume(
            "xc",
            "c2",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(code(&err), 403);
    assert_eq!(
        text(&err),
        "ACCESS_REFUSED - queue 'xc' in vhost '/' in exclusive use"
    );
}

#[tokio::test]
async fn deleting_a_queue_cancels_its_consumers() {
    let (_s, conn, ch) = setup().await;
    declare(&ch, "del").await;
    let mut consumer = ch
        .basic_consume(
            "del",
            "c",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let ch2 = conn.create_channel().await.unwrap();
    publish(&ch2, "", "del", b"1").await;
    let d = next_delivery(&mut consumer).await;
    assert_eq!(d.data, b"1");
    ch2.queue_delete("del", QueueDeleteOptions::default())
        .await
        .unwrap();
    // The consumer stream ends when the broker cancels it.
    assert!(within(consumer.next()).await.is_none());
    // Acking a message of the deleted queue is still fine.
    d.ack(BasicAckOptions::default()).await.unwrap();
    declare(&ch, "del2").await;
}

#[tokio::test]
async fn purge_and_delete_report_counts_and_conditions() {
    let (_s, conn, ch) = setup().await;
    declare(&ch, "pd").await;
    for _ in 0..4 {
        publish(&ch, "", "pd", b"x").await;
    }
    assert_eq!(
        ch.queue_purge("pd", QueuePurgeOptions::default())
            .await
            .unwrap(),
        4
    );
    publish(&ch, "", "pd", b"x").await;
    let err = ch
        .queue_delete(
            "pd",
            QueueDeleteOptions {
                if_empty: true,
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(code(&err), 406);
    assert_eq!(
        text(&err),
        "PRECONDITION_FAILED - queue 'pd' in vhost '/' not empty"
    );
    let ch = conn.create_channel().await.unwrap();
    let _c = consume_no_ack(&ch, "pd", "c").await.unwrap();
    let ch2 = conn.create_channel().await.unwrap();
    let err = ch2
        .queue_delete(
            "pd",
            QueueDeleteOptions {
                if_unused: true,
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(code(&err), 406);
    let ch2 = conn.create_channel().await.unwrap();
    declare(&ch2, "pd3").await;
    publish(&ch2, "", "pd3", b"x").await;
    publish(&ch2, "", "pd3", b"y").await;
    assert_eq!(
        ch2.queue_delete("pd3", QueueDeleteOptions::default())
            .await
            .unwrap(),
        2
    );
    // Deleting what does not exist succeeds.
    assert_eq!(
        ch2.queue_delete("pd3", QueueDeleteOptions::default())
            .await
            .unwrap(),
        0
    );
}

#[tokio::test]
async fn exchange_types_route_as_rabbitmq_does() {
    let (_s, _c, ch) = setup().await;
    for q in ["d", "f1", "f2", "t1", "t2", "h"] {
        declare(&ch, q).await;
    }
    let none = FieldTable::default();
    ch.exchange_declare(
        "ex.d",
        ExchangeKind::Direct,
        Default::default(),
        none.clone(),
    )
    .await
    .unwrap();
    ch.exchange_declare(
        "ex.f",
        ExchangeKind::Fanout,
        Default::default(),
        none.clone(),
    )
    .await
    .unwrap();
    ch.exchange_declare(
        "ex.t",
        ExchangeKind::Topic,
        Default::default(),
        none.clone(),
    )
    .await
    .unwrap();
    ch.exchange_declare(
        "ex.h",
        ExchangeKind::Headers,
        Default::default(),
        none.clone(),
    )
    .await
    .unwrap();
    ch.queue_bind("d", "ex.d", "key", Default::default(), none.clone())
        .await
        .unwrap();
    ch.queue_bind("f1", "ex.f", "", Default::default(), none.clone())
        .await
        .unwrap();
    ch.queue_bind("f2", "ex.f", "ignored", Default::default(), none.clone())
        .await
        .unwrap();
    ch.queue_bind(
        "t1",
        "ex.t",
        "stock.*.nyse",
        Default::default(),
        none.clone(),
    )
    .await
    .unwrap();
    ch.queue_bind("t2", "ex.t", "stock.#", Default::default(), none.clone())
        .await
        .unwrap();
    let mut hargs = FieldTable::default();
    hargs.insert("x-match".into(), AMQPValue::LongString("any".into()));
    hargs.insert("format".into(), AMQPValue::LongString("pdf".into()));
    hargs.insert("type".into(), AMQPValue::LongString("report".into()));
    ch.queue_bind("h", "ex.h", "", Default::default(), hargs)
        .await
        .unwrap();

    publish(&ch, "ex.d", "key", b"d").await;
    publish(&ch, "ex.d", "other", b"lost").await;
    publish(&ch, "ex.f", "whatever", b"f").await;
    publish(&ch, "ex.t", "stock.ibm.nyse", b"t-both").await;
    publish(&ch, "ex.t", "stock", b"t-hash-zero").await;
    let mut headers = FieldTable::default();
    headers.insert("type".into(), AMQPValue::LongString("report".into()));
    ch.basic_publish(
        "ex.h",
        "",
        Default::default(),
        b"h",
        BasicProperties::default().with_headers(headers),
    )
    .await
    .unwrap();
    ch.basic_publish(
        "ex.h",
        "",
        Default::default(),
        b"h-miss",
        BasicProperties::default(),
    )
    .await
    .unwrap();

    let drain = |q: &'static str| {
        let ch = ch.clone();
        async move {
            let mut out = Vec::new();
            while let Some(m) = get(&ch, q, true).await {
                out.push(String::from_utf8(m.delivery.data).unwrap());
            }
            out
        }
    };
    assert_eq!(drain("d").await, vec!["d"]);
    assert_eq!(drain("f1").await, vec!["f"]);
    assert_eq!(drain("f2").await, vec!["f"]);
    assert_eq!(drain("t1").await, vec!["t-both"]);
    assert_eq!(drain("t2").await, vec!["t-both", "t-hash-zero"]);
    assert_eq!(drain("h").await, vec!["h"]);
}

#[tokio::test]
async fn exchange_to_exchange_and_alternate_exchange() {
    let (_s, _c, ch) = setup().await;
    let none = FieldTable::default();
    declare(&ch, "e2e").await;
    declare(&ch, "unrouted").await;
    ch.exchange_declare("src", ExchangeKind::Topic, Default::default(), none.clone())
        .await
        .unwrap();
    ch.exchange_declare(
        "dst",
        ExchangeKind::Fanout,
        Default::default(),
        none.clone(),
    )
    .await
    .unwrap();
    ch.exchange_bind("dst", "src", "a.#", Default::default(), none.clone())
        .await
        .unwrap();
    ch.queue_bind("e2e", "dst", "", Default::default(), none.clone())
        .await
        .unwrap();
    ch.exchange_declare("ae", ExchangeKind::Fanout, Default::default(), none.clone())
        .await
        .unwrap();
    ch.queue_bind("unrouted", "ae", "", Default::default(), none.clone())
        .await
        .unwrap();
    let mut args = FieldTable::default();
    args.insert(
        "alternate-exchange".into(),
        AMQPValue::LongString("ae".into()),
    );
    ch.exchange_declare("main", ExchangeKind::Direct, Default::default(), args)
        .await
        .unwrap();

    publish(&ch, "src", "a.b", b"through").await;
    publish(&ch, "src", "b", b"dropped").await;
    publish(&ch, "main", "nobody", b"alt").await;
    assert_eq!(
        get(&ch, "e2e", true).await.unwrap().delivery.data,
        b"through"
    );
    assert!(get(&ch, "e2e", true).await.is_none());
    assert_eq!(
        get(&ch, "unrouted", true).await.unwrap().delivery.data,
        b"alt"
    );
    ch.exchange_unbind("dst", "src", "a.#", Default::default(), none)
        .await
        .unwrap();
    publish(&ch, "src", "a.b", b"gone").await;
    assert!(get(&ch, "e2e", true).await.is_none());
}

#[tokio::test]
async fn exchange_errors() {
    let (_s, conn, _) = setup().await;
    let none = FieldTable::default();
    let ch = conn.create_channel().await.unwrap();
    let err = ch
        .exchange_declare(
            "nope",
            ExchangeKind::Direct,
            ExchangeDeclareOptions {
                passive: true,
                ..Default::default()
            },
            none.clone(),
        )
        .await
        .unwrap_err();
    assert_eq!(code(&err), 404);
    assert_eq!(text(&err), "NOT_FOUND - no exchange 'nope' in vhost '/'");
    let ch = conn.create_channel().await.unwrap();
    ch.exchange_declare(
        "logs",
        ExchangeKind::Direct,
        Default::default(),
        none.clone(),
    )
    .await
    .unwrap();
    let err = ch
        .exchange_declare(
            "logs",
            ExchangeKind::Fanout,
            Default::default(),
            none.clone(),
        )
        .await
        .unwrap_err();
    assert_eq!(code(&err), 406);
    let ch = conn.create_channel().await.unwrap();
    let err = ch
        .exchange_declare(
            "amq.custom",
            ExchangeKind::Direct,
            Default::default(),
            none.clone(),
        )
        .await
        .unwrap_err();
    assert_eq!(code(&err), 403);
    let ch = conn.create_channel().await.unwrap();
    declare(&ch, "q").await;
    ch.queue_bind("q", "logs", "k", Default::default(), none.clone())
        .await
        .unwrap();
    let err = ch
        .exchange_delete(
            "logs",
            ExchangeDeleteOptions {
                if_unused: true,
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(code(&err), 406);
    let ch = conn.create_channel().await.unwrap();
    let err = ch
        .queue_bind("q", "missing", "k", Default::default(), none.clone())
        .await
        .unwrap_err();
    assert_eq!(code(&err), 404);
    let ch = conn.create_channel().await.unwrap();
    ch.exchange_declare(
        "internal.x",
        ExchangeKind::Fanout,
        ExchangeDeclareOptions {
            internal: true,
            ..Default::default()
        },
        none.clone(),
    )
    .await
    .unwrap();
    let mut errs = errors(&ch);
    publish(&ch, "internal.x", "", b"x").await;
    let err = next_error(&mut errs).await;
    assert_eq!(code(&err), 403);
    let ch = conn.create_channel().await.unwrap();
    let mut errs = errors(&ch);
    publish(&ch, "no-such-exchange", "", b"x").await;
    let err = next_error(&mut errs).await;
    assert_eq!(code(&err), 404);
    // An unknown exchange type is a connection error (503).
    let ch = conn.create_channel().await.unwrap();
    let err = ch
        .exchange_declare(
            "odd",
            ExchangeKind::Custom("x-unknown".into()),
            Default::default(),
            none,
        )
        .await
        .unwrap_err();
    assert_eq!(code(&err), 503);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while conn.status().connected() {
        assert!(
            std::time::Instant::now() < deadline,
            "connection not closed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn mandatory_unroutable_is_returned_before_its_confirm() {
    let (_s, _c, ch) = setup().await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let confirm = ch
        .basic_publish(
            "",
            "no-such-queue",
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            b"r",
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    match confirm {
        Confirmation::Ack(Some(ret)) => {
            assert_eq!(ret.reply_code, 312);
            assert_eq!(ret.reply_text.as_str(), "NO_ROUTE");
            assert_eq!(ret.delivery.data, b"r");
        }
        other => panic!("expected an ack with a returned message, got {other:?}"),
    }
}

#[tokio::test]
async fn publisher_confirms_ack_every_message() {
    let (_s, _c, ch) = setup().await;
    declare(&ch, "pc").await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let mut confirms = Vec::new();
    for i in 0..1000u32 {
        confirms.push(
            ch.basic_publish(
                "",
                "pc",
                Default::default(),
                &i.to_be_bytes(),
                BasicProperties::default(),
            )
            .await
            .unwrap(),
        );
    }
    for c in confirms {
        assert!(within(c).await.unwrap().is_ack());
    }
    let q = passive(&ch, "pc").await.unwrap();
    assert_eq!(q.message_count(), 1000);
}

#[tokio::test]
async fn transactions_commit_and_rollback() {
    let (_s, conn, ch) = setup().await;
    declare(&ch, "tx").await;
    let err = ch.tx_commit().await.unwrap_err();
    assert_eq!(code(&err), 406);
    let ch = conn.create_channel().await.unwrap();
    ch.tx_select().await.unwrap();
    publish(&ch, "", "tx", b"1").await;
    let other = conn.create_channel().await.unwrap();
    assert!(get(&other, "tx", true).await.is_none());
    ch.tx_commit().await.unwrap();
    publish(&ch, "", "tx", b"2").await;
    ch.tx_rollback().await.unwrap();
    ch.tx_commit().await.unwrap();
    let m = get(&ch, "tx", false).await.unwrap();
    assert_eq!(m.delivery.data, b"1");
    assert!(get(&other, "tx", true).await.is_none());
    // An ack inside a rolled-back transaction leaves the message unacked.
    m.delivery.ack(BasicAckOptions::default()).await.unwrap();
    ch.tx_rollback().await.unwrap();
    ch.basic_recover(BasicRecoverOptions { requeue: true })
        .await
        .unwrap();
    let again = get(&other, "tx", true).await.unwrap();
    assert_eq!(again.delivery.data, b"1");
    assert!(again.delivery.redelivered);
    let err = ch
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap_err();
    assert_eq!(code(&err), 406);
}

#[tokio::test]
async fn channel_flow_pauses_deliveries() {
    let (_s, _c, ch) = setup().await;
    declare(&ch, "flow").await;
    let mut consumer = consume_no_ack(&ch, "flow", "c").await.unwrap();
    assert!(!ch
        .channel_flow(ChannelFlowOptions { active: false })
        .await
        .unwrap());
    publish(&ch, "", "flow", b"x").await;
    assert!(
        tokio::time::timeout(Duration::from_millis(300), consumer.next())
            .await
            .is_err()
    );
    assert!(ch
        .channel_flow(ChannelFlowOptions { active: true })
        .await
        .unwrap());
    assert_eq!(next_delivery(&mut consumer).await.data, b"x");
}

#[tokio::test]
async fn recover_requeues_unacked() {
    let (_s, _c, ch) = setup().await;
    declare(&ch, "rec").await;
    publish(&ch, "", "rec", b"x").await;
    let m = get(&ch, "rec", false).await.unwrap();
    assert!(!m.delivery.redelivered);
    ch.basic_recover(BasicRecoverOptions { requeue: true })
        .await
        .unwrap();
    let m = get(&ch, "rec", true).await.unwrap();
    assert!(m.delivery.redelivered);
}

#[tokio::test]
async fn wrong_password_is_refused_with_403() {
    let server = TestServer::start().await;
    let uri = format!("amqp://guest:wrong@{}/%2f", server.addr);
    let err = Connection::connect(&uri, ConnectionProperties::default())
        .await
        .unwrap_err();
    assert_eq!(code(&err), 403);
    let uri = format!("amqp://guest:guest@{}/nope", server.addr);
    let err = Connection::connect(&uri, ConnectionProperties::default())
        .await
        .unwrap_err();
    assert_eq!(code(&err), 530);
}

#[tokio::test]
async fn many_connections_and_channels_work_concurrently() {
    let server = TestServer::start().await;
    let conn = connect(&server).await;
    let ch = conn.create_channel().await.unwrap();
    declare(&ch, "many").await;
    let mut tasks = Vec::new();
    for p in 0..8u8 {
        let uri = server.uri();
        tasks.push(tokio::spawn(async move {
            let c = Connection::connect(&uri, ConnectionProperties::default())
                .await
                .unwrap();
            let ch = c.create_channel().await.unwrap();
            for i in 0..250u16 {
                let mut body = vec![p];
                body.extend_from_slice(&i.to_be_bytes());
                publish(&ch, "", "many", &body).await;
            }
            c.close(200, "done").await.unwrap();
        }));
    }
    let mut consumer = consume_no_ack(&ch, "many", "c").await.unwrap();
    let mut last = [None::<u16>; 8];
    for _ in 0..2000 {
        let d = next_delivery(&mut consumer).await;
        let (p, i) = (
            d.data[0] as usize,
            u16::from_be_bytes([d.data[1], d.data[2]]),
        );
        // Per-publisher order is preserved.
        assert!(
            last[p].is_none_or(|prev| i == prev + 1),
            "publisher {p}: {i} after {:?}",
            last[p]
        );
        last[p] = Some(i);
    }
    for t in tasks {
        t.await.unwrap();
    }
    let _ = ShortString::from("done");
}

#[tokio::test]
async fn unbinding_what_is_missing_succeeds() {
    let (_s, conn, ch) = setup().await;
    ch.queue_unbind("no-queue", "amq.direct", "k", FieldTable::default())
        .await
        .unwrap();
    declare(&ch, "ub").await;
    ch.queue_unbind("ub", "no-exchange", "k", FieldTable::default())
        .await
        .unwrap();
    ch.exchange_unbind(
        "x",
        "no-source",
        "k",
        Default::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    // Binding, by contrast, names the missing exchange first.
    let ch = conn.create_channel().await.unwrap();
    let err = ch
        .queue_bind(
            "no-queue",
            "no-exchange",
            "k",
            Default::default(),
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(
        text(&err),
        "NOT_FOUND - no exchange 'no-exchange' in vhost '/'"
    );
}

#[tokio::test]
async fn queue_arguments_are_validated_like_rabbitmq() {
    let (_s, conn, _) = setup().await;
    let cases: Vec<(&str, AMQPValue, &str)> = vec![
        (
            "x-message-ttl",
            AMQPValue::LongString("abc".into()),
            "PRECONDITION_FAILED - invalid arg 'x-message-ttl' for queue 'args' in vhost '/': \"expected integer, got longstr\"",
        ),
        (
            "x-max-length",
            AMQPValue::LongInt(-1),
            "PRECONDITION_FAILED - invalid arg 'x-max-length' for queue 'args' in vhost '/': {value_negative,-1}",
        ),
        (
            "x-overflow",
            AMQPValue::LongString("bogus".into()),
            "PRECONDITION_FAILED - invalid arg 'x-overflow' for queue 'args' in vhost '/': invalid_overflow",
        ),
    ];
    for (key, value, want) in cases {
        let ch = conn.create_channel().await.unwrap();
        let mut args = FieldTable::default();
        args.insert(key.into(), value);
        let err = ch
            .queue_declare("args", QueueDeclareOptions::default(), args)
            .await
            .unwrap_err();
        assert_eq!((code(&err), text(&err)), (406, want.to_string()));
    }
    let ch = conn.create_channel().await.unwrap();
    let mut args = FieldTable::default();
    args.insert("x-message-ttl".into(), AMQPValue::LongInt(1000));
    ch.queue_declare("args", QueueDeclareOptions::default(), args)
        .await
        .unwrap();
    let mut other = FieldTable::default();
    other.insert("x-message-ttl".into(), AMQPValue::LongInt(2000));
    let err = ch
        .queue_declare("args", QueueDeclareOptions::default(), other)
        .await
        .unwrap_err();
    assert_eq!(
        text(&err),
        "PRECONDITION_FAILED - inequivalent arg 'x-message-ttl' for queue 'args' in vhost '/': received '2000' but current is '1000'"
    );
}

#[tokio::test]
async fn publish_properties_are_validated_like_rabbitmq() {
    let (_s, conn, _) = setup().await;
    let cases = [
        (
            BasicProperties::default().with_user_id("mallory".into()),
            "PRECONDITION_FAILED - user_id property set to 'mallory' but authenticated user was 'guest'",
        ),
        (
            BasicProperties::default().with_expiration("soon".into()),
            "PRECONDITION_FAILED - invalid expiration 'soon': no_integer",
        ),
        (
            BasicProperties::default().with_delivery_mode(5),
            "PRECONDITION_FAILED - invalid message: {delivery_mode_unknown,5}",
        ),
    ];
    for (props, want) in cases {
        let ch = conn.create_channel().await.unwrap();
        let mut errs = errors(&ch);
        ch.basic_publish("", "nowhere", Default::default(), b"x", props)
            .await
            .unwrap();
        let err = next_error(&mut errs).await;
        assert_eq!((code(&err), text(&err)), (406, want.to_string()));
    }
    let ch = conn.create_channel().await.unwrap();
    ch.basic_publish(
        "",
        "nowhere",
        Default::default(),
        b"x",
        BasicProperties::default().with_user_id("guest".into()),
    )
    .await
    .unwrap();
    declare(&ch, "still-open").await;
}

#[tokio::test]
async fn closing_a_busy_consumer_connection_leaves_the_broker_responsive() {
    // A consumer connection closing while its queues still deliver to it
    // must cancel its consumers at once; before that was so, the queues and
    // the closing connection handed messages back and forth forever.
    // A livelocked broker task would also starve this test's runtime, so a
    // plain thread stands watch.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    {
        let done = done.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(60));
            if !done.load(std::sync::atomic::Ordering::SeqCst) {
                eprintln!("broker livelocked after a consumer connection closed");
                std::process::exit(1);
            }
        });
    }
    let server = TestServer::start().await;
    let setup_conn = connect(&server).await;
    let ch = setup_conn.create_channel().await.unwrap();
    ch.exchange_declare(
        "busy",
        ExchangeKind::Fanout,
        Default::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let consumer_conn = connect(&server).await;
    let cch = consumer_conn.create_channel().await.unwrap();
    let mut consumers = Vec::new();
    for i in 0..8 {
        let q = format!("busy-{i}");
        declare(&ch, &q).await;
        ch.queue_bind(&q, "busy", "", Default::default(), FieldTable::default())
            .await
            .unwrap();
        consumers.push(consume_no_ack(&cch, &q, &q).await.unwrap());
    }
    let publisher = connect(&server).await;
    let pch = publisher.create_channel().await.unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let publishing = {
        let stop = stop.clone();
        tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = pch
                    .basic_publish(
                        "busy",
                        "",
                        Default::default(),
                        b"0123456789abcdef",
                        BasicProperties::default(),
                    )
                    .await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Under the flood of deliveries lapin may report the socket gone
    // before it reads its close-ok; what is tested is the broker after.
    let _ = consumer_conn.close(200, "bye").await;
    drop(consumers);
    // The broker still answers a newcomer promptly.
    let newcomer = within(Connection::connect(
        &server.uri(),
        ConnectionProperties::default(),
    ))
    .await
    .unwrap();
    let nch = within(newcomer.create_channel()).await.unwrap();
    within(nch.queue_declare(
        "after",
        QueueDeclareOptions::default(),
        FieldTable::default(),
    ))
    .await
    .unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    publishing.await.unwrap();
    done.store(true, std::sync::atomic::Ordering::SeqCst);
}
