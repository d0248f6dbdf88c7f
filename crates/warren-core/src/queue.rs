//! A queue's state machine: ready messages, consumers, and the choice of
//! which consumer gets the next message.
//!
//! The state is owned by exactly one holder at a time (the server keeps it
//! behind a per-queue lock); nothing here blocks or performs I/O. Consumers
//! are an opaque handle `C` so the same logic serves the server and tests.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::store::{StoreError, SyncTicket};
use crate::{MemoryStore, Message, MessageStore, QueuedMessage};

pub struct QueueState<C> {
    store: Box<dyn MessageStore>,
    consumers: VecDeque<C>,
    next_seq: u64,
    unacked: usize,
}

impl<C: Clone> Default for QueueState<C> {
    fn default() -> Self {
        Self::new(Box::<MemoryStore>::default())
    }
}

impl<C: Clone> QueueState<C> {
    pub fn new(store: Box<dyn MessageStore>) -> Self {
        QueueState {
            next_seq: store.next_seq(),
            store,
            consumers: VecDeque::new(),
            unacked: 0,
        }
    }

    /// Enqueues a published message at the tail. Returns the sync ticket
    /// its confirmation must wait for, if any.
    pub fn publish(&mut self, message: Arc<Message>) -> Result<Option<SyncTicket>, StoreError> {
        self.publish_batch([message])
    }

    /// Enqueues published messages at the tail, in order, and flushes the
    /// store once for all of them. Returns the sync ticket their
    /// confirmations must wait for, if any. On error none of them may be
    /// confirmed (some may still have been enqueued).
    pub fn publish_batch(
        &mut self,
        messages: impl IntoIterator<Item = Arc<Message>>,
    ) -> Result<Option<SyncTicket>, StoreError> {
        for message in messages {
            let seq = self.next_seq;
            self.next_seq += 1;
            let pushed = self.store.push(QueuedMessage {
                seq,
                message,
                redelivered: false,
            });
            if let Err(err) = pushed {
                // What was staged before the failure still goes out.
                let _ = self.store.flush();
                return Err(err);
            }
        }
        self.store.flush()
    }

    /// Writes out what the store staged (see [`MessageStore::flush`]).
    pub fn flush(&mut self) -> Result<Option<SyncTicket>, StoreError> {
        self.store.flush()
    }

    /// Messages ready for delivery.
    pub fn ready_count(&self) -> usize {
        self.store.len()
    }

    /// Messages delivered and not yet acknowledged.
    pub fn unacked_count(&self) -> usize {
        self.unacked
    }

    pub fn consumer_count(&self) -> usize {
        self.consumers.len()
    }

    pub fn consumers(&self) -> impl Iterator<Item = &C> {
        self.consumers.iter()
    }

    pub fn add_consumer(&mut self, consumer: C) {
        self.consumers.push_back(consumer);
    }

    /// Removes the first consumer `is_it` selects.
    pub fn remove_consumer(&mut self, mut is_it: impl FnMut(&C) -> bool) -> Option<C> {
        let i = self.consumers.iter().position(&mut is_it)?;
        self.consumers.remove(i)
    }

    /// Removes and returns every consumer.
    pub fn take_consumers(&mut self) -> Vec<C> {
        self.consumers.drain(..).collect()
    }

    /// Picks the next message and the consumer that gets it: consumers take
    /// turns (round robin), and one that `can_take` refuses (prefetch full,
    /// flow stopped) is passed over. `None` when nothing is ready or nobody
    /// can take it. The caller reports whether the delivery awaits an ack
    /// through [`QueueState::delivered`].
    pub fn next_delivery(
        &mut self,
        mut can_take: impl FnMut(&C) -> bool,
    ) -> Result<Option<(C, QueuedMessage)>, (C, StoreError)> {
        if self.store.is_empty() {
            return Ok(None);
        }
        for _ in 0..self.consumers.len() {
            let Some(consumer) = self.consumers.pop_front() else {
                break;
            };
            let ok = can_take(&consumer);
            self.consumers.push_back(consumer.clone());
            if ok {
                return match self.store.pop() {
                    Ok(Some(msg)) => Ok(Some((consumer, msg))),
                    Ok(None) => Ok(None),
                    // The consumer's reserved credit must be handed back.
                    Err(e) => Err((consumer, e)),
                };
            }
        }
        Ok(None)
    }

    /// Records that a message taken by [`next_delivery`](Self::next_delivery)
    /// or [`get`](Self::get) now waits for an acknowledgement.
    pub fn delivered(&mut self, needs_ack: bool) {
        if needs_ack {
            self.unacked += 1;
        }
    }

    /// Takes the oldest ready message (basic.get).
    pub fn get(&mut self) -> Result<Option<QueuedMessage>, StoreError> {
        self.store.pop()
    }

    /// Settles a delivered message for good (acked, or rejected without
    /// requeue). `counted`: it was counted by [`delivered`](Self::delivered).
    pub fn ack(&mut self, msg: &QueuedMessage, counted: bool) -> Result<(), StoreError> {
        if counted {
            self.unacked = self.unacked.saturating_sub(1);
        }
        self.store.ack(msg)
    }

    /// Puts a delivered message back at its original position. `counted`
    /// says whether it was counted as unacked by [`delivered`](Self::delivered).
    /// The caller sets `redelivered` when the client may have seen it.
    pub fn requeue(&mut self, msg: QueuedMessage, counted: bool) {
        if counted {
            self.unacked = self.unacked.saturating_sub(1);
        }
        self.store.requeue(msg);
    }

    /// Drops every ready message, returning how many there were.
    pub fn purge(&mut self) -> Result<usize, StoreError> {
        self.store.purge()
    }

    /// Removes the queue's stored messages for good (queue deleted).
    pub fn destroy(&mut self) -> Result<(), StoreError> {
        self.store.destroy()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn msg(body: &'static str) -> Arc<Message> {
        Arc::new(Message {
            exchange: String::new(),
            routing_key: "q".into(),
            properties: Bytes::from_static(&[0, 0]),
            persistent: false,
            headers: None,
            body: Bytes::from_static(body.as_bytes()),
        })
    }

    fn body(m: &QueuedMessage) -> &[u8] {
        &m.message.body
    }

    #[test]
    fn round_robin_and_skip_full_consumers() {
        let mut q: QueueState<u32> = QueueState::default();
        q.add_consumer(1);
        q.add_consumer(2);
        for b in ["a", "b", "c", "d"] {
            q.publish(msg(b)).unwrap();
        }
        let order: Vec<u32> = (0..3)
            .map(|_| q.next_delivery(|c| *c != 3).ok().flatten().unwrap().0)
            .collect();
        assert_eq!(order, vec![1, 2, 1]);
        let (c, m) = q.next_delivery(|c| *c == 1).ok().flatten().unwrap();
        assert_eq!((c, body(&m)), (1, b"d".as_slice()));
        assert!(q.next_delivery(|_| true).ok().flatten().is_none());
    }

    #[test]
    fn requeue_restores_publication_order() {
        let mut q: QueueState<u32> = QueueState::default();
        for b in ["a", "b", "c", "d"] {
            q.publish(msg(b)).unwrap();
        }
        let a = q.get().unwrap().unwrap();
        let b = q.get().unwrap().unwrap();
        let c = q.get().unwrap().unwrap();
        for mut m in [c, a, b] {
            m.redelivered = true;
            q.requeue(m, false);
        }
        let got: Vec<_> = std::iter::from_fn(|| q.get().unwrap()).collect();
        let bodies: Vec<&[u8]> = got.iter().map(body).collect();
        assert_eq!(bodies, vec![b"a".as_slice(), b"b", b"c", b"d"]);
        assert!(got[..3].iter().all(|m| m.redelivered));
        assert!(!got[3].redelivered);
    }
}
