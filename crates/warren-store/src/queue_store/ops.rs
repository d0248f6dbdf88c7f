//! The queue's operations on a [`StoreCore`]: push, delivery, requeue,
//! settling, purge and destruction, over the unwritten messages in memory
//! (`write_behind`) and the segments on disk.

use std::io;
use std::sync::Arc;

use tracing::error;
use warren_core::{QueuedMessage, StoreError};

use super::{StoreCore, Unwritten};
use crate::record::{check_encodable, AckEntry};
use crate::segment::ChunkRead;

impl StoreCore {
    pub(super) fn push(&mut self, msg: QueuedMessage) -> Result<(), StoreError> {
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
        // Refused now, so that a write-out never meets a record it cannot
        // encode.
        check_encodable(&msg.message, msg.expires_at.is_some())
            .map_err(|e| Self::invalid_input(e.to_string()))?;
        let persistent = msg.message.persistent || self.options.persist_all;
        self.pushed_persistent |= persistent && self.options.durable;
        self.batch_from.get_or_insert(seq);
        self.next_seq = seq + 1;
        let u = Unwritten::new(msg);
        self.unwritten_bytes += u.bytes;
        self.unwritten_ready_count += 1;
        self.unwritten.push_back(u);
        Ok(())
    }

    pub(super) fn pop(&mut self) -> Result<Option<QueuedMessage>, StoreError> {
        if let Some((_, msg)) = self.requeued.pop_first() {
            return Ok(Some(msg));
        }
        if let Some(msg) = self.pop_from_disk()? {
            return Ok(Some(msg));
        }
        Ok(self.pop_unwritten())
    }

    /// The next ready record on disk, if any.
    fn pop_from_disk(&mut self) -> Result<Option<QueuedMessage>, StoreError> {
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
            // Delivered from memory before it was written.
            let behind = seq < self.read_floor;
            self.read_floor = self.read_floor.max(seq.saturating_add(1));
            let seg = &mut self.segments[i];
            let dropped = !rec.layout.persistent && seq < self.recovered_below;
            if behind || dropped || seg.acked.contains(seq) {
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

    pub(super) fn requeue(&mut self, msg: QueuedMessage) {
        if self.destroyed {
            return;
        }
        if msg.delivery_count > self.delivery_counts.get(&msg.seq).copied().unwrap_or(0) {
            self.delivery_counts.insert(msg.seq, msg.delivery_count);
            // An unwritten message gets its count logged when it is
            // written.
            if self.unwritten_index(msg.seq).is_none() {
                self.acks_staged
                    .push(AckEntry::Returned(msg.seq, msg.delivery_count.into()));
            }
        }
        self.requeued.insert(msg.seq, msg);
    }

    pub(super) fn ack(&mut self, msg: &QueuedMessage) -> Result<(), StoreError> {
        if self.destroyed {
            return Ok(());
        }
        let seq = msg.seq;
        if let Some(i) = self.unwritten_index(seq) {
            // Never written, so nothing to log.
            self.requeued.remove(&seq);
            self.delivery_counts.remove(&seq);
            self.settle_unwritten(i);
            return Ok(());
        }
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

    pub(super) fn len(&self) -> usize {
        self.requeued.len() + self.unread as usize + self.unwritten_ready_count
    }

    /// Requeued messages are older than any other ready one; the next
    /// unread record's number is not known before it is read, and
    /// unwritten ones are younger than it.
    pub(super) fn oldest_ready_seq(&self) -> Option<u64> {
        match self.requeued.keys().next() {
            Some(&seq) => Some(seq),
            None if self.unread == 0 => self.oldest_unwritten_ready(),
            None => None,
        }
    }

    pub(super) fn purge(&mut self) -> Result<usize, StoreError> {
        if self.destroyed {
            return Ok(0);
        }
        let count = self.len();
        self.write_staged()?;
        // Ready messages not written yet go without a trace.
        self.purge_unwritten();
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
        if !entries.is_empty() {
            self.write_acks();
            self.materialize()?.append(&entries)?;
            self.ack_log_written();
        }
        for seq in std::mem::take(&mut self.requeued).into_keys() {
            if let Some(i) = self.unwritten_index(seq) {
                self.settle_unwritten(i);
            } else if let Some(i) = self.segment_holding(seq) {
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
            self.read_floor = self.read_floor.max(self.next_seq);
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

    pub(super) fn destroy(&mut self) -> Result<(), StoreError> {
        self.destroyed = true;
        self.clear_unwritten();
        self.report_unwritten();
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
