//! A queue as the server runs it: the core [`QueueState`] behind its own
//! lock, plus the consumer handles that let any task deliver to any
//! connection.
//!
//! Lock order: a vhost's topology lock may be taken before a queue lock,
//! never after; no other lock is taken while a queue lock is held, and no
//! lock is held across an `.await`. Deliveries leave the queue as events on
//! the consumer's connection channel, so the queue lock never waits on a
//! socket.
//!
//! Work is batched per lock hold: a publishing connection enqueues all it
//! routed to a queue from one read at once ([`QueueCell::publish_batch`]),
//! the deliveries made in one hold go to each consumer as one event, and
//! the store is flushed once when the hold ends ([`QueueGuard`]).

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};
use tokio::sync::mpsc::UnboundedSender;
use tracing::error;
use warren_core::{Message, MessageStore, QueueState, QueuedMessage, StoreError, SyncTicket};
use warren_protocol::FieldTable;

use crate::connection::ConnEvent;

/// Deliveries handed to a connection but not yet written into its socket
/// buffer, per consumer. Bounds what a slow no-ack consumer can pile up.
const MAX_IN_FLIGHT: u32 = 2048;

/// What became of a message handed to a queue.
pub enum Enqueued {
    /// Stored; confirmable once the ticket (if any) is synced.
    Stored(Option<SyncTicket>),
    /// The queue was deleted meanwhile; the message is dropped.
    QueueDeleted,
    /// The store failed; the publish must be nacked.
    Failed(StoreError),
}

/// The declared properties of a queue.
#[derive(Debug, Clone)]
pub struct QueueSpec {
    pub name: String,
    /// Names the storage directory of a persistent queue (0 otherwise).
    pub id: u64,
    pub durable: bool,
    /// The connection that owns an exclusive queue.
    pub exclusive_owner: Option<u64>,
    pub auto_delete: bool,
    pub arguments: FieldTable,
}

pub struct QueueCell {
    pub spec: QueueSpec,
    state: Mutex<QueueInner>,
}

/// A held queue lock. Dropping it flushes what the store staged meanwhile
/// (acks, delivery marks), so nothing stays staged between holds.
pub struct QueueGuard<'a> {
    inner: MutexGuard<'a, QueueInner>,
    name: &'a str,
}

impl Deref for QueueGuard<'_> {
    type Target = QueueInner;
    fn deref(&self) -> &QueueInner {
        &self.inner
    }
}

impl DerefMut for QueueGuard<'_> {
    fn deref_mut(&mut self) -> &mut QueueInner {
        &mut self.inner
    }
}

impl Drop for QueueGuard<'_> {
    fn drop(&mut self) {
        if !self.inner.deleted {
            if let Err(err) = self.inner.queue.flush() {
                error!(queue = %self.name, %err, "cannot write to the queue's store");
            }
        }
    }
}

/// Deliveries made during one lock hold, gathered per consumer so each
/// consumer's connection gets them as one event.
#[derive(Default)]
struct Outbox {
    batches: Vec<(Arc<Consumer>, Vec<QueuedMessage>)>,
}

impl Outbox {
    /// Consumers gathered before the outbox is sent early, so finding a
    /// consumer's batch stays cheap on queues with many consumers.
    const MAX_CONSUMERS: usize = 16;

    fn add(&mut self, consumer: Arc<Consumer>, msg: QueuedMessage, queue: &mut QueueInner) {
        if let Some((_, msgs)) = self
            .batches
            .iter_mut()
            .find(|(c, _)| Arc::ptr_eq(c, &consumer))
        {
            msgs.push(msg);
            return;
        }
        if self.batches.len() >= Self::MAX_CONSUMERS {
            self.send(queue);
        }
        self.batches.push((consumer, vec![msg]));
    }

    /// Hands each consumer its batch; a consumer whose connection is gone
    /// is cancelled and its messages go back to the queue.
    fn send(&mut self, queue: &mut QueueInner) {
        for (consumer, msgs) in self.batches.drain(..) {
            let tx = consumer.tx.clone();
            if let Err(err) = tx.send(ConnEvent::Deliver { consumer, msgs }) {
                if let ConnEvent::Deliver { consumer, msgs } = err.0 {
                    consumer.release_in_flight(msgs.len());
                    consumer.withdraw(msgs, queue);
                }
            }
        }
    }
}

pub struct QueueInner {
    pub queue: QueueState<Arc<Consumer>>,
    pub deleted: bool,
    /// Whether the queue has ever had a consumer (auto-delete applies only
    /// then).
    pub had_consumer: bool,
}

/// A channel's flow and global prefetch, shared by its consumers.
#[derive(Debug, Default)]
pub struct ChannelLimit {
    /// basic.qos global=true prefetch count (0: unlimited).
    pub global_prefetch: AtomicU32,
    pub unacked: AtomicU32,
    pub flow_active: AtomicBool,
}

impl ChannelLimit {
    pub fn new() -> Self {
        ChannelLimit {
            flow_active: AtomicBool::new(true),
            ..Default::default()
        }
    }
}

/// One basic.consume subscription, shared between the queue (which
/// delivers) and the channel (which acks).
pub struct Consumer {
    pub tag: String,
    pub channel: u16,
    pub connection: u64,
    pub no_ack: bool,
    pub exclusive: bool,
    /// Per-consumer prefetch count (0: unlimited).
    pub prefetch: u32,
    pub unacked: AtomicU32,
    pub in_flight: AtomicU32,
    pub limit: Arc<ChannelLimit>,
    /// Set by the queue when it passed this consumer over for lack of
    /// credit; whoever frees credit clears it and wakes the queue.
    pub blocked: AtomicBool,
    pub cancelled: AtomicBool,
    pub queue: Arc<QueueCell>,
    pub tx: UnboundedSender<ConnEvent>,
}

impl Consumer {
    /// Reserves credit for one delivery; false if flow, prefetch or the
    /// in-flight bound forbid it.
    fn try_reserve(&self) -> bool {
        if !self.limit.flow_active.load(Ordering::SeqCst)
            || self.in_flight.load(Ordering::SeqCst) >= MAX_IN_FLIGHT
        {
            return false;
        }
        if !self.no_ack {
            if self.prefetch != 0 && self.unacked.load(Ordering::SeqCst) >= self.prefetch {
                return false;
            }
            let global = self.limit.global_prefetch.load(Ordering::SeqCst);
            let got = self
                .limit
                .unacked
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |u| {
                    (global == 0 || u < global).then_some(u + 1)
                })
                .is_ok();
            if !got {
                return false;
            }
            self.unacked.fetch_add(1, Ordering::SeqCst);
        }
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        true
    }

    /// Returns the credit of one acked (or requeued) delivery.
    pub fn release_unacked(&self) {
        let _ = self
            .unacked
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |u| u.checked_sub(1));
        let _ = self
            .limit
            .unacked
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |u| u.checked_sub(1));
    }

    /// Gives back messages its connection can no longer deliver, and takes
    /// this consumer out of the queue so it is not offered more.
    pub fn hand_back(self: &Arc<Self>, msgs: impl IntoIterator<Item = QueuedMessage>) {
        let mut inner = self.queue.lock();
        self.withdraw(msgs, &mut inner);
        if !inner.deleted {
            self.queue.deliver(&mut inner);
        }
    }

    /// Cancels this consumer in its (locked) queue and puts back messages
    /// it was given but can no longer deliver, returning their credit.
    fn withdraw(
        self: &Arc<Self>,
        msgs: impl IntoIterator<Item = QueuedMessage>,
        inner: &mut QueueInner,
    ) {
        self.cancelled.store(true, Ordering::SeqCst);
        inner.queue.remove_consumer(|c| Arc::ptr_eq(c, self));
        for msg in msgs {
            if !self.no_ack {
                self.release_unacked();
            }
            if !inner.deleted {
                inner.queue.requeue(msg, !self.no_ack);
            }
        }
    }

    /// Returns the in-flight credit of deliveries the connection has taken.
    pub fn release_in_flight(&self, n: usize) {
        self.in_flight.fetch_sub(n as u32, Ordering::SeqCst);
    }

    /// Wakes the queue if it had passed this consumer over.
    pub fn wake_if_blocked(&self) {
        if self.blocked.swap(false, Ordering::SeqCst) {
            self.queue.drive();
        }
    }
}

impl QueueCell {
    pub fn with_store(spec: QueueSpec, store: Box<dyn MessageStore>) -> Arc<Self> {
        Arc::new(QueueCell {
            spec,
            state: Mutex::new(QueueInner {
                queue: QueueState::new(store),
                deleted: false,
                had_consumer: false,
            }),
        })
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// Takes the queue's lock.
    pub fn lock(&self) -> QueueGuard<'_> {
        QueueGuard {
            inner: self.state.lock(),
            name: &self.spec.name,
        }
    }

    /// Enqueues a message and delivers what can be delivered.
    pub fn publish(&self, message: Arc<Message>) -> Enqueued {
        self.publish_batch([message])
    }

    /// Enqueues messages in order under one lock hold and one store flush,
    /// then delivers what can be delivered. The outcome covers them all.
    pub fn publish_batch(&self, messages: impl IntoIterator<Item = Arc<Message>>) -> Enqueued {
        let mut inner = self.lock();
        if inner.deleted {
            return Enqueued::QueueDeleted;
        }
        let outcome = match inner.queue.publish_batch(messages) {
            Ok(ticket) => Enqueued::Stored(ticket),
            Err(err) => {
                error!(queue = %self.spec.name, %err, "cannot store message");
                Enqueued::Failed(err)
            }
        };
        self.deliver(&mut inner);
        outcome
    }

    /// Delivers ready messages to consumers that have credit.
    pub fn drive(&self) {
        let mut inner = self.lock();
        if !inner.deleted {
            self.deliver(&mut inner);
        }
    }

    fn deliver(&self, inner: &mut QueueInner) {
        let mut outbox = Outbox::default();
        self.deliver_into(inner, &mut outbox);
        outbox.send(inner);
    }

    fn deliver_into(&self, inner: &mut QueueInner, outbox: &mut Outbox) {
        let mut marked = false;
        loop {
            match inner.queue.next_delivery(|c| c.try_reserve()) {
                Err((consumer, err)) => {
                    error!(queue = %self.spec.name, %err, "cannot read message");
                    consumer.release_in_flight(1);
                    if !consumer.no_ack {
                        consumer.release_unacked();
                    }
                    return;
                }
                Ok(Some((consumer, msg))) => {
                    inner.queue.delivered(!consumer.no_ack);
                    outbox.add(consumer, msg, inner);
                }
                Ok(None) => {
                    if marked || inner.queue.ready_count() == 0 || inner.queue.consumer_count() == 0
                    {
                        return;
                    }
                    // Everyone refused: flag them, then look once more so a
                    // credit freed in between is not missed.
                    for c in inner.queue.consumers() {
                        c.blocked.store(true, Ordering::SeqCst);
                    }
                    marked = true;
                }
            }
        }
    }

    /// Puts delivered messages back (in their original order) and delivers
    /// again. `counted`: they were awaiting acks.
    pub fn requeue(&self, msgs: impl IntoIterator<Item = QueuedMessage>, counted: bool) {
        let mut inner = self.lock();
        if inner.deleted {
            return;
        }
        for msg in msgs {
            inner.queue.requeue(msg, counted);
        }
        self.deliver(&mut inner);
    }

    /// Settles delivered messages for good.
    pub fn ack(&self, msgs: &[QueuedMessage], counted: bool) {
        let mut inner = self.lock();
        if inner.deleted {
            return;
        }
        for msg in msgs {
            if let Err(err) = inner.queue.ack(msg, counted) {
                error!(queue = %self.spec.name, %err, "cannot record ack");
            }
        }
    }

    /// (ready messages, consumers)
    pub fn counts(&self) -> (u32, u32) {
        let inner = self.lock();
        (
            inner.queue.ready_count() as u32,
            inner.queue.consumer_count() as u32,
        )
    }
}
