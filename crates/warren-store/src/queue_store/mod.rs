//! [`DiskQueueStore`]: one queue's messages on disk, behind
//! [`warren_core::MessageStore`].
//!
//! The queue is disk-first: every published message that is still
//! unsettled when the next sync round begins is appended to the current
//! segment, and nothing of it stays in memory after that. Delivery reads
//! the segments back in order through a read cursor, in large chunks whose
//! slices become the delivered bodies. What the store keeps in memory is
//! per segment (counters and a range set of settled sequence numbers), the
//! requeued messages, and the messages not written yet, so memory does not
//! grow with the backlog.
//!
//! **Write-behind.** A push only keeps the message in memory, in the
//! `unwritten` list (see `write_behind`); the end of the queue operation
//! ([`flush`](MessageStore::flush)) hands the store to the
//! [`SyncCoordinator`] and gets the sync ticket its confirms wait for. The
//! sync thread, at the start of its next round, writes every unwritten
//! message that is still unsettled (`write_out`) and then syncs. A message
//! that consumers acknowledged before that is never written, and its ack
//! never logged; one delivered from memory is written as delivered (behind
//! the read cursor). Past a memory bound (per store and for the whole
//! broker) the flush writes on the caller's thread instead, so a slow disk
//! slows publishers rather than filling memory. The store's state is
//! behind a mutex shared with the sync thread: the queue's own lock holds
//! it for the queue's operations, the sync thread only for a write-out.
//!
//! Settling (ack, purge) appends to the ack log; a segment whose records are
//! all settled is deleted, and the ack log is rewritten when most of it
//! describes deleted segments. Opening a store recovers it from its
//! directory: see `docs/storage-format.md` for the steps.
//!
//! A new store creates nothing until its first message: its directory, ack
//! log and first segment come with the first write (`materialize`), so a
//! durable declare costs no file-system work and an idle queue that never
//! had a message costs no files. A missing or empty directory opens as such
//! a store.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tracing::{debug, error, warn};
use warren_core::{Message, MessageStore, QueuedMessage, StoreError, SyncTicket};
use warren_protocol::DecodeError;

use crate::ack_log::AckLog;
use crate::disk::{Disk, DiskFile};
use crate::record::{file_header, AckEntry, FILE_HEADER_LEN, SEGMENT_MAGIC};
use crate::segment::{segment_file_name, ChunkReader, RawRecord, Segment};
use crate::sync::{Deferred, SyncCoordinator, WriteBehind};
use write_behind::{StagedBatch, Unwritten};

mod ops;
mod recovery;
mod write_behind;

/// The staging buffer is dropped after it grew past this, so one huge
/// message does not pin its size for the life of the queue.
const SCRATCH_KEEP: usize = 1 << 20;
/// A write-out writes its records in pieces of about this many bytes.
const STAGE_LIMIT: usize = 256 << 10;

/// Tunables of a [`StoreCore`]. The defaults suit production; tests
/// shrink them to exercise segment rolls and compaction on little data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// A new segment is started when a record would take the current one
    /// past this size. A larger record gets a segment of its own.
    pub segment_size: u64,
    /// Bytes read at once when delivering.
    pub read_chunk_size: usize,
    /// The ack log is considered for a rewrite once it holds this many
    /// records.
    pub ack_log_compact_records: u64,
    /// Whether persistent messages are synced and confirmed after the sync.
    /// False for the spill files of transient queues, which promise
    /// nothing across a restart.
    pub durable: bool,
    /// Keep every message across a restart, persistent or not (a quorum
    /// queue's store, as RabbitMQ's quorum queues keep them all).
    pub persist_all: bool,
    /// Past this many bytes of unwritten messages, a flush writes them on
    /// the caller's thread rather than leaving them to the sync thread.
    pub unwritten_limit: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            segment_size: 8 << 20,
            read_chunk_size: 256 << 10,
            ack_log_compact_records: 64 << 10,
            durable: true,
            persist_all: false,
            unwritten_limit: write_behind::UNWRITTEN_LIMIT,
        }
    }
}

/// A queue's messages in a directory of segment files plus an ack log
/// (see the module docs). The handle the queue holds; the sync thread holds
/// the same state for write-outs.
pub struct DiskQueueStore {
    core: Arc<StoreCell>,
    dir: PathBuf,
    /// Whether confirms wait for the disk, and for which messages.
    durable: bool,
    persist_all: bool,
    /// The ready count and oldest ready sequence number as of the last
    /// operation: only the queue's operations change them (a write-out
    /// moves messages to disk, ready as they were), and the queue asks for
    /// them often, so they are read without taking the lock.
    len: usize,
    oldest: Option<u64>,
}

/// The store's state behind its mutex, as the sync thread sees it.
pub(crate) struct StoreCell {
    core: Mutex<StoreCore>,
    /// A write-out dropped ready messages (they could not be written): the
    /// handle's cached ready count is out of date.
    stale: AtomicBool,
}

impl WriteBehind for StoreCell {
    fn write_out(
        &self,
        defer: Option<(Instant, Duration)>,
    ) -> Result<Option<Deferred>, StoreError> {
        let mut core = self.core.lock();
        let r = core.write_out(defer);
        if std::mem::take(&mut core.ready_changed) {
            self.stale.store(true, Ordering::Release);
        }
        r
    }
}

/// The state of a [`DiskQueueStore`].
pub(crate) struct StoreCore {
    disk: Arc<dyn Disk>,
    dir: PathBuf,
    sync: Arc<SyncCoordinator>,
    options: StoreOptions,
    /// Ordered by id and so by sequence number; the last one is written.
    segments: VecDeque<Segment>,
    /// The last segment's file; `None` until the first message.
    write_file: Option<Arc<dyn DiskFile>>,
    next_segment_id: u64,
    /// `None` until the first message (nothing is on disk yet).
    ack_log: Option<AckLog>,
    /// The ack log size (in records) that triggers a compaction check.
    compact_at: u64,
    requeued: BTreeMap<u64, QueuedMessage>,
    /// Delivery counts of messages returned after a delivery (quorum
    /// queues), as the ack log records them.
    delivery_counts: BTreeMap<u64, u32>,
    /// Live records ahead of the cursor, over all segments.
    unread: u64,
    cursor: Cursor,
    reader: ChunkReader,
    /// Every record with a smaller sequence number is behind the cursor.
    read_floor: u64,
    next_seq: u64,
    /// Records below this were recovered at open; transient ones among them
    /// are dropped.
    recovered_below: u64,
    /// Recovered records below this had been delivered before the restart.
    redelivered_below: u64,
    /// The highest delivered-up-to mark written to the ack log.
    delivered_up_to: u64,
    /// Messages pushed and not written yet, in sequence order; every
    /// record on disk has a smaller sequence number than these.
    unwritten: VecDeque<Unwritten>,
    /// Index in `unwritten` of the first message not delivered yet: the
    /// ones before it were delivered from memory.
    unwritten_ready: usize,
    /// Unsettled messages in `unwritten` from `unwritten_ready` on (ready).
    unwritten_ready_count: usize,
    /// Encoded size of the messages in `unwritten`, and how much of it the
    /// coordinator's broker-wide count holds.
    unwritten_bytes: usize,
    reported_bytes: usize,
    /// The flushes that handed unwritten messages to the sync thread, in
    /// order: what each one's ticket covers, and when.
    batches: VecDeque<StagedBatch>,
    /// A persistent message was pushed since the last flush.
    pushed_persistent: bool,
    /// The queue has consumers: ready messages are likely to be delivered
    /// and settled soon, so rounds may leave young ones unwritten too.
    consumed: bool,
    /// A write-out dropped ready messages since the handle last looked.
    ready_changed: bool,
    /// The first sequence number pushed since the last flush.
    batch_from: Option<u64>,
    /// Records being written out: they go at the end of the write segment
    /// in one write (per [`STAGE_LIMIT`]).
    staged: Vec<u8>,
    /// The write segment's counters before the first staged record, put
    /// back if writing the staged records fails.
    staged_from: Option<StagedFrom>,
    /// Whether a staged record is persistent (and so needs a sync).
    staged_persistent: bool,
    /// Ack-log entries not yet written, and whether the delivered-up-to
    /// mark moved.
    acks_staged: Vec<AckEntry>,
    mark_staged: bool,
    destroyed: bool,
}

/// What [`StoreCore::write_staged`] restores when the write fails.
#[derive(Debug, Clone, Copy)]
struct StagedFrom {
    end: u64,
    first_seq: u64,
    last_seq: Option<u64>,
    live: u64,
    seg_unread: u64,
    unread: u64,
}

/// Where the next record to deliver is read from.
struct Cursor {
    segment: u64,
    offset: u64,
    /// The segment's file, opened while the cursor is in it.
    file: Option<Arc<dyn DiskFile>>,
}

impl Cursor {
    fn at_start_of(segment: u64) -> Self {
        Cursor {
            segment,
            offset: FILE_HEADER_LEN as u64,
            file: None,
        }
    }
}

impl fmt::Debug for DiskQueueStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let core = self.core();
        f.debug_struct("DiskQueueStore")
            .field("dir", &self.dir)
            .field("segments", &core.segments.len())
            .field("unwritten", &core.unwritten.len())
            .field("ready", &core.len())
            .field("next_seq", &core.next_seq)
            .finish_non_exhaustive()
    }
}

impl DiskQueueStore {
    /// The directory holding this store.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn new(core: StoreCore) -> Self {
        DiskQueueStore {
            dir: core.dir.clone(),
            durable: core.options.durable,
            persist_all: core.options.persist_all,
            len: core.len(),
            oldest: core.oldest_ready_seq(),
            core: Arc::new(StoreCell {
                core: Mutex::new(core),
                stale: AtomicBool::new(false),
            }),
        }
    }

    fn core(&self) -> parking_lot::MutexGuard<'_, StoreCore> {
        self.core.core.lock()
    }

    /// Runs an operation that may change what is ready.
    fn op<R>(&mut self, f: impl FnOnce(&mut StoreCore) -> R) -> R {
        let mut core = self.core.core.lock();
        let r = f(&mut core);
        self.len = core.len();
        self.oldest = core.oldest_ready_seq();
        self.core.stale.store(false, Ordering::Release);
        r
    }

    /// Writes every unwritten message now, on the caller's thread, as the
    /// sync thread would at its next round (for tests and tools).
    pub fn write_out(&mut self) -> Result<(), StoreError> {
        self.core().write_out(None).map(|_| ())
    }

    /// Messages held in memory, not written yet.
    pub fn unwritten(&self) -> usize {
        self.core().unwritten.len()
    }
}

impl StoreCore {
    fn invalid_input(what: String) -> StoreError {
        StoreError::Io(io::Error::new(io::ErrorKind::InvalidInput, what))
    }

    fn segment_index(&self, id: u64) -> Option<usize> {
        self.segments.binary_search_by_key(&id, |s| s.id).ok()
    }

    /// The segment holding the record with sequence number `seq`.
    fn segment_holding(&self, seq: u64) -> Option<usize> {
        let i = self.segments.partition_point(|s| s.first_seq <= seq);
        let i = i.checked_sub(1)?;
        self.segments[i].holds(seq).then_some(i)
    }

    /// Creates the directory and the ack log of a store that has none yet.
    /// The directory's entry is durable before anything is written in it (a
    /// directory with files got there through this step, so a recovery does
    /// not sync the parent once per queue).
    fn materialize(&mut self) -> Result<&mut AckLog, StoreError> {
        if self.ack_log.is_none() {
            self.disk.create_dir_all(&self.dir)?;
            if let Some(parent) = self.dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                self.disk.sync_dir(parent)?;
            }
            let (log, _) = AckLog::open(&*self.disk, &self.dir)?;
            self.ack_log = Some(log);
        }
        Ok(self.ack_log.as_mut().expect("just opened"))
    }

    /// Starts a new segment for writing.
    fn roll(&mut self) -> Result<(), StoreError> {
        self.materialize()?;
        let id = self.next_segment_id;
        self.write_file = Some(create_segment_file(&*self.disk, &self.dir, id)?);
        self.next_segment_id += 1;
        self.segments.push_back(Segment::new(id, self.next_seq));
        if self.segments.len() >= 2 {
            self.delete_if_settled(self.segments.len() - 2);
        } else {
            // The first segment of a new store.
            self.cursor = Cursor::at_start_of(id);
        }
        Ok(())
    }

    /// Deletes segment `i` if every record in it is settled and it is not
    /// being written. Returns whether it was deleted.
    fn delete_if_settled(&mut self, i: usize) -> bool {
        let seg = &self.segments[i];
        if seg.live > 0 || i + 1 >= self.segments.len() {
            return false;
        }
        let id = seg.id;
        // Its settled set goes with it, and with it its share of the ack
        // log at the next compaction: so the file must really be gone.
        if let Err(e) = self.disk.remove_file(&self.dir.join(segment_file_name(id))) {
            if e.kind() != io::ErrorKind::NotFound {
                warn!(segment = id, error = %e, "cannot delete a settled segment; will retry");
                return false;
            }
        }
        self.segments.remove(i);
        if self.cursor.segment == id {
            self.move_cursor_to(i);
        }
        true
    }

    /// Puts the cursor at the start of the segment at index `i` (or at the
    /// end of the last one if there is none).
    fn move_cursor_to(&mut self, i: usize) {
        self.reader.release();
        self.cursor = match self.segments.get(i) {
            Some(seg) => Cursor::at_start_of(seg.id),
            None => match self.segments.back() {
                Some(seg) => Cursor {
                    segment: seg.id,
                    offset: seg.end,
                    file: None,
                },
                None => Cursor::at_start_of(self.next_segment_id),
            },
        };
    }

    fn cursor_file(&mut self, i: usize) -> io::Result<Arc<dyn DiskFile>> {
        if let Some(file) = &self.cursor.file {
            return Ok(Arc::clone(file));
        }
        let file = if i + 1 == self.segments.len() {
            self.write_file
                .clone()
                .ok_or_else(|| io::Error::other("no segment is being written"))?
        } else {
            self.disk
                .open(&self.dir.join(segment_file_name(self.segments[i].id)))?
        };
        self.cursor.file = Some(Arc::clone(&file));
        Ok(file)
    }

    /// Rewrites the ack log if it is large and mostly about deleted
    /// segments.
    fn maybe_compact(&mut self) {
        let Some(records) = self.ack_log.as_ref().map(AckLog::records) else {
            return;
        };
        if records < self.compact_at {
            return;
        }
        let needed = 1
            + self.delivery_counts.len() as u64
            + self
                .segments
                .iter()
                .map(|s| s.acked.range_count() as u64)
                .sum::<u64>();
        if needed.saturating_mul(2) > records {
            self.compact_at = records.saturating_mul(2);
            return;
        }
        let StoreCore {
            disk,
            segments,
            ack_log: Some(ack_log),
            delivered_up_to,
            delivery_counts,
            ..
        } = self
        else {
            return;
        };
        let entries = std::iter::once(AckEntry::DeliveredUpTo(*delivered_up_to))
            .chain(segments.iter().flat_map(|s| {
                s.acked.ranges().map(|(from, to)| {
                    if to == from.saturating_add(1) {
                        AckEntry::Ack(from)
                    } else {
                        AckEntry::Range(from, to)
                    }
                })
            }))
            .chain(
                delivery_counts
                    .iter()
                    .map(|(&seq, &n)| AckEntry::Returned(seq, n.into())),
            );
        match ack_log.rewrite(&**disk, entries) {
            Ok(()) => {
                self.compact_at = needed
                    .saturating_mul(4)
                    .max(self.options.ack_log_compact_records);
            }
            Err(e) => {
                warn!(error = %e, "ack log compaction failed; will retry later");
                self.compact_at = records.saturating_mul(2);
            }
        }
    }

    /// Skips the rest of segment `i` after a record that fails its checks
    /// while delivering (the disk changed under the store). Its records
    /// are lost; recovery cuts the file at the same place.
    fn abandon_rest_of_segment(&mut self, i: usize, problem: &str) {
        let seg = &mut self.segments[i];
        error!(
            segment = seg.id,
            offset = self.cursor.offset,
            lost = seg.unread,
            problem,
            "corrupt record while delivering; the rest of the segment is skipped"
        );
        seg.live = seg.live.saturating_sub(seg.unread);
        self.unread = self.unread.saturating_sub(seg.unread);
        seg.unread = 0;
        seg.end = self.cursor.offset;
        seg.sealed = true;
        self.reader.release();
    }

    /// Settles the record `seq` of segment `i` behind the store's back
    /// (never served): acked in memory and in the ack log.
    fn settle_unservable(&mut self, i: usize, seq: u64) {
        self.stage_ack(seq);
        let seg = &mut self.segments[i];
        if seg.acked.insert(seq) {
            seg.live = seg.live.saturating_sub(1);
        }
        self.delete_if_settled(i);
    }

    /// Writes the staged records to the end of the write segment. If that
    /// fails they are lost: the counters go back to what they were, the
    /// file is cut back (or, failing that, sealed) and the error is also
    /// kept for the next [`flush`](MessageStore::flush) to report.
    fn write_staged(&mut self) -> Result<(), StoreError> {
        let Some(from) = self.staged_from.take() else {
            return Ok(());
        };
        let persistent = std::mem::take(&mut self.staged_persistent);
        let Some(file) = self.write_file.clone() else {
            self.staged.clear();
            return Err(StoreError::Corrupt(
                "records staged without a segment".into(),
            ));
        };
        let result = match file.append(&self.staged) {
            Ok(offset) if offset == from.end => Ok(()),
            Ok(offset) => Err(StoreError::Corrupt(format!(
                "segment grew outside the store (append at {offset}, expected {})",
                from.end
            ))),
            Err(e) => Err(e.into()),
        };
        self.staged.clear();
        if self.staged.capacity() > SCRATCH_KEEP {
            self.staged = Vec::new();
        }
        match result {
            Ok(()) => {
                if persistent {
                    self.sync.mark_dirty(&file);
                }
                Ok(())
            }
            Err(err) => {
                let Some(w) = self.segments.back_mut() else {
                    return Err(err);
                };
                let lost = w.unread.saturating_sub(from.seg_unread);
                w.end = from.end;
                w.first_seq = from.first_seq;
                w.last_seq = from.last_seq;
                w.live = from.live;
                w.unread = from.seg_unread;
                self.unread = from.unread;
                // Part of the records may be on disk; recovery must not
                // find them.
                if file.truncate(from.end).is_err() {
                    w.sealed = true;
                }
                // They are still unwritten and written again later (or, when
                // the write was the caller's, the publisher hears of it).
                debug!(dir = %self.dir.display(), lost, %err, "a write of staged records failed");
                Err(err)
            }
        }
    }

    /// Records an ack in the ack log at the next flush. Consecutive
    /// sequence numbers become one range entry.
    fn stage_ack(&mut self, seq: u64) {
        match self.acks_staged.last_mut() {
            Some(AckEntry::Ack(prev)) if prev.checked_add(1) == Some(seq) => {
                let from = *prev;
                *self.acks_staged.last_mut().expect("just matched") =
                    AckEntry::Range(from, seq + 1);
            }
            Some(AckEntry::Range(_, to)) if *to == seq => *to = seq + 1,
            _ => self.acks_staged.push(AckEntry::Ack(seq)),
        }
    }

    /// Leaves the ack log to the next sync round. A spill store (not
    /// durable) promises nothing across a restart, so its ack log is never
    /// synced: syncing it would only make appends wait for writeback.
    fn ack_log_written(&self) {
        if let (true, Some(log)) = (self.options.durable, &self.ack_log) {
            self.sync.mark_dirty(log.file());
        }
    }

    /// Writes staged ack-log entries. A failure is logged: the acks hold in
    /// memory, and after a restart the messages would come back.
    fn write_acks(&mut self) {
        if std::mem::take(&mut self.mark_staged) {
            self.acks_staged
                .push(AckEntry::DeliveredUpTo(self.delivered_up_to));
        }
        if self.acks_staged.is_empty() {
            return;
        }
        let staged = std::mem::take(&mut self.acks_staged);
        match self.materialize().and_then(|log| Ok(log.append(&staged)?)) {
            Ok(()) => self.ack_log_written(),
            Err(e) => warn!(error = %e, "cannot record acks"),
        }
        self.acks_staged = staged;
        self.acks_staged.clear();
        self.maybe_compact();
    }

    fn build_message(rec: &RawRecord) -> Result<Message, DecodeError> {
        let p = &rec.payload;
        let l = &rec.layout;
        // Both names were checked to be UTF-8 when the record was parsed.
        let exchange = String::from_utf8_lossy(&p[l.exchange.clone()]).into_owned();
        let routing_key = String::from_utf8_lossy(&p[l.routing_key.clone()]).into_owned();
        let mut message = Message::new(
            exchange,
            routing_key,
            p.slice(l.properties.clone()),
            p.slice(l.body.clone()),
        )?;
        message.persistent = l.persistent;
        Ok(message)
    }
}

impl MessageStore for DiskQueueStore {
    fn push(&mut self, msg: QueuedMessage) -> Result<(), StoreError> {
        self.op(|core| core.push(msg))
    }

    /// Hands what is left unwritten to the sync thread; the ticket its
    /// round publishes covers everything pushed so far.
    fn flush(&mut self) -> Result<Option<SyncTicket>, StoreError> {
        let cell = Arc::clone(&self.core);
        self.op(|core| {
            let flushed = core.flush()?;
            let ticket = (flushed.pending || flushed.persistent).then(|| core.sync.stage(&cell));
            if let Some(ticket) = ticket {
                core.staged_batch(ticket);
            }
            Ok(if flushed.persistent { ticket } else { None })
        })
    }

    fn set_consumed(&mut self, consumed: bool) {
        self.core().consumed = consumed;
    }

    fn write_now(&mut self) -> Result<(), StoreError> {
        self.op(StoreCore::write_all_now)
    }

    fn confirms_on_sync(&self, msg: &Message) -> bool {
        self.durable && (msg.persistent || self.persist_all)
    }

    fn pop(&mut self) -> Result<Option<QueuedMessage>, StoreError> {
        self.op(StoreCore::pop)
    }

    fn requeue(&mut self, msg: QueuedMessage) {
        self.op(|core| core.requeue(msg))
    }

    fn ack(&mut self, msg: &QueuedMessage) -> Result<(), StoreError> {
        self.op(|core| core.ack(msg))
    }

    fn len(&self) -> usize {
        if self.core.stale.load(Ordering::Acquire) {
            return self.core().len();
        }
        self.len
    }

    fn oldest_ready_seq(&self) -> Option<u64> {
        if self.core.stale.load(Ordering::Acquire) {
            return self.core().oldest_ready_seq();
        }
        self.oldest
    }

    /// What recovery found (the queue counts from there).
    fn ready_bytes(&self) -> u64 {
        self.core().segments.iter().map(|s| s.recovered_bytes).sum()
    }

    fn purge(&mut self) -> Result<usize, StoreError> {
        self.op(StoreCore::purge)
    }

    fn next_seq(&self) -> u64 {
        self.core().next_seq
    }

    fn destroy(&mut self) -> Result<(), StoreError> {
        self.op(StoreCore::destroy)
    }
}

impl Drop for DiskQueueStore {
    /// A store closed without a crash writes what it holds (the sync
    /// thread may still hold the state, with nothing left to write).
    fn drop(&mut self) {
        let mut core = self.core();
        if !core.destroyed {
            if let Err(e) = core.write_out(None) {
                warn!(dir = %self.dir.display(), error = %e, "cannot write a closed store's messages");
            }
        }
    }
}

/// Creates segment file `id` holding just its header, with a durable
/// directory entry.
fn create_segment_file(
    disk: &dyn Disk,
    dir: &Path,
    id: u64,
) -> Result<Arc<dyn DiskFile>, StoreError> {
    let path = dir.join(segment_file_name(id));
    let file = disk.open(&path)?;
    let created = (|| {
        if !file.is_empty() {
            file.truncate(0)?;
        }
        file.append(&file_header(SEGMENT_MAGIC))?;
        // The header is durable before any record follows it (so recovery
        // can tell a torn creation from a damaged segment), and so is the
        // directory entry before any sync of the segment's records counts.
        file.sync()?;
        disk.sync_dir(dir)
    })();
    match created {
        Ok(()) => Ok(file),
        Err(e) => {
            if let Err(r) = disk.remove_file(&path) {
                warn!(error = %r, "cannot remove a segment that failed to start");
            }
            Err(e.into())
        }
    }
}
