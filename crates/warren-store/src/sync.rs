//! [`SyncCoordinator`]: group commit for every queue of a broker.
//!
//! Writers append without waiting and then call
//! [`mark_dirty`](SyncCoordinator::mark_dirty), which hands back a
//! [`SyncTicket`]. A background thread runs sync rounds: it takes the whole
//! set of dirty files and the latest ticket handed out, syncs each file
//! once, and publishes that ticket. A published ticket `t` therefore means
//! that everything written before any `mark_dirty` that returned a ticket
//! `<= t` is on stable storage, whatever queue wrote it. While one round
//! runs, the next one fills up, so one fsync covers many messages.
//!
//! Stores that hold data not written yet (write-behind) hand themselves
//! over with [`stage`](SyncCoordinator::stage), which also returns a
//! ticket: a round first asks every store staged before its snapshot to
//! write out ([`WriteBehind::write_out`]), then syncs. So a store decides
//! as late as possible what must go to disk: what was settled meanwhile is
//! never written.
//!
//! A round in which any sync or write-out fails publishes nothing
//! (confirms must never go out for data that may be lost); its files stay
//! dirty, its stores staged, and the next round retries them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use tokio::sync::watch;
use tracing::{debug, error};
use warren_core::{StoreError, SyncTicket};

use crate::disk::DiskFile;

/// How long the sync thread waits before retrying after a failed round.
const RETRY_DELAY: Duration = Duration::from_millis(100);

/// Bytes of unwritten messages the whole broker may hold in memory before
/// stores write on their callers' threads (see
/// [`SyncCoordinator::unwritten_limit`]).
pub const BROKER_UNWRITTEN_LIMIT: usize = 256 << 20;

/// How long the sync thread's rounds leave a message that a consumer has
/// been handed (or will be soon) unwritten, waiting for its ack, which
/// spares the write and confirms it. Longer than a message takes through a
/// busy consumer's prefetch window (a window of 16 MiB at 1 GB/s: 16 ms),
/// and still within the confirm latency RabbitMQ shows under load.
pub const WRITE_DELAY: Duration = Duration::from_millis(50);

/// A store that keeps writes in memory until a sync round needs them.
pub trait WriteBehind: Send + Sync {
    /// Writes everything the store holds unwritten that still needs to be
    /// kept, marking the files it wrote dirty. With `defer` (the round's
    /// time and [`WRITE_DELAY`]), messages handed to consumers less than
    /// the delay ago may stay unwritten, and everything after them: the
    /// store then says which tickets it still holds back. On error, what
    /// was not written stays held, to be written by a later round.
    fn write_out(&self, defer: Option<(Instant, Duration)>)
        -> Result<Option<Deferred>, StoreError>;
}

/// What a store left unwritten in a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deferred {
    /// The oldest ticket whose data is not all written: no ticket from
    /// this one on may be published yet.
    pub floor: SyncTicket,
    /// When the store wants its next round.
    pub until: Instant,
}

/// Batches the syncs of all queues' files into rounds and publishes how far
/// they got.
pub struct SyncCoordinator {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

struct Shared {
    state: Mutex<State>,
    /// Wakes the sync thread.
    wake: Condvar,
    /// Held for a whole round, so rounds publish in the order they took
    /// their snapshot.
    round: Mutex<()>,
    published: watch::Sender<SyncTicket>,
    /// The write delay of the background thread's rounds (none for rounds
    /// run by [`SyncCoordinator::sync_now`]).
    defer: Option<Duration>,
    /// Bytes held unwritten by all stores, as they report them.
    unwritten: AtomicUsize,
    unwritten_limit: AtomicUsize,
}

#[derive(Default)]
struct State {
    /// Files written since their last sync, keyed by address.
    dirty: HashMap<usize, Arc<dyn DiskFile>>,
    /// Stores holding unwritten data, keyed by address, with a count of
    /// their stagings (a store staged again during a round stays).
    writers: HashMap<usize, (Arc<dyn WriteBehind>, u64)>,
    /// Something arrived for the next round: a dirty file or a store not
    /// staged before.
    fresh: bool,
    /// A store deferred writes until then (or a failed round waits).
    deferred_until: Option<Instant>,
    /// The sync thread is waiting for work.
    idle: bool,
    /// The last ticket handed out.
    issued: SyncTicket,
    /// The last ticket published.
    synced: SyncTicket,
    stopping: bool,
}

impl SyncCoordinator {
    /// Starts the coordinator and its sync thread.
    pub fn start() -> Arc<Self> {
        let coordinator = Self::with_delay(Some(WRITE_DELAY));
        let shared = Arc::clone(&coordinator.shared);
        let spawned = std::thread::Builder::new()
            .name("warren-sync".into())
            .spawn(move || shared.run());
        match spawned {
            Ok(handle) => *coordinator.thread.lock() = Some(handle),
            // Without a thread, syncs happen in `sync_now` and `shutdown`
            // only; confirms stall rather than go out unsynced.
            Err(e) => error!(error = %e, "cannot start the sync thread"),
        }
        coordinator
    }

    /// A coordinator without a background thread: rounds run only in
    /// [`sync_now`](Self::sync_now) and [`shutdown`](Self::shutdown), on the
    /// caller's thread. For tests and tools that want to decide exactly
    /// when data becomes durable.
    pub fn manual() -> Arc<Self> {
        Self::with_delay(None)
    }

    fn with_delay(defer: Option<Duration>) -> Arc<Self> {
        let (published, _) = watch::channel(0);
        Arc::new(SyncCoordinator {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                wake: Condvar::new(),
                round: Mutex::new(()),
                published,
                defer,
                unwritten: AtomicUsize::new(0),
                unwritten_limit: AtomicUsize::new(BROKER_UNWRITTEN_LIMIT),
            }),
            thread: Mutex::new(None),
        })
    }

    /// Receives each newly synced ticket.
    pub fn subscribe(&self) -> watch::Receiver<SyncTicket> {
        self.shared.published.subscribe()
    }

    /// The last ticket a round published.
    pub fn synced(&self) -> SyncTicket {
        self.shared.state.lock().synced
    }

    /// Records that `file` was written to. The returned ticket is published
    /// once a round has synced everything written before this call.
    pub fn mark_dirty(&self, file: &Arc<dyn DiskFile>) -> SyncTicket {
        let key = Arc::as_ptr(file) as *const () as usize;
        let mut state = self.shared.state.lock();
        state.dirty.entry(key).or_insert_with(|| Arc::clone(file));
        state.issued += 1;
        let ticket = state.issued;
        let wake = self.shared.fresh(&mut state);
        drop(state);
        if wake {
            self.shared.wake.notify_one();
        }
        ticket
    }

    /// Hands over a store that holds data not written yet. The returned
    /// ticket is published once a round has had the store write out and
    /// synced what it wrote (and everything else written before this
    /// call).
    pub fn stage<W: WriteBehind + 'static>(&self, writer: &Arc<W>) -> SyncTicket {
        let key = Arc::as_ptr(writer) as *const () as usize;
        let mut state = self.shared.state.lock();
        let new = match state.writers.entry(key) {
            std::collections::hash_map::Entry::Occupied(mut e) => {
                e.get_mut().1 += 1;
                false
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert((Arc::clone(writer) as Arc<dyn WriteBehind>, 0));
                true
            }
        };
        state.issued += 1;
        let ticket = state.issued;
        let wake = new && self.shared.fresh(&mut state);
        drop(state);
        if wake {
            self.shared.wake.notify_one();
        }
        ticket
    }

    /// Updates the broker-wide count of unwritten bytes: a store that held
    /// `old` now holds `new`. Returns the new total.
    pub fn account_unwritten(&self, old: usize, new: usize) -> usize {
        let u = &self.shared.unwritten;
        if new >= old {
            u.fetch_add(new - old, Ordering::Relaxed) + (new - old)
        } else {
            u.fetch_sub(old - new, Ordering::Relaxed) - (old - new)
        }
    }

    /// Past this many unwritten bytes in all, stores write on their
    /// callers' threads.
    pub fn unwritten_limit(&self) -> usize {
        self.shared.unwritten_limit.load(Ordering::Relaxed)
    }

    /// Changes [`unwritten_limit`](Self::unwritten_limit).
    pub fn set_unwritten_limit(&self, bytes: usize) {
        self.shared.unwritten_limit.store(bytes, Ordering::Relaxed);
    }

    /// Runs a sync round on the caller's thread, covering everything
    /// written before the call, and returns the ticket published after it.
    /// If a sync failed the returned ticket is older than the last one
    /// issued.
    pub fn sync_now(&self) -> SyncTicket {
        self.shared.round(None);
        self.synced()
    }

    /// Runs a final round and stops the sync thread. Later writes are
    /// synced only by [`sync_now`](Self::sync_now).
    pub fn shutdown(&self) {
        self.shared.state.lock().stopping = true;
        self.shared.wake.notify_all();
        let handle = self.thread.lock().take();
        match handle {
            Some(handle) => {
                if handle.join().is_err() {
                    error!("the sync thread panicked");
                }
            }
            None => {
                self.shared.round(None);
            }
        }
    }
}

impl Drop for SyncCoordinator {
    fn drop(&mut self) {
        if self.thread.get_mut().is_some() {
            self.shutdown();
        }
    }
}

impl Shared {
    /// Notes new work; returns whether the sync thread must be woken.
    fn fresh(&self, state: &mut State) -> bool {
        state.fresh = true;
        std::mem::take(&mut state.idle)
    }

    /// The sync thread: a round whenever new work arrives or a deferred
    /// write falls due, then a final round (writing everything) when
    /// stopping.
    fn run(&self) {
        loop {
            {
                let mut state = self.state.lock();
                loop {
                    if state.stopping {
                        break;
                    }
                    if state.fresh {
                        break;
                    }
                    state.idle = true;
                    match state.deferred_until {
                        Some(t) if Instant::now() >= t => break,
                        Some(t) => {
                            self.wake.wait_until(&mut state, t);
                        }
                        None => self.wake.wait(&mut state),
                    }
                    state.idle = false;
                }
                state.idle = false;
                if state.stopping {
                    break;
                }
            }
            if !self.round(self.defer) {
                let mut state = self.state.lock();
                if !state.stopping {
                    self.wake.wait_for(&mut state, RETRY_DELAY);
                }
            }
        }
        self.round(None);
        debug!("sync thread stopped");
    }

    /// Has every staged store write out (leaving young deliveries unwritten
    /// with `defer`), syncs every dirty file once, and publishes the
    /// ticket they cover, short of what a store held back. Returns whether
    /// everything succeeded.
    fn round(&self, defer: Option<Duration>) -> bool {
        let _round = self.round.lock();
        let (writers, mut target) = {
            let mut state = self.state.lock();
            state.fresh = false;
            state.deferred_until = None;
            let writers: Vec<(usize, Arc<dyn WriteBehind>, u64)> = state
                .writers
                .iter()
                .map(|(&key, (w, n))| (key, Arc::clone(w), *n))
                .collect();
            (writers, state.issued)
        };
        let now = Instant::now();
        let mut done = Vec::with_capacity(writers.len());
        let mut until: Option<Instant> = None;
        let mut write_failed = false;
        for (key, writer, n) in writers {
            match writer.write_out(defer.map(|d| (now, d))) {
                Ok(None) => done.push((key, n)),
                Ok(Some(d)) => {
                    target = target.min(d.floor.saturating_sub(1));
                    until = Some(until.map_or(d.until, |u| u.min(d.until)));
                }
                Err(e) => {
                    error!(error = %e, "write-out failed; confirms wait for a later round");
                    write_failed = true;
                }
            }
        }
        // Everything dirtied before the snapshot, and what the write-outs
        // just wrote.
        let files = {
            let mut state = self.state.lock();
            for (key, n) in done {
                // Staged again meanwhile: it has more for the next round.
                match state.writers.get(&key) {
                    Some((_, now_n)) if *now_n == n => {
                        state.writers.remove(&key);
                    }
                    Some(_) => state.fresh = true,
                    None => {}
                }
            }
            std::mem::take(&mut state.dirty)
        };
        let mut failed = Vec::new();
        for (key, file) in files {
            if let Err(e) = file.sync() {
                error!(error = %e, "sync failed; confirms wait for a later round");
                failed.push((key, file));
            }
        }
        let mut state = self.state.lock();
        if let Some(u) = until {
            state.deferred_until = Some(state.deferred_until.map_or(u, |d| d.min(u)));
        }
        let ok = failed.is_empty() && !write_failed;
        if !failed.is_empty() {
            state.dirty.extend(failed);
        }
        if !ok {
            // Retried after a pause (see `run`).
            state.fresh = true;
            return false;
        }
        if target > state.synced {
            state.synced = target;
            self.published.send_replace(target);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Disk, SimDisk};
    use std::io;
    use std::path::Path;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;

    /// A file that counts its syncs.
    #[derive(Default)]
    struct Counting {
        syncs: AtomicUsize,
    }

    impl DiskFile for Counting {
        fn append(&self, _data: &[u8]) -> io::Result<u64> {
            Ok(0)
        }
        fn read_at(&self, _offset: u64, _buf: &mut [u8]) -> io::Result<usize> {
            Ok(0)
        }
        fn len(&self) -> u64 {
            0
        }
        fn truncate(&self, _len: u64) -> io::Result<()> {
            Ok(())
        }
        fn sync(&self) -> io::Result<()> {
            self.syncs.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    fn sim_file(disk: &SimDisk, name: &str) -> Arc<dyn DiskFile> {
        disk.create_dir_all(Path::new("/d")).unwrap();
        let file = disk.open(&Path::new("/d").join(name)).unwrap();
        disk.sync_dir(Path::new("/d")).unwrap();
        file
    }

    #[test]
    fn one_round_syncs_each_dirty_file_once() {
        let sync = SyncCoordinator::manual();
        let files: Vec<Arc<Counting>> = (0..3).map(|_| Arc::new(Counting::default())).collect();
        let mut last = 0;
        for _ in 0..100 {
            for f in &files {
                let f: Arc<dyn DiskFile> = f.clone();
                let t = sync.mark_dirty(&f);
                assert!(t > last);
                last = t;
            }
        }
        let rx = sync.subscribe();
        assert_eq!(*rx.borrow(), 0);
        assert_eq!(sync.sync_now(), last);
        assert_eq!(*rx.borrow(), last);
        for f in &files {
            assert_eq!(f.syncs.load(Ordering::SeqCst), 1);
        }
        // Nothing dirty: a round syncs nothing and the ticket stays.
        assert_eq!(sync.sync_now(), last);
        assert_eq!(files[0].syncs.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn failed_sync_publishes_nothing_and_is_retried() {
        let disk = SimDisk::new();
        let a = sim_file(&disk, "a");
        let b = sim_file(&disk, "b");
        let sync = SyncCoordinator::manual();
        a.append(b"x").unwrap();
        let t1 = sync.mark_dirty(&a);
        assert_eq!(sync.sync_now(), t1);
        disk.set_sync_failures(true);
        a.append(b"y").unwrap();
        b.append(b"z").unwrap();
        sync.mark_dirty(&a);
        let t3 = sync.mark_dirty(&b);
        assert_eq!(
            sync.sync_now(),
            t1,
            "a failed round must not advance the ticket"
        );
        assert_eq!(sync.sync_now(), t1);
        disk.set_sync_failures(false);
        assert_eq!(sync.sync_now(), t3);
        // Both files really are synced now: a crash keeps everything.
        let after = disk.crash(7);
        let mut buf = [0u8; 2];
        let a2 = after.open(Path::new("/d/a")).unwrap();
        assert_eq!(a2.read_at(0, &mut buf).unwrap(), 2);
        assert_eq!(&buf, b"xy");
    }

    #[test]
    fn background_thread_publishes_and_shutdown_flushes() {
        let sync = SyncCoordinator::start();
        let rx = sync.subscribe();
        let file: Arc<dyn DiskFile> = Arc::new(Counting::default());
        let t = sync.mark_dirty(&file);
        let deadline = Instant::now() + Duration::from_secs(10);
        while *rx.borrow() < t {
            assert!(Instant::now() < deadline, "ticket {t} never published");
            std::thread::sleep(Duration::from_millis(1));
        }
        let t2 = sync.mark_dirty(&file);
        sync.shutdown();
        assert!(*rx.borrow() >= t2, "shutdown must sync what was written");
        // Still usable, on the caller's thread.
        let t3 = sync.mark_dirty(&file);
        assert_eq!(sync.sync_now(), t3);
        sync.shutdown();
    }
}
