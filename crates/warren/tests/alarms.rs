//! Resource alarms, black-box: a broker with a tiny memory limit blocks a
//! publishing connection (connection.blocked, reads paused) while a
//! consuming connection drains the queue, then unblocks it.

mod common;

use std::time::{Duration, Instant};

use common::process::{temp_dir, Broker};
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};

async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_alarm_blocks_publishers_until_consumers_drain() {
    let dir = temp_dir("alarm");
    let b = Broker::start_with(&dir, &["--vm-memory-high-watermark-absolute", "16000000"]);
    let publisher = Connection::connect(&b.uri(), ConnectionProperties::default())
        .await
        .unwrap();
    let consumer = Connection::connect(&b.uri(), ConnectionProperties::default())
        .await
        .unwrap();
    let pch = publisher.create_channel().await.unwrap();
    let cch = consumer.create_channel().await.unwrap();
    pch.queue_declare("mem", QueueDeclareOptions::default(), FieldTable::default())
        .await
        .unwrap();
    // 120 MiB of transient messages: far past the 16 MB watermark (transient queues keep up to 32 MiB in memory before spilling to disk).
    let body = vec![7u8; 1 << 20];
    let publishing = {
        let pch = pch.clone();
        tokio::spawn(async move {
            for _ in 0..120 {
                pch.basic_publish(
                    "",
                    "mem",
                    Default::default(),
                    &body,
                    BasicProperties::default(),
                )
                .await
                .unwrap();
            }
        })
    };
    wait_until("the publisher is blocked", || publisher.status().blocked()).await;
    assert!(
        !consumer.status().blocked(),
        "a connection that only consumes is never blocked"
    );

    // The consumer keeps draining while the publisher is blocked.
    let mut received = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while received < 120 {
        assert!(
            Instant::now() < deadline,
            "only {received} of 120 messages arrived"
        );
        match cch
            .basic_get("mem", BasicGetOptions { no_ack: true })
            .await
            .unwrap()
        {
            Some(m) => {
                assert_eq!(m.delivery.data.len(), 1 << 20);
                received += 1;
            }
            None => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    publishing.await.unwrap();
    wait_until("the publisher is unblocked", || {
        !publisher.status().blocked()
    })
    .await;
    // Publishing works again.
    pch.basic_publish(
        "",
        "mem",
        Default::default(),
        b"after",
        BasicProperties::default(),
    )
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(m) = cch
            .basic_get("mem", BasicGetOptions { no_ack: true })
            .await
            .unwrap()
        {
            assert_eq!(m.delivery.data, b"after");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the message after the alarm never arrived"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(b);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_alarm_blocks_publishers() {
    let dir = temp_dir("disk-alarm");
    // No file system has this much free space, so the alarm is raised at once.
    let b = Broker::start_with(&dir, &["--disk-free-limit", "1000000000000000000"]);
    let conn = Connection::connect(&b.uri(), ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    ch.queue_declare("d", QueueDeclareOptions::default(), FieldTable::default())
        .await
        .unwrap();
    assert!(!conn.status().blocked(), "not blocked before publishing");
    ch.basic_publish(
        "",
        "d",
        Default::default(),
        b"x",
        BasicProperties::default(),
    )
    .await
    .unwrap();
    wait_until("the publisher is blocked", || conn.status().blocked()).await;
    drop(b);
    let _ = std::fs::remove_dir_all(&dir);
}
