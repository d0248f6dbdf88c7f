//! The definitions store: round trips on the real and the simulated disk,
//! atomic batches, failed writes, damaged files, compaction (including a
//! crash before every one of its disk operations and changes applied while
//! it runs), concurrent writers, and a randomized crash test against a
//! model.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use proptest::prelude::*;
use warren_store::{
    Change, DefinitionsOptions, DefinitionsStore, Disk, DiskFile, RealDisk, SimDisk, StoreError,
    SyncCoordinator,
};

type Map = BTreeMap<Vec<u8>, Vec<u8>>;

fn dir() -> PathBuf {
    PathBuf::from("/data/definitions")
}

/// Options under which a little churn already calls for a compaction.
fn small() -> DefinitionsOptions {
    DefinitionsOptions {
        compact_min_dead_bytes: 256,
    }
}

fn open_on(
    disk: Arc<dyn Disk>,
    dir: &Path,
    options: DefinitionsOptions,
) -> Result<(DefinitionsStore, Map, Arc<SyncCoordinator>), StoreError> {
    let sync = SyncCoordinator::manual();
    let (store, entries) =
        DefinitionsStore::open_with_options(disk, dir.to_path_buf(), Arc::clone(&sync), options)?;
    assert!(
        entries.windows(2).all(|w| w[0].0 < w[1].0),
        "entries must come in strictly increasing key order"
    );
    let map: Map = entries.into_iter().collect();
    assert_eq!(store.len(), map.len());
    Ok((store, map, sync))
}

fn open(disk: &SimDisk) -> (DefinitionsStore, Map, Arc<SyncCoordinator>) {
    open_on(Arc::new(disk.clone()), &dir(), small()).expect("open")
}

fn put(key: &str, value: &str) -> Change {
    Change::Put {
        key: key.as_bytes().to_vec(),
        value: value.as_bytes().to_vec(),
    }
}

fn del(key: &str) -> Change {
    Change::Delete {
        key: key.as_bytes().to_vec(),
    }
}

fn map(pairs: &[(&str, &str)]) -> Map {
    pairs
        .iter()
        .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect()
}

fn apply_to(model: &mut Map, changes: &[Change]) {
    for c in changes {
        match c {
            Change::Put { key, value } => {
                model.insert(key.clone(), value.clone());
            }
            Change::Delete { key } => {
                model.remove(key);
            }
        }
    }
}

fn names(disk: &dyn Disk, dir: &Path) -> Vec<String> {
    let mut names = disk.list(dir).unwrap();
    names.sort();
    names
}

fn read_file(disk: &dyn Disk, path: &Path) -> Vec<u8> {
    let file = disk.open(path).unwrap();
    let mut buf = vec![0u8; file.len() as usize];
    assert_eq!(file.read_at(0, &mut buf).unwrap(), buf.len());
    buf
}

/// Replaces a file's bytes (synced).
fn rewrite_file(disk: &dyn Disk, path: &Path, edit: impl FnOnce(&mut Vec<u8>)) {
    let mut bytes = read_file(disk, path);
    edit(&mut bytes);
    let file = disk.open(path).unwrap();
    file.truncate(0).unwrap();
    file.append(&bytes).unwrap();
    file.sync().unwrap();
}

/// The only log file of the store in `dir`.
fn the_log(disk: &dyn Disk, dir: &Path) -> PathBuf {
    let names = names(disk, dir);
    assert_eq!(names.len(), 1, "expected one log file, found {names:?}");
    dir.join(&names[0])
}

/// Offsets of the records after the header, with their lengths.
fn records(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut at = 20;
    while at + 8 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        out.push((at, 8 + len));
        at += 8 + len;
    }
    out
}

fn is_corrupt(result: Result<(DefinitionsStore, Map, Arc<SyncCoordinator>), StoreError>) -> String {
    match result {
        Err(StoreError::Corrupt(why)) => why,
        Err(e) => panic!("expected a corruption error, got {e}"),
        Ok(_) => panic!("expected a corruption error, the store opened"),
    }
}

#[test]
fn the_store_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<DefinitionsStore>();
}

#[test]
fn round_trip_on_the_real_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("definitions");
    let disk: Arc<dyn Disk> = Arc::new(RealDisk::new());
    let (store, found, sync) = open_on(Arc::clone(&disk), &dir, small()).unwrap();
    assert!(found.is_empty() && store.is_empty());
    store.put(b"exchange/x", b"direct").unwrap();
    store.put(b"queue/a", b"durable").unwrap();
    store.put(b"queue/b", b"old").unwrap();
    store.put(b"queue/b", b"new").unwrap();
    store.delete(b"queue/a").unwrap();
    store.delete(b"never/there").unwrap();
    let t = store
        .apply(&[
            put("binding/1", "x->b"),
            put("queue/c", ""),
            del("exchange/x"),
        ])
        .unwrap();
    assert_eq!(store.len(), 3);
    assert!(store.contains(b"queue/b") && store.contains(b"queue/c"));
    assert!(!store.contains(b"queue/a") && !store.contains(b"exchange/x"));
    assert!(sync.sync_now() >= t);
    drop(store);

    let expected = map(&[("binding/1", "x->b"), ("queue/b", "new"), ("queue/c", "")]);
    let (store, found, _sync) = open_on(Arc::clone(&disk), &dir, small()).unwrap();
    assert_eq!(found, expected);
    store.compact().unwrap();
    store.put(b"queue/d", b"after compaction").unwrap();
    drop(store);
    assert_eq!(names(&*disk, &dir), vec!["defs.0000000002.log".to_string()]);

    let (_store, found, _sync) = open_on(Arc::clone(&disk), &dir, small()).unwrap();
    let mut expected = expected;
    expected.insert(b"queue/d".to_vec(), b"after compaction".to_vec());
    assert_eq!(found, expected);
}

#[test]
fn round_trip_on_the_sim_disk_and_published_tickets_survive_a_crash() {
    let disk = SimDisk::new();
    let (store, found, sync) = open(&disk);
    assert!(found.is_empty());
    let mut model = Map::new();
    for i in 0..50 {
        let changes = [
            put(&format!("q/{}", i % 7), &format!("v{i}")),
            del(&format!("q/{}", (i + 3) % 7)),
        ];
        store.apply(&changes).unwrap();
        apply_to(&mut model, &changes);
    }
    let t = store.put(b"last", b"one").unwrap();
    model.insert(b"last".to_vec(), b"one".to_vec());
    assert_eq!(sync.sync_now(), t);
    for seed in 0..32 {
        let (_s, found, _sync) = open(&disk.crash(seed));
        assert_eq!(found, model, "seed {seed}");
    }
}

#[test]
fn an_empty_batch_writes_nothing_and_returns_the_last_ticket() {
    let disk = SimDisk::new();
    let (store, _, sync) = open(&disk);
    let log = the_log(&disk, &dir());
    let len = disk.open(&log).unwrap().len();
    assert_eq!(store.apply(&[]).unwrap(), 0);
    assert_eq!(disk.open(&log).unwrap().len(), len);
    let t = store.put(b"k", b"v").unwrap();
    assert_eq!(store.apply(&[]).unwrap(), t);
    assert_eq!(sync.sync_now(), t);
}

#[test]
fn values_larger_than_a_read_chunk_and_a_compacted_record() {
    let disk = SimDisk::new();
    let (store, _, sync) = open(&disk);
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    store.put(b"big", &big).unwrap();
    store.put(b"small", b"s").unwrap();
    store.put(b"big2", &big[..70_000]).unwrap();
    sync.sync_now();
    drop(store);
    let (store, found, _sync) = open(&disk);
    assert_eq!(found.get(&b"big"[..]), Some(&big));
    store.compact().unwrap();
    drop(store);
    let (_store, again, _sync) = open(&disk);
    assert_eq!(again, found);
}

#[test]
fn an_unsynced_batch_is_recovered_whole_or_not_at_all() {
    let disk = SimDisk::new();
    let (store, _, sync) = open(&disk);
    let mut base = Map::new();
    let setup: Vec<Change> = (0..30)
        .map(|i| put(&format!("k{i:02}"), &format!("base-{i}")))
        .collect();
    store.apply(&setup).unwrap();
    apply_to(&mut base, &setup);
    sync.sync_now();

    // Two batches, neither synced: each must come back whole, the second
    // never without the first.
    let first: Vec<Change> = (0..40)
        .map(|i| put(&format!("k{:02}", i % 45), &"first-".repeat(i + 1)))
        .chain((0..10).map(|i| del(&format!("k{:02}", i * 3))))
        .collect();
    let second: Vec<Change> = (0..25)
        .map(|i| put(&format!("n{i}"), &"second".repeat(i)))
        .chain([del("k01")])
        .collect();
    store.apply(&first).unwrap();
    let mut after_first = base.clone();
    apply_to(&mut after_first, &first);
    store.apply(&second).unwrap();
    let mut after_second = after_first.clone();
    apply_to(&mut after_second, &second);

    let mut seen = BTreeSet::new();
    for seed in 0..400 {
        let (_s, found, _sync) = open(&disk.crash(seed));
        let which = [&base, &after_first, &after_second]
            .iter()
            .position(|m| **m == found);
        let Some(which) = which else {
            panic!("seed {seed}: recovered a state no prefix of the batches gives");
        };
        seen.insert(which);
    }
    assert_eq!(seen.len(), 3, "crashes should have hit all three outcomes");
}

/// Every operation on a [`HookDisk`], as its hook sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    CreateDir,
    List,
    Open,
    Remove,
    RemoveDir,
    Rename,
    SyncDir,
    Append,
    Truncate,
    Sync,
}

impl Op {
    /// Whether it can change what a crash leaves.
    fn mutates(self) -> bool {
        !matches!(self, Op::List)
    }
}

type Hook = Arc<dyn Fn(Op) -> io::Result<()> + Send + Sync>;

/// A [`SimDisk`] whose every operation first asks a hook, which may take a
/// crash image, run something, or fail the operation (a failed append
/// writes half of its data first, as a full disk does).
#[derive(Clone)]
struct HookDisk {
    sim: SimDisk,
    hook: Hook,
}

struct HookFile {
    inner: Arc<dyn DiskFile>,
    hook: Hook,
}

impl Disk for HookDisk {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        (self.hook)(Op::CreateDir)?;
        self.sim.create_dir_all(dir)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        (self.hook)(Op::List)?;
        self.sim.list(dir)
    }
    fn open(&self, path: &Path) -> io::Result<Arc<dyn DiskFile>> {
        (self.hook)(Op::Open)?;
        Ok(Arc::new(HookFile {
            inner: self.sim.open(path)?,
            hook: Arc::clone(&self.hook),
        }))
    }
    fn open_existing(&self, path: &Path) -> io::Result<Arc<dyn DiskFile>> {
        (self.hook)(Op::Open)?;
        Ok(Arc::new(HookFile {
            inner: self.sim.open_existing(path)?,
            hook: Arc::clone(&self.hook),
        }))
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        (self.hook)(Op::Remove)?;
        self.sim.remove_file(path)
    }
    fn remove_dir_all(&self, dir: &Path) -> io::Result<()> {
        (self.hook)(Op::RemoveDir)?;
        self.sim.remove_dir_all(dir)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        (self.hook)(Op::Rename)?;
        self.sim.rename(from, to)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        (self.hook)(Op::SyncDir)?;
        self.sim.sync_dir(dir)
    }
}

impl DiskFile for HookFile {
    fn append(&self, data: &[u8]) -> io::Result<u64> {
        if let Err(e) = (self.hook)(Op::Append) {
            let _ = self.inner.append(&data[..data.len() / 2]);
            return Err(e);
        }
        self.inner.append(data)
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read_at(offset, buf)
    }
    fn len(&self) -> u64 {
        self.inner.len()
    }
    fn truncate(&self, len: u64) -> io::Result<()> {
        (self.hook)(Op::Truncate)?;
        self.inner.truncate(len)
    }
    fn sync(&self) -> io::Result<()> {
        (self.hook)(Op::Sync)?;
        self.inner.sync()
    }
}

/// Takes crash images of a [`SimDisk`] before every operation once armed.
#[derive(Default)]
struct CrashImages {
    armed: AtomicBool,
    /// Before each armed operation: its kind, and one image per seed.
    images: Mutex<Vec<(Op, Vec<SimDisk>)>>,
}

const SEEDS_PER_POINT: u64 = 6;

impl CrashImages {
    fn hook(self: &Arc<Self>, sim: &SimDisk) -> Hook {
        let me = Arc::clone(self);
        let sim = sim.clone();
        Arc::new(move |op| {
            if op.mutates() && me.armed.load(Ordering::SeqCst) {
                let images = (0..SEEDS_PER_POINT).map(|s| sim.crash(s)).collect();
                me.images.lock().push((op, images));
            }
            Ok(())
        })
    }
}

fn failed(op: Op) -> io::Error {
    io::Error::other(format!("injected failure of {op:?}"))
}

#[test]
fn a_failed_append_changes_nothing_and_later_records_stay_readable() {
    let sim = SimDisk::new();
    // Images between the half-written record and its cut.
    let images = Arc::new(CrashImages::default());
    let disk = HookDisk {
        sim: sim.clone(),
        hook: images.hook(&sim),
    };
    let (store, _, sync) = open_on(Arc::new(disk), &dir(), small()).unwrap();
    store.put(b"a", b"1").unwrap();
    sync.sync_now();
    let before = map(&[("a", "1")]);

    sim.set_write_failures(true);
    images.armed.store(true, Ordering::SeqCst);
    let err = store.apply(&[put("b", "2"), del("a")]).unwrap_err();
    assert!(matches!(err, StoreError::Io(_)), "{err}");
    images.armed.store(false, Ordering::SeqCst);
    sim.set_write_failures(false);
    assert_eq!(store.len(), 1);
    let taken = std::mem::take(&mut *images.images.lock());
    assert!(taken.iter().any(|(op, _)| *op == Op::Truncate));
    for (op, crashed) in taken {
        for image in crashed {
            let (_s, found, _sync) = open(&image);
            assert_eq!(found, before, "crash before {op:?}");
        }
    }

    store.put(b"c", b"3").unwrap();
    let t = store.delete(b"a").unwrap();
    assert_eq!(sync.sync_now(), t);
    drop(store);
    let (_s, found, _sync) = open(&sim);
    assert_eq!(found, map(&[("c", "3")]));
}

#[test]
fn a_failed_cut_refuses_changes_until_a_compaction_succeeds() {
    let sim = SimDisk::new();
    let fail = Arc::new(Mutex::new(Vec::<Op>::new()));
    let hook: Hook = {
        let fail = Arc::clone(&fail);
        Arc::new(move |op| {
            if fail.lock().contains(&op) {
                Err(failed(op))
            } else {
                Ok(())
            }
        })
    };
    let disk = HookDisk {
        sim: sim.clone(),
        hook,
    };
    let (store, _, sync) = open_on(Arc::new(disk), &dir(), small()).unwrap();
    store.put(b"a", b"1").unwrap();
    sync.sync_now();
    assert!(!store.needs_compaction());

    *fail.lock() = vec![Op::Append, Op::Truncate];
    assert!(store.put(b"b", b"2").is_err());
    fail.lock().clear();
    // Half a record is left in the log: nothing may follow it.
    let err = store.put(b"c", b"3").unwrap_err();
    assert!(err.to_string().contains("refuses changes"), "{err}");
    assert!(store.needs_compaction());
    // A crash now finds the half record at the end, and cuts it.
    let (_s, found, _sync) = open(&sim.crash(1));
    assert_eq!(found, map(&[("a", "1")]));

    store.compact().unwrap();
    assert!(!store.needs_compaction());
    let t = store.put(b"d", b"4").unwrap();
    assert_eq!(sync.sync_now(), t);
    drop(store);
    let (_s, found, _sync) = open(&sim);
    assert_eq!(found, map(&[("a", "1"), ("d", "4")]));
}

#[test]
fn a_failed_directory_sync_after_the_rename_refuses_changes_until_a_compaction_succeeds() {
    let sim = SimDisk::new();
    let fail_dir_sync = Arc::new(AtomicBool::new(false));
    let hook: Hook = {
        let fail = Arc::clone(&fail_dir_sync);
        Arc::new(move |op| {
            if op == Op::SyncDir && fail.load(Ordering::SeqCst) {
                Err(failed(op))
            } else {
                Ok(())
            }
        })
    };
    let disk = HookDisk {
        sim: sim.clone(),
        hook,
    };
    let (store, _, sync) = open_on(Arc::new(disk), &dir(), small()).unwrap();
    store.put(b"a", b"1").unwrap();
    store.put(b"b", b"2").unwrap();
    // (A failed compaction promises nothing: what must survive is synced.)
    sync.sync_now();
    let expected = map(&[("a", "1"), ("b", "2")]);

    fail_dir_sync.store(true, Ordering::SeqCst);
    assert!(store.compact().is_err());
    assert!(store.put(b"c", b"3").is_err(), "changes must be refused");
    assert!(store.needs_compaction());
    // Old and new file hold the same: either is fine after a crash.
    for seed in 0..16 {
        let (_s, found, _sync) = open(&sim.crash(seed));
        assert_eq!(found, expected, "seed {seed}");
    }
    fail_dir_sync.store(false, Ordering::SeqCst);
    store.compact().unwrap();
    let t = store.put(b"c", b"3").unwrap();
    assert_eq!(sync.sync_now(), t);
    drop(store);
    let (_s, found, _sync) = open(&sim);
    assert_eq!(found, map(&[("a", "1"), ("b", "2"), ("c", "3")]));
    assert_eq!(names(&sim, &dir()), vec!["defs.0000000003.log".to_string()]);
}

#[test]
fn a_failed_compaction_leaves_the_store_on_its_old_file() {
    let disk = SimDisk::new();
    let (store, _, sync) = open(&disk);
    for i in 0..20 {
        store.put(b"k", format!("v{i}").as_bytes()).unwrap();
    }
    disk.set_sync_failures(true);
    assert!(store.compact().is_err());
    disk.set_sync_failures(false);
    disk.set_write_failures(true);
    assert!(store.compact().is_err());
    disk.set_write_failures(false);
    assert_eq!(
        names(&disk, &dir()),
        vec!["defs.0000000001.log".to_string()]
    );
    let t = store.put(b"j", b"x").unwrap();
    assert_eq!(sync.sync_now(), t);
    let (_s, found, _sync) = open(&disk.crash(3));
    assert_eq!(found, map(&[("j", "x"), ("k", "v19")]));
}

#[test]
fn a_corrupt_record_in_the_middle_is_an_error_and_a_torn_tail_is_cut() {
    let disk = SimDisk::new();
    let (store, _, sync) = open(&disk);
    store.put(b"a", b"first value").unwrap();
    store.put(b"b", b"second value").unwrap();
    store.put(b"c", b"third value").unwrap();
    sync.sync_now();
    drop(store);
    let log = the_log(&disk, &dir());
    let pristine = read_file(&disk, &log);
    let recs = records(&pristine);
    assert_eq!(recs.len(), 4, "end-of-compaction record and three puts");

    // A flipped byte in the middle: refused, and nothing is touched.
    let (at, _) = recs[2];
    rewrite_file(&disk, &log, |b| b[at + 12] ^= 0x20);
    let damaged = read_file(&disk, &log);
    let why = is_corrupt(open_on(Arc::new(disk.clone()), &dir(), small()));
    assert!(why.contains("valid records follow"), "{why}");
    assert_eq!(read_file(&disk, &log), damaged);

    // The same damage in the last record reads as a torn write.
    let (at, len) = recs[3];
    rewrite_file(&disk, &log, |b| {
        *b = pristine.clone();
        b[at + len - 1] ^= 0x20;
    });
    let (_s, found, _sync) = open(&disk);
    assert_eq!(found, map(&[("a", "first value"), ("b", "second value")]));
    assert_eq!(read_file(&disk, &log), pristine[..at]);

    // So does a record cut short, or a zero-filled tail.
    rewrite_file(&disk, &log, |b| {
        *b = pristine[..pristine.len() - 3].to_vec();
        b.extend_from_slice(&[0; 40]);
    });
    let (_s, found, _sync) = open(&disk);
    assert_eq!(found.len(), 2);
}

#[test]
fn damage_in_the_compacted_part_or_the_header_is_an_error() {
    let disk = SimDisk::new();
    let (store, _, _sync) = open(&disk);
    for i in 0..2000 {
        store
            .put(format!("key-{i:04}").as_bytes(), &[i as u8; 100])
            .unwrap();
    }
    store.compact().unwrap();
    drop(store);
    let log = the_log(&disk, &dir());
    let pristine = read_file(&disk, &log);
    let recs = records(&pristine);
    assert!(
        recs.len() > 3,
        "several compacted records and the end marker"
    );
    let restore = |disk: &SimDisk| rewrite_file(disk, &log, |b| *b = pristine.clone());

    // The last compacted record, just before the end-of-compaction one.
    let (at, _) = recs[recs.len() - 2];
    rewrite_file(&disk, &log, |b| b[at + 30] ^= 1);
    let why = is_corrupt(open_on(Arc::new(disk.clone()), &dir(), small()));
    assert!(why.contains("compacted part"), "{why}");

    // Cut inside the compacted part.
    rewrite_file(&disk, &log, |b| b.truncate(at + 10));
    is_corrupt(open_on(Arc::new(disk.clone()), &dir(), small()));

    for (byte, what) in [(0, "magic"), (7, "version"), (12, "checksum")] {
        restore(&disk);
        rewrite_file(&disk, &log, |b| b[byte] ^= 0x11);
        let why = is_corrupt(open_on(Arc::new(disk.clone()), &dir(), small()));
        assert!(why.contains(what), "{why}");
    }
    restore(&disk);
    let (_s, found, _sync) = open(&disk);
    assert_eq!(found.len(), 2000);
}

#[test]
fn open_keeps_the_highest_generation_and_removes_leftovers() {
    let disk = SimDisk::new();
    let (store, _, _sync) = open(&disk);
    store.put(b"k", b"v").unwrap();
    store.compact().unwrap();
    drop(store);
    // A compaction whose removal of the old file did not last, and an
    // interrupted one.
    let stale = dir().join("defs.0000000001.log");
    disk.open(&stale).unwrap().append(b"whatever").unwrap();
    let tmp = dir().join("defs.0000000003.log.tmp");
    disk.open(&tmp)
        .unwrap()
        .append(b"half a compaction")
        .unwrap();
    disk.open(&dir().join("unrelated")).unwrap();
    let (_s, found, _sync) = open(&disk);
    assert_eq!(found, map(&[("k", "v")]));
    assert_eq!(
        names(&disk, &dir()),
        vec!["defs.0000000002.log".to_string(), "unrelated".to_string()]
    );
}

#[test]
fn compaction_shrinks_the_log_and_keeps_the_live_set() {
    let disk = SimDisk::new();
    let options = DefinitionsOptions {
        compact_min_dead_bytes: 64 << 10,
    };
    let (store, _, _sync) = open_on(Arc::new(disk.clone()), &dir(), options).unwrap();
    let mut model = Map::new();
    let mut i = 0;
    while !store.needs_compaction() {
        let changes = [
            put(&format!("queue/{}", i % 10), &format!("{i:0>40}")),
            del(&format!("queue/{}", (i + 5) % 10)),
        ];
        store.apply(&changes).unwrap();
        apply_to(&mut model, &changes);
        i += 1;
        assert!(i < 10_000, "never needed a compaction");
    }
    let before = disk.open(&the_log(&disk, &dir())).unwrap().len();
    store.compact().unwrap();
    assert!(!store.needs_compaction());
    let log = the_log(&disk, &dir());
    assert!(log.ends_with("defs.0000000002.log"));
    let after = disk.open(&log).unwrap().len();
    assert!(after < before / 2, "{before} -> {after} bytes");
    assert_eq!(store.len(), model.len());
    // Durable without any sync round: the compaction synced it.
    let (_s, found, _sync) = open(&disk.crash(9));
    assert_eq!(found, model);
}

#[test]
fn default_thresholds_need_a_mebibyte_of_dead_bytes() {
    let disk = SimDisk::new();
    let sync = SyncCoordinator::manual();
    let (store, _) = DefinitionsStore::open(Arc::new(disk), dir(), sync).unwrap();
    let value = vec![7u8; 1000];
    for _ in 0..1000 {
        store.put(b"one key", &value).unwrap();
    }
    assert!(
        !store.needs_compaction(),
        "about 1 MB dead is not enough yet"
    );
    for _ in 0..100 {
        store.put(b"one key", &value).unwrap();
    }
    assert!(store.needs_compaction());
}

/// Builds the same store on `disk` every time: churn, some of it synced.
fn churned_store(disk: Arc<dyn Disk>) -> (DefinitionsStore, Arc<SyncCoordinator>, Map) {
    let (store, _, sync) = open_on(disk, &dir(), small()).unwrap();
    let mut model = Map::new();
    for i in 0..60u32 {
        let changes = [
            put(&format!("k{}", i % 9), &"x".repeat((i * 37 % 300) as usize)),
            del(&format!("k{}", (i + 4) % 9)),
            put(&format!("big{}", i % 2), &"y".repeat(5000)),
        ];
        store.apply(&changes).unwrap();
        apply_to(&mut model, &changes);
    }
    (store, sync, model)
}

#[test]
fn a_crash_before_any_step_of_a_compaction_recovers_exactly_the_live_set() {
    let sim = SimDisk::new();
    let images = Arc::new(CrashImages::default());
    let disk = HookDisk {
        sim: sim.clone(),
        hook: images.hook(&sim),
    };
    let (store, sync, model) = churned_store(Arc::new(disk));
    sync.sync_now();
    images.armed.store(true, Ordering::SeqCst);
    store.compact().unwrap();
    images.armed.store(false, Ordering::SeqCst);

    let taken = std::mem::take(&mut *images.images.lock());
    let ops: Vec<Op> = taken.iter().map(|(op, _)| *op).collect();
    for needed in [
        Op::Open,
        Op::Append,
        Op::Sync,
        Op::Rename,
        Op::SyncDir,
        Op::Remove,
    ] {
        assert!(ops.contains(&needed), "{needed:?} not among {ops:?}");
    }
    let finals = (0..SEEDS_PER_POINT).map(|s| sim.crash(s)).collect();
    for (point, (op, crashed)) in taken.into_iter().chain([(Op::List, finals)]).enumerate() {
        for (seed, image) in crashed.into_iter().enumerate() {
            let (store, found, sync) = open(&image);
            assert_eq!(
                found, model,
                "crash before step {point} ({op:?}), seed {seed}"
            );
            // The recovered store works, and has tidied up.
            let t = store.put(b"after", b"crash").unwrap();
            assert_eq!(sync.sync_now(), t);
            drop(store);
            let (_s, again, _sync) = open(&image.crash(seed as u64));
            assert_eq!(again.len(), model.len() + 1);
            let names = names(&image, &dir());
            assert_eq!(names.len(), 1, "leftovers after recovery: {names:?}");
        }
    }
}

type Job = Box<dyn FnOnce() + Send>;

#[test]
fn changes_applied_during_a_compaction_are_carried_over() {
    let sim = SimDisk::new();
    let images = Arc::new(CrashImages::default());
    // Runs once, from inside the compaction: before it syncs its new file
    // (the copy of the live entries, which runs without the lock).
    let inject: Arc<Mutex<Option<Job>>> = Arc::new(Mutex::new(None));
    let hook: Hook = {
        let images_hook = images.hook(&sim);
        let inject = Arc::clone(&inject);
        Arc::new(move |op| {
            if op == Op::Sync {
                let job = inject.lock().take();
                if let Some(job) = job {
                    job();
                }
            }
            images_hook(op)
        })
    };
    let disk = HookDisk {
        sim: sim.clone(),
        hook,
    };
    let (store, sync, mut model) = churned_store(Arc::new(disk));
    let store = Arc::new(store);
    sync.sync_now();
    let before = model.clone();
    let during = [put("k0", "changed meanwhile"), del("k5"), put("new", "one")];
    apply_to(&mut model, &during);
    {
        let store = Arc::clone(&store);
        let during = during.clone();
        *inject.lock() = Some(Box::new(move || {
            store.apply(&during).unwrap();
        }));
    }
    images.armed.store(true, Ordering::SeqCst);
    store.compact().unwrap();
    images.armed.store(false, Ordering::SeqCst);
    assert!(inject.lock().is_none(), "the changes were applied");
    assert_eq!(store.len(), model.len());

    for (point, (op, crashed)) in std::mem::take(&mut *images.images.lock())
        .into_iter()
        .enumerate()
    {
        for (seed, image) in crashed.into_iter().enumerate() {
            let (_s, found, _sync) = open(&image);
            assert!(
                found == model || found == before,
                "crash before step {point} ({op:?}), seed {seed}"
            );
        }
    }
    // Once it returned, the carried-over changes are durable, and later
    // ones go to the new file.
    let (_s, found, _sync) = open(&sim.crash(4));
    assert_eq!(found, model);
    let t = store.put(b"later", b"x").unwrap();
    model.insert(b"later".to_vec(), b"x".to_vec());
    assert_eq!(sync.sync_now(), t);
    let (_s, found, _sync) = open(&sim.crash(5));
    assert_eq!(found, model);
}

#[test]
fn concurrent_writers_and_compactions() {
    let disk = SimDisk::new();
    let (store, _, sync) = open(&disk);
    let done = AtomicBool::new(false);
    let compactions = AtomicUsize::new(0);
    let models: Vec<Map> = std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::SeqCst) {
                store.compact().unwrap();
                compactions.fetch_add(1, Ordering::SeqCst);
            }
        });
        let writers: Vec<_> = (0..3)
            .map(|w| {
                let store = &store;
                s.spawn(move || {
                    let mut model = Map::new();
                    let mut rng = fastrand::Rng::with_seed(w);
                    for i in 0..1500 {
                        let key = format!("w{w}/{}", rng.u32(0..40));
                        let change = if rng.u8(0..4) == 0 {
                            Change::Delete {
                                key: key.into_bytes(),
                            }
                        } else {
                            Change::Put {
                                key: key.into_bytes(),
                                value: format!("{i}").repeat(rng.usize(0..30)).into_bytes(),
                            }
                        };
                        store.apply(std::slice::from_ref(&change)).unwrap();
                        apply_to(&mut model, &[change]);
                        if i % 100 == 0 {
                            std::thread::yield_now();
                        }
                    }
                    model
                })
            })
            .collect();
        let models = writers.into_iter().map(|h| h.join().unwrap()).collect();
        done.store(true, Ordering::SeqCst);
        models
    });
    assert!(compactions.load(Ordering::SeqCst) > 0);
    let model: Map = models.into_iter().flatten().collect();
    assert_eq!(store.len(), model.len());
    sync.sync_now();
    for seed in 0..8 {
        let (_s, found, _sync) = open(&disk.crash(seed));
        assert_eq!(found, model, "seed {seed}");
    }
}

/// What the randomized test does.
#[derive(Debug, Clone)]
enum Step {
    /// Changes on keys `0..10`: a put with a value of that length, or a
    /// delete.
    Apply(Vec<(u8, Option<usize>)>),
    Compact,
    /// One sync round.
    Sync,
    /// Power loss, then reopen.
    Crash(u64),
    WriteFailures(bool),
    SyncFailures(bool),
}

fn step() -> impl Strategy<Value = Step> {
    let len = prop_oneof![8 => 0usize..64, 2 => 64usize..700, 1 => 700usize..3000];
    let change = (0u8..10, prop::option::weighted(0.8, len));
    prop_oneof![
        10 => prop::collection::vec(change, 1..5).prop_map(Step::Apply),
        2 => Just(Step::Compact),
        3 => Just(Step::Sync),
        2 => any::<u64>().prop_map(Step::Crash),
        1 => any::<bool>().prop_map(Step::WriteFailures),
        1 => any::<bool>().prop_map(Step::SyncFailures),
    ]
}

fn value(uid: u64, len: usize) -> Vec<u8> {
    uid.to_le_bytes()
        .iter()
        .copied()
        .cycle()
        .take(len)
        .collect()
}

/// Runs `steps`; after each recovery the store must hold the state after
/// some apply between the last one known durable and the last one made.
fn run(steps: &[Step]) {
    let mut disk = SimDisk::new();
    let (mut store, found, mut sync) = open(&disk);
    // States after each successful apply since the last recovery, with the
    // apply's ticket; states[0] is the state recovered.
    let mut states: Vec<(Map, u64)> = vec![(found, 0)];
    let mut durable = 0usize;
    let (mut write_failures, mut sync_failures) = (false, false);
    let mut uid = 0u64;
    for (n, step) in steps.iter().chain([&Step::Crash(0)]).enumerate() {
        match step {
            Step::Apply(changes) => {
                let changes: Vec<Change> = changes
                    .iter()
                    .map(|&(k, len)| {
                        uid += 1;
                        let key = format!("def/{k}").into_bytes();
                        match len {
                            Some(len) => Change::Put {
                                key,
                                value: value(uid, len),
                            },
                            None => Change::Delete { key },
                        }
                    })
                    .collect();
                match store.apply(&changes) {
                    Ok(ticket) => {
                        assert!(!write_failures, "step {n}: a failing write succeeded");
                        let mut next = states.last().unwrap().0.clone();
                        apply_to(&mut next, &changes);
                        states.push((next, ticket));
                    }
                    Err(e) => assert!(write_failures, "step {n}: {e}"),
                }
            }
            Step::Compact => match store.compact() {
                Ok(()) => durable = states.len() - 1,
                Err(e) => assert!(write_failures || sync_failures, "step {n}: {e}"),
            },
            Step::Sync => {
                let published = sync.sync_now();
                while durable + 1 < states.len() && states[durable + 1].1 <= published {
                    durable += 1;
                }
            }
            Step::Crash(seed) => {
                disk = disk.crash(*seed);
                (write_failures, sync_failures) = (false, false);
                let (s, found, c) = open(&disk);
                let at = states[durable..].iter().position(|(m, _)| *m == found);
                assert!(
                    at.is_some(),
                    "step {n}: recovered {} entries, a state no apply between the durable one ({durable}) and the last ({}) left",
                    found.len(),
                    states.len() - 1
                );
                // Recovery is stable: reopening finds the same.
                drop(s);
                let (s, again, c2) = open(&disk);
                assert_eq!(again, found, "step {n}: a second open differs");
                drop(c);
                (store, sync) = (s, c2);
                states = vec![(found, 0)];
                durable = 0;
            }
            Step::WriteFailures(on) => {
                write_failures = *on;
                disk.set_write_failures(*on);
            }
            Step::SyncFailures(on) => {
                sync_failures = *on;
                disk.set_sync_failures(*on);
            }
        }
        assert_eq!(store.len(), states.last().unwrap().0.len(), "step {n}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(200),
        // An integration test has no lib.rs to keep regressions next to.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_changes_compactions_and_crashes(steps in prop::collection::vec(step(), 1..80)) {
        run(&steps);
    }
}

/// 100,000 definitions of about 300 bytes on the real disk: writing them,
/// reopening, replacing half of them, compacting, and reopening again.
#[test]
fn a_hundred_thousand_entries() {
    const N: usize = 100_000;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("definitions");
    let disk: Arc<dyn Disk> = Arc::new(RealDisk::new());
    let key = |i: usize| format!("queue/vhost-{}/some.queue.name.{i:06}", i % 10).into_bytes();
    let val = |i: usize, round: u8| {
        let mut v = vec![round; 300];
        v[..8].copy_from_slice(&(i as u64).to_le_bytes());
        v
    };

    let started = Instant::now();
    let (store, _, sync) = open_on(Arc::clone(&disk), &dir, DefinitionsOptions::default()).unwrap();
    for chunk in (0..N).collect::<Vec<_>>().chunks(1000) {
        let changes: Vec<Change> = chunk
            .iter()
            .map(|&i| Change::Put {
                key: key(i),
                value: val(i, 1),
            })
            .collect();
        store.apply(&changes).unwrap();
    }
    sync.sync_now();
    let written = started.elapsed();
    drop(store);

    let started = Instant::now();
    let (store, found, sync) =
        open_on(Arc::clone(&disk), &dir, DefinitionsOptions::default()).unwrap();
    let reopened = started.elapsed();
    assert_eq!(found.len(), N);
    assert_eq!(found.get(&key(4242)), Some(&val(4242, 1)));
    drop(found);

    // One at a time, as declarations come: every entry replaced once,
    // then a quarter of them again.
    let started = Instant::now();
    for i in 0..N {
        store.put(&key(i), &val(i, 2)).unwrap();
    }
    let per_put = started.elapsed() / N as u32;
    for i in (1..N).step_by(2).take(N / 4) {
        store.put(&key(i), &val(i, 3)).unwrap();
    }
    assert!(store.needs_compaction());
    let before = disk.open(&the_log(&*disk, &dir)).unwrap().len();
    let started = Instant::now();
    store.compact().unwrap();
    let compacted = started.elapsed();
    let after = disk.open(&the_log(&*disk, &dir)).unwrap().len();
    assert!(after < before / 2, "{before} -> {after}");
    sync.sync_now();
    drop(store);

    let (_store, found, _sync) =
        open_on(Arc::clone(&disk), &dir, DefinitionsOptions::default()).unwrap();
    assert_eq!(found.len(), N);
    assert_eq!(found.get(&key(10)), Some(&val(10, 2)));
    assert_eq!(found.get(&key(11)), Some(&val(11, 3)));
    assert_eq!(found.get(&key(N - 1)), Some(&val(N - 1, 2)));
    eprintln!(
        "{N} entries: written in batches in {written:?}, reopened in {reopened:?}, \
         {per_put:?} per single put (no sync), {before} -> {after} bytes compacted in {compacted:?}"
    );
}
