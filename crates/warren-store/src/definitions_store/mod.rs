//! [`DefinitionsStore`]: the broker's durable definitions (exchanges,
//! queues, bindings, and whatever else must survive a restart) as an
//! incremental key-value log.
//!
//! Keys and values are opaque bytes; the broker encodes them. Every change
//! appends one record to the current log file `defs.<generation>.log`, so
//! the cost of a change does not grow with the number of definitions. A
//! batch of changes ([`DefinitionsStore::apply`]) is one record with one
//! checksum: after a crash it is recovered whole or not at all.
//!
//! **Durability** is group-committed like the queues' files: `apply` only
//! appends and calls [`SyncCoordinator::mark_dirty`], and the change is
//! durable once the coordinator publishes the ticket it returned. It never
//! syncs on the caller's thread.
//!
//! **Memory.** The store keeps an index of the live keys, each with the
//! location of its value in the current log file (offset, length and the
//! value's CRC-32), not the values themselves. The broker keeps its own,
//! decoded copy of every definition, so holding the encoded values here as
//! well would only double the memory; they are needed just twice: at
//! [`open`](DefinitionsStore::open), where the recovery scan reads them
//! anyway and hands them over, and at [`compact`](DefinitionsStore::compact),
//! which reads them back with positional reads (checking each against its
//! CRC, so a value damaged on disk is never rewritten under a fresh
//! checksum). An entry costs its key plus 16 bytes and the tree's overhead,
//! whatever the size of its value: for 100,000 definitions of 300 bytes
//! with 30-byte keys the index allocates 6.4 MB, where keeping the values
//! too would add 30 MB more.
//!
//! **Compaction.** Overwritten and deleted entries stay in the log as dead
//! bytes until [`compact`](DefinitionsStore::compact) rewrites the live
//! entries into `defs.<generation + 1>.log.tmp`, syncs it, renames it to
//! `defs.<generation + 1>.log`, syncs the directory and removes the old
//! file. A `.log` file is therefore always complete (its compacted part was
//! synced before it got its name); a `.tmp` file is an interrupted
//! compaction and is deleted at open. `apply` calls made while a compaction
//! runs keep going to the old file: the live entries are copied without
//! the lock, and only the final step (copying the records appended
//! meanwhile, one file sync, the rename and the directory sync) holds it,
//! so changes wait for at most that step.
//!
//! **Failures.** A failed append leaves the index unchanged and cuts the
//! file back to where the record started, so later records stay readable.
//! If the cut itself fails, or if a compaction fails after its rename (the
//! directory sync), the files may no longer be what memory says: the store
//! then refuses every change until a compaction succeeds (which writes a
//! fresh file from memory; [`needs_compaction`](DefinitionsStore::needs_compaction)
//! says so) or it is reopened.
//!
//! `format` holds the bytes (file names and header, records, the recovery
//! scan, the appending writer); `docs/storage-format.md` ("The definitions
//! store") describes them.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use tracing::{error, warn};
use warren_core::{StoreError, SyncTicket};

use crate::disk::{Disk, DiskFile};
use crate::sync::SyncCoordinator;

/// `needs_compaction` holds once the dead bytes exceed the live ones and
/// this many bytes.
pub const COMPACT_MIN_DEAD_BYTES: u64 = 1 << 20;

mod format;

use format::*;

/// Bytes read at once by the recovery scan (a larger record is read whole).
const READ_CHUNK: usize = 1 << 20;
/// A compaction packs live entries into records of about this size.
const SNAPSHOT_RECORD_BYTES: u64 = 64 << 10;
/// A compaction writes with appends of about this size.
const WRITE_BATCH: usize = 1 << 20;
/// The encoding buffer of `apply` is dropped after it grew past this.
const SCRATCH_KEEP: usize = 1 << 20;

/// Tunables of a [`DefinitionsStore`]; tests shrink them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefinitionsOptions {
    /// [`needs_compaction`](DefinitionsStore::needs_compaction) holds once
    /// the dead bytes exceed both the live bytes and this.
    pub compact_min_dead_bytes: u64,
}

impl Default for DefinitionsOptions {
    fn default() -> Self {
        DefinitionsOptions {
            compact_min_dead_bytes: COMPACT_MIN_DEAD_BYTES,
        }
    }
}

/// One change to the definitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Sets `key` to `value`, replacing any previous value.
    Put { key: Vec<u8>, value: Vec<u8> },
    /// Removes `key` (nothing happens if it is missing).
    Delete { key: Vec<u8> },
}

/// A change as `apply` encodes it, borrowed.
#[derive(Clone, Copy)]
enum ChangeRef<'a> {
    Put(&'a [u8], &'a [u8]),
    Delete(&'a [u8]),
}

impl<'a> From<&'a Change> for ChangeRef<'a> {
    fn from(c: &'a Change) -> Self {
        match c {
            Change::Put { key, value } => ChangeRef::Put(key, value),
            Change::Delete { key } => ChangeRef::Delete(key),
        }
    }
}

/// The durable definitions: a log of changes plus an in-memory index of
/// the live keys. `Send + Sync`; every method takes `&self`.
pub struct DefinitionsStore {
    disk: Arc<dyn Disk>,
    dir: PathBuf,
    sync: Arc<SyncCoordinator>,
    options: DefinitionsOptions,
    state: Mutex<State>,
    /// Held for a whole compaction, so one runs at a time. Taken before
    /// `state`, never after.
    compaction: Mutex<()>,
}

struct State {
    generation: u64,
    /// The current log file, appended to.
    file: Arc<dyn DiskFile>,
    /// End of its valid records: the next record goes here.
    end: u64,
    index: BTreeMap<Box<[u8]>, Loc>,
    /// Encoded size of the live entries (what a compaction writes for them).
    live_bytes: u64,
    /// The ticket of the last change, returned for an empty batch.
    last_ticket: SyncTicket,
    /// Why changes are refused, if they are (see the module doc).
    failed: Option<String>,
    /// The encoding buffer of `apply`.
    scratch: Vec<u8>,
}

/// Where a live value is in the current log file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Loc {
    offset: u64,
    len: u32,
    /// CRC-32 of the value, checked when a compaction reads it back.
    crc: u32,
}

impl fmt::Debug for DefinitionsStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.state.lock();
        f.debug_struct("DefinitionsStore")
            .field("dir", &self.dir)
            .field("generation", &st.generation)
            .field("entries", &st.index.len())
            .field("failed", &st.failed)
            .finish_non_exhaustive()
    }
}

impl DefinitionsStore {
    /// Opens (creating if missing) the store in `dir`, recovers it, and
    /// returns it with every live entry, in key order.
    ///
    /// The highest-numbered `defs.<generation>.log` is the store; older
    /// ones (a compaction whose removal of the old file was not durable)
    /// and `.tmp` files (an interrupted compaction) are removed. A torn
    /// record at the end of the log is cut off; damage anywhere else is a
    /// [`StoreError::Corrupt`], and then nothing is removed.
    #[allow(clippy::type_complexity)]
    pub fn open(
        disk: Arc<dyn Disk>,
        dir: PathBuf,
        sync: Arc<SyncCoordinator>,
    ) -> Result<(Self, Vec<(Vec<u8>, Vec<u8>)>), StoreError> {
        Self::open_with_options(disk, dir, sync, DefinitionsOptions::default())
    }

    /// [`open`](Self::open) with explicit tunables.
    #[allow(clippy::type_complexity)]
    pub fn open_with_options(
        disk: Arc<dyn Disk>,
        dir: PathBuf,
        sync: Arc<SyncCoordinator>,
        options: DefinitionsOptions,
    ) -> Result<(Self, Vec<(Vec<u8>, Vec<u8>)>), StoreError> {
        disk.create_dir_all(&dir)?;
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            disk.sync_dir(parent)?;
        }
        let names = disk.list(&dir)?;
        let mut generations: Vec<u64> = names.iter().filter_map(|n| parse_log_name(n)).collect();
        generations.sort_unstable();

        let (generation, file, recovered) = match generations.last() {
            Some(&generation) => {
                let name = log_name(generation);
                let file = disk.open(&dir.join(&name))?;
                let recovered = recover(&*file, generation, &name)?;
                (generation, file, recovered)
            }
            None => {
                let mut w = LogWriter::create(&*disk, &dir.join(tmp_name(1)), 1)?;
                let created = (|| {
                    w.snapshot_end(1, 0);
                    w.flush()?;
                    w.file.sync()?;
                    disk.rename(&dir.join(tmp_name(1)), &dir.join(log_name(1)))?;
                    Ok::<_, StoreError>(())
                })();
                if let Err(e) = created {
                    discard(&*disk, &dir.join(tmp_name(1)));
                    return Err(e);
                }
                let end = w.len();
                let recovered = Recovered {
                    entries: BTreeMap::new(),
                    end,
                };
                (1, w.file, recovered)
            }
        };

        // Only now that the winner is known to be sound: the leftovers.
        // They are harmless if they stay (lower generations are never
        // read, a `.tmp` is started afresh), so failing to remove one is
        // only logged.
        let mut dir_changed = generations.is_empty();
        for name in &names {
            let stale = match parse_log_name(name) {
                Some(g) => g < generation,
                None => is_tmp_name(name),
            };
            if stale {
                match disk.remove_file(&dir.join(name)) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => {
                        warn!(file = %name, error = %e, "cannot remove a leftover definitions log");
                    }
                    _ => dir_changed = true,
                }
            }
        }
        if dir_changed {
            disk.sync_dir(&dir)?;
        }

        let mut live_bytes = 0u64;
        let mut out = Vec::with_capacity(recovered.entries.len());
        let index: BTreeMap<Box<[u8]>, Loc> = recovered
            .entries
            .into_iter()
            .map(|(key, (loc, value))| {
                live_bytes += entry_size(key.len(), loc.len);
                out.push((key.to_vec(), value));
                (key, loc)
            })
            .collect();
        let store = DefinitionsStore {
            disk,
            dir,
            sync,
            options,
            state: Mutex::new(State {
                generation,
                file,
                end: recovered.end,
                index,
                live_bytes,
                last_ticket: 0,
                failed: None,
                scratch: Vec::new(),
            }),
            compaction: Mutex::new(()),
        };
        Ok((store, out))
    }

    /// The directory holding this store.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends the changes, in order, as one atomic record (after a crash
    /// either all of them or none are recovered), marks the log dirty with
    /// the [`SyncCoordinator`] and returns the ticket: the changes are
    /// durable once the coordinator publishes a ticket at least as high.
    /// Never syncs on the caller's thread. An empty batch writes nothing
    /// and returns the ticket of the last change.
    ///
    /// On error nothing changed: the index is as before and the log is cut
    /// back to before the record.
    pub fn apply(&self, changes: &[Change]) -> Result<SyncTicket, StoreError> {
        let refs: Vec<ChangeRef<'_>> = changes.iter().map(ChangeRef::from).collect();
        self.apply_refs(&refs)
    }

    /// [`apply`](Self::apply) of one [`Change::Put`].
    pub fn put(&self, key: &[u8], value: &[u8]) -> Result<SyncTicket, StoreError> {
        self.apply_refs(&[ChangeRef::Put(key, value)])
    }

    /// [`apply`](Self::apply) of one [`Change::Delete`].
    pub fn delete(&self, key: &[u8]) -> Result<SyncTicket, StoreError> {
        self.apply_refs(&[ChangeRef::Delete(key)])
    }

    fn apply_refs(&self, changes: &[ChangeRef<'_>]) -> Result<SyncTicket, StoreError> {
        let payload_len = changes_payload_len(changes)?;
        let mut guard = self.state.lock();
        let st = &mut *guard;
        if let Some(why) = &st.failed {
            return Err(refused(why));
        }
        if changes.is_empty() {
            return Ok(st.last_ticket);
        }
        st.scratch.clear();
        encode_changes(&mut st.scratch, changes, payload_len);
        let at = st.end;
        let written = match st.file.append(&st.scratch) {
            Ok(offset) if offset == at => Ok(()),
            Ok(offset) => Err(StoreError::Corrupt(format!(
                "{}: the log grew outside the store (append at {offset}, expected {at})",
                log_name(st.generation)
            ))),
            Err(e) => Err(e.into()),
        };
        let record_len = st.scratch.len() as u64;
        if st.scratch.capacity() > SCRATCH_KEEP {
            st.scratch = Vec::new();
        }
        if let Err(err) = written {
            // Part of the record may be in the file: cut it, or a later
            // record would follow garbage and recovery could not reach it.
            if let Err(t) = st.file.truncate(at) {
                error!(
                    file = %log_name(st.generation),
                    error = %t,
                    "cannot cut a failed append off the definitions log; changes are refused until a compaction succeeds"
                );
                st.failed = Some(format!("a failed append could not be cut off: {t}"));
            }
            return Err(err);
        }

        let mut pos = at + (RECORD_HEADER_LEN + CHANGES_HEADER_LEN) as u64;
        for change in changes {
            match *change {
                ChangeRef::Put(key, value) => {
                    pos += PUT_OVERHEAD + key.len() as u64;
                    let loc = Loc {
                        offset: pos,
                        len: value.len() as u32,
                        crc: crc32fast::hash(value),
                    };
                    pos += value.len() as u64;
                    st.live_bytes += entry_size(key.len(), loc.len);
                    match st.index.get_mut(key) {
                        Some(old) => {
                            st.live_bytes -= entry_size(key.len(), old.len);
                            *old = loc;
                        }
                        None => {
                            st.index.insert(key.into(), loc);
                        }
                    }
                }
                ChangeRef::Delete(key) => {
                    pos += DELETE_OVERHEAD + key.len() as u64;
                    if let Some(old) = st.index.remove(key) {
                        st.live_bytes -= entry_size(key.len(), old.len);
                    }
                }
            }
        }
        st.end = at + record_len;
        debug_assert_eq!(pos, st.end);
        let ticket = self.sync.mark_dirty(&st.file);
        st.last_ticket = ticket;
        Ok(ticket)
    }

    /// Whether enough of the log is dead (overwritten or deleted entries,
    /// record framing) that [`compact`](Self::compact) should run: the dead
    /// bytes exceed both the live bytes and
    /// [`DefinitionsOptions::compact_min_dead_bytes`]. Also true while the
    /// store refuses changes after a failure, which a compaction repairs.
    pub fn needs_compaction(&self) -> bool {
        let st = self.state.lock();
        if st.failed.is_some() {
            return true;
        }
        let dead = (st.end - HEADER_LEN as u64).saturating_sub(st.live_bytes);
        dead > st.live_bytes && dead > self.options.compact_min_dead_bytes
    }

    /// Rewrites the live entries into a fresh log file, syncs it and its
    /// directory, switches to it and removes the old file. Blocks on disk
    /// I/O: call it from a blocking thread, not a tokio worker.
    ///
    /// Concurrent [`apply`](Self::apply) calls go to the old file while the
    /// live entries are copied, and wait only for the switch (the records
    /// they appended are carried over, then one file sync, a rename and a
    /// directory sync). On success every change applied before the call is
    /// durable. On failure the store goes on with the old file, except if
    /// the directory sync after the rename failed: then it refuses changes
    /// until a later compaction succeeds. A crash at any point recovers the
    /// live set of either the old or the new file, which are the same.
    pub fn compact(&self) -> Result<(), StoreError> {
        let _one = self.compaction.lock();
        let (old_generation, old_file, from, snapshot) = {
            let st = self.state.lock();
            let snapshot: Vec<(Box<[u8]>, Loc)> =
                st.index.iter().map(|(k, l)| (k.clone(), *l)).collect();
            (st.generation, Arc::clone(&st.file), st.end, snapshot)
        };
        let generation = old_generation
            .checked_add(1)
            .ok_or_else(|| StoreError::Corrupt("definitions log generation overflow".into()))?;
        let tmp_path = self.dir.join(tmp_name(generation));

        // The live entries as of `from`, without the lock.
        let mut w = LogWriter::create(&*self.disk, &tmp_path, generation)?;
        let copied = (|| {
            let locs = w.snapshot(&*old_file, &snapshot)?;
            w.snapshot_end(generation, snapshot.len() as u64);
            w.flush()?;
            w.file.sync()?;
            Ok::<_, StoreError>(locs)
        })();
        let new_locs = match copied {
            Ok(locs) => locs,
            Err(e) => {
                discard(&*self.disk, &tmp_path);
                return Err(e);
            }
        };

        // The switch, under the lock: what was applied meanwhile is carried
        // over byte for byte, after the compacted part.
        let mut guard = self.state.lock();
        let st = &mut *guard;
        let tail_base = w.len();
        let switched = (|| {
            let relocated = relocate(&st.index, &snapshot, &new_locs, from, tail_base)?;
            if st.end > from {
                w.copy_from(&*old_file, from, st.end)?;
                w.file.sync()?;
            }
            self.disk
                .rename(&tmp_path, &self.dir.join(log_name(generation)))?;
            Ok::<_, StoreError>(relocated)
        })();
        let relocated = match switched {
            Ok(r) => r,
            Err(e) => {
                drop(guard);
                discard(&*self.disk, &tmp_path);
                return Err(e);
            }
        };
        // The new file has its name: from here on it is the store.
        for (loc, new) in st.index.values_mut().zip(relocated) {
            *loc = new;
        }
        st.end = tail_base + (st.end - from);
        debug_assert_eq!(st.end, w.len());
        st.generation = generation;
        st.file = w.file;
        if let Err(e) = self.disk.sync_dir(&self.dir) {
            // After a crash either file may be found, and changes applied
            // to the new one from now on could be lost with it.
            error!(
                error = %e,
                "cannot sync the definitions directory after a compaction; changes are refused until a compaction succeeds"
            );
            st.failed = Some(format!("the directory sync after a compaction failed: {e}"));
            return Err(e.into());
        }
        st.failed = None;
        drop(guard);

        // Also removed at the next open if this fails.
        let old_path = self.dir.join(log_name(old_generation));
        match self.disk.remove_file(&old_path) {
            Ok(()) => {
                if let Err(e) = self.disk.sync_dir(&self.dir) {
                    warn!(error = %e, "cannot sync the definitions directory after removing the old log");
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                warn!(error = %e, "cannot remove the old definitions log; the next open will")
            }
        }
        Ok(())
    }

    /// The number of live entries.
    pub fn len(&self) -> usize {
        self.state.lock().index.len()
    }

    /// Whether there is no live entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `key` has a live entry.
    pub fn contains(&self, key: &[u8]) -> bool {
        self.state.lock().index.contains_key(key)
    }
}

fn refused(why: &str) -> StoreError {
    StoreError::Io(io::Error::other(format!(
        "the definitions store refuses changes until it is compacted or reopened: {why}"
    )))
}

fn invalid_input(what: &str) -> StoreError {
    StoreError::Io(io::Error::new(io::ErrorKind::InvalidInput, what.to_owned()))
}

/// Removes an unfinished compaction file.
fn discard(disk: &dyn Disk, path: &Path) {
    match disk.remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            warn!(error = %e, path = %path.display(), "cannot remove an unfinished definitions log");
        }
        _ => {}
    }
}

/// The new location of every entry of `index` (in its order) once the
/// compacted file replaces the old one: entries that were in the snapshot
/// (written before `from`) take their place in the compacted part, later
/// ones move with the carried-over tail.
fn relocate(
    index: &BTreeMap<Box<[u8]>, Loc>,
    snapshot: &[(Box<[u8]>, Loc)],
    new_locs: &[Loc],
    from: u64,
    tail_base: u64,
) -> Result<Vec<Loc>, StoreError> {
    let mut snap = snapshot.iter().zip(new_locs);
    let mut out = Vec::with_capacity(index.len());
    for (key, loc) in index {
        if loc.offset >= from {
            out.push(Loc {
                offset: loc.offset - from + tail_base,
                ..*loc
            });
            continue;
        }
        // Both are in key order, and an entry written before `from` is
        // unchanged since the snapshot.
        let new = snap
            .by_ref()
            .find(|((k, _), _)| k == key)
            .filter(|((_, old), _)| old == loc)
            .map(|(_, new)| *new)
            .ok_or_else(|| {
                StoreError::Corrupt("definitions index changed under a compaction".into())
            })?;
        out.push(new);
    }
    Ok(out)
}
