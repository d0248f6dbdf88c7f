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
//! `docs/storage-format.md` ("The definitions store") describes the bytes.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use tracing::{error, warn};
use warren_core::{StoreError, SyncTicket};

use crate::disk::{read_exact_at, Disk, DiskFile};
use crate::record::{le_u32, le_u64};
use crate::sync::SyncCoordinator;

/// `needs_compaction` holds once the dead bytes exceed the live ones and
/// this many bytes.
pub const COMPACT_MIN_DEAD_BYTES: u64 = 1 << 20;

const MAGIC: &[u8; 7] = b"WARRDEF";
const FORMAT_VERSION: u8 = 1;
/// `magic(7) | version(1) | u64 generation | u32 crc32 of the 16 bytes
/// before it`.
const HEADER_LEN: usize = 20;
/// `u32 payload_len | u32 crc32(payload)`.
const RECORD_HEADER_LEN: usize = 8;
/// A batch of changes: `u8 kind | u32 count | count changes`.
const KIND_CHANGES: u8 = 1;
/// The end of a file's compacted part: `u8 kind | u64 generation | u64
/// entries`.
const KIND_SNAPSHOT_END: u8 = 2;
const CHANGES_HEADER_LEN: usize = 5;
const SNAPSHOT_END_LEN: usize = 17;
/// The smallest valid payload (an empty batch). A zero-filled tail reads
/// as a record of length 0, which this refuses.
const MIN_PAYLOAD_LEN: usize = CHANGES_HEADER_LEN;
/// `u8 op | u32 key_len | key | u32 value_len | value`.
const OP_PUT: u8 = 1;
/// `u8 op | u32 key_len | key`.
const OP_DELETE: u8 = 2;
const PUT_OVERHEAD: u64 = 9;
const DELETE_OVERHEAD: u64 = 5;

const NAME_PREFIX: &str = "defs.";
const LOG_SUFFIX: &str = ".log";
const TMP_SUFFIX: &str = ".tmp";

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

/// The encoded size of a live entry: what it takes in a batch.
fn entry_size(key_len: usize, value_len: u32) -> u64 {
    PUT_OVERHEAD + key_len as u64 + u64::from(value_len)
}

/// The payload length of the record of `changes`, if it fits one.
fn changes_payload_len(changes: &[ChangeRef<'_>]) -> Result<u32, StoreError> {
    u32::try_from(changes.len()).map_err(|_| invalid_input("too many changes in one batch"))?;
    let mut len = CHANGES_HEADER_LEN as u64;
    for change in changes {
        len += match *change {
            ChangeRef::Put(key, value) => PUT_OVERHEAD + key.len() as u64 + value.len() as u64,
            ChangeRef::Delete(key) => DELETE_OVERHEAD + key.len() as u64,
        };
    }
    // Every length inside is at most the payload's, so they fit too.
    u32::try_from(len).map_err(|_| invalid_input("batch of definitions too large for a record"))
}

/// Appends the record of `changes` (payload length already checked) to
/// `buf`.
fn encode_changes(buf: &mut Vec<u8>, changes: &[ChangeRef<'_>], payload_len: u32) {
    let start = buf.len();
    buf.reserve(RECORD_HEADER_LEN + payload_len as usize);
    buf.extend_from_slice(&payload_len.to_le_bytes());
    buf.extend_from_slice(&[0; 4]); // crc, filled in below
    buf.push(KIND_CHANGES);
    buf.extend_from_slice(&(changes.len() as u32).to_le_bytes());
    for change in changes {
        match *change {
            ChangeRef::Put(key, value) => {
                buf.push(OP_PUT);
                buf.extend_from_slice(&(key.len() as u32).to_le_bytes());
                buf.extend_from_slice(key);
                buf.extend_from_slice(&(value.len() as u32).to_le_bytes());
                buf.extend_from_slice(value);
            }
            ChangeRef::Delete(key) => {
                buf.push(OP_DELETE);
                buf.extend_from_slice(&(key.len() as u32).to_le_bytes());
                buf.extend_from_slice(key);
            }
        }
    }
    seal_record(buf, start);
}

/// Fills in the length and checksum of the record that starts at `start`
/// and runs to the end of `buf`.
fn seal_record(buf: &mut [u8], start: usize) {
    let payload = &buf[start + RECORD_HEADER_LEN..];
    let len = payload.len() as u32;
    let crc = crc32fast::hash(payload);
    buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

fn log_name(generation: u64) -> String {
    format!("{NAME_PREFIX}{generation:010}{LOG_SUFFIX}")
}

fn tmp_name(generation: u64) -> String {
    format!("{}{TMP_SUFFIX}", log_name(generation))
}

/// The generation of a log file name, `None` for any other name.
fn parse_log_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(NAME_PREFIX)?.strip_suffix(LOG_SUFFIX)?;
    if digits.len() < 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn is_tmp_name(name: &str) -> bool {
    name.strip_suffix(TMP_SUFFIX)
        .and_then(parse_log_name)
        .is_some()
}

fn file_header(generation: u64) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..7].copy_from_slice(MAGIC);
    h[7] = FORMAT_VERSION;
    h[8..16].copy_from_slice(&generation.to_le_bytes());
    let crc = crc32fast::hash(&h[..16]);
    h[16..].copy_from_slice(&crc.to_le_bytes());
    h
}

fn check_file_header(h: &[u8; HEADER_LEN], generation: u64) -> Result<(), String> {
    if &h[..7] != MAGIC {
        return Err("not a definitions log (bad magic)".into());
    }
    if h[7] != FORMAT_VERSION {
        return Err(format!("unknown definitions log format version {}", h[7]));
    }
    if crc32fast::hash(&h[..16]) != le_u32(&h[16..]) {
        return Err("header checksum mismatch".into());
    }
    let named = le_u64(&h[8..16]);
    if named != generation {
        return Err(format!("header names generation {named}"));
    }
    Ok(())
}

/// A record's payload, parsed. Ranges are into the payload.
#[derive(Debug, PartialEq, Eq)]
enum Parsed {
    Changes(Vec<(Range<usize>, Option<Range<usize>>)>),
    SnapshotEnd { generation: u64, entries: u64 },
}

/// Parses a payload whose checksum matched. Every range returned fits in
/// the payload.
fn parse_payload(p: &[u8]) -> Result<Parsed, &'static str> {
    let mut at = 0usize;
    let mut take = |n: usize, what: &'static str| -> Result<Range<usize>, &'static str> {
        let end = at
            .checked_add(n)
            .filter(|&end| end <= p.len())
            .ok_or(what)?;
        let r = at..end;
        at = end;
        Ok(r)
    };
    let kind = p[take(1, "empty payload")?.start];
    match kind {
        KIND_CHANGES => {
            let count = le_u32(&p[take(4, "change count")?]) as usize;
            let mut changes = Vec::with_capacity(count.min(p.len() / DELETE_OVERHEAD as usize));
            for _ in 0..count {
                let op = p[take(1, "change kind")?.start];
                let key_len = le_u32(&p[take(4, "key length")?]) as usize;
                let key = take(key_len, "key")?;
                match op {
                    OP_PUT => {
                        let value_len = le_u32(&p[take(4, "value length")?]) as usize;
                        changes.push((key, Some(take(value_len, "value")?)));
                    }
                    OP_DELETE => changes.push((key, None)),
                    _ => return Err("unknown change kind"),
                }
            }
            if at != p.len() {
                return Err("trailing bytes");
            }
            Ok(Parsed::Changes(changes))
        }
        KIND_SNAPSHOT_END => {
            if p.len() != SNAPSHOT_END_LEN {
                return Err("end-of-compaction record of the wrong length");
            }
            Ok(Parsed::SnapshotEnd {
                generation: le_u64(&p[1..9]),
                entries: le_u64(&p[9..17]),
            })
        }
        _ => Err("unknown record kind"),
    }
}

/// What recovery found in a log file.
struct Recovered {
    /// The live entries: where each value is, and the value.
    entries: BTreeMap<Box<[u8]>, (Loc, Vec<u8>)>,
    /// End of the valid records (the file is cut there).
    end: u64,
}

/// Reads log file `name` (of `generation`) back. The compacted part, up to
/// its end-of-compaction record, was synced before the file got its name:
/// any damage there is corruption. After it, a record that cannot be read
/// is a torn write if nothing valid follows it, and the file is cut there;
/// if a valid record follows, the damage is in the middle and is an error.
fn recover(file: &dyn DiskFile, generation: u64, name: &str) -> Result<Recovered, StoreError> {
    let corrupt = |what: String| StoreError::Corrupt(format!("{name}: {what}"));
    let len = file.len();
    if len < HEADER_LEN as u64 {
        return Err(corrupt(format!("{len} bytes, shorter than a header")));
    }
    let mut header = [0u8; HEADER_LEN];
    read_exact_at(file, 0, &mut header)?;
    check_file_header(&header, generation).map_err(corrupt)?;

    let mut scan = Scanner::new(file, len);
    let mut entries: BTreeMap<Box<[u8]>, (Loc, Vec<u8>)> = BTreeMap::new();
    let mut sealed = false;
    let mut offset = HEADER_LEN as u64;
    loop {
        let problem = match scan.frame(offset)? {
            Frame::End => break,
            Frame::Framed { next, crc_ok: true } => {
                let payload = scan.slice(offset + RECORD_HEADER_LEN as u64, next);
                let parsed = parse_payload(payload).map_err(|why| {
                    corrupt(format!("malformed record at offset {offset}: {why}"))
                })?;
                match parsed {
                    Parsed::Changes(changes) => {
                        let base = offset + RECORD_HEADER_LEN as u64;
                        for (key, value) in changes {
                            let key = &payload[key];
                            match value {
                                Some(range) => {
                                    let value = &payload[range.clone()];
                                    let loc = Loc {
                                        offset: base + range.start as u64,
                                        len: value.len() as u32,
                                        crc: crc32fast::hash(value),
                                    };
                                    match entries.get_mut(key) {
                                        Some(slot) => *slot = (loc, value.to_vec()),
                                        None => {
                                            entries.insert(key.into(), (loc, value.to_vec()));
                                        }
                                    }
                                }
                                None => {
                                    entries.remove(key);
                                }
                            }
                        }
                    }
                    Parsed::SnapshotEnd {
                        generation: g,
                        entries: n,
                    } => {
                        if sealed {
                            return Err(corrupt(format!(
                                "a second end-of-compaction record at offset {offset}"
                            )));
                        }
                        if g != generation || n != entries.len() as u64 {
                            return Err(corrupt(format!(
                                "end-of-compaction record at offset {offset} says generation {g} with {n} entries, found {} entries",
                                entries.len()
                            )));
                        }
                        sealed = true;
                    }
                }
                offset = next;
                continue;
            }
            Frame::Framed {
                next,
                crc_ok: false,
            } => {
                if sealed && scan.valid_record_at(next)? {
                    return Err(corrupt(format!(
                        "the record at offset {offset} fails its checksum but valid records follow it"
                    )));
                }
                "checksum mismatch"
            }
            Frame::Unframed(why) => why,
        };
        if !sealed {
            return Err(corrupt(format!(
                "damaged record at offset {offset}, inside the compacted part ({problem})"
            )));
        }
        warn!(
            file = name,
            offset,
            dropped_bytes = len - offset,
            problem,
            "torn record at the end of the definitions log; the log is cut there"
        );
        file.truncate(offset)?;
        file.sync()?;
        break;
    }
    if !sealed {
        return Err(corrupt("no end-of-compaction record".into()));
    }
    Ok(Recovered {
        entries,
        end: offset,
    })
}

/// What is at an offset of a log file.
enum Frame {
    /// The end of the file.
    End,
    /// Not even a record's frame: too short, or running past the end.
    Unframed(&'static str),
    /// A complete record up to `next`, whose checksum matches or not.
    Framed { next: u64, crc_ok: bool },
}

/// Reads a log file front to back in large chunks.
struct Scanner<'f> {
    file: &'f dyn DiskFile,
    len: u64,
    start: u64,
    chunk: Vec<u8>,
}

impl<'f> Scanner<'f> {
    fn new(file: &'f dyn DiskFile, len: u64) -> Self {
        Scanner {
            file,
            len,
            start: 0,
            chunk: Vec::new(),
        }
    }

    /// Makes sure the chunk holds `[offset, offset + n)`, which must lie
    /// inside the file.
    fn fill(&mut self, offset: u64, n: u64) -> io::Result<()> {
        let have = offset >= self.start && offset + n <= self.start + self.chunk.len() as u64;
        if have {
            return Ok(());
        }
        let want = n.max(READ_CHUNK as u64).min(self.len - offset);
        let want = usize::try_from(want).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidData, "record too large for memory")
        })?;
        self.chunk.clear();
        self.chunk.resize(want, 0);
        read_exact_at(self.file, offset, &mut self.chunk)?;
        self.start = offset;
        Ok(())
    }

    /// `[from, to)` of the file, which the chunk holds.
    fn slice(&self, from: u64, to: u64) -> &[u8] {
        &self.chunk[(from - self.start) as usize..(to - self.start) as usize]
    }

    fn frame(&mut self, offset: u64) -> io::Result<Frame> {
        if offset >= self.len {
            return Ok(Frame::End);
        }
        let available = self.len - offset;
        if available < RECORD_HEADER_LEN as u64 {
            return Ok(Frame::Unframed("truncated record header"));
        }
        self.fill(offset, RECORD_HEADER_LEN as u64)?;
        let header = self.slice(offset, offset + RECORD_HEADER_LEN as u64);
        let payload_len = le_u32(header);
        let crc = le_u32(&header[4..]);
        if (payload_len as usize) < MIN_PAYLOAD_LEN {
            return Ok(Frame::Unframed("record too short"));
        }
        let total = RECORD_HEADER_LEN as u64 + u64::from(payload_len);
        if total > available {
            return Ok(Frame::Unframed("record runs past the end of the file"));
        }
        self.fill(offset, total)?;
        let next = offset + total;
        let crc_ok = crc32fast::hash(self.slice(offset + RECORD_HEADER_LEN as u64, next)) == crc;
        Ok(Frame::Framed { next, crc_ok })
    }

    /// Whether a complete, valid record starts at `offset`.
    fn valid_record_at(&mut self, offset: u64) -> io::Result<bool> {
        Ok(match self.frame(offset)? {
            Frame::Framed { next, crc_ok: true } => {
                parse_payload(self.slice(offset + RECORD_HEADER_LEN as u64, next)).is_ok()
            }
            _ => false,
        })
    }
}

/// Writes a new log file through a buffer.
struct LogWriter {
    file: Arc<dyn DiskFile>,
    /// Bytes appended to the file so far.
    written: u64,
    buf: Vec<u8>,
}

impl LogWriter {
    /// Starts `path` afresh (removing any leftover) with the header of
    /// `generation`, still in the buffer.
    fn create(disk: &dyn Disk, path: &Path, generation: u64) -> Result<Self, StoreError> {
        match disk.remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
        let file = disk.open(path)?;
        if !file.is_empty() {
            file.truncate(0)?;
        }
        let mut buf = Vec::with_capacity(64 << 10);
        buf.extend_from_slice(&file_header(generation));
        Ok(LogWriter {
            file,
            written: 0,
            buf,
        })
    }

    /// The file's length once the buffer is written.
    fn len(&self) -> u64 {
        self.written + self.buf.len() as u64
    }

    fn flush(&mut self) -> Result<(), StoreError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let at = self.file.append(&self.buf)?;
        if at != self.written {
            return Err(StoreError::Corrupt(format!(
                "a new definitions log grew outside the store (append at {at}, expected {})",
                self.written
            )));
        }
        self.written += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    /// Writes `entries` (in key order), their values read from `old` and
    /// checked, packed into records of about [`SNAPSHOT_RECORD_BYTES`].
    /// Returns where each value now is.
    fn snapshot(
        &mut self,
        old: &dyn DiskFile,
        entries: &[(Box<[u8]>, Loc)],
    ) -> Result<Vec<Loc>, StoreError> {
        let mut locs = Vec::with_capacity(entries.len());
        // The record being filled: its start in the buffer, and its count.
        let mut open: Option<(usize, u32)> = None;
        for (key, loc) in entries {
            let size = entry_size(key.len(), loc.len);
            if let Some((start, count)) = open {
                let filled = (self.buf.len() - start - RECORD_HEADER_LEN) as u64;
                if filled + size > SNAPSHOT_RECORD_BYTES {
                    self.close_batch(start, count);
                    open = None;
                    if self.buf.len() >= WRITE_BATCH {
                        self.flush()?;
                    }
                }
            }
            let (_, count) = open.get_or_insert_with(|| {
                let start = self.buf.len();
                self.buf.extend_from_slice(&[0; RECORD_HEADER_LEN]);
                self.buf.push(KIND_CHANGES);
                self.buf.extend_from_slice(&[0; 4]);
                (start, 0)
            });
            *count += 1;
            self.buf.push(OP_PUT);
            self.buf
                .extend_from_slice(&(key.len() as u32).to_le_bytes());
            self.buf.extend_from_slice(key);
            self.buf.extend_from_slice(&loc.len.to_le_bytes());
            let at = self.buf.len();
            let offset = self.len();
            self.buf.resize(at + loc.len as usize, 0);
            read_exact_at(old, loc.offset, &mut self.buf[at..])?;
            if crc32fast::hash(&self.buf[at..]) != loc.crc {
                return Err(StoreError::Corrupt(format!(
                    "the value at offset {} of the definitions log changed on disk",
                    loc.offset
                )));
            }
            locs.push(Loc { offset, ..*loc });
        }
        if let Some((start, count)) = open {
            self.close_batch(start, count);
        }
        Ok(locs)
    }

    /// Fills in the count, length and checksum of the batch at `start`.
    fn close_batch(&mut self, start: usize, count: u32) {
        let at = start + RECORD_HEADER_LEN + 1;
        self.buf[at..at + 4].copy_from_slice(&count.to_le_bytes());
        seal_record(&mut self.buf, start);
    }

    /// Appends the end-of-compaction record.
    fn snapshot_end(&mut self, generation: u64, entries: u64) {
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0; RECORD_HEADER_LEN]);
        self.buf.push(KIND_SNAPSHOT_END);
        self.buf.extend_from_slice(&generation.to_le_bytes());
        self.buf.extend_from_slice(&entries.to_le_bytes());
        seal_record(&mut self.buf, start);
    }

    /// Copies `[from, to)` of `src` to the end of the file, written.
    fn copy_from(&mut self, src: &dyn DiskFile, from: u64, to: u64) -> Result<(), StoreError> {
        self.flush()?;
        let mut at = from;
        while at < to {
            let n = (to - at).min(WRITE_BATCH as u64) as usize;
            self.buf.resize(n, 0);
            read_exact_at(src, at, &mut self.buf)?;
            self.flush()?;
            at += n as u64;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(log_name(7), "defs.0000000007.log");
        assert_eq!(tmp_name(7), "defs.0000000007.log.tmp");
        assert_eq!(parse_log_name("defs.0000000007.log"), Some(7));
        assert_eq!(parse_log_name("defs.12345678901.log"), Some(12_345_678_901));
        assert_eq!(parse_log_name("defs.7.log"), None);
        assert_eq!(parse_log_name("defs.0000000007.log.tmp"), None);
        assert_eq!(parse_log_name("defs.000000000x.log"), None);
        assert!(is_tmp_name("defs.0000000007.log.tmp"));
        assert!(!is_tmp_name("defs.0000000007.log"));
        assert!(!is_tmp_name("other.tmp"));
    }

    #[test]
    fn header_checks() {
        let h = file_header(3);
        assert_eq!(check_file_header(&h, 3), Ok(()));
        assert!(check_file_header(&h, 4).is_err());
        let mut bad = h;
        bad[0] = b'X';
        assert!(check_file_header(&bad, 3).unwrap_err().contains("magic"));
        let mut v2 = h;
        v2[7] = 2;
        assert!(check_file_header(&v2, 3).unwrap_err().contains("version 2"));
        let mut flipped = h;
        flipped[9] ^= 1;
        assert!(check_file_header(&flipped, 3)
            .unwrap_err()
            .contains("checksum"));
    }

    #[test]
    fn batch_record_round_trip() {
        let changes = [
            ChangeRef::Put(b"k1", b"value one"),
            ChangeRef::Delete(b"k0"),
            ChangeRef::Put(b"", b""),
        ];
        let len = changes_payload_len(&changes).unwrap();
        let mut buf = Vec::new();
        encode_changes(&mut buf, &changes, len);
        assert_eq!(buf.len(), RECORD_HEADER_LEN + len as usize);
        assert_eq!(le_u32(&buf), len);
        assert_eq!(le_u32(&buf[4..]), crc32fast::hash(&buf[8..]));
        let p = &buf[8..];
        let Parsed::Changes(parsed) = parse_payload(p).unwrap() else {
            panic!("not a batch");
        };
        let got: Vec<(&[u8], Option<&[u8]>)> = parsed
            .into_iter()
            .map(|(k, v)| (&p[k], v.map(|v| &p[v])))
            .collect();
        assert_eq!(
            got,
            vec![
                (&b"k1"[..], Some(&b"value one"[..])),
                (&b"k0"[..], None),
                (&b""[..], Some(&b""[..])),
            ]
        );
        // Any cut is refused by the layout checks.
        for cut in 0..p.len() {
            assert!(parse_payload(&p[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = p.to_vec();
        longer.push(0);
        assert_eq!(parse_payload(&longer), Err("trailing bytes"));
    }

    #[test]
    fn snapshot_end_round_trip() {
        let disk = crate::SimDisk::new();
        disk.create_dir_all(Path::new("/d")).unwrap();
        let mut w = LogWriter::create(&disk, Path::new("/d/f"), 9).unwrap();
        w.buf.clear();
        w.snapshot_end(9, 1234);
        assert_eq!(
            parse_payload(&w.buf[8..]),
            Ok(Parsed::SnapshotEnd {
                generation: 9,
                entries: 1234
            })
        );
        assert_eq!(parse_payload(&[9]), Err("unknown record kind"));
    }
}
