//! [`DiskQueueStore`]: one queue's messages on disk, behind
//! [`warren_core::MessageStore`].
//!
//! The queue is disk-first: every published message is appended to the
//! current segment and nothing of it stays in memory. Delivery reads the
//! segments back in order through a read cursor, in large chunks whose
//! slices become the delivered bodies. What the store keeps in memory is
//! per segment (counters and a range set of settled sequence numbers) plus
//! the requeued messages, so memory does not grow with the backlog.
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
use std::sync::Arc;

use tracing::{debug, error, warn};
use warren_core::{Message, MessageStore, QueuedMessage, StoreError, SyncTicket};
use warren_protocol::DecodeError;

use crate::ack_log::AckLog;
use crate::disk::{Disk, DiskFile};
use crate::record::{
    encode_message, file_header, AckEntry, Stored, FILE_HEADER_LEN, SEGMENT_MAGIC,
};
use crate::segment::{segment_file_name, ChunkRead, ChunkReader, RawRecord, Segment};
use crate::sync::SyncCoordinator;

mod recovery;

/// The staging buffer is dropped after it grew past this, so one huge
/// message does not pin its size for the life of the queue.
const SCRATCH_KEEP: usize = 1 << 20;
/// Staged records are written out once they reach this many bytes, even
/// before the next flush.
const STAGE_LIMIT: usize = 256 << 10;

/// Tunables of a [`DiskQueueStore`]. The defaults suit production; tests
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
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            segment_size: 8 << 20,
            read_chunk_size: 256 << 10,
            ack_log_compact_records: 64 << 10,
            durable: true,
            persist_all: false,
        }
    }
}

/// A queue's messages in a directory of segment files plus an ack log.
pub struct DiskQueueStore {
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
    /// Records pushed and not yet written: they go at the end of the write
    /// segment, in one write at the next flush (or sooner, see
    /// [`STAGE_LIMIT`]).
    staged: Vec<u8>,
    /// The write segment's counters before the first staged record, put
    /// back if writing the staged records fails.
    staged_from: Option<StagedFrom>,
    /// Whether a staged record is persistent (and so needs a sync).
    staged_persistent: bool,
    /// The sync ticket covering persistent records written since the last
    /// flush.
    written_ticket: Option<SyncTicket>,
    /// A write of staged records failed since the last flush.
    write_failed: Option<StoreError>,
    /// Ack-log entries not yet written, and whether the delivered-up-to
    /// mark moved.
    acks_staged: Vec<AckEntry>,
    mark_staged: bool,
    destroyed: bool,
}

/// What [`DiskQueueStore::write_staged`] restores when the write fails.
#[derive(Debug, Clone, Copy)]
struct StagedFrom {
    end: u64,
    first_seq: u64,
    last_seq: Option<u64>,
    live: u64,
    seg_unread: u64,
    unread: u64,
    next_seq: u64,
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
        f.debug_struct("DiskQueueStore")
            .field("dir", &self.dir)
            .field("segments", &self.segments.len())
            .field("ready", &self.len())
            .field("next_seq", &self.next_seq)
            .finish_non_exhaustive()
    }
}

impl DiskQueueStore {
    /// The directory holding this store.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

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
        let DiskQueueStore {
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
                    self.written_ticket = Some(self.sync.mark_dirty(&file));
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
                self.next_seq = from.next_seq;
                // Part of the records may be on disk; recovery must not
                // find them.
                if file.truncate(from.end).is_err() {
                    w.sealed = true;
                }
                // The publisher hears of it through nacks; the queue logs it.
                debug!(dir = %self.dir.display(), lost, %err, "staged messages dropped after a failed write");
                self.write_failed = Some(StoreError::Io(io::Error::other(err.to_string())));
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

/// Creates segment file `id` holding just its header, with a durable
/// directory entry.
impl Drop for DiskQueueStore {
    /// A store closed without a crash writes what it staged.
    fn drop(&mut self) {
        if !self.destroyed {
            let _ = self.flush();
        }
    }
}

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

impl MessageStore for DiskQueueStore {
    fn push(&mut self, msg: QueuedMessage) -> Result<(), StoreError> {
        if self.destroyed {
            return Err(StoreError::Io(io::Error::new(
                io::ErrorKind::NotFound,
                "the queue's store was destroyed",
            )));
        }
        let seq = msg.seq;
        if seq < self.next_seq || seq == u64::MAX {
            return Err(Self::invalid_input(format!(
                "sequence number {seq} is not above the previous one"
            )));
        }
        let start = self.staged.len();
        let persistent = msg.message.persistent || self.options.persist_all;
        let stored = Stored {
            expires_at: msg.expires_at,
            persistent,
        };
        if let Err(e) = encode_message(&mut self.staged, seq, &msg.message, stored) {
            self.staged.truncate(start);
            return Err(Self::invalid_input(e.to_string()));
        }
        let len = (self.staged.len() - start) as u64;
        let roll = match self.segments.back() {
            Some(w) => {
                w.sealed
                    || (w.end > FILE_HEADER_LEN as u64 && w.end + len > self.options.segment_size)
            }
            None => true,
        };
        if roll {
            // The new record starts the next segment; what was staged
            // before it ends this one.
            let record = self.staged.split_off(start);
            let written = self.write_staged();
            self.staged = record;
            if let Err(e) = written.and_then(|()| self.roll()) {
                self.staged.clear();
                return Err(e);
            }
        }
        let Some(w) = self.segments.back_mut() else {
            self.staged.truncate(start);
            return Err(StoreError::Corrupt("no segment to write to".into()));
        };
        if self.staged_from.is_none() {
            self.staged_from = Some(StagedFrom {
                end: w.end,
                first_seq: w.first_seq,
                last_seq: w.last_seq,
                live: w.live,
                seg_unread: w.unread,
                unread: self.unread,
                next_seq: self.next_seq,
            });
        }
        if w.last_seq.is_none() {
            w.first_seq = seq;
        }
        w.end += len;
        w.last_seq = Some(seq);
        w.live += 1;
        w.unread += 1;
        self.unread += 1;
        self.next_seq = seq + 1;
        self.staged_persistent |= persistent && self.options.durable;
        if self.staged.len() >= STAGE_LIMIT {
            self.write_staged()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<Option<SyncTicket>, StoreError> {
        let written = self.write_staged();
        self.write_acks();
        let failed = self.write_failed.take();
        let ticket = self.written_ticket.take();
        written?;
        match failed {
            Some(err) => Err(err),
            None => Ok(ticket),
        }
    }

    fn pop(&mut self) -> Result<Option<QueuedMessage>, StoreError> {
        if let Some((_, msg)) = self.requeued.pop_first() {
            return Ok(Some(msg));
        }
        // The cursor may reach records not written yet.
        self.write_staged()?;
        while self.unread > 0 {
            let Some(i) = self.segment_index(self.cursor.segment) else {
                // Not reachable: deleting the cursor's segment moves the
                // cursor on. Start over from the front.
                error!(
                    segment = self.cursor.segment,
                    "read cursor lost its segment"
                );
                if self.segments.is_empty() {
                    self.unread = 0;
                    break;
                }
                self.move_cursor_to(0);
                continue;
            };
            let file = self.cursor_file(i)?;
            let (id, end) = (self.segments[i].id, self.segments[i].end);
            let rec = match self.reader.read(id, &*file, self.cursor.offset, end)? {
                ChunkRead::Record(rec) => rec,
                ChunkRead::End if i + 1 < self.segments.len() => {
                    self.move_cursor_to(i + 1);
                    continue;
                }
                ChunkRead::End => {
                    error!(unread = self.unread, "fewer messages on disk than counted");
                    for seg in self.segments.iter_mut() {
                        seg.live = seg.live.saturating_sub(seg.unread);
                        seg.unread = 0;
                    }
                    self.unread = 0;
                    break;
                }
                ChunkRead::Bad(problem) => {
                    self.abandon_rest_of_segment(i, problem);
                    continue;
                }
            };
            let seq = rec.layout.seq;
            self.cursor.offset = rec.next;
            self.read_floor = seq.saturating_add(1);
            let seg = &mut self.segments[i];
            let dropped = !rec.layout.persistent && seq < self.recovered_below;
            if dropped || seg.acked.contains(seq) {
                continue;
            }
            seg.unread = seg.unread.saturating_sub(1);
            self.unread = self.unread.saturating_sub(1);
            let message = match Self::build_message(&rec) {
                Ok(message) => message,
                Err(e) => {
                    error!(seq, error = %e, "stored message has undecodable properties; dropped");
                    self.settle_unservable(i, seq);
                    continue;
                }
            };
            self.reader.release_if_before(id, self.cursor.offset);
            let mark = seq.saturating_add(1);
            if mark > self.delivered_up_to {
                self.delivered_up_to = mark;
                self.mark_staged = true;
            }
            return Ok(Some(QueuedMessage {
                seq,
                message: Arc::new(message),
                redelivered: seq < self.redelivered_below,
                expires_at: rec.layout.expires_at,
                delivery_count: self.delivery_counts.get(&seq).copied().unwrap_or(0),
            }));
        }
        Ok(None)
    }

    fn requeue(&mut self, msg: QueuedMessage) {
        if self.destroyed {
            return;
        }
        if msg.delivery_count > self.delivery_counts.get(&msg.seq).copied().unwrap_or(0) {
            self.delivery_counts.insert(msg.seq, msg.delivery_count);
            self.acks_staged
                .push(AckEntry::Returned(msg.seq, msg.delivery_count.into()));
        }
        self.requeued.insert(msg.seq, msg);
    }

    fn ack(&mut self, msg: &QueuedMessage) -> Result<(), StoreError> {
        if self.destroyed {
            return Ok(());
        }
        let seq = msg.seq;
        let Some(i) = self.segment_holding(seq) else {
            return Ok(());
        };
        if self.segments[i].acked.contains(seq) {
            return Ok(());
        }
        self.stage_ack(seq);
        self.requeued.remove(&seq);
        self.delivery_counts.remove(&seq);
        // Normally only delivered messages are acked; one the cursor has not
        // reached yet leaves the ready count too.
        let was_dropped = !msg.message.persistent && seq < self.recovered_below;
        let seg = &mut self.segments[i];
        seg.acked.insert(seq);
        seg.live = seg.live.saturating_sub(1);
        if seq >= self.read_floor && !was_dropped && seg.unread > 0 {
            seg.unread -= 1;
            self.unread -= 1;
        }
        self.delete_if_settled(i);
        Ok(())
    }

    fn len(&self) -> usize {
        self.requeued.len() + self.unread as usize
    }

    /// What recovery found (the queue counts from there).
    /// Requeued messages are older than any unread one; the next unread
    /// record's number is not known before it is read.
    fn oldest_ready_seq(&self) -> Option<u64> {
        self.requeued.keys().next().copied()
    }

    fn ready_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.recovered_bytes).sum()
    }

    fn purge(&mut self) -> Result<usize, StoreError> {
        if self.destroyed {
            return Ok(0);
        }
        self.write_staged()?;
        self.write_acks();
        let count = self.len();
        let mut entries: Vec<AckEntry> = self
            .requeued
            .keys()
            .map(|&seq| AckEntry::Ack(seq))
            .collect();
        let range = (self.unread > 0).then_some((self.read_floor, self.next_seq));
        // Purged messages need their delivery counts no more; delivered
        // ones keep theirs.
        let floor = range.map_or(u64::MAX, |r| r.0);
        let requeued = &self.requeued;
        self.delivery_counts
            .retain(|seq, _| *seq < floor && !requeued.contains_key(seq));
        if let Some((from, to)) = range {
            entries.push(AckEntry::Range(from, to));
        }
        if entries.is_empty() {
            return Ok(0);
        }
        self.materialize()?.append(&entries)?;
        self.ack_log_written();
        for seq in std::mem::take(&mut self.requeued).into_keys() {
            if let Some(i) = self.segment_holding(seq) {
                let seg = &mut self.segments[i];
                if seg.acked.insert(seq) {
                    seg.live = seg.live.saturating_sub(1);
                }
            }
        }
        if let Some((from, _)) = range {
            let start = self.segment_index(self.cursor.segment).unwrap_or(0);
            for seg in self.segments.iter_mut().skip(start) {
                if let Some(last) = seg.last_seq {
                    let from = from.max(seg.first_seq);
                    if from <= last {
                        seg.acked.insert_range(from, last.saturating_add(1));
                    }
                }
                seg.live = seg.live.saturating_sub(seg.unread);
                seg.unread = 0;
            }
            self.unread = 0;
            self.read_floor = self.next_seq;
            let last = self.segments.len();
            self.move_cursor_to(last);
        }
        let mut i = 0;
        while i < self.segments.len() {
            if !self.delete_if_settled(i) {
                i += 1;
            }
        }
        self.maybe_compact();
        Ok(count)
    }

    fn next_seq(&self) -> u64 {
        self.next_seq
    }

    fn destroy(&mut self) -> Result<(), StoreError> {
        self.destroyed = true;
        self.staged.clear();
        self.staged_from = None;
        self.acks_staged.clear();
        self.mark_staged = false;
        self.segments.clear();
        self.requeued.clear();
        self.unread = 0;
        self.reader.release();
        self.cursor.file = None;
        self.disk.remove_dir_all(&self.dir)?;
        if let Some(parent) = self.dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            match self.disk.sync_dir(parent) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e.into()),
                _ => {}
            }
        }
        Ok(())
    }
}
