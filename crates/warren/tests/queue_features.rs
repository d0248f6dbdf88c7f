//! Queue features across restarts and `kill -9`, black-box: the real
//! `warren` binary on a real data directory. Message deadlines are
//! absolute (a message expires when it would have without the restart),
//! priorities and quorum delivery counts come back, and dead letters keep
//! their `x-death` history. The behaviour of each feature on a live broker
//! is covered, against RabbitMQ as well, by the interop suite.

mod common;

use std::time::{Duration, Instant};

use common::process::{temp_dir, Broker};
use common::{within, TestServer};
use futures_util::StreamExt;
use lapin::options::*;
use lapin::publisher_confirm::Confirmation;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};

async fn connect(b: &Broker) -> (Connection, Channel) {
    connect_uri(&b.uri()).await
}

async fn connect_uri(uri: &str) -> (Connection, Channel) {
    let conn = Connection::connect(uri, ConnectionProperties::default())
        .await
        .expect("connect");
    let ch = conn.create_channel().await.expect("channel");
    (conn, ch)
}

fn table(entries: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in entries {
        t.insert((*k).into(), v.clone());
    }
    t
}

fn long_str(s: &str) -> AMQPValue {
    AMQPValue::LongString(s.into())
}

async fn declare_durable(ch: &Channel, name: &str, args: FieldTable) {
    let options = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.queue_declare(name, options, args)
        .await
        .expect("declare");
}

fn persistent() -> BasicProperties {
    BasicProperties::default().with_delivery_mode(2)
}

async fn get(ch: &Channel, queue: &str, no_ack: bool) -> Option<lapin::message::BasicGetMessage> {
    within(ch.basic_get(queue, BasicGetOptions { no_ack }))
        .await
        .expect("basic.get")
}

fn header<'a>(m: &'a lapin::message::Delivery, key: &str) -> Option<&'a AMQPValue> {
    m.properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get(key))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadlines_are_absolute_across_kill_9_and_dead_letters_keep_x_death() {
    let dir = temp_dir("ttl-kill");
    let b = Broker::start(&dir);
    let (_conn, ch) = connect(&b).await;
    declare_durable(&ch, "expired", FieldTable::default()).await;
    let ttl_ms = 4000;
    declare_durable(
        &ch,
        "work",
        table(&[
            ("x-message-ttl", AMQPValue::LongInt(ttl_ms)),
            ("x-dead-letter-exchange", long_str("")),
            ("x-dead-letter-routing-key", long_str("expired")),
        ]),
    )
    .await;
    ch.confirm_select(Default::default()).await.unwrap();
    let published = Instant::now();
    for i in 0..10u8 {
        ch.basic_publish("", "work", Default::default(), &[i], persistent())
            .await
            .unwrap();
    }
    ch.wait_for_confirms().await.unwrap();
    // Half the TTL passes before the crash.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let dir = b.kill9();

    let b = Broker::start(&dir);
    let (_conn, ch) = connect(&b).await;
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let q = ch
        .queue_declare("work", passive, FieldTable::default())
        .await
        .unwrap();
    assert_eq!(q.message_count(), 10, "the messages survived the crash");
    // Expired at their original deadline, by the broker alone: a deadline
    // restarted from the recovery would fire 2 s later.
    let mut got = Vec::new();
    let deadline = published + Duration::from_millis(ttl_ms as u64 + 1500);
    while got.len() < 10 && Instant::now() < deadline {
        match get(&ch, "expired", false).await {
            Some(m) => {
                assert!(
                    published.elapsed() >= Duration::from_millis(ttl_ms as u64 - 50),
                    "expired early"
                );
                got.push(m);
            }
            None => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    assert_eq!(
        got.len(),
        10,
        "every message expired by its original deadline"
    );
    let m = &got[0].delivery;
    assert_eq!(m.data, vec![0u8]);
    assert_eq!(
        header(m, "x-first-death-reason"),
        Some(&long_str("expired"))
    );
    assert_eq!(header(m, "x-first-death-queue"), Some(&long_str("work")));
    let Some(AMQPValue::FieldArray(deaths)) = header(m, "x-death") else {
        panic!("x-death missing: {:?}", m.properties.headers());
    };
    let AMQPValue::FieldTable(death) = &deaths.as_slice()[0] else {
        panic!("x-death entry is not a table");
    };
    assert_eq!(death.inner().get("count"), Some(&AMQPValue::LongLongInt(1)));
    assert_eq!(death.inner().get("reason"), Some(&long_str("expired")));
    assert_eq!(m.properties.delivery_mode(), &Some(2));
    for m in &got {
        m.ack(BasicAckOptions::default()).await.unwrap();
    }

    // A dead letter is a persistent message of a durable queue: it too
    // survives a restart, history included.
    ch.basic_publish("", "work", Default::default(), b"later", persistent())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_millis(ttl_ms as u64 + 3000);
    loop {
        let q = ch
            .queue_declare("expired", passive, FieldTable::default())
            .await
            .unwrap();
        if q.message_count() == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the last message never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let dir = b.stop();
    let b = Broker::start(&dir);
    let (_conn, ch) = connect(&b).await;
    let m = get(&ch, "expired", true).await.expect("dead letter kept");
    assert_eq!(m.delivery.data, b"later");
    assert_eq!(
        header(&m.delivery, "x-first-death-reason"),
        Some(&long_str("expired"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_priority_queue_keeps_its_order_across_kill_9() {
    let dir = temp_dir("priority-kill");
    let b = Broker::start(&dir);
    let (_conn, ch) = connect(&b).await;
    declare_durable(
        &ch,
        "jobs",
        table(&[("x-max-priority", AMQPValue::ShortShortUInt(5))]),
    )
    .await;
    ch.confirm_select(Default::default()).await.unwrap();
    for (i, p) in [0u8, 3, 9, 1, 3, 0, 5].into_iter().enumerate() {
        let props = persistent().with_priority(p);
        ch.basic_publish("", "jobs", Default::default(), &[i as u8], props)
            .await
            .unwrap();
    }
    ch.wait_for_confirms().await.unwrap();
    let dir = b.kill9();

    let b = Broker::start(&dir);
    let (_conn, ch) = connect(&b).await;
    let mut order = Vec::new();
    while let Some(m) = get(&ch, "jobs", true).await {
        order.push(m.delivery.data[0]);
    }
    // Priority 9 counts as the maximum, 5; equal priorities keep their order.
    assert_eq!(order, vec![2, 6, 1, 4, 3, 0, 5]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_delivery_counts_survive_a_restart_and_the_limit_dead_letters() {
    let dir = temp_dir("quorum-count");
    let b = Broker::start(&dir);
    let (_conn, ch) = connect(&b).await;
    declare_durable(&ch, "poison", FieldTable::default()).await;
    let args = table(&[
        ("x-queue-type", long_str("quorum")),
        ("x-delivery-limit", AMQPValue::LongInt(2)),
        ("x-dead-letter-exchange", long_str("")),
        ("x-dead-letter-routing-key", long_str("poison")),
    ]);
    declare_durable(&ch, "tasks", args.clone()).await;
    ch.confirm_select(Default::default()).await.unwrap();
    ch.basic_publish("", "tasks", Default::default(), b"bad", persistent())
        .await
        .unwrap();
    ch.wait_for_confirms().await.unwrap();
    let count =
        |m: &lapin::message::BasicGetMessage| header(&m.delivery, "x-delivery-count").cloned();
    for want in 0..2i64 {
        let m = get(&ch, "tasks", false).await.expect("message");
        assert_eq!(count(&m), Some(AMQPValue::LongLongInt(want)));
        m.nack(BasicNackOptions {
            requeue: true,
            ..Default::default()
        })
        .await
        .unwrap();
    }
    // Settled acks and returns reach the ack log before a clean stop.
    let dir = b.stop();

    let b = Broker::start(&dir);
    let (_conn, ch) = connect(&b).await;
    let m = get(&ch, "tasks", false)
        .await
        .expect("message after restart");
    assert_eq!(count(&m), Some(AMQPValue::LongLongInt(2)));
    assert!(m.delivery.redelivered);
    m.nack(BasicNackOptions {
        requeue: true,
        ..Default::default()
    })
    .await
    .unwrap();
    // The third return passes the limit of 2: dead-lettered, not requeued.
    let mut dead = None;
    for _ in 0..50 {
        dead = get(&ch, "poison", true).await;
        if dead.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let dead = dead.expect("dead-lettered after the limit");
    assert_eq!(
        header(&dead.delivery, "x-first-death-reason"),
        Some(&long_str("delivery_limit"))
    );
    assert!(header(&dead.delivery, "x-delivery-count").is_none());
    assert!(get(&ch, "tasks", true).await.is_none());
}

#[tokio::test]
async fn a_full_reject_publish_queue_nacks_and_dead_letters_only_with_dlx() {
    let server = TestServer::start().await;
    let (_conn, ch) = connect_uri(&server.uri()).await;
    ch.queue_declare("dlq", Default::default(), FieldTable::default())
        .await
        .unwrap();
    for (name, overflow) in [("plain", "reject-publish"), ("dlx", "reject-publish-dlx")] {
        let args = table(&[
            ("x-max-length", AMQPValue::LongInt(1)),
            ("x-overflow", long_str(overflow)),
            ("x-dead-letter-exchange", long_str("")),
            ("x-dead-letter-routing-key", long_str("dlq")),
        ]);
        ch.queue_declare(name, Default::default(), args)
            .await
            .unwrap();
    }
    ch.confirm_select(Default::default()).await.unwrap();
    let mut outcomes = Vec::new();
    for name in ["plain", "plain", "dlx", "dlx"] {
        let confirm = ch
            .basic_publish(
                "",
                name,
                Default::default(),
                name.as_bytes(),
                BasicProperties::default(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        outcomes.push(matches!(confirm, Confirmation::Ack(_)));
    }
    assert_eq!(outcomes, vec![true, false, true, false]);
    // Only the reject-publish-dlx refusal was dead-lettered (reason maxlen).
    let m = get(&ch, "dlq", true).await.expect("dead letter");
    assert_eq!(m.delivery.data, b"dlx");
    assert_eq!(
        header(&m.delivery, "x-first-death-reason"),
        Some(&long_str("maxlen"))
    );
    assert!(get(&ch, "dlq", true).await.is_none());
}

#[tokio::test]
async fn direct_reply_to_round_trip() {
    let server = TestServer::start().await;
    let (_c1, client) = connect_uri(&server.uri()).await;
    let (_c2, service) = connect_uri(&server.uri()).await;
    service
        .queue_declare("rpc", Default::default(), FieldTable::default())
        .await
        .unwrap();
    let mut replies = client
        .basic_consume(
            "amq.rabbitmq.reply-to",
            "me",
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let request = BasicProperties::default()
        .with_reply_to("amq.rabbitmq.reply-to".into())
        .with_correlation_id("42".into());
    client
        .basic_publish("", "rpc", Default::default(), b"ping", request)
        .await
        .unwrap();
    let req = loop {
        if let Some(m) = get(&service, "rpc", true).await {
            break m;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let reply_to = req
        .delivery
        .properties
        .reply_to()
        .clone()
        .expect("reply_to");
    assert!(reply_to.as_str().starts_with("amq.rabbitmq.reply-to."));
    assert!(reply_to.as_str().len() > "amq.rabbitmq.reply-to.".len());
    let props = BasicProperties::default().with_correlation_id("42".into());
    service
        .basic_publish("", reply_to.as_str(), Default::default(), b"pong", props)
        .await
        .unwrap();
    let reply = within(replies.next())
        .await
        .expect("reply")
        .expect("delivery");
    assert_eq!(reply.data, b"pong");
    assert_eq!(reply.routing_key.as_str(), reply_to.as_str());
    assert_eq!(
        reply
            .properties
            .correlation_id()
            .as_ref()
            .map(|c| c.as_str()),
        Some("42")
    );
}

#[tokio::test]
async fn the_higher_priority_consumer_gets_everything_while_it_has_room() {
    let server = TestServer::start().await;
    let (conn, ch) = connect_uri(&server.uri()).await;
    ch.queue_declare("work", Default::default(), FieldTable::default())
        .await
        .unwrap();
    let mut consumers = Vec::new();
    for (tag, priority) in [("low", 1), ("high", 10)] {
        let c = conn.create_channel().await.unwrap();
        c.basic_qos(5, Default::default()).await.unwrap();
        let args = table(&[("x-priority", AMQPValue::LongInt(priority))]);
        let consumer = c
            .basic_consume("work", tag, Default::default(), args)
            .await
            .unwrap();
        consumers.push((c, consumer));
    }
    for i in 0..8u8 {
        ch.basic_publish(
            "",
            "work",
            Default::default(),
            &[i],
            BasicProperties::default(),
        )
        .await
        .unwrap();
    }
    // High takes its window of 5, the rest goes to low.
    let (_, low) = &mut consumers[0];
    let mut low_got = Vec::new();
    for _ in 0..3 {
        low_got.push(within(low.next()).await.unwrap().unwrap().data[0]);
    }
    let (_, high) = &mut consumers[1];
    let mut high_got = Vec::new();
    for _ in 0..5 {
        high_got.push(within(high.next()).await.unwrap().unwrap().data[0]);
    }
    assert_eq!(high_got, vec![0, 1, 2, 3, 4]);
    assert_eq!(low_got, vec![5, 6, 7]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_length_limit_counts_the_recovered_backlog() {
    let dir = temp_dir("maxbytes-restart");
    let b = Broker::start(&dir);
    let (_conn, ch) = connect(&b).await;
    let args = table(&[
        ("x-max-length-bytes", AMQPValue::LongInt(10)),
        ("x-overflow", long_str("reject-publish")),
    ]);
    declare_durable(&ch, "bounded", args.clone()).await;
    ch.confirm_select(Default::default()).await.unwrap();
    let publish = |ch: Channel| async move {
        let confirm = ch
            .basic_publish("", "bounded", Default::default(), b"12345", persistent())
            .await
            .unwrap()
            .await
            .unwrap();
        matches!(confirm, Confirmation::Ack(_))
    };
    assert!(publish(ch.clone()).await && publish(ch.clone()).await);
    assert!(!publish(ch.clone()).await, "11 bytes would exceed 10");
    let dir = b.kill9();

    let b = Broker::start(&dir);
    let (_conn, ch) = connect(&b).await;
    ch.confirm_select(Default::default()).await.unwrap();
    assert!(
        !publish(ch.clone()).await,
        "the recovered 10 bytes still count"
    );
    get(&ch, "bounded", true)
        .await
        .expect("a recovered message");
    assert!(publish(ch.clone()).await, "room for one again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quorum_queue_keeps_transient_messages_across_kill_9() {
    let dir = temp_dir("quorum-transient");
    let b = Broker::start(&dir);
    let (_conn, ch) = connect(&b).await;
    let quorum = table(&[("x-queue-type", long_str("quorum"))]);
    declare_durable(&ch, "q", quorum).await;
    declare_durable(&ch, "classic", FieldTable::default()).await;
    ch.confirm_select(Default::default()).await.unwrap();
    for queue in ["q", "classic"] {
        for (body, mode) in [(b"transient", 1u8), (b"persisted", 2u8)] {
            let props = BasicProperties::default().with_delivery_mode(mode);
            ch.basic_publish("", queue, Default::default(), body, props)
                .await
                .unwrap();
        }
    }
    ch.wait_for_confirms().await.unwrap();
    let dir = b.kill9();

    let b = Broker::start(&dir);
    let (_conn, ch) = connect(&b).await;
    let bodies = |queue: &'static str| {
        let ch = ch.clone();
        async move {
            let mut got = Vec::new();
            while let Some(m) = get(&ch, queue, true).await {
                got.push(String::from_utf8(m.delivery.data).unwrap());
            }
            got
        }
    };
    // As RabbitMQ's quorum queues: every message is kept, whatever its
    // delivery mode; a classic queue keeps the persistent ones only.
    assert_eq!(bodies("q").await, ["transient", "persisted"]);
    assert_eq!(bodies("classic").await, ["persisted"]);
}
