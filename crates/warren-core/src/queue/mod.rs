//! A queue as one deterministic state machine: commands in, effects out.
//!
//! [`QueueState`] owns everything a queue is: its ready messages (behind a
//! [`MessageStore`]), the messages checked out to consumers or to
//! `basic.get` until they are settled, its consumers with their priorities
//! and prefetch windows, its length limits, message deadlines and idle
//! deadline. Each command (publish, deliver, get, consume, cancel, ack,
//! reject, purge, tick, delete) takes the time as an argument and reports
//! what the runtime must do in [`Effects`]: send these messages to these
//! consumers, dead-letter those, cancel consumers, wake the queue at a
//! time, delete the queue. Nothing here reads a clock, blocks or does I/O
//! other than through the store, so the same machine can later run on every
//! replica of a replicated queue.
//!
//! One thing stays outside: the credit a consumer's *channel* and
//! connection grant (channel flow, channel-wide prefetch, a connection that
//! is behind with its writes). It spans queues, so the runtime answers it
//! through the `gate` passed to [`QueueState::deliver`], which reserves the
//! credit of each delivery it allows.
//!
//! Expiry follows RabbitMQ's classic queues: messages leave by expiry at
//! the head only. A message that expired behind a live one still counts as
//! ready, but is dropped (dead-lettered) the moment it reaches the head,
//! and is never delivered or returned by `basic.get`.

mod ages;
mod config;
mod consumers;

use std::sync::Arc;

use ahash::AHashMap;

use ages::EnqueueTimes;
pub use config::{Overflow, QueueConfig, QueueKind};
pub use consumers::{ConsumerSpec, Consumers};

use crate::dead_letter::Reason;
use crate::store::{StoreError, SyncTicket};
use crate::{ConfirmRef, MemoryStore, Message, MessageStore, QueuedMessage};

/// A message handed out and not yet settled.
#[derive(Debug, Clone)]
pub struct CheckedOut {
    pub msg: QueuedMessage,
    /// The consumer it went to; `None` for `basic.get`.
    pub consumer: Option<u64>,
    /// When it was handed out (ms since the Unix epoch).
    pub delivered_at: u64,
}

/// What a command asks the runtime to do. Reused across commands: the
/// runtime drains what it carried out.
#[derive(Debug)]
pub struct Effects<C> {
    /// Send these messages to these consumers, in order.
    pub deliveries: Vec<(C, QueuedMessage)>,
    /// Republish these messages to the queue's dead-letter exchange (the
    /// queue has one), with these reasons.
    pub dead_letters: Vec<(Arc<Message>, Reason)>,
    /// These consumers were cancelled by the queue (it was deleted).
    pub cancelled: Vec<C>,
    /// Return the credit reserved for these consumers: a delivery the gate
    /// allowed could not be made.
    pub refunds: Vec<C>,
    /// Store failures met on the way (logged by the runtime).
    pub errors: Vec<StoreError>,
    /// Run [`QueueState::tick`] at this time (ms since the Unix epoch).
    pub wake_at: Option<u64>,
    /// The queue's idle deadline (`x-expires`) passed: delete it.
    pub delete: bool,
    /// Copies just stored of messages whose publishers wait for a confirm
    /// that the store gives only once they are on disk: tell each
    /// publisher ([`ConfirmSink::expect`](crate::ConfirmSink::expect))
    /// before the lock is released.
    pub expected: Vec<ConfirmRef>,
    /// Consumers settled such copies before the disk had them: tell each
    /// publisher ([`ConfirmSink::settled`](crate::ConfirmSink::settled)).
    pub settled: Vec<ConfirmRef>,
}

impl<C> Default for Effects<C> {
    fn default() -> Self {
        Effects {
            deliveries: Vec::new(),
            dead_letters: Vec::new(),
            cancelled: Vec::new(),
            refunds: Vec::new(),
            errors: Vec::new(),
            wake_at: None,
            delete: false,
            expected: Vec::new(),
            settled: Vec::new(),
        }
    }
}

impl<C> Effects<C> {
    /// Whether anything besides deliveries, confirms and the timer must be
    /// carried out.
    pub fn has_work(&self) -> bool {
        !self.dead_letters.is_empty()
            || !self.cancelled.is_empty()
            || !self.refunds.is_empty()
            || !self.errors.is_empty()
            || self.delete
    }
}

/// What became of a batch of publishes.
#[derive(Debug)]
pub struct Published {
    /// The sync ticket the accepted messages' confirms wait for; an error
    /// means none of them may be confirmed (some may still be enqueued).
    pub stored: Result<Option<SyncTicket>, StoreError>,
    /// Positions (in the batch) of publishes the queue refused because it
    /// is full (`x-overflow` reject-publish): nack them.
    pub rejected: Vec<usize>,
}

pub struct QueueState<C> {
    config: QueueConfig,
    store: Box<dyn MessageStore>,
    /// The oldest ready message, taken from the store to look at its
    /// deadline; it still counts as ready.
    head: Option<QueuedMessage>,
    consumers: Consumers<C>,
    checked_out: AHashMap<u64, CheckedOut>,
    next_seq: u64,
    /// Body bytes of the ready messages (head included).
    ready_bytes: u64,
    /// At most this many messages in the store carry a deadline: while it
    /// is 0, the head need not be looked at.
    may_expire: usize,
    /// The last time the queue was used (declared, consumed from, got
    /// from), for `x-expires`.
    last_used: u64,
    /// When the ready messages were enqueued, coarsely.
    enqueue_times: EnqueueTimes,
    /// No ready message has a smaller sequence number.
    ready_floor: u64,
}

impl<C: Clone> Default for QueueState<C> {
    fn default() -> Self {
        Self::new(QueueConfig::default(), Box::<MemoryStore>::default(), 0)
    }
}

impl<C: Clone> QueueState<C> {
    /// A queue over `store` (possibly recovered, holding messages), created
    /// or opened at `now`.
    pub fn new(config: QueueConfig, store: Box<dyn MessageStore>, now: u64) -> Self {
        let mut enqueue_times = EnqueueTimes::default();
        if !store.is_empty() {
            // Recovered messages count as enqueued now.
            enqueue_times.enqueued(0, now, || 0);
        }
        QueueState {
            enqueue_times,
            ready_floor: 0,
            consumers: if config.kind == QueueKind::Quorum {
                Consumers::new(config.single_active_consumer).reporting_active_only()
            } else {
                Consumers::new(config.single_active_consumer)
            },
            config,
            next_seq: store.next_seq(),
            ready_bytes: store.ready_bytes(),
            may_expire: store.len(),
            store,
            head: None,
            checked_out: AHashMap::new(),
            last_used: now,
        }
    }

    pub fn config(&self) -> &QueueConfig {
        &self.config
    }

    // ----- queries -------------------------------------------------------

    /// Messages ready for delivery.
    pub fn ready_count(&self) -> usize {
        self.store.len() + usize::from(self.head.is_some())
    }

    /// Body bytes of the ready messages.
    pub fn ready_bytes(&self) -> u64 {
        self.ready_bytes
    }

    /// Messages delivered and not yet settled.
    pub fn unacked_count(&self) -> usize {
        self.checked_out.len()
    }

    pub fn consumer_count(&self) -> usize {
        self.consumers.len()
    }

    /// When the oldest ready message was enqueued (ms since the Unix
    /// epoch; at the latest, see [`ages`]), `None` without ready messages.
    /// A priority queue may report an older time than its oldest: it
    /// hands out newer messages first.
    pub fn oldest_ready_enqueued_at(&self) -> Option<u64> {
        if self.ready_count() == 0 {
            return None;
        }
        self.enqueue_times.enqueued_at(self.ready_floor)
    }

    /// When the message that has waited longest for its settlement was
    /// handed out, `None` if none is outstanding. Looks at every
    /// outstanding message: for metrics, not for the message path.
    pub fn oldest_unacked_delivered_at(&self) -> Option<u64> {
        self.checked_out.values().map(|co| co.delivered_at).min()
    }

    /// Whether consumer `id` is served (false for a single-active-consumer
    /// queue's waiting ones).
    pub fn is_consumer_active(&self, id: u64) -> bool {
        self.consumers.is_active(id)
    }

    /// The consumer count queue.declare-ok reports (see
    /// [`Consumers::reported_len`]).
    pub fn reported_consumer_count(&self) -> usize {
        self.consumers.reported_len()
    }

    pub fn consumers(&self) -> impl Iterator<Item = &C> {
        self.consumers.handles()
    }

    pub fn consumer(&self, id: u64) -> Option<&C> {
        self.consumers.get(id)
    }

    /// Whether a consumer subscribed as exclusive holds the queue.
    pub fn has_exclusive_consumer(&self) -> bool {
        self.consumers.any_exclusive()
    }

    /// Whether basic.consume with `exclusive` must be refused: the queue
    /// has consumers, or single active consumer (RabbitMQ refuses both).
    pub fn refuses_exclusive_consumer(&self) -> bool {
        !self.consumers.is_empty() || self.consumers.is_single_active()
    }

    /// The checked-out message `seq`, if it is.
    pub fn checked_out(&self, seq: u64) -> Option<&CheckedOut> {
        self.checked_out.get(&seq)
    }

    /// When the queue next needs a [`tick`](Self::tick): the head's
    /// deadline, or the idle deadline while it has no consumer.
    pub fn next_deadline(&self) -> Option<u64> {
        let head = self.head.as_ref().and_then(|m| m.expires_at);
        let idle = self
            .config
            .expires
            .filter(|_| self.consumers.is_empty())
            .map(|e| self.last_used.saturating_add(e));
        match (head, idle) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    // ----- commands ------------------------------------------------------

    /// Enqueues published messages in order and flushes the store once,
    /// delivering to consumers `gate` lets take them. Refused ones (a full
    /// queue that rejects publishes) are reported by position.
    pub fn publish_batch(
        &mut self,
        msgs: &[Arc<Message>],
        now: u64,
        mut gate: impl FnMut(&C) -> bool,
        fx: &mut Effects<C>,
    ) -> Published {
        let mut rejected = Vec::new();
        let limited = self.config.has_length_limit();
        for (i, msg) in msgs.iter().enumerate() {
            if limited && self.refuses(msg) {
                if self.config.overflow == Overflow::RejectPublishDlx {
                    self.dead_letter(Arc::clone(msg), Reason::Maxlen, fx);
                }
                rejected.push(i);
                continue;
            }
            if let Err(err) = self.enqueue(Arc::clone(msg), now) {
                // What was staged before the failure still goes out.
                let _ = self.store.flush();
                return Published {
                    stored: Err(err),
                    rejected,
                };
            }
            if let Some(confirm) = &msg.confirm {
                if self.store.confirms_on_sync(msg) {
                    fx.expected.push(confirm.clone());
                }
            }
            if limited {
                // As RabbitMQ: a consumer gets the message first, then the
                // limit drops from the head.
                self.deliver(now, &mut gate, fx);
                self.drop_over_limit(fx);
            }
        }
        let stored = self.store.flush();
        self.deliver(now, &mut gate, fx);
        Published { stored, rejected }
    }

    /// Writes out what the store staged (see [`MessageStore::flush`]).
    pub fn flush(&mut self) -> Result<Option<SyncTicket>, StoreError> {
        self.store.flush()
    }

    /// Writes now what the store would write behind (see
    /// [`MessageStore::write_now`]).
    pub fn write_now(&mut self) -> Result<(), StoreError> {
        self.store.write_now()
    }

    /// Hands ready messages to consumers, in turn, while `gate` grants
    /// credit; drops what expired on the way. Returns true if messages
    /// remain that consumers were passed over for (the runtime may flag
    /// them and try again, so a credit freed meanwhile is not missed).
    pub fn deliver(
        &mut self,
        now: u64,
        mut gate: impl FnMut(&C) -> bool,
        fx: &mut Effects<C>,
    ) -> bool {
        let mut stalled = false;
        while !self.consumers.is_empty() {
            // A message whose deadline is now may still be handed over in
            // the command that enqueued it (TTL 0 reaches a waiting consumer).
            if let Err(err) = self.expire(now, false, fx) {
                fx.errors.push(err);
                break;
            }
            if self.ready_count() == 0 {
                break;
            }
            let Some((id, handle, no_ack)) = self.consumers.next(&mut gate) else {
                stalled = true;
                break;
            };
            let msg = match self.take_head() {
                Ok(Some(m)) => m,
                Ok(None) => {
                    fx.refunds.push(handle);
                    fx.errors.push(StoreError::Corrupt(
                        "fewer ready messages than counted".into(),
                    ));
                    break;
                }
                Err(err) => {
                    fx.refunds.push(handle);
                    fx.errors.push(err);
                    break;
                }
            };
            if no_ack {
                if let Err(err) = self.store.ack(&msg) {
                    fx.errors.push(err);
                }
                self.consumed(&msg, fx);
            } else {
                self.consumers.checked_out(id);
                self.checked_out.insert(
                    msg.seq,
                    CheckedOut {
                        msg: msg.clone(),
                        consumer: Some(id),
                        delivered_at: now,
                    },
                );
            }
            let msg = self.as_delivered(msg);
            fx.deliveries.push((handle, msg));
        }
        if let Err(err) = self.expire(now, true, fx) {
            fx.errors.push(err);
        }
        self.schedule(fx);
        stalled
    }

    /// basic.get: takes the oldest ready message that has not expired,
    /// checked out until settled when `needs_ack`. Returns it with the
    /// number of messages still ready.
    pub fn get(
        &mut self,
        now: u64,
        needs_ack: bool,
        fx: &mut Effects<C>,
    ) -> Result<Option<(QueuedMessage, u32)>, StoreError> {
        self.last_used = now;
        self.expire(now, true, fx)?;
        let got = self.take_head()?;
        if let Some(msg) = &got {
            if needs_ack {
                self.checked_out.insert(
                    msg.seq,
                    CheckedOut {
                        msg: msg.clone(),
                        consumer: None,
                        delivered_at: now,
                    },
                );
            } else {
                self.store.ack(msg)?;
                self.consumed(msg, fx);
            }
            // What expired behind it is now at the head: dropped before
            // get-ok counts what remains, as in RabbitMQ.
            self.expire(now, true, fx)?;
        }
        self.schedule(fx);
        Ok(got.map(|m| (self.as_delivered(m), self.ready_count() as u32)))
    }

    /// basic.consume. The caller checked exclusivity
    /// ([`has_exclusive_consumer`](Self::has_exclusive_consumer)).
    pub fn consume(&mut self, id: u64, handle: C, spec: ConsumerSpec, now: u64) {
        self.consumers.add(id, handle, spec);
        self.store.set_consumed(true);
        self.last_used = now;
    }

    /// basic.cancel (or the consumer's channel went away): its checked-out
    /// messages stay checked out until its channel settles them.
    pub fn cancel(&mut self, id: u64, now: u64, fx: &mut Effects<C>) -> Option<C> {
        let c = self.consumers.remove(id);
        self.store.set_consumed(!self.consumers.is_empty());
        self.last_used = now;
        self.schedule(fx);
        c
    }

    /// The queue was declared again (it counts as use for `x-expires`).
    pub fn touch(&mut self, now: u64, fx: &mut Effects<C>) {
        self.last_used = now;
        self.schedule(fx);
    }

    /// The queue's configuration changed (a policy was set, changed or
    /// cleared). New limits apply at once: ready messages over a lower
    /// length limit are dropped from the head (dead-lettered, reason
    /// `maxlen`); an idle deadline counts from the last use; messages keep
    /// the deadlines they were enqueued with, as in RabbitMQ.
    pub fn reconfigure(&mut self, config: QueueConfig, now: u64, fx: &mut Effects<C>) {
        self.config = config;
        if let Err(err) = self.expire(now, false, fx) {
            fx.errors.push(err);
        }
        self.drop_over_limit(fx);
        self.schedule(fx);
    }

    /// Settles checked-out message `seq` for good (acked).
    pub fn ack(&mut self, seq: u64, fx: &mut Effects<C>) -> Result<(), StoreError> {
        match self.checked_out.remove(&seq) {
            Some(co) => {
                if let Some(id) = co.consumer {
                    self.consumers.settled(id);
                }
                self.consumed(&co.msg, fx);
                self.store.ack(&co.msg)
            }
            None => Ok(()),
        }
    }

    /// A consumer is done with `msg` (acked it, rejected it, or took it
    /// without ack): if its publisher waits for a confirm that this queue's
    /// store would give only once the message is on disk, that copy no
    /// longer needs the disk.
    fn consumed(&self, msg: &QueuedMessage, fx: &mut Effects<C>) {
        if let Some(confirm) = &msg.message.confirm {
            if self.store.confirms_on_sync(&msg.message) {
                fx.settled.push(confirm.clone());
            }
        }
    }

    /// Rejects checked-out message `seq`: back to its original position,
    /// marked redelivered, when `requeue`; dead-lettered (reason
    /// `rejected`) or dropped otherwise.
    pub fn reject(
        &mut self,
        seq: u64,
        requeue: bool,
        fx: &mut Effects<C>,
    ) -> Result<(), StoreError> {
        let Some(co) = self.checked_out.remove(&seq) else {
            return Ok(());
        };
        if let Some(id) = co.consumer {
            self.consumers.settled(id);
        }
        if !requeue {
            self.consumed(&co.msg, fx);
            self.store.ack(&co.msg)?;
            self.dead_letter(co.msg.message, Reason::Rejected, fx);
            return Ok(());
        }
        let mut msg = co.msg;
        if self.config.counts_deliveries() {
            msg.delivery_count = msg.delivery_count.saturating_add(1);
            if self
                .config
                .delivery_limit
                .is_some_and(|limit| u64::from(msg.delivery_count) > limit)
            {
                self.consumed(&msg, fx);
                self.store.ack(&msg)?;
                self.dead_letter(msg.message, Reason::DeliveryLimit, fx);
                return Ok(());
            }
        }
        self.return_to_ready(msg, true);
        // Back at the head, it may take the queue past a length limit.
        self.drop_over_limit(fx);
        Ok(())
    }

    /// Takes back a delivery that never reached its consumer (the
    /// connection went away before sending it): ready again, its
    /// redelivered flag as it was.
    pub fn give_back(&mut self, msg: QueuedMessage, fx: &mut Effects<C>) {
        if let Some(co) = self.checked_out.remove(&msg.seq) {
            if let Some(id) = co.consumer {
                self.consumers.settled(id);
            }
        }
        self.return_to_ready(msg, false);
        self.drop_over_limit(fx);
    }

    /// Drops every ready message, returning how many there were.
    pub fn purge(&mut self) -> Result<usize, StoreError> {
        let mut n = 0;
        if let Some(head) = self.head.take() {
            self.store.ack(&head)?;
            n += 1;
        }
        n += self.store.purge()?;
        self.ready_bytes = 0;
        self.may_expire = 0;
        self.ready_floor = self.next_seq;
        Ok(n)
    }

    /// Time passed: drops expired messages at the head and asks for the
    /// queue's deletion once it was unused for its `x-expires`.
    pub fn tick(&mut self, now: u64, gate: impl FnMut(&C) -> bool, fx: &mut Effects<C>) {
        self.deliver(now, gate, fx);
        if self.idle_expired(now) {
            fx.delete = true;
        }
    }

    /// Whether the queue has been unused for its `x-expires` as of `now`.
    pub fn idle_expired(&self, now: u64) -> bool {
        self.config
            .expires
            .is_some_and(|e| self.consumers.is_empty() && now >= self.last_used.saturating_add(e))
    }

    /// The queue is deleted: its consumers are cancelled, its stored
    /// messages removed.
    pub fn delete(&mut self, fx: &mut Effects<C>) -> Result<(), StoreError> {
        fx.cancelled.extend(self.consumers.take_all());
        self.head = None;
        self.checked_out.clear();
        self.ready_bytes = 0;
        self.may_expire = 0;
        self.store.destroy()
    }

    // ----- internals -----------------------------------------------------

    /// Whether a full queue refuses `msg` (reject-publish overflow).
    fn refuses(&self, msg: &Message) -> bool {
        self.config.overflow != Overflow::DropHead
            && self.config.over_limit(
                self.ready_count() as u64 + 1,
                self.ready_bytes + msg.body_size(),
            )
    }

    fn enqueue(&mut self, message: Arc<Message>, now: u64) -> Result<(), StoreError> {
        let ttl = match (self.config.message_ttl, message.expiration) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let expires_at = ttl.map(|t| now.saturating_add(t));
        if self.config.max_priority.is_some() {
            // A new message may outrank the one in the head slot.
            if let Some(head) = self.head.take() {
                if head.expires_at.is_some() {
                    self.may_expire += 1;
                }
                self.store.requeue(head);
            }
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        if self.ready_count() == 0 && self.checked_out.is_empty() {
            self.enqueue_times.clear();
            self.ready_floor = seq;
        }
        let (floor, checked_out) = (self.ready_floor, &self.checked_out);
        self.enqueue_times.enqueued(seq, now, || {
            checked_out.keys().copied().fold(floor, u64::min)
        });
        let bytes = message.body_size();
        self.store.push(QueuedMessage {
            seq,
            message,
            redelivered: false,
            expires_at,
            delivery_count: 0,
        })?;
        self.ready_bytes += bytes;
        if expires_at.is_some() {
            self.may_expire += 1;
        }
        Ok(())
    }

    /// Drops messages from the head while a length limit is exceeded.
    fn drop_over_limit(&mut self, fx: &mut Effects<C>) {
        if self.config.overflow != Overflow::DropHead {
            return;
        }
        while self
            .config
            .over_limit(self.ready_count() as u64, self.ready_bytes)
        {
            match self.take_head() {
                Ok(Some(m)) => {
                    if let Err(err) = self.store.ack(&m) {
                        fx.errors.push(err);
                    }
                    self.dead_letter(m.message, Reason::Maxlen, fx);
                }
                Ok(None) => break,
                Err(err) => {
                    fx.errors.push(err);
                    break;
                }
            }
        }
    }

    /// Makes sure the head slot holds the oldest ready message, if any may
    /// carry a deadline.
    fn peek(&mut self) -> Result<Option<&QueuedMessage>, StoreError> {
        if self.head.is_none() && self.may_expire > 0 {
            match self.store.pop()? {
                Some(m) => {
                    if m.expires_at.is_some() {
                        self.may_expire -= 1;
                    }
                    self.head = Some(m);
                }
                None => self.may_expire = 0,
            }
        }
        if self.store.is_empty() {
            self.may_expire = 0;
        }
        Ok(self.head.as_ref())
    }

    /// Removes expired messages from the head: those whose deadline passed,
    /// and with `inclusive` those whose deadline is `now`.
    fn expire(&mut self, now: u64, inclusive: bool, fx: &mut Effects<C>) -> Result<(), StoreError> {
        loop {
            let due = match self.peek()?.and_then(|m| m.expires_at) {
                Some(t) => t < now || (inclusive && t == now),
                None => false,
            };
            if !due {
                return Ok(());
            }
            if let Some(m) = self.take_head()? {
                self.store.ack(&m)?;
                self.dead_letter(m.message, Reason::Expired, fx);
            }
        }
    }

    /// Takes the oldest ready message out of the ready set.
    fn take_head(&mut self) -> Result<Option<QueuedMessage>, StoreError> {
        let m = match self.head.take() {
            Some(m) => Some(m),
            None => {
                let m = self.store.pop()?;
                if m.as_ref().is_some_and(|m| m.expires_at.is_some()) {
                    self.may_expire = self.may_expire.saturating_sub(1);
                }
                m
            }
        };
        if let Some(m) = &m {
            self.ready_bytes = self.ready_bytes.saturating_sub(m.message.body_size());
            // Messages leave in sequence order, requeued ones included,
            // except from a priority queue: there only the oldest moves
            // the floor.
            if self.config.max_priority.is_none() || m.seq == self.ready_floor {
                self.ready_floor = self.ready_floor.max(m.seq + 1);
            }
            if self.ready_count() == 0 {
                self.ready_floor = self.next_seq;
            } else if let Some(seq) = self.store.oldest_ready_seq() {
                self.ready_floor = seq;
            }
        }
        Ok(m)
    }

    /// Puts a message back among the ready ones at its original position
    /// (marked redelivered if the client may have seen it); it keeps its
    /// deadline.
    fn return_to_ready(&mut self, mut msg: QueuedMessage, seen: bool) {
        if let Some(head) = self.head.take() {
            if head.expires_at.is_some() {
                self.may_expire += 1;
            }
            self.store.requeue(head);
        }
        msg.redelivered |= seen;
        self.ready_floor = self.ready_floor.min(msg.seq);
        self.ready_bytes += msg.message.body_size();
        if msg.expires_at.is_some() {
            self.may_expire += 1;
        }
        self.store.requeue(msg);
    }

    /// The message as a consumer sees it: a quorum queue adds its delivery
    /// count to the headers.
    fn as_delivered(&self, mut msg: QueuedMessage) -> QueuedMessage {
        if self.config.counts_deliveries() {
            msg.message = msg.message.with_delivery_count(msg.delivery_count);
        }
        msg
    }

    fn dead_letter(&mut self, msg: Arc<Message>, reason: Reason, fx: &mut Effects<C>) {
        if self.config.dead_letter_exchange.is_some() {
            fx.dead_letters.push((msg, reason));
        }
    }

    fn schedule(&self, fx: &mut Effects<C>) {
        fx.wake_at = self.next_deadline();
    }
}

#[cfg(test)]
mod tests;
