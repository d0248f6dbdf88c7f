//! Durability, black-box: the real `warren` binary on a real data
//! directory, stopped gracefully or killed with SIGKILL while clients
//! publish with confirms and consume, then restarted and drained.

mod common;

use std::collections::{BTreeSet, HashSet};
use std::time::{Duration, Instant};

use common::process::{temp_dir, Broker};
use common::within;
use futures_util::StreamExt;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};

async fn connect(b: &Broker) -> (Connection, Channel) {
    let conn = Connection::connect(&b.uri(), ConnectionProperties::default())
        .await
        .expect("connect");
    let ch = conn.create_channel().await.expect("channel");
    (conn, ch)
}

fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..Default::default()
    }
}

fn persistent() -> BasicProperties {
    BasicProperties::default().with_delivery_mode(2)
}

/// A body that carries its id and proves its own integrity.
fn body(id: u32, len: usize) -> Vec<u8> {
    let mut b = id.to_be_bytes().to_vec();
    b.extend((0..len).map(|i| (id as usize * 31 + i) as u8));
    b
}

fn check(body: &[u8]) -> u32 {
    let id = u32::from_be_bytes(body[..4].try_into().unwrap());
    assert_eq!(body, self::body(id, body.len() - 4), "corrupt message {id}");
    id
}

/// Takes every message off `queue` with basic.get, acking each.
/// Publishes one 1 MiB persistent message per id and waits for the
/// confirms.
async fn publish_mib(ch: &Channel, queue: &str, ids: std::ops::Range<u32>) {
    for id in ids {
        ch.basic_publish(
            "",
            queue,
            Default::default(),
            &body(id, (1 << 20) - 4),
            persistent(),
        )
        .await
        .unwrap();
    }
    ch.wait_for_confirms().await.unwrap();
}

async fn drain(ch: &Channel, queue: &str) -> Vec<(u32, bool)> {
    let mut out = Vec::new();
    while let Some(m) = within(ch.basic_get(queue, BasicGetOptions { no_ack: true }))
        .await
        .unwrap()
    {
        out.push((check(&m.delivery.data), m.delivery.redelivered));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_restart_keeps_durable_definitions_and_messages() {
    let dir = temp_dir("graceful");
    let b = Broker::start(&dir);
    let (conn, ch) = connect(&b).await;
    ch.exchange_declare(
        "orders",
        ExchangeKind::Topic,
        ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.queue_declare("eu", durable(), FieldTable::default())
        .await
        .unwrap();
    ch.queue_declare(
        "scratch",
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.queue_bind(
        "eu",
        "orders",
        "eu.#",
        Default::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.confirm_select(Default::default()).await.unwrap();
    for id in 0..500u32 {
        let props = if id % 5 == 0 {
            BasicProperties::default()
        } else {
            persistent()
        };
        ch.basic_publish("orders", "eu.de", Default::default(), &body(id, 100), props)
            .await
            .unwrap();
    }
    ch.basic_publish("", "scratch", Default::default(), b"gone", persistent())
        .await
        .unwrap();
    ch.wait_for_confirms().await.unwrap();
    conn.close(200, "bye").await.unwrap();
    let dir = b.stop();

    let b = Broker::start(&dir);
    let (_conn, ch) = connect(&b).await;
    let q = ch
        .queue_declare(
            "eu",
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    assert_eq!(q.message_count(), 400, "persistent messages only");
    let err = ch
        .queue_declare(
            "scratch",
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, lapin::Error::ProtocolError(ref e) if e.get_id() == 404));
    let ch = _conn.create_channel().await.unwrap();
    // The binding survived: a new message routes.
    ch.basic_publish(
        "orders",
        "eu.fr",
        Default::default(),
        &body(1000, 10),
        persistent(),
    )
    .await
    .unwrap();
    let got = drain(&ch, "eu").await;
    let ids: Vec<u32> = got.iter().map(|(id, _)| *id).collect();
    let want: Vec<u32> = (0..500).filter(|id| id % 5 != 0).chain([1000]).collect();
    assert_eq!(ids, want, "order and content preserved");
    assert!(got.iter().all(|(_, redelivered)| !redelivered));
    drop(b);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_confirmed_publishing_loses_no_confirmed_message() {
    let dir = temp_dir("kill-publish");
    let mut confirmed: BTreeSet<u32> = BTreeSet::new();
    let mut next_id = 0u32;
    for round in 0..3u64 {
        let b = Broker::start(&dir);
        let (_conn, ch) = connect(&b).await;
        ch.queue_declare("jobs", durable(), FieldTable::default())
            .await
            .unwrap();
        ch.confirm_select(Default::default()).await.unwrap();
        let kill_after = Duration::from_millis(150 + 100 * round);
        let started = Instant::now();
        // Publish with a window of 100 outstanding confirms until the kill.
        let mut window = std::collections::VecDeque::new();
        loop {
            let id = next_id;
            next_id += 1;
            let confirm = ch
                .basic_publish(
                    "",
                    "jobs",
                    Default::default(),
                    &body(id, 200 + (id as usize % 700)),
                    persistent(),
                )
                .await;
            let Ok(confirm) = confirm else { break };
            window.push_back((id, confirm));
            if window.len() >= 100 {
                let (id, c) = window.pop_front().unwrap();
                match c.await {
                    Ok(c) if c.is_ack() => {
                        confirmed.insert(id);
                    }
                    _ => break,
                }
            }
            if started.elapsed() >= kill_after {
                break;
            }
        }
        // Confirms that arrived before the kill count too.
        let dir_back = b.kill9();
        for (id, c) in window {
            if let Ok(Ok(c)) = tokio::time::timeout(Duration::from_millis(10), c).await {
                if c.is_ack() {
                    confirmed.insert(id);
                }
            }
        }
        assert_eq!(dir_back, dir);
    }
    let b = Broker::start(&dir);
    let (_conn, ch) = connect(&b).await;
    let got = drain(&ch, "jobs").await;
    let ids: Vec<u32> = got.iter().map(|(id, _)| *id).collect();
    let unique: HashSet<u32> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "no consumer ran, so no duplicates");
    let missing: Vec<&u32> = confirmed.iter().filter(|id| !unique.contains(id)).collect();
    assert!(missing.is_empty(), "confirmed but lost: {missing:?}");
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "publication order kept"
    );
    assert!(!confirmed.is_empty());
    drop(b);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_while_consuming_redelivers_what_was_not_acked() {
    let dir = temp_dir("kill-consume");
    let b = Broker::start(&dir);
    let (_conn, ch) = connect(&b).await;
    ch.queue_declare("work", durable(), FieldTable::default())
        .await
        .unwrap();
    ch.confirm_select(Default::default()).await.unwrap();
    for id in 0..300u32 {
        ch.basic_publish("", "work", Default::default(), &body(id, 64), persistent())
            .await
            .unwrap();
    }
    ch.wait_for_confirms().await.unwrap();
    let cch = _conn.create_channel().await.unwrap();
    cch.basic_qos(50, Default::default()).await.unwrap();
    let mut consumer = cch
        .basic_consume("work", "c", Default::default(), FieldTable::default())
        .await
        .unwrap();
    // Ack the first 100 (prefetch 50: two multiple acks), leave the next
    // ones unacked.
    for _ in 0..2 {
        let mut last_tag = 0;
        for _ in 0..50 {
            let d = within(consumer.next()).await.unwrap().unwrap();
            check(&d.data);
            last_tag = d.delivery_tag;
        }
        cch.basic_ack(last_tag, BasicAckOptions { multiple: true })
            .await
            .unwrap();
    }
    // A synchronous round trip after the ack, so the broker has handled it.
    cch.basic_qos(50, Default::default()).await.unwrap();
    let mut delivered_unacked = Vec::new();
    for _ in 0..50 {
        let d = within(consumer.next()).await.unwrap().unwrap();
        delivered_unacked.push(check(&d.data));
    }
    let dir = b.kill9();

    let b = Broker::start(&dir);
    let (_conn, ch) = connect(&b).await;
    let got = drain(&ch, "work").await;
    let ids: Vec<u32> = got.iter().map(|(id, _)| *id).collect();
    // Acks are not synced on their own, so some acked messages may come back
    // (at-least-once); everything not acked must.
    for id in 100..300 {
        assert!(ids.contains(&id), "message {id} lost");
    }
    let unique: HashSet<u32> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "each message once");
    for (id, redelivered) in &got {
        if delivered_unacked.contains(id) {
            assert!(redelivered, "message {id} was delivered before the crash");
        }
        if *id >= 150 {
            assert!(!redelivered, "message {id} was never delivered");
        }
    }
    drop(b);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_transient_backlog_spills_to_disk_in_order_and_not_across_restarts() {
    let dir = temp_dir("spill");
    let b = Broker::start(&dir);
    let (_conn, ch) = connect(&b).await;
    ch.queue_declare(
        "big-transient",
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.confirm_select(Default::default()).await.unwrap();
    // 48 MiB: past the 32 MiB a transient queue keeps in memory.
    publish_mib(&ch, "big-transient", 0..48).await;
    let spilled = std::fs::read_dir(dir.join("transient"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert!(spilled > 0, "nothing was spilled to disk");
    let got = drain(&ch, "big-transient").await;
    let ids: Vec<u32> = got.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, (0..48).collect::<Vec<_>>());
    // Spill files are removed once drained, and never survive a restart.
    publish_mib(&ch, "big-transient", 100..140).await;
    let dir = b.kill9();
    let b = Broker::start(&dir);
    assert!(
        !dir.join("transient").exists()
            || std::fs::read_dir(dir.join("transient")).unwrap().count() == 0
    );
    drop(b);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A tiny tmpfs, unmounted on drop.
struct TinyFs(std::path::PathBuf);

impl TinyFs {
    fn mount(size: &str) -> Option<TinyFs> {
        let dir = temp_dir("tinyfs");
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(TinyFs(dir))
    }
}

impl Drop for TinyFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_nacks_publishes_and_loses_nothing_confirmed() {
    // Needs a file system small enough to fill: a tmpfs, which only root may
    // mount (as on CI).
    let Some(fs) = TinyFs::mount("6m") else {
        eprintln!("skipped: cannot mount a tmpfs here");
        return;
    };
    let dir = fs.0.join("data");
    // No disk alarm, so publishes really run into the full disk.
    let b = Broker::start_with(&dir, &["--disk-free-limit", "0"]);
    let (conn, ch) = connect(&b).await;
    ch.queue_declare("full", durable(), FieldTable::default())
        .await
        .unwrap();
    ch.confirm_select(Default::default()).await.unwrap();
    let mut acked = Vec::new();
    let mut nacked = 0;
    for id in 0..12_000u32 {
        let confirm = ch
            .basic_publish(
                "",
                "full",
                Default::default(),
                &body(id, 1000),
                persistent(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        if confirm.is_ack() {
            acked.push(id);
        } else {
            nacked += 1;
            if nacked > 50 {
                break;
            }
        }
    }
    assert!(nacked > 0, "the disk never filled");
    assert!(!acked.is_empty());
    // The broker is still up and answering.
    ch.queue_declare(
        "full",
        QueueDeclareOptions {
            passive: true,
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    conn.close(200, "bye").await.unwrap();
    let dir = b.kill9();
    let b = Broker::start_with(&dir, &["--disk-free-limit", "0"]);
    let (_conn, ch) = connect(&b).await;
    let got: Vec<u32> = drain(&ch, "full")
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let present: HashSet<u32> = got.iter().copied().collect();
    let lost: Vec<&u32> = acked.iter().filter(|id| !present.contains(id)).collect();
    assert!(
        lost.is_empty(),
        "confirmed but lost after the disk filled: {lost:?}"
    );
    drop(b);
    drop(fs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_whose_store_write_fails_gets_no_commit_ok() {
    let Some(fs) = TinyFs::mount("4m") else {
        eprintln!("skipped: cannot mount a tmpfs here");
        return;
    };
    let dir = fs.0.join("data");
    let b = Broker::start_with(&dir, &["--disk-free-limit", "0"]);
    let (_conn, ch) = connect(&b).await;
    ch.queue_declare("full", durable(), FieldTable::default())
        .await
        .unwrap();
    // Fill the disk until a confirmed publish is nacked.
    ch.confirm_select(Default::default()).await.unwrap();
    let mut filled = false;
    for id in 0..12_000u32 {
        let confirm = ch
            .basic_publish(
                "",
                "full",
                Default::default(),
                &body(id, 1000),
                persistent(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        if !confirm.is_ack() {
            filled = true;
            break;
        }
    }
    assert!(filled, "the disk never filled");
    let (conn, tx) = connect(&b).await;
    tx.tx_select().await.unwrap();
    for id in 0..20u32 {
        tx.basic_publish(
            "",
            "full",
            Default::default(),
            &body(id, 1000),
            persistent(),
        )
        .await
        .unwrap();
    }
    let err = within(tx.tx_commit())
        .await
        .expect_err("commit-ok on a failed write");
    assert!(
        matches!(err, lapin::Error::ProtocolError(ref e) if e.get_id() == 541),
        "{err:?}"
    );
    // lapin reports the error before it has finished its side of the close.
    let deadline = Instant::now() + Duration::from_secs(5);
    while conn.status().connected() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!conn.status().connected(), "the connection stayed open");
    drop(b);
    drop(fs);
}

/// Far more durable queues than the broker may keep files open for: the
/// idle ones' files are closed, reopened when used, and nothing is lost or
/// mixed up, through a `kill -9` too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_durable_queues_within_a_small_open_file_budget() {
    const QUEUES: u32 = 400;
    const BUDGET: &str = "16";
    let dir = temp_dir("file-budget");
    let b = Broker::start_with(&dir, &["--max-open-files", BUDGET]);
    let baseline = b.open_files();
    let (conn, ch) = connect(&b).await;
    ch.confirm_select(Default::default()).await.unwrap();
    for q in 0..QUEUES {
        let name = format!("budget-{q}");
        ch.queue_declare(&name, durable(), FieldTable::default())
            .await
            .unwrap();
        for m in 0..3 {
            ch.basic_publish(
                "",
                &name,
                Default::default(),
                &body(q * 10 + m, 200),
                persistent(),
            )
            .await
            .unwrap();
        }
    }
    ch.wait_for_confirms().await.unwrap();
    // Two files per queue would be 800; the budget plus the one connection
    // and a margin is all the broker holds.
    let open = b.open_files();
    assert!(
        open <= baseline + 16 + 8,
        "{open} files open with {QUEUES} durable queues (baseline {baseline})"
    );
    // Take one message of each queue, in an order unrelated to the
    // declares, so files are reopened for reading and for the ack log.
    for q in (0..QUEUES).rev() {
        let name = format!("budget-{q}");
        let got = within(ch.basic_get(&name, BasicGetOptions::default()))
            .await
            .unwrap()
            .expect("a message");
        assert_eq!(check(&got.delivery.data), q * 10);
        got.delivery.ack(BasicAckOptions::default()).await.unwrap();
    }
    // An ack is durable once a later confirm is: one more publish covers it.
    ch.basic_publish(
        "",
        "budget-0",
        Default::default(),
        &body(9, 200),
        persistent(),
    )
    .await
    .unwrap();
    ch.wait_for_confirms().await.unwrap();
    assert!(b.open_files() <= baseline + 16 + 8);
    conn.close(200, "bye").await.ok();

    let dir = b.kill9();
    let b = Broker::start_with(&dir, &["--max-open-files", BUDGET]);
    assert!(
        b.open_files() <= baseline + 16 + 4,
        "{} files open after recovering {QUEUES} queues",
        b.open_files()
    );
    let (conn, ch) = connect(&b).await;
    for q in 0..QUEUES {
        let name = format!("budget-{q}");
        let mut ids: Vec<u32> = drain(&ch, &name)
            .await
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        ids.sort_unstable();
        let mut want = vec![q * 10 + 1, q * 10 + 2];
        if q == 0 {
            want.push(9);
        }
        assert_eq!(ids, want, "queue {name}");
    }
    conn.close(200, "bye").await.ok();
    b.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Bytes in the segment files of every durable queue under `dir`.
fn segment_bytes(dir: &std::path::Path) -> u64 {
    let Ok(queues) = std::fs::read_dir(dir.join("queues")) else {
        return 0;
    };
    queues
        .flatten()
        .flat_map(|q| std::fs::read_dir(q.path()).into_iter().flatten().flatten())
        .filter(|f| f.file_name().to_string_lossy().starts_with("seg."))
        .map(|f| f.metadata().map_or(0, |m| m.len()))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_keeping_up_gets_everything_confirmed_and_a_crash_returns_only_what_was_written()
{
    const N: u32 = 1500;
    const SIZE: usize = 4096;
    let dir = temp_dir("write-behind");
    let b = Broker::start(&dir);
    let (conn, ch) = connect(&b).await;
    ch.queue_declare("fast", durable(), FieldTable::default())
        .await
        .unwrap();
    let cch = conn.create_channel().await.unwrap();
    cch.basic_qos(100, Default::default()).await.unwrap();
    let mut consumer = cch
        .basic_consume("fast", "c", Default::default(), FieldTable::default())
        .await
        .unwrap();
    // Every message but the first is acked as it arrives. The first one
    // stays unacked, so it is written, and the segment holding it (and
    // whatever else was written) is kept: its size tells what was written.
    let acker = tokio::spawn(async move {
        let mut ids = Vec::new();
        while ids.len() < N as usize {
            let d = within(consumer.next()).await.unwrap().unwrap();
            let id = check(&d.data);
            ids.push(id);
            if id != 0 {
                d.ack(BasicAckOptions::default()).await.unwrap();
            }
        }
        ids
    });
    ch.confirm_select(Default::default()).await.unwrap();
    // A window of 300 unconfirmed publishes (enough that writes are worth
    // saving), which the consumer keeps up with: their confirms come with
    // its acks.
    for from in (0..N).step_by(300) {
        let mut confirms = Vec::new();
        for id in from..(from + 300).min(N) {
            let c = ch
                .basic_publish(
                    "",
                    "fast",
                    Default::default(),
                    &body(id, SIZE),
                    persistent(),
                )
                .await
                .unwrap();
            confirms.push(c);
        }
        for c in confirms {
            assert!(
                within(c).await.unwrap().is_ack(),
                "every publish is confirmed"
            );
        }
    }
    let ids = within(acker).await.unwrap();
    assert_eq!(ids, (0..N).collect::<Vec<_>>(), "in order, once each");
    // The unacked one was confirmed by its sync: it is on disk.
    let written = segment_bytes(&dir);
    assert!(written > SIZE as u64, "the unacked message was written");
    // How much a consumer that keeps up spares the disk depends on how fast
    // it acks against the write delay (on a loaded machine, not at all):
    // the store's crash tests check that settled messages are never
    // written; here only what a crash brings back is checked.
    // After a crash the unacked one comes back; nothing else can but what
    // was written (acks not yet synced may bring those back).
    let dir = b.kill9();
    let b = Broker::start(&dir);
    let (_conn, ch) = connect(&b).await;
    let back = drain(&ch, "fast").await;
    assert!(back
        .iter()
        .any(|(id, redelivered)| *id == 0 && *redelivered));
    assert!(
        back.len() as u64 * SIZE as u64 <= written,
        "{} messages came back from {written} bytes",
        back.len()
    );
    drop(b);
    let _ = std::fs::remove_dir_all(&dir);
}
