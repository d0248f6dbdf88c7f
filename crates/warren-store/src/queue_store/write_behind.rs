//! The write-behind half of a [`StoreCore`]: messages kept in memory until
//! the sync thread's next round writes the ones still unsettled.
//!
//! A pushed message joins `unwritten`. Until it is written it can be
//! delivered from there (it is then *out*, still unwritten), settled (it is
//! then never written, and no ack is logged for it) or requeued. A
//! write-out appends every unsettled one in sequence order: ready ones
//! ahead of the read cursor, delivered ones as delivered (the cursor skips
//! them, since their sequence numbers are below the read floor, and the
//! delivered-up-to mark covers them). Everything on disk has a smaller
//! sequence number than anything still unwritten, so the segments stay in
//! order.
//!
//! The sync thread's rounds leave a message pushed less than
//! [`WRITE_DELAY`](crate::sync::WRITE_DELAY) ago unwritten, and everything
//! after it (the segments stay in order), if it was handed to a consumer
//! or the queue has consumers: most such messages are acked before the
//! next round. A queue without consumers has its messages written at once. The store keeps, per flush that handed
//! it over, the ticket and the sequence numbers it covered, so that it can
//! tell the round which tickets it holds back ([`Deferred`]).
//!
//! When a write-out fails part-way, the records of the failed piece are
//! taken back (`write_staged`) and their messages stay unwritten, to be
//! written by a later round; the confirms waiting for them wait too.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::error;
use warren_core::{ConfirmRef, QueuedMessage, StoreError, SyncTicket};

use super::{StagedFrom, StoreCore, STAGE_LIMIT};
use crate::record::{encode_message, AckEntry, Stored, FILE_HEADER_LEN};
use crate::sync::Deferred;

/// A message not written yet.
#[derive(Debug)]
pub(crate) struct Unwritten {
    pub msg: QueuedMessage,
    /// Settled (acked, rejected or purged) before it was written: it never
    /// will be.
    pub settled: bool,
    /// About the size of its record.
    pub bytes: usize,
}

impl Unwritten {
    pub fn new(msg: QueuedMessage) -> Self {
        let m = &msg.message;
        let bytes = 40 + m.exchange.len() + m.routing_key.len() + m.properties.len() + m.body.len();
        Unwritten {
            msg,
            settled: false,
            bytes,
        }
    }
}

/// A flush that handed unwritten messages to the sync thread.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StagedBatch {
    pub ticket: SyncTicket,
    /// It covers the messages numbered below this.
    pub below: u64,
    pub at: Instant,
}

/// What a flush tells the store's handle.
pub(crate) struct Flushed {
    /// Something is left for the sync thread to write (messages, acks or a
    /// delivery mark): hand the store to it.
    pub pending: bool,
    /// A persistent message was pushed since the last flush: its confirm
    /// needs a ticket.
    pub persistent: bool,
}

impl StoreCore {
    /// Where `seq` is in `unwritten`, if it is there.
    pub(super) fn unwritten_index(&self, seq: u64) -> Option<usize> {
        let first = self.unwritten.front()?.msg.seq;
        if seq < first {
            return None;
        }
        // Acks come nearly in order: most often it is the front one.
        if seq == first {
            return Some(0);
        }
        self.unwritten
            .binary_search_by_key(&seq, |u| u.msg.seq)
            .ok()
    }

    /// Marks unwritten message `i` settled, and drops the settled ones at
    /// the front.
    pub(super) fn settle_unwritten(&mut self, i: usize) {
        let u = &mut self.unwritten[i];
        if u.settled {
            return;
        }
        u.settled = true;
        if i >= self.unwritten_ready {
            self.unwritten_ready_count -= 1;
        }
        while self.unwritten.front().is_some_and(|u| u.settled) {
            let u = self.unwritten.pop_front().expect("just looked");
            self.unwritten_bytes -= u.bytes;
            self.unwritten_ready = self.unwritten_ready.saturating_sub(1);
        }
    }

    /// The next unwritten message to deliver, if any.
    pub(super) fn pop_unwritten(&mut self) -> Option<QueuedMessage> {
        while let Some(u) = self.unwritten.get(self.unwritten_ready) {
            self.unwritten_ready += 1;
            if u.settled {
                continue;
            }
            self.unwritten_ready_count -= 1;
            let msg = u.msg.clone();
            self.read_floor = self.read_floor.max(msg.seq.saturating_add(1));
            return Some(msg);
        }
        None
    }

    /// The oldest ready unwritten message's sequence number.
    pub(super) fn oldest_unwritten_ready(&self) -> Option<u64> {
        self.unwritten
            .iter()
            .skip(self.unwritten_ready)
            .find(|u| !u.settled)
            .map(|u| u.msg.seq)
    }

    /// Drops the ready unwritten messages (a purge), returning how many
    /// there were.
    pub(super) fn purge_unwritten(&mut self) -> usize {
        let n = self.unwritten_ready_count;
        for u in self.unwritten.drain(self.unwritten_ready..) {
            self.unwritten_bytes -= u.bytes;
        }
        self.unwritten_ready_count = 0;
        n
    }

    /// Forgets every unwritten message (the store was destroyed).
    pub(super) fn clear_unwritten(&mut self) {
        self.unwritten.clear();
        self.unwritten_ready = 0;
        self.unwritten_ready_count = 0;
        self.unwritten_bytes = 0;
    }

    /// Encodes one message at the end of the write segment (starting a new
    /// segment first if it does not fit) and counts it: ahead of the read
    /// cursor if ready, behind it if `delivered`. Returns whether a segment
    /// was started, which wrote what was staged before.
    pub(super) fn append(
        &mut self,
        msg: &QueuedMessage,
        delivered: bool,
    ) -> Result<bool, StoreError> {
        let seq = msg.seq;
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
            self.write_staged()?;
            self.staged = record;
            if let Err(e) = self.roll() {
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
            });
        }
        if w.last_seq.is_none() {
            w.first_seq = seq;
        }
        w.end += len;
        w.last_seq = Some(seq);
        w.live += 1;
        if delivered {
            let mark = seq.saturating_add(1);
            if mark > self.delivered_up_to {
                self.delivered_up_to = mark;
                self.mark_staged = true;
            }
        } else {
            w.unread += 1;
            self.unread += 1;
        }
        self.staged_persistent |= persistent && self.options.durable;
        if let Some(&n) = self.delivery_counts.get(&seq) {
            self.acks_staged.push(AckEntry::Returned(seq, n.into()));
        }
        Ok(roll)
    }

    /// Records a flush whose ticket covers what was pushed so far.
    pub(super) fn staged_batch(&mut self, ticket: SyncTicket) {
        if self.batches.back().is_none_or(|b| b.below < self.next_seq) {
            self.batches.push_back(StagedBatch {
                ticket,
                below: self.next_seq,
                at: Instant::now(),
            });
        }
    }

    /// Writes every unsettled unwritten message (with `defer`, only those
    /// before the first one delivered less than the delay ago), then the
    /// staged acks. On error, what could not be written stays unwritten.
    pub(super) fn write_out(
        &mut self,
        defer: Option<(Instant, Duration)>,
    ) -> Result<Option<Deferred>, StoreError> {
        if self.destroyed {
            self.clear_unwritten();
            self.batches.clear();
            return Ok(None);
        }
        let cut = defer.and_then(|(now, delay)| self.young_delivery(now, delay));
        let limit = cut.map_or(self.unwritten.len(), |(i, _)| i);
        let written = self.write_unwritten(limit);
        let mut cut = cut;
        if let Err(e) = written {
            // Ready messages that cannot be written are dropped and their
            // publishes nacked, as a failed write at publish would be;
            // delivered ones stay, for a later round or their ack.
            let dropped = self.fail_ready_unwritten();
            error!(
                dir = %self.dir.display(),
                error = %e,
                dropped,
                "cannot write messages; the ready ones are dropped and their publishes nacked"
            );
            if !self.unwritten.is_empty() {
                let now = defer.map_or_else(Instant::now, |(now, _)| now);
                cut = Some((0, now + WRITE_RETRY));
            }
        }
        self.report_unwritten();
        self.write_acks();
        // Batches whose messages are all written (or settled) are done.
        match self.unwritten.front() {
            None => self.batches.clear(),
            Some(first) => {
                let first = first.msg.seq;
                while self.batches.front().is_some_and(|b| b.below <= first) {
                    self.batches.pop_front();
                }
            }
        }
        Ok(cut.and_then(|(_, until)| {
            let floor = self.batches.front()?.ticket;
            Some(Deferred { floor, until })
        }))
    }

    /// The first unsettled unwritten message handed over less than `delay`
    /// before `now` that was delivered, or is ready while the queue has
    /// consumers: its position, and when it stops being young. None while
    /// the ready ones are too many (the consumers are not keeping up: a
    /// delay would only hold back their confirms).
    fn young_delivery(&self, now: Instant, delay: Duration) -> Option<(usize, Instant)> {
        if self.unwritten_ready_count > DEFER_READY_MAX || self.unwritten_bytes > DEFER_BYTES_MAX {
            return None;
        }
        // A few messages cost little to write, and a publisher may be
        // waiting for each confirm: no delay.
        if self.unwritten.len() < DEFER_MIN_MESSAGES && self.unwritten_bytes < DEFER_MIN_BYTES {
            return None;
        }
        let mut batches = self.batches.iter().peekable();
        let candidates = if self.consumed {
            self.unwritten.len()
        } else {
            self.unwritten_ready
        };
        for (i, u) in self.unwritten.iter().enumerate().take(candidates) {
            if u.settled {
                continue;
            }
            while batches.peek().is_some_and(|b| b.below <= u.msg.seq) {
                batches.next();
            }
            // Pushed since the last flush, if no batch covers it.
            let at = batches.peek().map_or(now, |b| b.at);
            if now < at + delay {
                return Some((i, at + delay));
            }
        }
        None
    }

    /// Drops every ready unwritten message after a failed write-out,
    /// telling their publishers. Returns how many were dropped.
    fn fail_ready_unwritten(&mut self) -> usize {
        let mut failed: Vec<ConfirmRef> = Vec::new();
        let mut dropped = 0;
        for u in self.unwritten.drain(self.unwritten_ready..) {
            self.unwritten_bytes -= u.bytes;
            if u.settled {
                continue;
            }
            dropped += 1;
            if let Some(c) = &u.msg.message.confirm {
                failed.push(c.clone());
            }
        }
        self.unwritten_ready_count = 0;
        self.ready_changed = true;
        let mut i = 0;
        while i < failed.len() {
            let sink = &failed[i].sink;
            let run = failed[i..]
                .iter()
                .take_while(|c| Arc::ptr_eq(&c.sink, sink))
                .count();
            let tags: Vec<u64> = failed[i..i + run].iter().map(|c| c.tag).collect();
            sink.failed(&tags);
            i += run;
        }
        dropped
    }

    fn write_unwritten(&mut self, limit: usize) -> Result<(), StoreError> {
        // Entries before `done` are on disk (or settled).
        let (mut i, mut done) = (0, 0);
        let mut result = Ok(());
        while i < limit {
            if self.unwritten[i].settled {
                i += 1;
                continue;
            }
            let msg = self.unwritten[i].msg.clone();
            match self.append(&msg, i < self.unwritten_ready) {
                Ok(true) => done = i,
                Ok(false) => {}
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
            i += 1;
            if self.staged.len() >= STAGE_LIMIT {
                if let Err(e) = self.write_staged() {
                    result = Err(e);
                    break;
                }
                done = i;
            }
        }
        if result.is_ok() {
            match self.write_staged() {
                Ok(()) => done = i,
                Err(e) => result = Err(e),
            }
        } else {
            self.staged.clear();
            self.staged_from = None;
        }
        for u in self.unwritten.drain(..done) {
            self.unwritten_bytes -= u.bytes;
            if self.unwritten_ready > 0 {
                self.unwritten_ready -= 1;
            } else if !u.settled {
                self.unwritten_ready_count -= 1;
            }
        }
        result
    }

    /// The end of a queue operation: writes on the caller's thread if the
    /// store (or the broker) holds too much unwritten, else leaves it all
    /// to the sync thread. An error means the messages pushed since the
    /// last flush were not stored (nack them): the ready ones are dropped.
    pub(super) fn flush(&mut self) -> Result<Flushed, StoreError> {
        let persistent = std::mem::take(&mut self.pushed_persistent);
        let batch_from = self.batch_from.take();
        let total = self
            .sync
            .account_unwritten(self.reported_bytes, self.unwritten_bytes);
        self.reported_bytes = self.unwritten_bytes;
        let over = self.unwritten_bytes > self.options.unwritten_limit
            || (self.unwritten_bytes > 0 && total > self.sync.unwritten_limit());
        if over {
            if let Err(e) = self.write_unwritten(self.unwritten.len()) {
                if let Some(from) = batch_from {
                    self.drop_ready_from(from);
                }
                self.report_unwritten();
                return Err(e);
            }
            self.report_unwritten();
        }
        // Acks and delivery marks are small: they go to the ack log now (a
        // crash of the process keeps them; the round syncs the log).
        self.write_acks();
        Ok(Flushed {
            pending: !self.unwritten.is_empty(),
            persistent,
        })
    }

    /// Writes every unwritten message on the caller's thread (their sync
    /// still rides the next round).
    pub(super) fn write_all_now(&mut self) -> Result<(), StoreError> {
        let written = self.write_unwritten(self.unwritten.len());
        self.report_unwritten();
        written
    }

    /// Brings the coordinator's broker-wide count up to date.
    pub(super) fn report_unwritten(&mut self) {
        self.sync
            .account_unwritten(self.reported_bytes, self.unwritten_bytes);
        self.reported_bytes = self.unwritten_bytes;
    }

    /// Drops the ready unwritten messages numbered `from` and up (a batch
    /// that could not be stored).
    fn drop_ready_from(&mut self, from: u64) {
        while let Some(u) = self.unwritten.back() {
            if u.msg.seq < from || self.unwritten.len() <= self.unwritten_ready {
                break;
            }
            let u = self.unwritten.pop_back().expect("just looked");
            self.unwritten_bytes -= u.bytes;
            if !u.settled {
                self.unwritten_ready_count -= 1;
            }
        }
    }
}

/// After a failed write-out, the delivered messages left unwritten are
/// tried again after this.
const WRITE_RETRY: Duration = Duration::from_millis(100);

/// A round leaves nothing unwritten while more ready messages than this
/// are, or more bytes.
const DEFER_READY_MAX: usize = 1024;
const DEFER_BYTES_MAX: usize = 48 << 20;
/// Nor while fewer messages than this, and fewer bytes, are unwritten.
const DEFER_MIN_MESSAGES: usize = 64;
const DEFER_MIN_BYTES: usize = 1 << 20;

/// The memory bound of a store's unwritten messages, by default
/// ([`super::StoreOptions::unwritten_limit`]).
pub const UNWRITTEN_LIMIT: usize = 64 << 20;
