//! Publishes routed while a connection handles one read from its client,
//! waiting to be enqueued.
//!
//! Enqueueing message by message would take each target queue's lock (and
//! flush its store) once per message. Instead a connection stages what it
//! routes and, when the read is handled (or before it handles any method
//! other than a publish, so every method sees the publishes sent before
//! it), enqueues each queue's share in one lock hold. Per queue, messages
//! keep their publication order; confirms learn the outcome of every queue
//! their message went to before they can be sent.

use std::sync::Arc;

use ahash::AHashMap;
use warren_core::{Message, SyncTicket};

use crate::queue::{Enqueued, QueueCell};

/// Messages staged before the connection must flush, so staging stays
/// small even when one read holds a great many publishes.
const LIMIT: usize = 4096;

/// A publish waiting for a confirm: its channel and sequence number.
pub type ConfirmRef = (u16, u64);

struct Batch {
    queue: Arc<QueueCell>,
    msgs: Vec<Arc<Message>>,
    /// The confirms waiting on this batch, with their message's position.
    confirms: Vec<(usize, ConfirmRef)>,
}

/// Batches searched one by one before an index by queue is kept.
const SCAN: usize = 8;

#[derive(Default)]
pub struct Staging {
    batches: Vec<Batch>,
    /// Batch positions by queue address (the batch holds the queue, so the
    /// address stays its own), once there are more than [`SCAN`] batches
    /// (a read that publishes to many queues).
    index: AHashMap<usize, usize>,
    staged: usize,
}

impl Staging {
    /// Stages `msg` for `queue`.
    pub fn add(&mut self, queue: &Arc<QueueCell>, msg: &Arc<Message>, confirm: Option<ConfirmRef>) {
        let found = if self.batches.len() <= SCAN {
            self.batches
                .iter()
                .rposition(|b| Arc::ptr_eq(&b.queue, queue))
        } else {
            if self.index.is_empty() {
                for (i, b) in self.batches.iter().enumerate() {
                    self.index.insert(Arc::as_ptr(&b.queue) as usize, i);
                }
            }
            self.index.get(&(Arc::as_ptr(queue) as usize)).copied()
        };
        let at = match found {
            Some(i) => i,
            None => {
                self.batches.push(Batch {
                    queue: Arc::clone(queue),
                    msgs: Vec::new(),
                    confirms: Vec::new(),
                });
                let i = self.batches.len() - 1;
                if !self.index.is_empty() {
                    self.index.insert(Arc::as_ptr(queue) as usize, i);
                }
                i
            }
        };
        let batch = &mut self.batches[at];
        if let Some(confirm) = confirm {
            batch.confirms.push((batch.msgs.len(), confirm));
        }
        batch.msgs.push(Arc::clone(msg));
        self.staged += 1;
    }

    pub fn is_empty(&self) -> bool {
        self.staged == 0
    }

    /// Whether the connection should flush before staging more.
    pub fn is_full(&self) -> bool {
        self.staged >= LIMIT
    }

    /// Enqueues everything staged, then reports to `settle` the outcome
    /// for each staged confirm: the sync ticket it waits for, or `Err` if
    /// the queue could not store the message or refused it (it must be
    /// nacked).
    pub fn flush(&mut self, mut settle: impl FnMut(ConfirmRef, Result<SyncTicket, ()>)) {
        self.staged = 0;
        self.index.clear();
        for batch in self.batches.drain(..) {
            let (outcome, rejected) = match batch.queue.publish_batch(&batch.msgs) {
                Enqueued::Stored(ticket, rejected) => (Ok(ticket.unwrap_or(0)), rejected),
                Enqueued::QueueDeleted => (Ok(0), Vec::new()),
                Enqueued::Failed(_) => (Err(()), Vec::new()),
            };
            for (at, confirm) in batch.confirms {
                let refused = !rejected.is_empty() && rejected.binary_search(&at).is_ok();
                settle(confirm, if refused { Err(()) } else { outcome });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::QueueSpec;
    use bytes::Bytes;
    use warren_core::MemoryStore;
    use warren_protocol::FieldTable;

    fn queue(name: &str) -> Arc<QueueCell> {
        let spec = QueueSpec {
            name: name.into(),
            id: 0,
            durable: false,
            exclusive_owner: None,
            auto_delete: false,
            arguments: FieldTable::new(),
        };
        QueueCell::with_store(spec, Box::<MemoryStore>::default())
    }

    fn message(n: u64) -> Arc<Message> {
        Arc::new(Message {
            exchange: String::new(),
            routing_key: String::new(),
            properties: Bytes::from_static(&[0, 0]),
            persistent: false,
            headers: None,
            expiration: None,
            priority: 0,
            bcc: Vec::new(),
            body: Bytes::from(n.to_string()),
            confirm: None,
        })
    }

    /// Many queues in one read: each gets its messages in order, and every
    /// staged confirm hears once per queue its message went to.
    #[test]
    fn many_queues_keep_order_and_every_confirm_is_settled() {
        let queues: Vec<_> = (0..20).map(|i| queue(&format!("q{i}"))).collect();
        let mut staging = Staging::default();
        for n in 0..200u64 {
            let msg = message(n);
            // Every message to two queues, in an order that revisits them.
            for q in [
                &queues[(n % 20) as usize],
                &queues[((n * 7 + 3) % 20) as usize],
            ] {
                staging.add(q, &msg, Some((1, n + 1)));
            }
        }
        let mut settled = vec![0u32; 200];
        staging.flush(|(channel, seq), outcome| {
            assert_eq!(channel, 1);
            assert_eq!(outcome, Ok(0));
            settled[(seq - 1) as usize] += 1;
        });
        assert!(settled.iter().all(|&n| n == 2), "{settled:?}");
        assert!(staging.is_empty());
        for q in &queues {
            let mut inner = q.lock();
            let mut last = None;
            let mut fx = warren_core::Effects::default();
            while let Some((m, _)) = inner.queue.get(0, false, &mut fx).expect("get") {
                let n: u64 = std::str::from_utf8(&m.message.body)
                    .expect("utf-8")
                    .parse()
                    .expect("number");
                assert!(last.is_none_or(|l| l < n), "order in {}", q.name());
                last = Some(n);
            }
            assert!(last.is_some());
        }
    }
}
