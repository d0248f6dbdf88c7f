//! Crash consistency on the simulated disk.
//!
//! Each case runs random operations against a store (publishes of
//! persistent and transient messages of all sizes, deliveries, acks,
//! requeues, purges, write-outs, syncs), checking it against a model as it
//! goes, then pulls the plug: the disk keeps what was synced plus a random,
//! possibly torn, part of the rest. The store recovered from that disk must hold
//! every persistent message whose sync ticket was published and that was
//! not settled, exactly once, in order, byte for byte; it must never serve
//! a transient message from before the crash, a corrupt one, or one whose
//! ack had been synced. Several crashes can follow each other in one case.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use common::*;
use warren_core::{ConfirmRef, ConfirmSink, Message, MessageStore, QueuedMessage};
use warren_store::{Disk, DiskQueueStore, HandleCache, SimDisk, StoreOptions, SyncCoordinator};

/// Cases per run; `WARREN_STORE_CRASH_CASES` asks for more (a soak run).
fn cases() -> u64 {
    std::env::var("WARREN_STORE_CRASH_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300)
}

/// A seeded generator, so a failing case is replayed from its number.
struct Rng(fastrand::Rng);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0.u64(..)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0.u64(0..n.max(1))
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// What the test knows about the store.
#[derive(Default)]
struct Model {
    /// Every message published and not forgotten, by sequence number.
    all: HashMap<u64, Arc<Message>>,
    /// Persistent messages pushed since the last flush (no ticket yet).
    unflushed: Vec<u64>,
    /// Persistent messages waiting for their ticket.
    pending: Vec<(u64, u64)>,
    /// Durable and not settled: must come back after a crash.
    must: BTreeSet<u64>,
    /// Settled, but the ack may not be durable yet.
    settled_unsynced: BTreeSet<u64>,
    /// Must never be served again: acks that were synced, and messages a
    /// crash already lost.
    forbidden: BTreeSet<u64>,
    /// Ever handed out.
    delivered: BTreeSet<u64>,
    /// Ready in this run, in delivery order.
    ready: BTreeSet<u64>,
    /// Delivered in this run and not settled.
    held: Vec<QueuedMessage>,
    next_seq: u64,
    uid: u64,
}

#[derive(Default)]
struct Totals {
    required: usize,
    optional: usize,
    crashes: usize,
}

/// Small sizes, so that a few messages span segments and read chunks;
/// which ones depends on the case. Without compaction, the ack log and the
/// directory are synced less often, which widens the windows in which a
/// crash can catch the store.
fn options(case: u64) -> StoreOptions {
    StoreOptions {
        segment_size: [700, 2048, 8192][(case % 3) as usize],
        read_chunk_size: [64, 512, 4096][(case / 3 % 3) as usize],
        ack_log_compact_records: [24, 1 << 20][(case / 9 % 2) as usize],
        // Unwritten messages wait for a round, or (past the bound) are
        // written at every flush or once a few are held.
        unwritten_limit: [16 << 20, 0, 600][(case / 18 % 3) as usize],
        ..StoreOptions::default()
    }
}

fn dir() -> PathBuf {
    PathBuf::from("/data/queues/7")
}

/// Half the cases run behind a [`HandleCache`] so small that files are
/// closed and reopened all the time.
fn open(disk: &SimDisk, case: u64) -> (DiskQueueStore, Arc<SyncCoordinator>) {
    let sync = SyncCoordinator::manual();
    let disk: Arc<dyn Disk> = match case % 4 {
        1 => Arc::new(HandleCache::new(Arc::new(disk.clone()), 1)),
        3 => Arc::new(HandleCache::new(Arc::new(disk.clone()), 2)),
        _ => Arc::new(disk.clone()),
    };
    let store = DiskQueueStore::open_with_options(disk, dir(), Arc::clone(&sync), options(case))
        .expect("open");
    (store, sync)
}

fn body_size(rng: &mut Rng) -> usize {
    match rng.below(100) {
        0..=84 => rng.below(200) as usize,
        85..=94 => 200 + rng.below(1300) as usize,
        // Larger than a segment: gets one of its own.
        _ => 2500 + rng.below(4000) as usize,
    }
}

/// One run of random operations on `store`.
fn run_ops(
    rng: &mut Rng,
    store: &mut DiskQueueStore,
    sync: &SyncCoordinator,
    m: &mut Model,
    ops: u64,
    case: u64,
) {
    for _ in 0..ops {
        match rng.below(100) {
            0..=39 => {
                let persistent = rng.chance(70);
                let msg = rich(m.uid, persistent, body_size(rng));
                m.uid += 1;
                let seq = m.next_seq;
                m.next_seq += 1;
                store.push(queued(seq, Arc::clone(&msg))).expect("push");
                if persistent {
                    m.unflushed.push(seq);
                }
                m.all.insert(seq, msg);
                m.ready.insert(seq);
            }
            40..=64 => {
                let got = store.pop().expect("pop");
                let want = m.ready.pop_first();
                assert_eq!(got.as_ref().map(|q| q.seq), want, "case {case}: FIFO order");
                if let Some(q) = got {
                    assert_same(&q.message, &m.all[&q.seq]);
                    if q.redelivered {
                        assert!(
                            m.delivered.contains(&q.seq),
                            "case {case}: redelivered flag"
                        );
                    }
                    m.delivered.insert(q.seq);
                    m.held.push(q);
                }
            }
            65..=79 if !m.held.is_empty() => {
                let i = rng.below(m.held.len() as u64) as usize;
                let q = m.held.swap_remove(i);
                store.ack(&q).expect("ack");
                m.must.remove(&q.seq);
                m.settled_unsynced.insert(q.seq);
            }
            80..=87 if !m.held.is_empty() => {
                let i = rng.below(m.held.len() as u64) as usize;
                let mut q = m.held.swap_remove(i);
                q.redelivered = true;
                m.ready.insert(q.seq);
                store.requeue(q);
            }
            88 => {
                assert_eq!(store.purge().expect("purge"), m.ready.len(), "case {case}");
                for seq in std::mem::take(&mut m.ready) {
                    m.must.remove(&seq);
                    m.settled_unsynced.insert(seq);
                }
            }
            89..=91 => flush(store, m, case),
            92..=93 => {
                // The sync thread writes out and then syncs: a crash can
                // come in between.
                flush(store, m, case);
                store.write_out().expect("write out");
            }
            _ => {
                // The broker flushes at the end of every operation on a
                // queue; a sync covers what was flushed.
                flush(store, m, case);
                let synced = sync.sync_now();
                let settled = &m.settled_unsynced;
                for (seq, _) in m.pending.iter().filter(|(_, t)| *t <= synced) {
                    if !settled.contains(seq) {
                        m.must.insert(*seq);
                    }
                }
                m.pending.retain(|(_, t)| *t > synced);
                m.forbidden.extend(std::mem::take(&mut m.settled_unsynced));
            }
        }
        assert_eq!(store.len(), m.ready.len(), "case {case}: len");
    }
}

/// Writes out what the store staged; its persistent messages get the
/// returned ticket.
fn flush(store: &mut DiskQueueStore, m: &mut Model, case: u64) {
    let ticket = store.flush().expect("flush");
    assert_eq!(
        ticket.is_some(),
        !m.unflushed.is_empty(),
        "case {case}: a ticket exactly when persistent messages were pushed"
    );
    if let Some(t) = ticket {
        m.pending.extend(
            std::mem::take(&mut m.unflushed)
                .into_iter()
                .map(|seq| (seq, t)),
        );
    }
}

/// Crashes `disk`, recovers, checks, and prepares the model for the next
/// run on the returned disk and store.
fn crash_and_check(
    rng: &mut Rng,
    disk: &SimDisk,
    m: &mut Model,
    totals: &mut Totals,
    case: u64,
) -> (SimDisk, DiskQueueStore, Arc<SyncCoordinator>) {
    let disk = disk.crash(rng.next());
    totals.crashes += 1;
    let (mut store, sync) = open(&disk, case);
    let len = store.len();
    let recovered = drain(&mut store);
    assert_eq!(recovered.len(), len, "case {case}: len after recovery");
    let seqs: Vec<u64> = recovered.iter().map(|q| q.seq).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "case {case}: order {seqs:?}"
    );
    let got: BTreeSet<u64> = seqs.iter().copied().collect();
    for q in &recovered {
        let want = m
            .all
            .get(&q.seq)
            .unwrap_or_else(|| panic!("case {case}: unknown message {}", q.seq));
        assert!(want.persistent, "case {case}: transient {} survived", q.seq);
        assert_same(&q.message, want);
        assert!(
            !m.forbidden.contains(&q.seq),
            "case {case}: settled {} came back",
            q.seq
        );
        if q.redelivered {
            assert!(
                m.delivered.contains(&q.seq),
                "case {case}: redelivered flag on {}",
                q.seq
            );
        }
    }
    let missing: Vec<&u64> = m.must.difference(&got).collect();
    assert!(
        missing.is_empty(),
        "case {case}: lost synced messages {missing:?}"
    );
    totals.required += m.must.len();
    totals.optional += got.len() - m.must.len();

    let next = store.next_seq();
    if let Some(&last) = seqs.last() {
        assert!(last < next, "case {case}: next_seq {next} not above {last}");
    }

    // What the crash lost is gone for good. Numbers from `next` on are free
    // again: nothing durable names them (a surviving ack, purge or delivery
    // mark raises `next`). Had the store reused a number that a surviving
    // ack still names, the new message would go missing after the next
    // crash, which the checks above catch.
    for seq in m.all.keys() {
        if *seq < next && !got.contains(seq) {
            m.forbidden.insert(*seq);
        }
    }
    m.forbidden.retain(|seq| *seq < next);
    m.all.retain(|seq, _| *seq < next);
    m.delivered.retain(|seq| *seq < next);
    m.delivered.extend(&got);
    m.pending.clear();
    m.unflushed.clear();
    m.settled_unsynced.clear();
    m.held.clear();
    m.must = got.clone();
    m.ready = got;
    m.next_seq = next;
    for q in recovered {
        store.requeue(q);
    }
    (disk, store, sync)
}

#[test]
fn crashes_lose_nothing_synced_and_serve_nothing_corrupt() {
    let mut totals = Totals::default();
    for case in 0..cases() {
        let mut rng = Rng(fastrand::Rng::with_seed(case ^ 0xC0FFEE));
        let mut disk = SimDisk::new();
        let (mut store, mut sync) = open(&disk, case);
        let mut model = Model::default();
        let runs = 1 + rng.below(3);
        for _ in 0..runs {
            let ops = 20 + rng.below(150);
            run_ops(&mut rng, &mut store, &sync, &mut model, ops, case);
            drop(store);
            (disk, store, sync) = crash_and_check(&mut rng, &disk, &mut model, &mut totals, case);
        }
    }
    assert!(
        totals.required > 1000,
        "too few synced messages checked: {}",
        totals.required
    );
    assert!(
        totals.optional > 100,
        "too few unsynced survivors: {}",
        totals.optional
    );
    eprintln!(
        "{} crashes: {} synced messages recovered, {} unsynced survived",
        totals.crashes, totals.required, totals.optional
    );
}

#[test]
fn sync_failures_hold_back_tickets_and_lose_nothing_confirmed() {
    let disk = SimDisk::new();
    let (mut store, sync) = open(&disk, 0);
    store
        .push(queued(0, simple("confirmed", true)))
        .expect("push");
    let t0 = store.flush().expect("flush").expect("ticket");
    assert!(sync.sync_now() >= t0);
    disk.set_sync_failures(true);
    store
        .push(queued(1, simple("unconfirmed", true)))
        .expect("push");
    let t1 = store.flush().expect("flush").expect("ticket");
    assert!(sync.sync_now() < t1, "a failed sync must not confirm");
    drop(store);
    for seed in 0..50 {
        let (mut after, _) = open(&disk.crash(seed), 0);
        let bodies: Vec<String> = drain(&mut after).iter().map(body).collect();
        assert_eq!(
            bodies.first().map(String::as_str),
            Some("confirmed"),
            "seed {seed}"
        );
    }
}

/// A store that writes at every flush, on the caller's thread, as it does
/// past its memory bound for unwritten messages.
fn open_inline(disk: &SimDisk) -> (DiskQueueStore, Arc<SyncCoordinator>) {
    let sync = SyncCoordinator::manual();
    let options = StoreOptions {
        unwritten_limit: 0,
        ..options(0)
    };
    let store = DiskQueueStore::open_with_options(
        Arc::new(disk.clone()),
        dir(),
        Arc::clone(&sync),
        options,
    )
    .expect("open");
    (store, sync)
}

#[test]
fn a_failed_write_loses_only_its_batch_and_confirms_nothing_of_it() {
    let disk = SimDisk::new();
    let (mut store, sync) = open_inline(&disk);
    store.push(queued(0, simple("kept", true))).expect("push");
    let t0 = store.flush().expect("flush").expect("ticket");
    // A batch whose write fails part-way, as on a full disk.
    for seq in 1..4 {
        store
            .push(queued(seq, simple(&format!("lost {seq}"), true)))
            .expect("push");
    }
    assert_eq!(store.len(), 4);
    disk.set_write_failures(true);
    assert!(store.flush().is_err(), "the failed batch is reported");
    assert_eq!(store.len(), 1, "the failed batch is not counted");
    disk.set_write_failures(false);
    store.push(queued(4, simple("after", true))).expect("push");
    let t1 = store.flush().expect("flush").expect("ticket");
    assert!(sync.sync_now() >= t1.max(t0));
    let bodies: Vec<String> = drain(&mut store).iter().map(body).collect();
    assert_eq!(bodies, ["kept", "after"]);
    drop(store);
    // Nothing of the failed batch comes back after a crash either.
    for seed in 0..20 {
        let (mut after, _) = open(&disk.crash(seed), 0);
        let bodies: Vec<String> = drain(&mut after).iter().map(body).collect();
        assert_eq!(bodies, ["kept", "after"], "seed {seed}");
    }
}

/// Records what a store tells publishers.
#[derive(Default)]
struct Publisher {
    failed: Mutex<Vec<u64>>,
}

impl ConfirmSink for Publisher {
    fn expect(&self, _tags: &[u64]) {}
    fn settled(&self, _tags: &[u64]) {}
    fn failed(&self, tags: &[u64]) {
        self.failed.lock().unwrap().extend_from_slice(tags);
    }
}

fn confirmed(body: &str, publisher: &Arc<Publisher>, tag: u64) -> Arc<Message> {
    let mut m = Arc::into_inner(simple(body, true)).expect("unshared");
    m.confirm = Some(ConfirmRef {
        sink: Arc::clone(publisher) as Arc<dyn ConfirmSink>,
        tag,
    });
    Arc::new(m)
}

#[test]
fn a_failed_write_out_nacks_the_ready_and_keeps_the_delivered() {
    let disk = SimDisk::new();
    let (mut store, sync) = open(&disk, 0);
    let publisher = Arc::new(Publisher::default());
    store.push(queued(0, simple("first", true))).expect("push");
    let t0 = store.flush().expect("flush").expect("ticket");
    assert!(sync.sync_now() >= t0);
    for seq in 1..4 {
        let msg = confirmed(&format!("held {seq}"), &publisher, seq);
        store.push(queued(seq, msg)).expect("push");
    }
    // The write happens in the round, not at the flush.
    let t1 = store
        .flush()
        .expect("the flush writes nothing")
        .expect("ticket");
    assert_eq!(store.unwritten(), 3);
    let first = store.pop().expect("pop").expect("first, from disk");
    assert_eq!(body(&first), "first");
    let out = store.pop().expect("pop").expect("held 1, from memory");
    assert_eq!(body(&out), "held 1");
    disk.set_write_failures(true);
    assert!(sync.sync_now() < t1, "a failed write-out must not confirm");
    assert_eq!(
        *publisher.failed.lock().unwrap(),
        [2, 3],
        "the ready ones are nacked"
    );
    assert_eq!(store.len(), 0, "and gone");
    assert_eq!(store.unwritten(), 1, "the delivered one waits");
    assert!(sync.sync_now() < t1, "nor a retry that fails again");
    disk.set_write_failures(false);
    assert!(
        sync.sync_now() >= t1,
        "a later round writes it and confirms"
    );
    assert_eq!(store.unwritten(), 0);
    drop(store);
    for seed in 0..20 {
        let (mut after, _) = open(&disk.crash(seed), 0);
        let bodies: Vec<String> = drain(&mut after).iter().map(body).collect();
        assert_eq!(bodies, ["first", "held 1"], "seed {seed}");
    }
}

#[test]
fn a_message_settled_before_its_round_is_never_written() {
    let disk = SimDisk::new();
    let (mut store, sync) = open(&disk, 0);
    let a = queued(0, simple("acked in memory", true));
    store.push(a.clone()).expect("push");
    store
        .push(queued(1, simple("delivered, not acked", true)))
        .expect("push");
    store.push(queued(2, simple("ready", true))).expect("push");
    let t = store.flush().expect("flush").expect("ticket");
    let got = store.pop().expect("pop").expect("a message");
    assert_eq!(body(&got), "acked in memory");
    store.ack(&got).expect("ack");
    let out = store.pop().expect("pop").expect("a message");
    assert_eq!(body(&out), "delivered, not acked");
    store.flush().expect("flush");
    assert!(sync.sync_now() >= t);
    assert_eq!(store.len(), 1);
    drop(store);
    for seed in 0..20 {
        let crashed = disk.crash(seed);
        let (mut after, _) = open(&crashed, 0);
        let msgs = drain(&mut after);
        let bodies: Vec<String> = msgs.iter().map(body).collect();
        // The acked one never reached the disk; the delivered one did, and
        // comes back marked redelivered.
        assert_eq!(bodies, ["delivered, not acked", "ready"], "seed {seed}");
        assert!(msgs[0].redelivered, "seed {seed}");
        assert!(!msgs[1].redelivered, "seed {seed}");
        let file = crashed
            .open(&dir().join("seg.0000000001"))
            .expect("the segment");
        let mut segment = vec![0; file.len() as usize];
        file.read_at(0, &mut segment).expect("read");
        assert!(
            !segment.windows(15).any(|w| w == b"acked in memory"),
            "seed {seed}: the settled message was written"
        );
    }
}
