//! [`PriorityStore`]: the ready messages of a priority queue
//! (`x-max-priority`), one store per priority level behind the one
//! [`MessageStore`] seam, as RabbitMQ keeps one backing queue per priority.
//!
//! A message goes to the level of its `priority` property (0 if absent,
//! the queue's maximum if above it); the highest non-empty level is served
//! first, and within a level messages keep publication order, requeued ones
//! included. Each level may be any store (memory, spill, disk), so a durable
//! priority queue is a directory of disk stores, one per level.

use crate::{Message, MessageStore, QueuedMessage, StoreError, SyncTicket};

pub struct PriorityStore {
    /// Index = priority; the last is the queue's maximum.
    levels: Vec<Box<dyn MessageStore>>,
    /// Levels pushed to since the last flush.
    dirty: Vec<bool>,
}

impl PriorityStore {
    /// A store over `levels`, one per priority 0..=max (at least one).
    pub fn new(levels: Vec<Box<dyn MessageStore>>) -> Self {
        assert!(!levels.is_empty(), "a priority store needs a level");
        PriorityStore {
            dirty: vec![false; levels.len()],
            levels,
        }
    }

    fn level(&self, msg: &Message) -> usize {
        usize::from(msg.priority).min(self.levels.len() - 1)
    }
}

impl MessageStore for PriorityStore {
    /// The oldest over the levels, if every level holding messages knows
    /// its own.
    fn oldest_ready_seq(&self) -> Option<u64> {
        let mut oldest: Option<u64> = None;
        for level in self.levels.iter().filter(|l| !l.is_empty()) {
            let seq = level.oldest_ready_seq()?;
            oldest = Some(oldest.map_or(seq, |o| o.min(seq)));
        }
        oldest
    }

    fn push(&mut self, msg: QueuedMessage) -> Result<(), StoreError> {
        let l = self.level(&msg.message);
        self.dirty[l] = true;
        self.levels[l].push(msg)
    }

    fn write_now(&mut self) -> Result<(), StoreError> {
        for level in &mut self.levels {
            level.write_now()?;
        }
        Ok(())
    }

    fn set_consumed(&mut self, consumed: bool) {
        for level in &mut self.levels {
            level.set_consumed(consumed);
        }
    }

    fn confirms_on_sync(&self, msg: &Message) -> bool {
        self.levels[self.level(msg)].confirms_on_sync(msg)
    }

    fn flush(&mut self) -> Result<Option<SyncTicket>, StoreError> {
        let mut ticket: Option<SyncTicket> = None;
        let mut failed = None;
        for (l, dirty) in self.dirty.iter_mut().enumerate() {
            if std::mem::take(dirty) {
                match self.levels[l].flush() {
                    Ok(t) => ticket = ticket.max(t),
                    Err(e) => failed = Some(e),
                }
            } else if let Err(e) = self.levels[l].flush() {
                // Acks and delivery marks staged on a level.
                failed = Some(e);
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(ticket),
        }
    }

    fn pop(&mut self) -> Result<Option<QueuedMessage>, StoreError> {
        for level in self.levels.iter_mut().rev() {
            if !level.is_empty() {
                if let Some(m) = level.pop()? {
                    return Ok(Some(m));
                }
            }
        }
        Ok(None)
    }

    fn requeue(&mut self, msg: QueuedMessage) {
        let l = self.level(&msg.message);
        self.levels[l].requeue(msg);
    }

    fn ack(&mut self, msg: &QueuedMessage) -> Result<(), StoreError> {
        let l = self.level(&msg.message);
        self.levels[l].ack(msg)
    }

    fn len(&self) -> usize {
        self.levels.iter().map(|l| l.len()).sum()
    }

    fn ready_bytes(&self) -> u64 {
        self.levels.iter().map(|l| l.ready_bytes()).sum()
    }

    fn purge(&mut self) -> Result<usize, StoreError> {
        let mut n = 0;
        for level in &mut self.levels {
            n += level.purge()?;
        }
        Ok(n)
    }

    fn next_seq(&self) -> u64 {
        self.levels.iter().map(|l| l.next_seq()).max().unwrap_or(0)
    }

    fn destroy(&mut self) -> Result<(), StoreError> {
        let mut result = Ok(());
        for level in &mut self.levels {
            if let Err(e) = level.destroy() {
                result = Err(e);
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;
    use bytes::Bytes;
    use std::sync::Arc;

    fn queued(seq: u64, priority: u8) -> QueuedMessage {
        QueuedMessage {
            seq,
            message: Arc::new(Message {
                exchange: String::new(),
                routing_key: String::new(),
                properties: Bytes::from_static(&[0, 0]),
                persistent: false,
                headers: None,
                expiration: None,
                priority,
                bcc: Vec::new(),
                body: Bytes::from_static(b"x"),
                confirm: None,
            }),
            redelivered: false,
            expires_at: None,
            delivery_count: 0,
        }
    }

    #[test]
    fn highest_level_first_publication_order_within_and_requeue_in_place() {
        let levels = (0..=3).map(|_| Box::<MemoryStore>::default() as Box<dyn MessageStore>);
        let mut s = PriorityStore::new(levels.collect());
        for (seq, p) in [(0, 0), (1, 2), (2, 9), (3, 2), (4, 1)] {
            s.push(queued(seq, p)).unwrap();
        }
        assert_eq!(s.len(), 5);
        let first = s.pop().unwrap().unwrap();
        let second = s.pop().unwrap().unwrap();
        // 9 is above the maximum (3) and counts as 3.
        assert_eq!((first.seq, second.seq), (2, 1));
        s.requeue(first);
        let order: Vec<u64> = std::iter::from_fn(|| s.pop().unwrap().map(|m| m.seq)).collect();
        assert_eq!(order, vec![2, 3, 4, 0]);
        assert_eq!(
            s.next_seq(),
            0,
            "memory levels do not track sequence numbers"
        );
    }
}
