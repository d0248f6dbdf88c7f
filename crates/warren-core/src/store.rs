//! Where a queue keeps its ready messages.
//!
//! [`MessageStore`] is the seam between a queue's logic and its storage: the
//! in-memory store below serves transient queues today, and a disk-first
//! store implements the same trait without the queue or routing changing.

use std::collections::VecDeque;

use crate::QueuedMessage;

/// The ready (not yet delivered) messages of one queue, in publication
/// order.
pub trait MessageStore: Send {
    /// Appends a newly published message.
    fn push(&mut self, msg: QueuedMessage);
    /// Takes the oldest ready message.
    fn pop(&mut self) -> Option<QueuedMessage>;
    /// Puts a delivered message back at its original position.
    fn requeue(&mut self, msg: QueuedMessage);
    /// Number of ready messages.
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Drops every ready message, returning how many there were.
    fn purge(&mut self) -> usize;
}

/// Ready messages held in memory, ordered by sequence number.
#[derive(Debug, Default)]
pub struct MemoryStore {
    ready: VecDeque<QueuedMessage>,
}

impl MessageStore for MemoryStore {
    fn push(&mut self, msg: QueuedMessage) {
        self.ready.push_back(msg);
    }

    fn pop(&mut self) -> Option<QueuedMessage> {
        self.ready.pop_front()
    }

    fn requeue(&mut self, msg: QueuedMessage) {
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

    fn len(&self) -> usize {
        self.ready.len()
    }

    fn purge(&mut self) -> usize {
        let n = self.ready.len();
        self.ready.clear();
        n
    }
}
