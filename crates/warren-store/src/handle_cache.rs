//! [`HandleCache`]: a budget on the files the stores keep open.
//!
//! Each durable queue has a segment file and an ack log, so a broker with
//! 100,000 durable queues would need 200,000 open files if every store kept
//! its files open, far past a usual open-files limit, and most of them
//! belong to idle queues. `HandleCache` wraps a [`Disk`] and hands out files
//! that hold an open file of the inner disk only while they are in use: a
//! file is opened on first use, and when more files are open than the
//! budget allows, the ones not used recently are closed. A closed file
//! reopens by path the next time it is read, appended to or synced, and
//! the store above never notices (RabbitMQ's file handle cache does the
//! same for the same reason).
//!
//! Choosing what to close is a clock sweep: every use sets a file's `used`
//! bit; the sweep goes round the open files, clearing set bits and closing
//! the first file whose bit was already clear. Files with appends not yet
//! synced are passed over while there are others to close, so that a
//! write error is reported by the sync on the same open file; only when
//! every other file is busy is such a file closed too (a later sync
//! reopens it and syncs: the kernel keeps its dirty pages meanwhile).
//!
//! The hot path takes no shared lock: a file in use is behind its own
//! read-write lock, taken for reading by each operation and for writing
//! only to open or close it. The cache's registry (one mutex) is touched
//! only when a file is opened, closed, renamed or removed.
//!
//! Because files are reopened by path, the cache follows the renames and
//! removals made through it: a renamed file reopens under its new name,
//! and a removed one is never recreated (reads of it fail, syncs of it
//! have nothing to do). Opening a path that already has a live file hands
//! out that same file.

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::{Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use tracing::warn;

use crate::disk::{Disk, DiskFile};

/// Files closed at once when the operating system refuses to open another
/// one (`EMFILE`) although the budget is not reached.
const EMERGENCY_CLOSE: usize = 16;

/// A [`Disk`] whose files stay open only while in use, within a budget.
pub struct HandleCache {
    shared: Arc<Shared>,
}

/// What the cache has done, for metrics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HandleStats {
    /// Files of the inner disk open now.
    pub open: usize,
    /// The most files the cache keeps open.
    pub budget: usize,
    /// Files opened again after being closed.
    pub reopens: u64,
    /// Files closed to stay within the budget.
    pub closes: u64,
}

struct Shared {
    inner: Arc<dyn Disk>,
    budget: usize,
    /// Files of the inner disk open now.
    open: AtomicUsize,
    reopens: AtomicU64,
    closes: AtomicU64,
    registry: Mutex<Registry>,
}

#[derive(Default)]
struct Registry {
    /// Every live file handed out, by its current path. Paths order by
    /// component, so a directory's files are one contiguous range.
    by_path: BTreeMap<PathBuf, Weak<CachedFile>>,
    /// The files holding an open file, in sweep order. Files dropped since
    /// they were added linger as dead entries until the sweep or a
    /// compaction passes them.
    ring: VecDeque<Weak<CachedFile>>,
}

/// A file handed out by the cache.
struct CachedFile {
    shared: Arc<Shared>,
    me: Weak<CachedFile>,
    /// Where the file is now (renames through the cache update it).
    path: Mutex<PathBuf>,
    /// The open file of the inner disk, if any.
    file: RwLock<Option<Arc<dyn DiskFile>>>,
    /// The length, kept so that asking for it opens nothing.
    len: AtomicU64,
    /// Used since the sweep last passed.
    used: AtomicBool,
    /// Appended to or truncated since its last successful sync.
    dirty: AtomicBool,
    /// Removed, or replaced by a rename, through the cache.
    gone: AtomicBool,
}

impl HandleCache {
    /// Wraps `inner`, keeping at most `budget` of its files open (at least
    /// one).
    pub fn new(inner: Arc<dyn Disk>, budget: usize) -> Self {
        HandleCache {
            shared: Arc::new(Shared {
                inner,
                budget: budget.max(1),
                open: AtomicUsize::new(0),
                reopens: AtomicU64::new(0),
                closes: AtomicU64::new(0),
                registry: Mutex::new(Registry::default()),
            }),
        }
    }

    /// How many files are open, and how often files were closed and
    /// reopened.
    pub fn stats(&self) -> HandleStats {
        self.shared.stats()
    }

    /// The live file for `path`, if one was handed out.
    fn existing(&self, path: &Path) -> Option<Arc<CachedFile>> {
        self.shared
            .registry
            .lock()
            .by_path
            .get(path)
            .and_then(Weak::upgrade)
    }

    /// Marks the files at the given paths gone and forgets them.
    fn forget(registry: &mut Registry, paths: Vec<PathBuf>) -> Vec<Arc<CachedFile>> {
        let mut gone = Vec::new();
        for path in paths {
            if let Some(file) = registry.by_path.remove(&path).and_then(|w| w.upgrade()) {
                file.gone.store(true, Ordering::Release);
                gone.push(file);
            }
        }
        gone
    }
}

impl Shared {
    fn stats(&self) -> HandleStats {
        HandleStats {
            open: self.open.load(Ordering::Relaxed),
            budget: self.budget,
            reopens: self.reopens.load(Ordering::Relaxed),
            closes: self.closes.load(Ordering::Relaxed),
        }
    }

    /// Opens `path` on the inner disk; if the process is out of file
    /// descriptors, closes some idle files and tries once more.
    fn open_inner(&self, path: &Path, create: bool) -> io::Result<Arc<dyn DiskFile>> {
        let open = |path: &Path| {
            if create {
                self.inner.open(path)
            } else {
                self.inner.open_existing(path)
            }
        };
        match open(path) {
            Err(e) if e.raw_os_error() == Some(libc::EMFILE) => {
                let target = self
                    .open
                    .load(Ordering::Relaxed)
                    .saturating_sub(EMERGENCY_CLOSE);
                let closed = self.close_idle(target);
                warn!(
                    path = %path.display(),
                    closed,
                    "out of file descriptors; closed idle store files to open another"
                );
                open(path)
            }
            other => other,
        }
    }

    /// Records that `file` now holds an open file, and closes others if
    /// that takes the cache past its budget.
    fn opened(&self, file: &Weak<CachedFile>) {
        let open = self.open.fetch_add(1, Ordering::AcqRel) + 1;
        let mut registry = self.registry.lock();
        registry.ring.push_back(Weak::clone(file));
        // Dead entries are swept lazily; keep them from piling up when the
        // budget is never reached.
        if registry.ring.len() > 2 * open + 64 {
            registry.ring.retain(|w| w.strong_count() > 0);
        }
        drop(registry);
        if open > self.budget {
            self.close_idle(self.budget);
        }
    }

    /// Closes files until at most `target` are open, least recently used
    /// first, passing over files with unsynced appends while there are
    /// others. Returns how many it closed.
    fn close_idle(&self, target: usize) -> usize {
        // Handles upgraded during the sweep are dropped after the registry
        // lock is released: dropping the last one takes that lock.
        let mut held = Vec::new();
        let mut closed = 0;
        {
            let mut registry = self.registry.lock();
            for pass in [Pass::Clean, Pass::Any] {
                let mut steps = match pass {
                    Pass::Clean => 2 * registry.ring.len(),
                    Pass::Any => registry.ring.len(),
                };
                while steps > 0 && self.open.load(Ordering::Acquire) > target {
                    steps -= 1;
                    let Some(weak) = registry.ring.pop_front() else {
                        break;
                    };
                    let Some(file) = weak.upgrade() else {
                        continue;
                    };
                    if file.try_close(pass) {
                        closed += 1;
                    } else {
                        registry.ring.push_back(weak);
                    }
                    held.push(file);
                }
            }
        }
        drop(held);
        closed
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// Close files unused since the last pass and fully synced.
    Clean,
    /// Close any file not in use at this moment.
    Any,
}

impl CachedFile {
    /// Closes the inner file if `pass` allows and nobody is using it.
    fn try_close(&self, pass: Pass) -> bool {
        if pass == Pass::Clean
            && (self.used.swap(false, Ordering::AcqRel) || self.dirty.load(Ordering::Acquire))
        {
            return false;
        }
        let Some(mut slot) = self.file.try_write() else {
            return false;
        };
        // Unsynced appends are only made under the read lock, so this is
        // exact now that the write lock is held.
        if pass == Pass::Clean && self.dirty.load(Ordering::Acquire) {
            return false;
        }
        if slot.take().is_none() {
            return false;
        }
        self.shared.open.fetch_sub(1, Ordering::AcqRel);
        self.shared.closes.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// The inner file, opened again if it was closed.
    fn acquire(&self) -> io::Result<RwLockReadGuard<'_, Option<Arc<dyn DiskFile>>>> {
        let slot = self.file.read();
        if slot.is_some() {
            return Ok(slot);
        }
        drop(slot);
        let mut slot = self.file.write();
        if slot.is_none() {
            if self.gone.load(Ordering::Acquire) {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("{} was removed", self.path.lock().display()),
                ));
            }
            let path = self.path.lock().clone();
            let file = self.shared.open_inner(&path, false)?;
            *slot = Some(file);
            self.shared.reopens.fetch_add(1, Ordering::Relaxed);
            // Our slot is write-locked, so the sweep this may start passes
            // over this file.
            self.shared.opened(&self.me);
        }
        Ok(RwLockWriteGuard::downgrade(slot))
    }

    /// Runs `op` on the open inner file, marking the file used (and dirty
    /// if `writes`).
    fn with<R>(
        &self,
        writes: bool,
        op: impl FnOnce(&dyn DiskFile) -> io::Result<R>,
    ) -> io::Result<R> {
        self.used.store(true, Ordering::Relaxed);
        let slot = self.acquire()?;
        let file = slot.as_deref().expect("acquire leaves the file open");
        if writes {
            self.dirty.store(true, Ordering::Release);
        }
        op(file)
    }
}

impl DiskFile for CachedFile {
    fn append(&self, data: &[u8]) -> io::Result<u64> {
        self.with(true, |file| {
            let result = file.append(data);
            self.len.fetch_max(file.len(), Ordering::AcqRel);
            result
        })
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        self.with(false, |file| file.read_at(offset, buf))
    }

    fn len(&self) -> u64 {
        self.len.load(Ordering::Acquire)
    }

    fn truncate(&self, len: u64) -> io::Result<()> {
        self.with(true, |file| {
            let result = file.truncate(len);
            self.len.store(file.len(), Ordering::Release);
            result
        })
    }

    fn sync(&self) -> io::Result<()> {
        let mut slot = self.file.read();
        if slot.is_none() {
            // Closed while clean: everything written is synced already. A
            // removed file has nothing worth syncing.
            if !self.dirty.load(Ordering::Acquire) || self.gone.load(Ordering::Acquire) {
                return Ok(());
            }
            drop(slot);
            slot = self.acquire()?;
        }
        let file = slot.as_deref().expect("the file is open");
        self.dirty.store(false, Ordering::Release);
        let result = file.sync();
        if result.is_err() {
            self.dirty.store(true, Ordering::Release);
        }
        result
    }
}

impl Drop for CachedFile {
    fn drop(&mut self) {
        if self.file.get_mut().take().is_some() {
            self.shared.open.fetch_sub(1, Ordering::AcqRel);
        }
        let path = std::mem::take(self.path.get_mut());
        let mut registry = self.shared.registry.lock();
        if registry
            .by_path
            .get(&path)
            .is_some_and(|w| std::ptr::eq(w.as_ptr(), self))
        {
            registry.by_path.remove(&path);
        }
    }
}

impl Disk for HandleCache {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.shared.inner.create_dir_all(dir)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.shared.inner.list(dir)
    }

    fn open(&self, path: &Path) -> io::Result<Arc<dyn DiskFile>> {
        if let Some(file) = self.existing(path) {
            return Ok(file);
        }
        let inner = self.shared.open_inner(path, true)?;
        let len = inner.len();
        let file = Arc::new_cyclic(|me| CachedFile {
            shared: Arc::clone(&self.shared),
            me: Weak::clone(me),
            path: Mutex::new(path.to_path_buf()),
            file: RwLock::new(Some(inner)),
            len: AtomicU64::new(len),
            used: AtomicBool::new(true),
            dirty: AtomicBool::new(false),
            gone: AtomicBool::new(false),
        });
        let raced = {
            let mut registry = self.shared.registry.lock();
            match registry.by_path.get(path).and_then(Weak::upgrade) {
                // Opened by another thread meanwhile: use that one.
                Some(existing) => Some(existing),
                None => {
                    registry
                        .by_path
                        .insert(path.to_path_buf(), Arc::downgrade(&file));
                    None
                }
            }
        };
        if let Some(existing) = raced {
            // Ours was never counted as open.
            drop(file.file.write().take());
            return Ok(existing);
        }
        self.shared.opened(&file.me);
        Ok(file)
    }

    fn open_existing(&self, path: &Path) -> io::Result<Arc<dyn DiskFile>> {
        match self.existing(path) {
            Some(file) => Ok(file),
            None => {
                // Fails without creating anything if the file is missing.
                drop(self.shared.inner.open_existing(path)?);
                self.open(path)
            }
        }
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.shared.inner.remove_file(path)?;
        let gone = Self::forget(&mut self.shared.registry.lock(), vec![path.to_path_buf()]);
        drop(gone);
        Ok(())
    }

    fn remove_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.shared.inner.remove_dir_all(dir)?;
        let mut registry = self.shared.registry.lock();
        let paths: Vec<PathBuf> = registry
            .by_path
            .range(dir.to_path_buf()..)
            .map(|(p, _)| p)
            .take_while(|p| p.starts_with(dir))
            .cloned()
            .collect();
        let gone = Self::forget(&mut registry, paths);
        drop(registry);
        drop(gone);
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.shared.inner.rename(from, to)?;
        let mut registry = self.shared.registry.lock();
        let replaced = Self::forget(&mut registry, vec![to.to_path_buf()]);
        let moved = registry.by_path.remove(from);
        if let Some(file) = moved.as_ref().and_then(Weak::upgrade) {
            *file.path.lock() = to.to_path_buf();
            registry
                .by_path
                .insert(to.to_path_buf(), Arc::downgrade(&file));
            drop(registry);
            drop(file);
        } else {
            drop(registry);
        }
        drop(replaced);
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.shared.inner.sync_dir(dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{RealDisk, SimDisk};

    fn dir() -> PathBuf {
        PathBuf::from("/data/q")
    }

    fn sim_cache(budget: usize) -> (SimDisk, HandleCache) {
        let sim = SimDisk::new();
        sim.create_dir_all(&dir()).unwrap();
        (sim.clone(), HandleCache::new(Arc::new(sim), budget))
    }

    fn read_all(file: &dyn DiskFile) -> Vec<u8> {
        let mut buf = vec![0u8; file.len() as usize];
        crate::disk::read_exact_at(file, 0, &mut buf).unwrap();
        buf
    }

    #[test]
    fn keeps_within_the_budget_and_reopens_on_use() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = HandleCache::new(Arc::new(RealDisk::new()), 3);
        let files: Vec<_> = (0..20)
            .map(|i| {
                let f = cache.open(&tmp.path().join(format!("f{i}"))).unwrap();
                f.append(format!("first {i};").as_bytes()).unwrap();
                f.sync().unwrap();
                assert!(cache.stats().open <= 3, "{:?}", cache.stats());
                f
            })
            .collect();
        for (i, f) in files.iter().enumerate() {
            f.append(format!("second {i}").as_bytes()).unwrap();
            f.sync().unwrap();
            assert!(cache.stats().open <= 3);
        }
        for (i, f) in files.iter().enumerate() {
            assert_eq!(read_all(&**f), format!("first {i};second {i}").as_bytes());
            assert_eq!(f.len(), read_all(&**f).len() as u64);
        }
        let stats = cache.stats();
        assert!(stats.reopens >= 17 && stats.closes >= 17, "{stats:?}");
        drop(files);
        assert_eq!(cache.stats().open, 0);
    }

    #[test]
    fn files_with_unsynced_appends_are_closed_last() {
        let (_sim, cache) = sim_cache(2);
        let a = cache.open(&dir().join("a")).unwrap();
        let b = cache.open(&dir().join("b")).unwrap();
        a.append(b"unsynced").unwrap();
        b.append(b"synced").unwrap();
        b.sync().unwrap();
        // A third file closes the clean one, although `a` was used first.
        let c = cache.open(&dir().join("c")).unwrap();
        let reopens = cache.stats().reopens;
        a.append(b" more").unwrap();
        assert_eq!(cache.stats().reopens, reopens, "a stayed open");
        assert_eq!(read_all(&*b), b"synced");
        assert_eq!(cache.stats().reopens, reopens + 1, "b was closed");
        // With every other file busy or dirty, a dirty one goes too, and its
        // sync reopens it.
        c.append(b"dirty").unwrap();
        let d = cache.open(&dir().join("d")).unwrap();
        d.append(b"dirty").unwrap();
        assert!(cache.stats().open <= 2);
        for f in [&a, &b, &c, &d] {
            f.sync().unwrap();
        }
        assert_eq!(read_all(&*a), b"unsynced more");
        assert_eq!(read_all(&*c), b"dirty");
    }

    #[test]
    fn sync_of_a_closed_dirty_file_reaches_the_disk() {
        let (sim, cache) = sim_cache(1);
        let a = cache.open(&dir().join("a")).unwrap();
        sim.sync_dir(&dir()).unwrap();
        a.append(b"payload").unwrap();
        let _b = cache.open(&dir().join("b")).unwrap();
        assert_eq!(cache.stats().open, 1, "a was closed, dirty");
        a.sync().unwrap();
        let crashed = sim.crash(1);
        let survivor = crashed.open_existing(&dir().join("a")).unwrap();
        assert_eq!(read_all(&*survivor), b"payload");
    }

    #[test]
    fn opening_a_path_twice_gives_the_same_file() {
        let (_sim, cache) = sim_cache(4);
        let a = cache.open(&dir().join("a")).unwrap();
        let again = cache.open(&dir().join("a")).unwrap();
        assert!(std::ptr::eq(
            Arc::as_ptr(&a) as *const (),
            Arc::as_ptr(&again) as *const ()
        ));
        assert_eq!(cache.stats().open, 1);
        assert!(cache.open_existing(&dir().join("missing")).is_err());
        assert!(cache.list(&dir()).unwrap() == vec!["a".to_string()]);
    }

    #[test]
    fn a_renamed_file_reopens_under_its_new_name() {
        let (_sim, cache) = sim_cache(1);
        let old = cache.open(&dir().join("log")).unwrap();
        old.append(b"old").unwrap();
        let tmp = cache.open(&dir().join("log.tmp")).unwrap();
        tmp.append(b"new").unwrap();
        tmp.sync().unwrap();
        cache
            .rename(&dir().join("log.tmp"), &dir().join("log"))
            .unwrap();
        // Close `tmp` behind the store's back, then use it again.
        let _other = cache.open(&dir().join("other")).unwrap();
        tmp.append(b"er").unwrap();
        assert_eq!(read_all(&*tmp), b"newer");
        assert!(!cache.list(&dir()).unwrap().contains(&"log.tmp".to_string()));
        let log = cache.open(&dir().join("log")).unwrap();
        assert_eq!(read_all(&*log), b"newer");
        // The replaced file is gone: never recreated, nothing to sync.
        old.sync().unwrap();
        assert!(old.read_at(0, &mut [0u8; 3]).is_err());
    }

    #[test]
    fn removed_files_are_never_recreated() {
        let (sim, cache) = sim_cache(1);
        cache.create_dir_all(&dir().join("sub")).unwrap();
        let a = cache.open(&dir().join("a")).unwrap();
        let b = cache.open(&dir().join("sub/b")).unwrap();
        let c = cache.open(&dir().join("sub/c")).unwrap();
        a.append(b"x").unwrap();
        b.append(b"y").unwrap();
        c.append(b"z").unwrap();
        cache.remove_file(&dir().join("a")).unwrap();
        cache.remove_dir_all(&dir().join("sub")).unwrap();
        for f in [&a, &b, &c] {
            f.sync().unwrap();
            let _ = f.append(b"more");
            let _ = f.read_at(0, &mut [0u8; 1]);
        }
        // Whatever stayed open wrote to an unlinked file; nothing came back.
        assert!(sim.list(&dir()).unwrap().is_empty());
        assert!(sim.list(&dir().join("sub")).unwrap().is_empty());
        // A new file at a removed path is a new, empty file.
        let fresh = cache.open(&dir().join("a")).unwrap();
        assert_eq!(fresh.len(), 0);
    }

    #[test]
    fn many_threads_over_a_tiny_budget() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = Arc::new(HandleCache::new(Arc::new(RealDisk::new()), 3));
        let paths: Vec<PathBuf> = (0..12).map(|i| tmp.path().join(format!("f{i}"))).collect();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let cache = Arc::clone(&cache);
                let paths = paths.clone();
                std::thread::spawn(move || {
                    let mut rng = fastrand::Rng::with_seed(t);
                    // Each thread appends to its own three files and reads
                    // the others'.
                    let mine: Vec<_> = (0..3).map(|i| &paths[t as usize * 3 + i]).collect();
                    let mut written = [0u64; 3];
                    for round in 0..2000u64 {
                        let i = rng.usize(0..3);
                        let f = cache.open(mine[i]).unwrap();
                        f.append(&round.to_le_bytes()).unwrap();
                        written[i] += 8;
                        if rng.bool() {
                            f.sync().unwrap();
                        }
                        let other = cache.open(&paths[rng.usize(0..paths.len())]).unwrap();
                        let mut buf = [0u8; 8];
                        let _ = other.read_at(0, &mut buf).unwrap();
                    }
                    for (i, n) in written.iter().enumerate() {
                        assert_eq!(cache.open(mine[i]).unwrap().len(), *n);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // Four threads may each hold one file past the budget at a moment;
        // the next open with nothing busy brings the cache within it.
        let _last = cache.open(&tmp.path().join("last")).unwrap();
        assert!(cache.stats().open <= 3, "{:?}", cache.stats());
        assert!(cache.stats().closes > 100);
    }
}
