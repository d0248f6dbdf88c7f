//! Where a queue keeps its messages.
//!
//! [`MessageStore`] is the seam between a queue's logic and its storage: the
//! in-memory store below serves transient queues, and the disk-first store
//! (crate `warren-store`) implements the same trait, so neither the queue
//! nor routing changes with the backend.

use std::collections::VecDeque;

use crate::QueuedMessage;

/// A storage failure. The queue reports it; the server decides what the
/// client sees (a nack for a confirmed publish, a logged error otherwise).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("corrupt store: {0}")]
    Corrupt(String),
}

/// A point in the store's write history: once the storage layer reports
/// this ticket synced, everything written before it is on stable storage.
pub type SyncTicket = u64;

/// The messages of one queue: ready ones in publication order, plus what it
/// takes to track delivered ones until they are settled.
pub trait MessageStore: Send {
    /// Appends a newly published message. A store may stage it (buffer its
    /// write) until [`flush`](Self::flush); it counts as ready at once.
    fn push(&mut self, msg: QueuedMessage) -> Result<(), StoreError>;
    /// Writes out what [`push`](Self::push) staged. Returns the sync ticket
    /// that must be reached before the messages pushed since the last flush
    /// may be confirmed, or `None` if they need not wait (transient
    /// messages, or an in-memory store). On error, those messages may be
    /// lost and must not be confirmed.
    fn flush(&mut self) -> Result<Option<SyncTicket>, StoreError> {
        Ok(None)
    }
    /// Whether a confirm of `msg` waits for the disk in this store (a
    /// durable store and a message it keeps across a restart). A consumer
    /// settling such a message before it was synced confirms it sooner
    /// (see [`crate::ConfirmRef`]).
    fn confirms_on_sync(&self, _msg: &crate::Message) -> bool {
        false
    }
    /// Whether the queue has consumers: a store that delays writes may
    /// then expect its ready messages to be delivered, and settled, soon.
    fn set_consumed(&mut self, _consumed: bool) {}
    /// Writes what [`flush`](Self::flush) left to write behind, now (a
    /// transaction's commit must know that its messages were stored).
    fn write_now(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
    /// Takes the oldest ready message for delivery.
    fn pop(&mut self) -> Result<Option<QueuedMessage>, StoreError>;
    /// Puts a delivered message back at its original position.
    fn requeue(&mut self, msg: QueuedMessage);
    /// Forgets a delivered message for good (acked, or rejected without
    /// requeue).
    fn ack(&mut self, msg: &QueuedMessage) -> Result<(), StoreError>;
    /// Number of ready messages.
    fn len(&self) -> usize;
    /// Body bytes of the ready messages, as far as the store knows them
    /// when it is opened (a recovered store); the queue counts from there.
    fn ready_bytes(&self) -> u64 {
        0
    }
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The sequence number of the oldest ready message, if the store knows
    /// it without reading anything (`None`: it does not say).
    fn oldest_ready_seq(&self) -> Option<u64> {
        None
    }
    /// Drops every ready message, returning how many there were.
    fn purge(&mut self) -> Result<usize, StoreError>;
    /// The sequence number the next published message gets (after a
    /// recovery, one past the highest recovered).
    fn next_seq(&self) -> u64 {
        0
    }
    /// Removes whatever the store keeps outside memory (the queue was
    /// deleted).
    fn destroy(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Ready messages held in memory, ordered by sequence number.
#[derive(Debug, Default)]
pub struct MemoryStore {
    ready: VecDeque<QueuedMessage>,
    bytes: u64,
}

impl MessageStore for MemoryStore {
    fn push(&mut self, msg: QueuedMessage) -> Result<(), StoreError> {
        self.bytes += msg.message.body_size();
        self.ready.push_back(msg);
        Ok(())
    }

    fn pop(&mut self) -> Result<Option<QueuedMessage>, StoreError> {
        let m = self.ready.pop_front();
        if let Some(m) = &m {
            self.bytes -= m.message.body_size();
        }
        Ok(m)
    }

    fn ready_bytes(&self) -> u64 {
        self.bytes
    }

    fn requeue(&mut self, msg: QueuedMessage) {
        self.bytes += msg.message.body_size();
        // Requeued messages are almost always older than everything ready,
        // so check the front before searching.
        match self.ready.front() {
            None => self.ready.push_front(msg),
            Some(first) if msg.seq < first.seq => self.ready.push_front(msg),
            _ => {
                let at = self.ready.partition_point(|m| m.seq < msg.seq);
                self.ready.insert(at, msg);
            }
        }
    }

    fn ack(&mut self, _msg: &QueuedMessage) -> Result<(), StoreError> {
        Ok(())
    }

    fn len(&self) -> usize {
        self.ready.len()
    }

    fn oldest_ready_seq(&self) -> Option<u64> {
        self.ready.front().map(|m| m.seq)
    }

    fn purge(&mut self) -> Result<usize, StoreError> {
        let n = self.ready.len();
        self.ready.clear();
        self.bytes = 0;
        Ok(n)
    }
}
