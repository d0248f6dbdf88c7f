//! The definitions store on the real file system, at 2,000, 8,000 and
//! 100,000 definitions of 300 bytes: one put (a durable declare) without
//! and with waiting for its sync, reopening the store, and compacting it.
//! The whole-file JSON rewrite it replaces took 1.9 ms per durable declare
//! at 2,000 queues and 4.4 ms at 8,000.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use warren_store::{Change, DefinitionsStore, RealDisk, SyncCoordinator};

fn key(i: usize) -> Vec<u8> {
    format!("queue/vhost-{}/some.queue.name.{i:06}", i % 10).into_bytes()
}

fn value(i: usize) -> Vec<u8> {
    let mut v = vec![0x5A; 300];
    v[..8].copy_from_slice(&(i as u64).to_le_bytes());
    v
}

fn open(dir: &Path, sync: &Arc<SyncCoordinator>) -> DefinitionsStore {
    let (store, _) = DefinitionsStore::open(
        Arc::new(RealDisk::new()),
        dir.to_path_buf(),
        Arc::clone(sync),
    )
    .expect("open");
    store
}

/// A store in a fresh temporary directory holding `n` definitions, synced.
fn filled(n: usize) -> (tempfile::TempDir, DefinitionsStore, Arc<SyncCoordinator>) {
    let tmp = tempfile::tempdir().expect("temporary directory");
    let sync = SyncCoordinator::manual();
    let store = open(&tmp.path().join("definitions"), &sync);
    let all: Vec<usize> = (0..n).collect();
    for chunk in all.chunks(1000) {
        let changes: Vec<Change> = chunk
            .iter()
            .map(|&i| Change::Put {
                key: key(i),
                value: value(i),
            })
            .collect();
        store.apply(&changes).expect("apply");
    }
    sync.sync_now();
    (tmp, store, sync)
}

fn definitions(c: &mut Criterion) {
    let mut group = c.benchmark_group("definitions store");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for n in [2_000usize, 8_000, 100_000] {
        let (_tmp, store, sync) = filled(n);
        group.throughput(Throughput::Elements(1));
        let mut next = n;
        group.bench_function(format!("put at {n}"), |b| {
            b.iter(|| {
                next += 1;
                black_box(store.put(&key(next), &value(next)).expect("put"))
            })
        });
        group.bench_function(format!("put and sync at {n}"), |b| {
            b.iter(|| {
                next += 1;
                let t = store.put(&key(next), &value(next)).expect("put");
                assert!(sync.sync_now() >= t);
            })
        });
        drop(store);
    }
    let (tmp, store, sync) = filled(100_000);
    let dir = tmp.path().join("definitions");
    drop(store);
    group.bench_function("open 100000", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                black_box(open(&dir, &sync));
            }
            start.elapsed()
        })
    });
    let store = open(&dir, &sync);
    group.bench_function("compact 100000", |b| {
        b.iter(|| store.compact().expect("compact"))
    });
    group.finish();
}

criterion_group!(benches, definitions);
criterion_main!(benches);
