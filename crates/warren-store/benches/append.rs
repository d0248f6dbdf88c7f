//! Disk store throughput on the real file system: appending 16-byte and
//! 1 KiB persistent messages (the sync thread running alongside, as in the
//! broker), flushed one by one or in batches of a thousand (as a read full
//! of publishes is), and popping plus acking them back.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use warren_core::{Message, MessageStore, QueuedMessage};
use warren_store::{DiskQueueStore, RealDisk, SyncCoordinator};

/// Properties with delivery mode 2 (persistent).
const PERSISTENT_PROPERTIES: &[u8] = &[0x10, 0x00, 2];

fn message(size: usize) -> Arc<Message> {
    Arc::new(Message {
        exchange: String::new(),
        routing_key: "bench".into(),
        properties: Bytes::from_static(PERSISTENT_PROPERTIES),
        persistent: true,
        headers: None,
        expiration: None,
        priority: 0,
        bcc: Vec::new(),
        body: Bytes::from(vec![0xA5; size]),
        confirm: None,
    })
}

/// A fresh store in a fresh temporary directory.
fn fresh(sync: &Arc<SyncCoordinator>) -> (tempfile::TempDir, DiskQueueStore) {
    let tmp = tempfile::tempdir().expect("temporary directory");
    let store = DiskQueueStore::open(
        Arc::new(RealDisk::new()),
        tmp.path().join("q"),
        Arc::clone(sync),
    )
    .expect("open store");
    (tmp, store)
}

/// Pushes `n` messages, flushing after every `batch`.
fn fill(store: &mut DiskQueueStore, msg: &Arc<Message>, n: u64, batch: u64) {
    for seq in 0..n {
        store
            .push(QueuedMessage {
                seq,
                message: Arc::clone(msg),
                redelivered: false,
                expires_at: None,
                delivery_count: 0,
            })
            .expect("push");
        if (seq + 1) % batch == 0 {
            store.flush().expect("flush");
        }
    }
    store.flush().expect("flush");
}

fn append(c: &mut Criterion) {
    let mut group = c.benchmark_group("disk store");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(1));
    for size in [16usize, 1024] {
        let msg = message(size);
        for batch in [1u64, 1000] {
            group.bench_function(format!("append {size} B, flush every {batch}"), |b| {
                b.iter_custom(|iters| {
                    let sync = SyncCoordinator::start();
                    let (_tmp, mut store) = fresh(&sync);
                    let start = Instant::now();
                    fill(&mut store, &msg, iters, batch);
                    let elapsed = start.elapsed();
                    sync.shutdown();
                    elapsed
                })
            });
        }
        group.bench_function(format!("pop+ack {size} B, flush every 100"), |b| {
            b.iter_custom(|iters| {
                let sync = SyncCoordinator::start();
                let (_tmp, mut store) = fresh(&sync);
                fill(&mut store, &msg, iters, 1000);
                sync.sync_now();
                let start = Instant::now();
                for i in 0..iters {
                    let m = store.pop().expect("pop").expect("a message");
                    store.ack(black_box(&m)).expect("ack");
                    if i % 100 == 99 {
                        store.flush().expect("flush");
                    }
                }
                let elapsed = start.elapsed();
                sync.shutdown();
                elapsed
            })
        });
    }
    group.finish();
}

criterion_group!(benches, append);
criterion_main!(benches);
