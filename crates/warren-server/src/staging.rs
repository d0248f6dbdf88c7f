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
    confirms: Vec<ConfirmRef>,
}

#[derive(Default)]
pub struct Staging {
    batches: Vec<Batch>,
    staged: usize,
}

impl Staging {
    /// Stages `msg` for `queue`.
    pub fn add(&mut self, queue: &Arc<QueueCell>, msg: &Arc<Message>, confirm: Option<ConfirmRef>) {
        let at = match self
            .batches
            .iter()
            .rposition(|b| Arc::ptr_eq(&b.queue, queue))
        {
            Some(i) => i,
            None => {
                self.batches.push(Batch {
                    queue: Arc::clone(queue),
                    msgs: Vec::new(),
                    confirms: Vec::new(),
                });
                self.batches.len() - 1
            }
        };
        let batch = &mut self.batches[at];
        batch.msgs.push(Arc::clone(msg));
        batch.confirms.extend(confirm);
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
    /// the queue could not store the message (it must be nacked).
    pub fn flush(&mut self, mut settle: impl FnMut(ConfirmRef, Result<SyncTicket, ()>)) {
        self.staged = 0;
        for batch in self.batches.drain(..) {
            let outcome = match batch.queue.publish_batch(batch.msgs) {
                Enqueued::Stored(ticket) => Ok(ticket.unwrap_or(0)),
                Enqueued::QueueDeleted => Ok(0),
                Enqueued::Failed(_) => Err(()),
            };
            for confirm in batch.confirms {
                settle(confirm, outcome);
            }
        }
    }
}
