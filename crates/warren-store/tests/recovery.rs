//! Restarting a disk store on the real file system: what comes back, what
//! does not, torn and corrupt files, space reclamation.

mod common;

use std::collections::BTreeSet;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::*;
use warren_core::{Message, MessageStore, QueuedMessage};
use warren_store::{DiskQueueStore, RealDisk, StoreError, StoreOptions, SyncCoordinator};

fn open(dir: &Path, options: StoreOptions) -> DiskQueueStore {
    try_open(dir, options).expect("open")
}

fn try_open(dir: &Path, options: StoreOptions) -> Result<DiskQueueStore, StoreError> {
    DiskQueueStore::open_with_options(
        Arc::new(RealDisk::new()),
        dir.to_path_buf(),
        SyncCoordinator::manual(),
        options,
    )
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("seg."))
        })
        .collect();
    files.sort();
    files
}

/// Pushes and flushes, as the broker does at the end of a publish, then
/// writes out, as the next sync round does.
fn push(store: &mut DiskQueueStore, seq: u64, msg: &Arc<Message>) {
    store.push(queued(seq, Arc::clone(msg))).expect("push");
    store.flush().expect("flush");
    store.write_out().expect("write out");
}

#[test]
fn restart_brings_back_exactly_the_unacked_persistent_messages() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("q");
    let options = StoreOptions {
        segment_size: 4096,
        read_chunk_size: 1000,
        ack_log_compact_records: 1 << 20,
        ..StoreOptions::default()
    };
    let n = 400u64;
    let msgs: Vec<Arc<Message>> = (0..n)
        .map(|i| rich(i, i % 3 != 0, (i as usize * 37) % 700))
        .collect();
    let mut delivered = BTreeSet::new();
    let mut acked = BTreeSet::new();
    {
        let mut store = open(&dir, options.clone());
        for (seq, m) in msgs.iter().enumerate() {
            push(&mut store, seq as u64, m);
        }
        let segments_before = segment_files(&dir).len();
        assert!(segments_before > 10, "{segments_before} segments");
        let mut held: Vec<QueuedMessage> = Vec::new();
        for _ in 0..300 {
            let m = store.pop().expect("pop").expect("message");
            delivered.insert(m.seq);
            held.push(m);
        }
        // Settle everything below 200 (whole segments), and every fifth
        // message above.
        for m in &held {
            if m.seq < 200 || m.seq % 5 == 0 {
                store.ack(m).expect("ack");
                acked.insert(m.seq);
            }
        }
        // Two of the rest go back to the queue (in memory only).
        let mut rest: Vec<QueuedMessage> = held
            .into_iter()
            .filter(|m| !acked.contains(&m.seq))
            .collect();
        for mut m in rest.drain(..2) {
            m.redelivered = true;
            store.requeue(m);
        }
        let segments_after = segment_files(&dir).len();
        assert!(
            segments_after < segments_before - 5,
            "settled segments deleted: {segments_before} -> {segments_after}"
        );
        // Dropped without any sync: a process exit, not a power loss.
    }

    let mut store = open(&dir, options.clone());
    assert_eq!(store.next_seq(), n);
    let want: Vec<u64> = (0..n)
        .filter(|&s| msgs[s as usize].persistent && !acked.contains(&s))
        .collect();
    assert_eq!(store.len(), want.len());
    let got = drain(&mut store);
    assert_eq!(got.iter().map(|m| m.seq).collect::<Vec<_>>(), want);
    for m in &got {
        assert_same(&m.message, &msgs[m.seq as usize]);
        assert_eq!(m.redelivered, delivered.contains(&m.seq), "seq {}", m.seq);
        assert_eq!(
            m.expires_at,
            queued(m.seq, Arc::clone(&m.message)).expires_at,
            "deadline"
        );
    }
    // Settle everything: only the segment being written remains.
    for m in &got {
        store.ack(m).expect("ack");
    }
    assert_eq!(segment_files(&dir).len(), 1);
    drop(store);
    let mut store = open(&dir, options);
    assert_eq!(store.len(), 0);
    assert!(store.pop().expect("pop").is_none());
    assert_eq!(store.next_seq(), n);
}

#[test]
fn transient_messages_do_not_survive_a_restart() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("q");
    {
        let mut store = open(&dir, tiny_options());
        for seq in 0..100 {
            store
                .push(queued(
                    seq,
                    simple(&format!("transient {seq:0>100}"), false),
                ))
                .expect("push");
            let t = store.flush().expect("flush");
            assert!(t.is_none(), "transient messages wait for no sync");
            store.write_out().expect("write out");
        }
        store.push(queued(100, simple("p", true))).expect("push");
        let t = store.flush().expect("flush");
        assert!(t.is_some(), "persistent messages wait for a sync");
        store.write_out().expect("write out");
        assert!(segment_files(&dir).len() > 2);
    }
    let mut store = open(&dir, tiny_options());
    // Segments holding only transient messages are gone at once.
    assert_eq!(segment_files(&dir).len(), 1);
    let got = drain(&mut store);
    assert_eq!(got.iter().map(body).collect::<Vec<_>>(), ["p"]);
    assert_eq!(store.next_seq(), 101);
    // New transient messages are served in this run.
    store
        .push(queued(101, simple("t-new", false)))
        .expect("push");
    assert_eq!(
        drain(&mut store).iter().map(body).collect::<Vec<_>>(),
        ["t-new"]
    );
}

#[test]
fn purge_survives_a_restart() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("q");
    {
        let mut store = open(&dir, tiny_options());
        for seq in 0..50 {
            push(&mut store, seq, &simple(&format!("m{seq}"), true));
        }
        let first = store.pop().expect("pop").expect("m0");
        assert_eq!(store.purge().expect("purge"), 49);
        push(&mut store, 50, &simple("after", true));
        drop(first); // delivered, never acked
    }
    let mut store = open(&dir, tiny_options());
    let got = drain(&mut store);
    assert_eq!(got.iter().map(body).collect::<Vec<_>>(), ["m0", "after"]);
    assert!(got[0].redelivered);
    assert!(!got[1].redelivered);
}

#[test]
fn ack_log_is_compacted() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("q");
    let options = tiny_options();
    let mut store = open(&dir, options.clone());
    let mut seq = 0;
    let mut kept = Vec::new();
    for _ in 0..300 {
        for _ in 0..10 {
            push(&mut store, seq, &simple(&format!("m{seq}"), true));
            seq += 1;
        }
        for _ in 0..10 {
            let m = store.pop().expect("pop").expect("message");
            // Keep one message unacked now and then, so holes stay.
            if m.seq % 97 == 1 {
                kept.push(m.seq);
            } else {
                store.ack(&m).expect("ack");
            }
        }
    }
    let acks_len = fs::metadata(dir.join("acks")).expect("acks").len();
    // 3000 pops and acks would be 6000 records of 21 bytes uncompacted.
    assert!(acks_len < 6000 * 21 / 4, "ack log is {acks_len} bytes");
    drop(store);
    let mut store = open(&dir, options);
    let left = drain(&mut store);
    assert_eq!(left.iter().map(|m| m.seq).collect::<Vec<_>>(), kept);
    assert!(left.iter().all(|m| m.redelivered));
}

/// Writes `n` persistent messages `m0..` to a fresh store in `dir` and
/// returns the only segment file.
fn one_segment(dir: &Path, n: u64) -> PathBuf {
    let mut store = open(dir, StoreOptions::default());
    for seq in 0..n {
        push(&mut store, seq, &rich(seq, true, 100));
    }
    drop(store);
    let files = segment_files(dir);
    assert_eq!(files.len(), 1);
    files[0].clone()
}

fn check_first(dir: &Path, n: u64) -> DiskQueueStore {
    let mut store = open(dir, StoreOptions::default());
    let got = drain(&mut store);
    assert_eq!(
        got.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (0..n).collect::<Vec<_>>()
    );
    for m in &got {
        assert_same(&m.message, &rich(m.seq, true, 100));
        store.requeue(m.clone());
    }
    store
}

#[test]
fn torn_tail_is_cut_and_writing_resumes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("q");
    let seg = one_segment(&dir, 10);
    let len = fs::metadata(&seg).expect("segment").len();
    OpenOptions::new()
        .write(true)
        .open(&seg)
        .expect("open")
        .set_len(len - 3)
        .expect("truncate");
    let mut store = check_first(&dir, 9);
    assert!(
        fs::metadata(&seg).expect("segment").len() < len - 3,
        "torn record cut"
    );
    assert_eq!(store.next_seq(), 9);
    push(&mut store, 9, &rich(9, true, 100));
    drop(store);
    check_first(&dir, 10);
}

#[test]
fn corrupt_last_record_is_never_served() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("q");
    let seg = one_segment(&dir, 10);
    let mut bytes = fs::read(&seg).expect("read");
    let at = bytes.len() - 20;
    bytes[at] ^= 0xFF;
    fs::write(&seg, &bytes).expect("write");
    check_first(&dir, 9);
}

#[test]
fn corruption_in_the_middle_keeps_everything_before_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("q");
    let seg = one_segment(&dir, 10);
    let mut bytes = fs::read(&seg).expect("read");
    // Records are the same size: damage the body of the sixth.
    let record = (bytes.len() - 8) / 10;
    let at = 8 + 5 * record + record / 2;
    bytes[at] ^= 0x01;
    fs::write(&seg, &bytes).expect("write");
    check_first(&dir, 5);
}

#[test]
fn garbage_after_the_last_record_is_cut() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("q");
    let seg = one_segment(&dir, 10);
    let mut f = OpenOptions::new().append(true).open(&seg).expect("open");
    f.write_all(&[0u8; 4096]).expect("zeros");
    drop(f);
    check_first(&dir, 10);
    let mut f = OpenOptions::new().append(true).open(&seg).expect("open");
    f.write_all(&[0xAB; 13]).expect("garbage");
    drop(f);
    check_first(&dir, 10);
}

#[test]
fn torn_ack_log_keeps_the_acks_before_the_tear() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("q");
    {
        let mut store = open(&dir, StoreOptions::default());
        for seq in 0..6 {
            push(&mut store, seq, &simple(&format!("m{seq}"), true));
        }
        for _ in 0..3 {
            let m = store.pop().expect("pop").expect("message");
            store.ack(&m).expect("ack");
        }
    }
    let mut f = OpenOptions::new()
        .append(true)
        .open(dir.join("acks"))
        .expect("acks");
    f.write_all(&[1, 2, 3, 4, 5, 6, 7]).expect("garbage");
    drop(f);
    let mut store = open(&dir, StoreOptions::default());
    let got = drain(&mut store);
    assert_eq!(got.iter().map(body).collect::<Vec<_>>(), ["m3", "m4", "m5"]);
    assert_eq!(fs::metadata(dir.join("acks")).expect("acks").len() % 21, 8);
}

#[test]
fn unknown_format_version_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("q");
    let seg = one_segment(&dir, 1);
    let mut bytes = fs::read(&seg).expect("read");
    bytes[7] = 99;
    fs::write(&seg, &bytes).expect("write");
    assert!(matches!(
        try_open(&dir, StoreOptions::default()),
        Err(StoreError::Corrupt(_))
    ));
}

#[test]
fn destroy_removes_the_directory() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("q");
    let mut store = open(&dir, StoreOptions::default());
    push(&mut store, 0, &simple("a", true));
    store.destroy().expect("destroy");
    assert!(!dir.exists());
    assert!(store.push(queued(1, simple("b", true))).is_err());
    assert_eq!(store.len(), 0);
}

#[test]
fn sequence_numbers_must_increase() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut store = open(&tmp.path().join("q"), StoreOptions::default());
    push(&mut store, 5, &simple("a", true));
    assert!(store.push(queued(5, simple("b", true))).is_err());
    assert!(store.push(queued(3, simple("b", true))).is_err());
    push(&mut store, 9, &simple("c", true));
    assert_eq!(store.next_seq(), 10);
}

#[test]
fn bodies_are_slices_of_shared_read_chunks() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut store = open(&tmp.path().join("q"), StoreOptions::default());
    for seq in 0..100 {
        push(&mut store, seq, &simple(&format!("{seq:04}"), true));
    }
    let a = store.pop().expect("pop").expect("a");
    let b = store.pop().expect("pop").expect("b");
    // Consecutive small bodies come from one read buffer.
    let distance =
        (b.message.body.as_ptr() as usize).wrapping_sub(a.message.body.as_ptr() as usize);
    assert!(distance < 256, "bodies {distance} bytes apart");
}

#[test]
fn segment_torn_while_being_created_is_dropped() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("q");
    let seg = one_segment(&dir, 3);
    for torn in [&b"WARRS"[..], b"WARRSEG\x07", b""] {
        let next = dir.join("seg.0000000099");
        fs::write(&next, torn).expect("write");
        let mut store = check_first(&dir, 3);
        assert!(!next.exists(), "torn segment removed");
        assert!(seg.exists());
        drop(store.pop());
    }
    // A longer file with a damaged header may hold data: refuse.
    let mut bytes = fs::read(&seg).expect("read");
    bytes[0] = b'X';
    fs::write(&seg, &bytes).expect("write");
    assert!(matches!(
        try_open(&dir, StoreOptions::default()),
        Err(StoreError::Corrupt(_))
    ));
}

#[test]
fn corruption_found_while_delivering_is_skipped_not_served() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("q");
    let mut store = open(&dir, StoreOptions::default());
    for seq in 0..10 {
        push(&mut store, seq, &rich(seq, true, 100));
    }
    let seg = segment_files(&dir)[0].clone();
    let mut bytes = fs::read(&seg).expect("read");
    let record = (bytes.len() - 8) / 10;
    bytes[8 + 5 * record + record / 2] ^= 0x01;
    fs::write(&seg, &bytes).expect("write");
    // The store's handle sees the rewritten file.
    let got = drain(&mut store);
    assert_eq!(
        got.iter().map(|m| m.seq).collect::<Vec<_>>(),
        [0, 1, 2, 3, 4]
    );
    assert_eq!(store.len(), 0);
    // Writing goes on in a new segment.
    push(&mut store, 10, &rich(10, true, 100));
    assert_eq!(
        drain(&mut store).iter().map(|m| m.seq).collect::<Vec<_>>(),
        [10]
    );
    for m in &got {
        store.requeue(m.clone());
    }
    drop(store);
    let mut store = open(&dir, StoreOptions::default());
    let seqs: Vec<u64> = drain(&mut store).iter().map(|m| m.seq).collect();
    assert_eq!(seqs, [0, 1, 2, 3, 4, 10]);
}

#[test]
fn a_new_store_creates_nothing_until_its_first_message() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("q");
    let mut store = open(&dir, StoreOptions::default());
    assert!(store.is_empty());
    assert!(store.pop().expect("pop").is_none());
    assert_eq!(store.purge().expect("purge"), 0);
    store.flush().expect("flush");
    assert!(!dir.exists(), "an idle store has no directory");
    drop(store);
    // Reopened, and opened on an empty directory (made just before a
    // crash), it is still new.
    let store = open(&dir, StoreOptions::default());
    assert!(store.is_empty() && !dir.exists());
    drop(store);
    fs::create_dir_all(&dir).unwrap();
    let mut store = open(&dir, StoreOptions::default());
    assert!(store.is_empty());

    let msg = simple("first", true);
    push(&mut store, 0, &msg);
    assert!(dir.join("acks").exists());
    assert_eq!(segment_files(&dir).len(), 1);
    let got = store.pop().expect("pop").expect("the message");
    assert_eq!(got.seq, 0);
    store.ack(&got).expect("ack");
    store.flush().expect("flush");
    drop(store);
    let mut store = open(&dir, StoreOptions::default());
    assert!(store.pop().expect("pop").is_none(), "the ack was recorded");
    assert_eq!(store.next_seq(), 1);

    // Destroying a store that never wrote anything is fine too.
    let mut idle = open(&tmp.path().join("idle"), StoreOptions::default());
    idle.destroy().expect("destroy");
}
