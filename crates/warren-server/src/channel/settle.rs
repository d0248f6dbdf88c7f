//! A channel's settlements: delivery tags taken off the unacked list, acks
//! buffered per read (`PendingAcks`) and applied queue by queue, rejects,
//! nacks and basic.recover.

use super::*;

/// Settles delivered messages in their queues. Consecutive entries of one
/// queue are settled under one lock.
pub(super) fn settle(entries: impl IntoIterator<Item = (Unacked, Settle)>) {
    let mut batch: Vec<(u64, Settle)> = Vec::new();
    let mut current: Option<Arc<QueueCell>> = None;
    for (e, how) in entries {
        if let Some(c) = &e.consumer {
            c.release_unacked();
        }
        if current.as_ref().is_some_and(|q| !Arc::ptr_eq(q, &e.queue)) {
            if let Some(q) = current.take() {
                q.settle(&batch);
                batch.clear();
            }
        }
        batch.push((e.seq, how));
        current = Some(e.queue);
    }
    if let Some(q) = current {
        q.settle(&batch);
    }
}

/// Settles entries all the same way.
pub(super) fn settle_all(entries: impl IntoIterator<Item = Unacked>, how: Settle) {
    settle(entries.into_iter().map(|e| (e, how)));
}

/// Settlements gathered before the connection must apply them.
const ACKS_LIMIT: usize = 4096;

/// Acks (and rejections without requeue) gathered while a connection
/// handles one read from its client, applied together when the read is
/// handled or before any method other than an ack or a publish: each queue
/// then takes a read's worth of acks in one lock hold and one store write,
/// where one by one a consumer acking every message would cost a lock, a
/// write and a wake-up each. The entries have left their channel's unacked
/// list already, so nothing else can settle them twice.
#[derive(Default)]
pub struct PendingAcks {
    entries: Vec<(Unacked, Settle)>,
    /// Channels whose consumers may get under their prefetch limits.
    channels: Vec<u16>,
}

impl PendingAcks {
    pub(super) fn add(&mut self, channel: u16, entries: Vec<Unacked>, how: Settle) {
        if !self.channels.contains(&channel) {
            self.channels.push(channel);
        }
        self.entries.extend(entries.into_iter().map(|e| (e, how)));
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn is_full(&self) -> bool {
        self.entries.len() >= ACKS_LIMIT
    }

    /// Settles everything gathered, queue by queue, and returns the
    /// channels whose consumers to wake.
    pub fn apply(&mut self) -> std::vec::Drain<'_, u16> {
        // Stable: each queue still takes its acks in the order they came.
        self.entries
            .sort_by_key(|(e, _)| Arc::as_ptr(&e.queue) as usize);
        settle(self.entries.drain(..));
        self.channels.drain(..)
    }
}

impl Channel {
    pub(super) fn take_unacked(
        &mut self,
        tag: u64,
        multiple: bool,
    ) -> Result<Vec<Unacked>, AmqpError> {
        if multiple && tag == 0 {
            return Ok(self.unacked.drain(..).collect());
        }
        let unknown = || AmqpError::precondition_failed(format!("unknown delivery tag {tag}"));
        let pos = self
            .unacked
            .binary_search_by_key(&tag, |e| e.tag)
            .map_err(|_| unknown())?;
        if multiple {
            Ok(self.unacked.drain(..=pos).collect())
        } else {
            Ok(self.unacked.remove(pos).into_iter().collect())
        }
    }

    /// Settles what an ack, reject or nack named: at tx.commit in a
    /// transaction, with the connection's other acks when not requeued,
    /// at once when requeued.
    pub(super) fn settle_or_buffer(
        &mut self,
        ctx: &mut ConnCtx,
        entries: Vec<Unacked>,
        requeue: Option<bool>,
    ) {
        let how = match requeue {
            None => Settle::Ack,
            Some(true) => Settle::Requeue,
            Some(false) => Settle::Discard,
        };
        match self.tx.as_mut() {
            Some(tx) => tx.settles.extend(entries.into_iter().map(|e| (e, how))),
            None if how != Settle::Requeue => ctx.acks.add(self.id, entries, how),
            None => {
                settle_all(entries, how);
                self.wake_consumers();
            }
        }
    }

    pub(super) fn recover(&mut self, requeue: bool) -> Result<(), AmqpError> {
        if !requeue {
            return Err(AmqpError::not_implemented("requeue=false"));
        }
        let entries: Vec<Unacked> = self.unacked.drain(..).collect();
        settle_all(entries, Settle::Requeue);
        self.wake_consumers();
        Ok(())
    }
}
