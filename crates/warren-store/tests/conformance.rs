//! The same behaviour tests against every `MessageStore`: the in-memory
//! store of `warren-core`, and the disk store on the real file system (with
//! default and with tiny segments) and on the simulated one.

mod common;

use std::any::Any;
use std::sync::Arc;

use common::*;
use warren_core::{MemoryStore, MessageStore};
use warren_store::{
    DiskQueueStore, HandleCache, RealDisk, SimDisk, SpillLimits, SpillOpener, SpillStore,
    StoreOptions, SyncCoordinator,
};

/// A store plus whatever must outlive it (a temporary directory).
struct Fixture {
    store: Box<dyn MessageStore>,
    _keep: Box<dyn Any>,
}

fn memory() -> Fixture {
    Fixture {
        store: Box::<MemoryStore>::default(),
        _keep: Box::new(()),
    }
}

fn real_disk(options: StoreOptions) -> Fixture {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = DiskQueueStore::open_with_options(
        Arc::new(RealDisk::new()),
        tmp.path().join("queue"),
        SyncCoordinator::manual(),
        options,
    )
    .expect("open");
    Fixture {
        store: Box::new(store),
        _keep: Box::new(tmp),
    }
}

fn sim_disk(options: StoreOptions) -> Fixture {
    sim_disk_on(Arc::new(SimDisk::new()), options)
}

/// Behind a handle cache that keeps one file open: every switch between the
/// segment, the ack log and an older segment closes and reopens a file.
fn sim_disk_one_open_file(options: StoreOptions) -> Fixture {
    sim_disk_on(
        Arc::new(HandleCache::new(Arc::new(SimDisk::new()), 1)),
        options,
    )
}

fn sim_disk_on(disk: Arc<dyn warren_store::Disk>, options: StoreOptions) -> Fixture {
    let store = DiskQueueStore::open_with_options(
        disk,
        "/data/queues/1".into(),
        SyncCoordinator::manual(),
        options,
    )
    .expect("open");
    Fixture {
        store: Box::new(store),
        _keep: Box::new(()),
    }
}

/// A transient queue's store with limits so small that it spills to (and
/// returns from) disk within every case.
fn spill(limits: SpillLimits) -> Fixture {
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = tmp.path().to_path_buf();
    let disk: Arc<dyn warren_store::Disk> = Arc::new(RealDisk::new());
    let sync = SyncCoordinator::manual();
    let mut n = 0u64;
    let open: SpillOpener = Box::new(move || {
        n += 1;
        DiskQueueStore::open_with_options(
            Arc::clone(&disk),
            base.join(n.to_string()),
            Arc::clone(&sync),
            StoreOptions {
                durable: false,
                ..tiny_options()
            },
        )
    });
    Fixture {
        store: Box::new(SpillStore::new(limits, open)),
        _keep: Box::new(tmp),
    }
}

/// The behaviour every store shares.
mod cases {
    use super::*;

    fn push_all(s: &mut dyn MessageStore, first_seq: u64, bodies: &[&str]) {
        for (i, b) in bodies.iter().enumerate() {
            s.push(queued(first_seq + i as u64, simple(b, i % 2 == 0)))
                .expect("push");
        }
    }

    pub fn fifo(s: &mut dyn MessageStore) {
        assert!(s.is_empty());
        assert!(s.pop().expect("pop").is_none());
        let bodies: Vec<String> = (0..50).map(|i| format!("message {i}")).collect();
        let refs: Vec<&str> = bodies.iter().map(String::as_str).collect();
        push_all(s, 0, &refs);
        assert_eq!(s.len(), 50);
        for (i, want) in bodies.iter().enumerate() {
            let m = s.pop().expect("pop").expect("a message");
            assert_eq!(m.seq, i as u64);
            assert_eq!(&body(&m), want);
            assert!(!m.redelivered);
            assert_eq!(s.len(), 49 - i);
        }
        assert!(s.pop().expect("pop").is_none());
        assert!(s.is_empty());
    }

    pub fn interleaved_push_and_pop(s: &mut dyn MessageStore) {
        let mut seq = 0;
        let mut popped = 0;
        for round in 0..20 {
            for _ in 0..round % 4 + 1 {
                s.push(queued(seq, simple(&format!("m{seq}"), true)))
                    .expect("push");
                seq += 1;
            }
            if let Some(m) = s.pop().expect("pop") {
                assert_eq!(m.seq, popped);
                assert_eq!(body(&m), format!("m{popped}"));
                popped += 1;
            }
            assert_eq!(s.len() as u64, seq - popped);
        }
        for m in drain(s) {
            assert_eq!(m.seq, popped);
            popped += 1;
        }
        assert_eq!(popped, seq);
    }

    pub fn requeue_restores_order(s: &mut dyn MessageStore) {
        push_all(s, 0, &["a", "b", "c", "d", "e"]);
        let a = s.pop().expect("pop").expect("a");
        let b = s.pop().expect("pop").expect("b");
        let c = s.pop().expect("pop").expect("c");
        assert_eq!(s.len(), 2);
        for mut m in [c, a, b] {
            m.redelivered = true;
            s.requeue(m);
        }
        assert_eq!(s.len(), 5);
        s.push(queued(5, simple("f", true))).expect("push");
        let got = drain(s);
        let bodies: Vec<String> = got.iter().map(body).collect();
        assert_eq!(bodies, ["a", "b", "c", "d", "e", "f"]);
        let seqs: Vec<u64> = got.iter().map(|m| m.seq).collect();
        assert_eq!(seqs, [0, 1, 2, 3, 4, 5]);
        assert!(got[..3].iter().all(|m| m.redelivered));
        assert!(got[3..].iter().all(|m| !m.redelivered));
    }

    pub fn requeue_after_everything_was_read(s: &mut dyn MessageStore) {
        push_all(s, 10, &["x", "y"]);
        let x = s.pop().expect("pop").expect("x");
        let y = s.pop().expect("pop").expect("y");
        assert!(s.pop().expect("pop").is_none());
        s.requeue(y);
        s.requeue(x);
        push_all(s, 12, &["z"]);
        let bodies: Vec<String> = drain(s).iter().map(body).collect();
        assert_eq!(bodies, ["x", "y", "z"]);
    }

    pub fn ack_settles(s: &mut dyn MessageStore) {
        push_all(s, 0, &["a", "b", "c"]);
        let a = s.pop().expect("pop").expect("a");
        s.ack(&a).expect("ack");
        assert_eq!(s.len(), 2);
        let b = s.pop().expect("pop").expect("b");
        let c = s.pop().expect("pop").expect("c");
        s.ack(&c).expect("ack");
        s.requeue(b);
        let rest = drain(s);
        assert_eq!(rest.len(), 1);
        assert_eq!(body(&rest[0]), "b");
        s.ack(&rest[0]).expect("ack");
        assert!(s.is_empty());
        assert!(s.pop().expect("pop").is_none());
    }

    pub fn purge_drops_ready_only(s: &mut dyn MessageStore) {
        assert_eq!(s.purge().expect("purge"), 0);
        push_all(s, 0, &["a", "b", "c", "d", "e"]);
        let a = s.pop().expect("pop").expect("a");
        let b = s.pop().expect("pop").expect("b");
        s.requeue(b);
        // Ready: b (requeued), c, d, e. `a` is delivered, not ready.
        assert_eq!(s.purge().expect("purge"), 4);
        assert_eq!(s.len(), 0);
        assert!(s.pop().expect("pop").is_none());
        s.ack(&a).expect("ack of a delivered message after purge");
        push_all(s, 5, &["f"]);
        assert_eq!(s.len(), 1);
        let f = drain(s);
        assert_eq!(f.len(), 1);
        assert_eq!(body(&f[0]), "f");
        assert_eq!(s.purge().expect("purge"), 0);
    }

    pub fn purge_then_requeue_delivered(s: &mut dyn MessageStore) {
        push_all(s, 0, &["a", "b", "c"]);
        let a = s.pop().expect("pop").expect("a");
        assert_eq!(s.purge().expect("purge"), 2);
        // A delivered message survives a purge and can come back.
        s.requeue(a);
        assert_eq!(s.len(), 1);
        let again = drain(s);
        assert_eq!(again.iter().map(body).collect::<Vec<_>>(), ["a"]);
    }

    pub fn len_tracks_everything(s: &mut dyn MessageStore) {
        assert_eq!(s.len(), 0);
        push_all(s, 0, &["a", "b", "c", "d"]);
        assert_eq!(s.len(), 4);
        let a = s.pop().expect("pop").expect("a");
        let b = s.pop().expect("pop").expect("b");
        assert_eq!(s.len(), 2);
        s.requeue(a);
        assert_eq!(s.len(), 3);
        s.ack(&b).expect("ack");
        assert_eq!(s.len(), 3);
        drain(s);
        assert_eq!(s.len(), 0);
        assert!(s.is_empty());
    }

    pub fn next_seq_starts_at_zero(s: &mut dyn MessageStore) {
        assert_eq!(s.next_seq(), 0);
    }

    pub fn big_and_small_messages(s: &mut dyn MessageStore) {
        let sizes = [0usize, 1, 5000, 17, 100_000, 3, 2048, 2047];
        for (i, &size) in sizes.iter().enumerate() {
            s.push(queued(i as u64, rich(i as u64, true, size)))
                .expect("push");
        }
        for (i, &size) in sizes.iter().enumerate() {
            let m = s.pop().expect("pop").expect("message");
            assert_eq!(m.seq, i as u64);
            assert_eq!(m.message.body.len(), size);
            assert_same(&m.message, &rich(i as u64, true, size));
        }
    }

    pub fn destroy(s: &mut dyn MessageStore) {
        push_all(s, 0, &["a"]);
        s.destroy().expect("destroy");
    }
}

macro_rules! conformance {
    ($backend:ident, $make:expr) => {
        mod $backend {
            use super::*;

            fn run(case: fn(&mut dyn MessageStore)) {
                let mut f: Fixture = $make;
                case(&mut *f.store);
            }

            #[test]
            fn fifo() {
                run(cases::fifo)
            }
            #[test]
            fn interleaved_push_and_pop() {
                run(cases::interleaved_push_and_pop)
            }
            #[test]
            fn requeue_restores_order() {
                run(cases::requeue_restores_order)
            }
            #[test]
            fn requeue_after_everything_was_read() {
                run(cases::requeue_after_everything_was_read)
            }
            #[test]
            fn ack_settles() {
                run(cases::ack_settles)
            }
            #[test]
            fn purge_drops_ready_only() {
                run(cases::purge_drops_ready_only)
            }
            #[test]
            fn purge_then_requeue_delivered() {
                run(cases::purge_then_requeue_delivered)
            }
            #[test]
            fn len_tracks_everything() {
                run(cases::len_tracks_everything)
            }
            #[test]
            fn next_seq_starts_at_zero() {
                run(cases::next_seq_starts_at_zero)
            }
            #[test]
            fn big_and_small_messages() {
                run(cases::big_and_small_messages)
            }
            #[test]
            fn destroy() {
                run(cases::destroy)
            }
        }
    };
}

conformance!(memory_store, memory());
conformance!(real_disk_default, real_disk(StoreOptions::default()));
conformance!(real_disk_tiny_segments, real_disk(tiny_options()));
conformance!(sim_disk_tiny_segments, sim_disk(tiny_options()));
conformance!(
    sim_disk_one_open_file,
    sim_disk_one_open_file(tiny_options())
);
conformance!(
    spill_after_three_messages,
    spill(SpillLimits {
        bytes: u64::MAX,
        messages: 3
    })
);
conformance!(
    spill_after_forty_bytes,
    spill(SpillLimits {
        bytes: 40,
        messages: usize::MAX
    })
);
