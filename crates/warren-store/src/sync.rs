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
//! A round in which any sync fails publishes nothing (confirms must never
//! go out for data that may be lost); its files stay dirty and the next
//! round retries them.

use std::collections::HashMap;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use tokio::sync::watch;
use tracing::{debug, error};
use warren_core::SyncTicket;

use crate::disk::DiskFile;

/// How long the sync thread waits before retrying after a failed round.
const RETRY_DELAY: Duration = Duration::from_millis(100);

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
}

#[derive(Default)]
struct State {
    /// Files written since their last sync, keyed by address.
    dirty: HashMap<usize, Arc<dyn DiskFile>>,
    /// The last ticket handed out.
    issued: SyncTicket,
    /// The last ticket published.
    synced: SyncTicket,
    stopping: bool,
}

impl SyncCoordinator {
    /// Starts the coordinator and its sync thread.
    pub fn start() -> Arc<Self> {
        let coordinator = Self::manual();
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
        let (published, _) = watch::channel(0);
        Arc::new(SyncCoordinator {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                wake: Condvar::new(),
                round: Mutex::new(()),
                published,
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
        let was_idle = state.dirty.is_empty();
        state.dirty.entry(key).or_insert_with(|| Arc::clone(file));
        state.issued += 1;
        let ticket = state.issued;
        drop(state);
        if was_idle {
            self.shared.wake.notify_one();
        }
        ticket
    }

    /// Runs a sync round on the caller's thread, covering everything
    /// written before the call, and returns the ticket published after it.
    /// If a sync failed the returned ticket is older than the last one
    /// issued.
    pub fn sync_now(&self) -> SyncTicket {
        self.shared.round();
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
                self.shared.round();
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
    /// The sync thread: rounds for as long as something is dirty, then a
    /// final round when stopping.
    fn run(&self) {
        loop {
            {
                let mut state = self.state.lock();
                while state.dirty.is_empty() && !state.stopping {
                    self.wake.wait(&mut state);
                }
                if state.stopping {
                    break;
                }
            }
            if !self.round() {
                let mut state = self.state.lock();
                if !state.stopping {
                    self.wake.wait_for(&mut state, RETRY_DELAY);
                }
            }
        }
        self.round();
        debug!("sync thread stopped");
    }

    /// Syncs every dirty file once and publishes the ticket they cover.
    /// Returns whether every sync succeeded.
    fn round(&self) -> bool {
        let _round = self.round.lock();
        let (files, target) = {
            let mut state = self.state.lock();
            (std::mem::take(&mut state.dirty), state.issued)
        };
        let mut failed = Vec::new();
        for (key, file) in files {
            if let Err(e) = file.sync() {
                error!(error = %e, "sync failed; confirms wait for a later round");
                failed.push((key, file));
            }
        }
        let mut state = self.state.lock();
        if failed.is_empty() {
            if target > state.synced {
                state.synced = target;
                self.published.send_replace(target);
            }
            true
        } else {
            state.dirty.extend(failed);
            false
        }
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
