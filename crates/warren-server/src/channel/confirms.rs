//! Publisher confirms of a channel in confirm mode.
//!
//! A publish is confirmed (`basic.ack`) once the broker has taken
//! responsibility for every copy of it that a queue stored: each copy is on
//! stable storage, or a consumer has settled it, or it never needed the
//! disk (a transient message, a transient queue). It is nacked if a queue
//! could not store it or refused it. Confirms go out in publication order,
//! consecutive ones as one `multiple` confirm.
//!
//! Two things release a publish. The sync ticket its queues returned,
//! once the sync thread publishes it: everything the ticket covers is on
//! disk. And the channel's [`ConfirmBook`]: every queue that stores a copy
//! whose confirm waits for the disk tells the book so under its lock
//! (`expect`), and tells it again when a consumer settles that copy before
//! the disk had it (`settled`). A publish whose expected copies were all
//! settled needs no sync: with a consumer keeping up, confirms follow the
//! consumers' acks and never wait for the disk, as RabbitMQ's do. Only
//! copies delivered from the message as published carry the book (a
//! message read back from disk does not), so the ticket is the fallback
//! that always comes.

use std::collections::VecDeque;

use parking_lot::Mutex;
use tokio::sync::mpsc::UnboundedSender;
use warren_core::{ConfirmSink, SyncTicket};
use warren_protocol::{BasicAck, BasicNack, TxCommitOk};

use super::Channel;
use crate::connection::{ConnEvent, Out};

/// The confirm state of a channel in confirm mode.
pub(super) struct Confirms {
    /// Sequence number of the last publish.
    pub seq: u64,
    /// Publishes not yet confirmed, in order: sequence number, the sync
    /// ticket the confirm waits for (0: none), and whether it failed.
    pub pending: VecDeque<(u64, SyncTicket, bool)>,
    /// Shared with the queues the channel publishes to.
    pub book: std::sync::Arc<ConfirmBook>,
}

impl Confirms {
    pub fn new(channel: u16, tx: UnboundedSender<ConnEvent>) -> Self {
        Confirms {
            seq: 0,
            pending: VecDeque::new(),
            book: std::sync::Arc::new(ConfirmBook {
                channel,
                tx,
                state: Mutex::new(BookState::default()),
            }),
        }
    }
}

/// Per publish, the copies still waiting for the disk that queues
/// announced (see the module docs).
pub struct ConfirmBook {
    channel: u16,
    /// The channel's connection, woken when a publish becomes confirmable.
    tx: UnboundedSender<ConnEvent>,
    state: Mutex<BookState>,
}

#[derive(Default)]
struct BookState {
    /// The sequence number of `copies[0]`.
    base: u64,
    copies: VecDeque<Copies>,
    /// A wake-up is on its way to the connection.
    woken: bool,
}

#[derive(Default, Clone, Copy)]
struct Copies {
    /// Copies announced and not settled.
    waiting: u32,
    /// Some copy was announced.
    expected: bool,
    /// A copy could not be written (the confirm is a nack).
    failed: bool,
}

impl BookState {
    fn slot(&mut self, tag: u64) -> Option<&mut Copies> {
        let i = usize::try_from(tag.checked_sub(self.base)?).ok()?;
        if i >= self.copies.len() {
            self.copies.resize(i + 1, Copies::default());
        }
        self.copies.get_mut(i)
    }

    fn get(&self, tag: u64) -> Option<&Copies> {
        let i = usize::try_from(tag.checked_sub(self.base)?).ok()?;
        self.copies.get(i)
    }

    /// Every announced copy of publish `tag` was settled.
    fn released(&self, tag: u64) -> bool {
        self.get(tag)
            .is_some_and(|c| c.expected && c.waiting == 0 && !c.failed)
    }

    /// A copy of publish `tag` was dropped unwritten.
    fn failed(&self, tag: u64) -> bool {
        self.get(tag).is_some_and(|c| c.failed)
    }

    /// Forgets the publishes before `tag` (confirmed).
    fn forget_below(&mut self, tag: u64) {
        while self.base < tag {
            if self.copies.pop_front().is_none() {
                self.base = tag;
                break;
            }
            self.base += 1;
        }
    }
}

impl ConfirmSink for ConfirmBook {
    fn expect(&self, tags: &[u64]) {
        let mut st = self.state.lock();
        for &tag in tags {
            if let Some(c) = st.slot(tag) {
                c.waiting += 1;
                c.expected = true;
            }
        }
    }

    fn settled(&self, tags: &[u64]) {
        let mut st = self.state.lock();
        let mut due = false;
        for &tag in tags {
            if tag < st.base {
                continue;
            }
            if let Some(c) = st.slot(tag) {
                c.waiting = c.waiting.saturating_sub(1);
                due |= c.expected && c.waiting == 0;
            }
        }
        if due {
            self.wake(st);
        }
    }

    fn failed(&self, tags: &[u64]) {
        let mut st = self.state.lock();
        for &tag in tags {
            if let Some(c) = st.slot(tag) {
                c.failed = true;
            }
        }
        self.wake(st);
    }
}

impl ConfirmBook {
    /// Wakes the connection, once until it has looked.
    fn wake(&self, mut st: parking_lot::MutexGuard<'_, BookState>) {
        if !st.woken {
            st.woken = true;
            drop(st);
            let _ = self.tx.send(ConnEvent::ConfirmsDue(self.channel));
        }
    }
}

impl Channel {
    /// Records the outcome of a staged publish for its confirm: the sync
    /// ticket it waits for, or a failure (nack). A message routed to
    /// several queues gets one outcome per queue.
    pub fn settle_confirm(&mut self, seq: u64, outcome: Result<SyncTicket, ()>) {
        let Some(c) = self.confirm.as_mut() else {
            return;
        };
        let Some(&(first, _, _)) = c.pending.front() else {
            return;
        };
        let Some(entry) = seq
            .checked_sub(first)
            .and_then(|i| c.pending.get_mut(i as usize))
            .filter(|e| e.0 == seq)
        else {
            return;
        };
        match outcome {
            Ok(ticket) => entry.1 = entry.1.max(ticket),
            Err(()) => entry.2 = true,
        }
    }

    /// Sends the confirms (and a deferred tx.commit-ok) that are due: the
    /// messages are on stable storage as of `synced`, or consumers settled
    /// every copy that waited for the disk. Consecutive acks (or nacks) go
    /// out as one `multiple` confirm. Returns true while anything still
    /// waits. Adds the number of publishes acked to `confirmed`.
    pub fn flush_confirms(
        &mut self,
        out: &mut Out,
        synced: SyncTicket,
        confirmed: &mut u64,
    ) -> bool {
        let mut waiting = false;
        if let Some(tx) = self.tx.as_mut() {
            if let Some(t) = tx.commit_waits_for {
                if t <= synced {
                    tx.commit_waits_for = None;
                    out.method(self.id, TxCommitOk {});
                } else {
                    waiting = true;
                }
            }
        }
        let Some(c) = self.confirm.as_mut() else {
            return waiting;
        };
        // (first seq, last seq, nack) of the run being built.
        let mut run: Option<(u64, u64, bool)> = None;
        let id = self.id;
        let mut emit = |run: (u64, u64, bool)| {
            let (first, last, nack) = run;
            let multiple = last > first;
            if nack {
                out.method(
                    id,
                    BasicNack {
                        delivery_tag: last,
                        multiple,
                        requeue: false,
                    },
                );
            } else {
                out.method(
                    id,
                    BasicAck {
                        delivery_tag: last,
                        multiple,
                    },
                );
            }
        };
        let mut book = c.book.state.lock();
        book.woken = false;
        while let Some(&(seq, ticket, failed)) = c.pending.front() {
            let failed = failed || book.failed(seq);
            if !failed && ticket > synced && !book.released(seq) {
                break;
            }
            c.pending.pop_front();
            if !failed {
                *confirmed += 1;
            }
            run = match run {
                Some((first, _, nack)) if nack == failed => Some((first, seq, nack)),
                Some(done) => {
                    emit(done);
                    Some((seq, seq, failed))
                }
                None => Some((seq, seq, failed)),
            };
        }
        let next = c.pending.front().map_or(c.seq + 1, |p| p.0);
        book.forget_below(next);
        drop(book);
        if let Some(done) = run {
            emit(done);
        }
        waiting || !c.pending.is_empty()
    }
}
