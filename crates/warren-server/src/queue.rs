//! A queue as the server runs it: the core [`QueueState`] machine behind
//! its own lock, the consumer handles that let any task deliver to any
//! connection, and the carrying out of the machine's effects.
//!
//! Every command runs through [`QueueCell::run`]: the lock is taken, the
//! command applied with the current time, and the effects carried out in
//! two steps. Deliveries, refunds of reserved credit and the queue's timer
//! are handled under the lock (they only send on channels or spawn a
//! task). Dead letters, cancelled consumers and the deletion of an expired
//! queue need the vhost's topology, so they wait until the lock is
//! released: a queue lock is never held while routing.
//!
//! Lock order: a vhost's topology lock may be taken before a queue lock,
//! never after; no other lock is taken while a queue lock is held, and no
//! lock is held across an `.await`. Deliveries leave the queue as events on
//! the consumer's connection channel, so the queue lock never waits on a
//! socket.
//!
//! Work is batched per lock hold: a publishing connection enqueues all it
//! routed to a queue from one read at once ([`QueueCell::publish_batch`]),
//! a connection's acks for a queue are settled at once
//! ([`QueueCell::settle`]), the deliveries made in one hold go to each
//! consumer as one event, and the store is flushed once when the hold ends
//! ([`QueueGuard`]).

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::{Mutex, MutexGuard};
use tokio::sync::mpsc::UnboundedSender;
use tracing::error;
use warren_core::dead_letter::Reason;
use warren_core::policy::Applied;
use warren_core::queue::Published;
use warren_core::queue::QueueKind;
use warren_core::{
    ConfirmRef, ConfirmSink, ConsumerSpec, Effects, Message, MessageStore, QueueConfig, QueueState,
    QueuedMessage, StoreError, SyncTicket,
};
use warren_protocol::FieldTable;

use crate::broker::{Broker, VHost};
use crate::connection::ConnEvent;
use crate::stats::{QueueFigures, QueueGauges};

/// Deliveries handed to a connection but not yet written into its socket
/// buffer, per consumer. Bounds what a slow no-ack consumer can pile up.
const MAX_IN_FLIGHT: u32 = 2048;

/// Milliseconds since the Unix epoch: the time queues are given. Absolute,
/// so message deadlines mean the same after a restart.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What became of messages handed to a queue.
pub enum Enqueued {
    /// Stored; confirmable once the ticket (if any) is synced, except the
    /// ones at these positions, which the full queue refused (nack them).
    Stored(Option<SyncTicket>, Vec<usize>),
    /// The queue was deleted meanwhile; the messages are dropped.
    QueueDeleted,
    /// The store failed; the publishes must be nacked.
    Failed(StoreError),
}

/// How a checked-out message is settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// Acknowledged: gone for good.
    Ack,
    /// Back to the queue, marked redelivered.
    Requeue,
    /// Rejected without requeue: dead-lettered, or dropped.
    Discard,
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

/// Where a queue lives: what it needs to route its dead letters and to
/// delete itself when it expires.
pub struct Home {
    pub broker: Weak<Broker>,
    pub vhost: Weak<VHost>,
    pub vhost_name: String,
    /// The vhost's queue totals, which the queue keeps up to date.
    pub gauges: Arc<QueueGauges>,
}

pub struct QueueCell {
    pub spec: QueueSpec,
    /// Classic or quorum, from the arguments.
    kind: QueueKind,
    home: OnceLock<Home>,
    state: Mutex<QueueInner>,
}

/// A held queue lock. Dropping it flushes what the store staged meanwhile
/// (acks, delivery marks), so nothing stays staged between holds.
pub struct QueueGuard<'a> {
    inner: MutexGuard<'a, QueueInner>,
    cell: &'a QueueCell,
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
        let inner = &mut *self.inner;
        let now = if inner.deleted {
            QueueFigures::default()
        } else {
            if let Err(err) = inner.queue.flush() {
                error!(queue = %self.cell.spec.name, %err, "cannot write to the queue's store");
            }
            QueueFigures {
                ready: inner.queue.ready_count() as i64,
                unacked: inner.queue.unacked_count() as i64,
                consumers: inner.queue.consumer_count() as i64,
                ready_bytes: inner.queue.ready_bytes() as i64,
            }
        };
        if let Some(home) = self.cell.home.get() {
            home.gauges.report(&mut inner.reported, now);
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

    fn add(
        &mut self,
        consumer: Arc<Consumer>,
        msg: QueuedMessage,
        queue: &mut QueueInner,
        fx: &mut Effects<Arc<Consumer>>,
    ) -> bool {
        if let Some((_, msgs)) = self
            .batches
            .iter_mut()
            .find(|(c, _)| Arc::ptr_eq(c, &consumer))
        {
            msgs.push(msg);
            return false;
        }
        let withdrew = self.batches.len() >= Self::MAX_CONSUMERS && self.send(queue, fx);
        self.batches.push((consumer, vec![msg]));
        withdrew
    }

    /// Hands each consumer its batch; a consumer whose connection is gone
    /// is cancelled and its messages go back to the queue. Returns whether
    /// that happened (the messages are ready again).
    fn send(&mut self, queue: &mut QueueInner, fx: &mut Effects<Arc<Consumer>>) -> bool {
        let mut withdrew = false;
        for (consumer, msgs) in self.batches.drain(..) {
            let tx = consumer.tx.clone();
            if let Err(err) = tx.send(ConnEvent::Deliver { consumer, msgs }) {
                if let ConnEvent::Deliver { consumer, msgs } = err.0 {
                    consumer.release_in_flight(msgs.len());
                    consumer.withdraw(msgs, queue, fx);
                    withdrew = true;
                }
            }
        }
        withdrew
    }
}

pub struct QueueInner {
    pub queue: QueueState<Arc<Consumer>>,
    pub deleted: bool,
    /// Whether the queue has ever had a consumer (auto-delete applies only
    /// then).
    pub had_consumer: bool,
    /// Effects of the command being carried out (kept to reuse its space).
    fx: Effects<Arc<Consumer>>,
    /// The time a timer task will tick the queue at, if one is armed.
    armed: Option<u64>,
    /// The policy and operator policy that apply to the queue.
    pub policies: Applied,
    /// What the queue last added to its vhost's totals.
    reported: QueueFigures,
}

/// Effects carried out once the queue lock is released.
#[derive(Default)]
struct Later {
    dead_letters: Vec<(Arc<Message>, Reason)>,
    /// The dead-letter exchange and routing key they go to.
    dead_letter_to: Option<(String, Option<String>)>,
    cancelled: Vec<Arc<Consumer>>,
    delete: bool,
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
/// delivers) and the channel (which acks). Its own prefetch window is kept
/// by the queue's state machine; the credit here is what its channel and
/// connection grant.
pub struct Consumer {
    /// Unique in the broker; the queue machine knows the consumer by it.
    pub id: u64,
    pub tag: String,
    pub channel: u16,
    pub connection: u64,
    pub no_ack: bool,
    pub exclusive: bool,
    /// The channel's prefetch when it subscribed, and its arguments, as
    /// listings show them.
    pub prefetch: u32,
    pub arguments: FieldTable,
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
    /// Reserves the channel's and connection's credit for one delivery;
    /// false if flow, the channel-wide prefetch or the in-flight bound
    /// forbid it.
    fn try_reserve(&self) -> bool {
        if !self.limit.flow_active.load(Ordering::SeqCst)
            || self.in_flight.load(Ordering::SeqCst) >= MAX_IN_FLIGHT
        {
            return false;
        }
        if !self.no_ack {
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
        }
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        true
    }

    /// Returns what [`try_reserve`](Self::try_reserve) took for a delivery
    /// that was not made.
    fn refund(&self) {
        self.release_in_flight(1);
        if !self.no_ack {
            self.release_unacked();
        }
    }

    /// Returns the channel-wide credit of one settled delivery.
    pub fn release_unacked(&self) {
        let _ = self
            .limit
            .unacked
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |u| u.checked_sub(1));
    }

    /// Gives back messages its connection can no longer deliver, and takes
    /// this consumer out of the queue so it is not offered more.
    pub fn hand_back(self: &Arc<Self>, msgs: Vec<QueuedMessage>) {
        self.queue.run(|inner, _, fx| {
            self.withdraw(msgs, inner, fx);
        });
    }

    /// Cancels this consumer in its (locked) queue and puts back messages
    /// it was given but can no longer deliver, returning their credit.
    fn withdraw(
        self: &Arc<Self>,
        msgs: Vec<QueuedMessage>,
        inner: &mut QueueInner,
        fx: &mut Effects<Arc<Consumer>>,
    ) {
        self.cancelled.store(true, Ordering::SeqCst);
        inner.queue.cancel(self.id, now_ms(), fx);
        for msg in msgs {
            if !self.no_ack {
                self.release_unacked();
            }
            if !inner.deleted {
                inner.queue.give_back(msg, fx);
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
    /// A queue over `store`, created (or recovered) now.
    pub fn with_store(spec: QueueSpec, store: Box<dyn MessageStore>) -> Arc<Self> {
        let config = QueueConfig::from_arguments(&spec.name, &spec.arguments);
        Arc::new(QueueCell {
            kind: config.kind,
            spec,
            home: OnceLock::new(),
            state: Mutex::new(QueueInner {
                queue: QueueState::new(config, store, now_ms()),
                deleted: false,
                had_consumer: false,
                fx: Effects::default(),
                armed: None,
                policies: Applied::default(),
                reported: QueueFigures::default(),
            }),
        })
    }

    /// The policies that apply changed: the queue's configuration is
    /// resolved again from its arguments and them, and takes effect at
    /// once.
    pub fn set_policies(self: &Arc<Self>, policies: Applied) {
        self.run(|inner, now, fx| {
            if inner.deleted || inner.policies == policies {
                return;
            }
            let config = QueueConfig::resolve(&self.spec.name, &self.spec.arguments, &policies);
            inner.policies = policies;
            inner.queue.reconfigure(config, now, fx);
        });
    }

    /// Its type, as policies and metrics tell queues apart.
    pub fn kind(&self) -> QueueKind {
        self.kind
    }

    /// Tells the queue where it lives (once, right after it is created or
    /// recovered), and starts its timer if it has deadlines already.
    pub fn set_home(self: &Arc<Self>, home: Home) {
        let _ = self.home.set(home);
        self.run(|inner, now, fx| inner.queue.touch(now, fx));
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// Whether it was declared with `x-queue-type` quorum.
    pub fn is_quorum(&self) -> bool {
        self.kind == QueueKind::Quorum
    }

    /// Takes the queue's lock.
    pub fn lock(&self) -> QueueGuard<'_> {
        QueueGuard {
            inner: self.state.lock(),
            cell: self,
        }
    }

    /// Runs a command on the queue at the current time and carries out its
    /// effects (see the module docs).
    pub fn run<R>(
        self: &Arc<Self>,
        command: impl FnOnce(&mut QueueInner, u64, &mut Effects<Arc<Consumer>>) -> R,
    ) -> R {
        let now = now_ms();
        let mut inner = self.lock();
        let mut fx = std::mem::take(&mut inner.fx);
        let r = command(&mut inner, now, &mut fx);
        let later = self.carry_out(&mut inner, fx);
        drop(inner);
        if let Some(later) = later {
            self.after_lock(later);
        }
        r
    }

    /// Enqueues messages in order under one lock hold and one store flush,
    /// then delivers what can be delivered. The outcome covers them all.
    pub fn publish_batch(self: &Arc<Self>, msgs: &[Arc<Message>]) -> Enqueued {
        self.run(|inner, now, fx| {
            if inner.deleted {
                return Enqueued::QueueDeleted;
            }
            let Published { stored, rejected } =
                inner
                    .queue
                    .publish_batch(msgs, now, |c| c.try_reserve(), fx);
            match stored {
                Ok(ticket) => Enqueued::Stored(ticket, rejected),
                Err(err) => {
                    error!(queue = %self.spec.name, %err, "cannot store message");
                    Enqueued::Failed(err)
                }
            }
        })
    }

    /// Writes now what the queue's store would write behind.
    pub fn write_now(&self) -> Result<(), StoreError> {
        let mut inner = self.lock();
        if inner.deleted {
            return Ok(());
        }
        inner.queue.write_now()
    }

    /// Enqueues one message.
    pub fn publish(self: &Arc<Self>, msg: Arc<Message>) -> Enqueued {
        self.publish_batch(std::slice::from_ref(&msg))
    }

    /// Delivers ready messages to consumers that have credit.
    pub fn drive(self: &Arc<Self>) {
        self.run(|_, _, _| ());
    }

    /// Settles checked-out messages (in order) and delivers again.
    pub fn settle(self: &Arc<Self>, how: &[(u64, Settle)]) {
        self.run(|inner, _, fx| {
            if inner.deleted {
                return;
            }
            for &(seq, settle) in how {
                let done = match settle {
                    Settle::Ack => inner.queue.ack(seq, fx),
                    Settle::Requeue => inner.queue.reject(seq, true, fx),
                    Settle::Discard => inner.queue.reject(seq, false, fx),
                };
                if let Err(err) = done {
                    error!(queue = %self.spec.name, %err, "cannot record ack");
                }
            }
        })
    }

    /// (ready messages, consumers)
    pub fn counts(&self) -> (u32, u32) {
        let inner = self.lock();
        (
            inner.queue.ready_count() as u32,
            inner.queue.reported_consumer_count() as u32,
        )
    }

    /// Carries out what can be done under the lock: runs the delivery loop
    /// (every command may have made messages deliverable), sends the
    /// deliveries, refunds credit, arms the timer. Returns what must wait
    /// for the lock to be released.
    fn carry_out(
        self: &Arc<Self>,
        inner: &mut QueueInner,
        mut fx: Effects<Arc<Consumer>>,
    ) -> Option<Later> {
        let now = now_ms();
        // Before any delivery of these copies leaves the lock.
        tell_publishers(&mut fx.expected, |sink, tags| sink.expect(tags));
        loop {
            if !inner.deleted && inner.queue.deliver(now, |c| c.try_reserve(), &mut fx) {
                // Everyone refused: flag them, then look once more so a
                // credit freed in between is not missed.
                for c in inner.queue.consumers() {
                    c.blocked.store(true, Ordering::SeqCst);
                }
                inner.queue.deliver(now, |c| c.try_reserve(), &mut fx);
            }
            for c in fx.refunds.drain(..) {
                c.refund();
            }
            for err in fx.errors.drain(..) {
                error!(queue = %self.spec.name, %err, "queue store failure");
            }
            if fx.deliveries.is_empty() {
                break;
            }
            let mut outbox = Outbox::default();
            let mut deliveries = std::mem::take(&mut fx.deliveries);
            let mut withdrew = false;
            for (consumer, msg) in deliveries.drain(..) {
                withdrew |= outbox.add(consumer, msg, inner, &mut fx);
            }
            withdrew |= outbox.send(inner, &mut fx);
            // Keep the vector's space for the next command.
            fx.deliveries = deliveries;
            if !withdrew {
                break;
            }
        }
        tell_publishers(&mut fx.settled, |sink, tags| sink.settled(tags));
        if let Some(at) = fx.wake_at.take() {
            if !inner.deleted && inner.armed.is_none_or(|armed| at < armed) {
                inner.armed = Some(at);
                self.arm(at);
            }
        }
        let later = fx.has_work().then(|| Later {
            dead_letter_to: (!fx.dead_letters.is_empty())
                .then(|| {
                    let c = inner.queue.config();
                    c.dead_letter_exchange
                        .clone()
                        .map(|x| (x, c.dead_letter_routing_key.clone()))
                })
                .flatten(),
            dead_letters: std::mem::take(&mut fx.dead_letters),
            cancelled: std::mem::take(&mut fx.cancelled),
            delete: std::mem::take(&mut fx.delete),
        });
        inner.fx = fx;
        later
    }

    /// Starts a task that ticks the queue at `at`.
    fn arm(self: &Arc<Self>, at: u64) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let queue = Arc::downgrade(self);
        runtime.spawn(async move {
            let wait = at.saturating_sub(now_ms());
            tokio::time::sleep(Duration::from_millis(wait)).await;
            let Some(queue) = queue.upgrade() else {
                return;
            };
            queue.run(|inner, now, fx| {
                // This task's time is no longer armed, even if the clock
                // reads a little earlier: the tick re-arms what is still
                // ahead.
                if inner.armed.is_some_and(|armed| armed <= at) {
                    inner.armed = None;
                }
                if !inner.deleted {
                    inner.queue.tick(now, |c| c.try_reserve(), fx);
                }
            });
        });
    }

    /// Dead letters, cancellations and self-deletion, with no queue lock
    /// held.
    fn after_lock(self: &Arc<Self>, later: Later) {
        for c in later.cancelled {
            c.cancelled.store(true, Ordering::SeqCst);
            let _ = c.tx.send(ConnEvent::Cancelled {
                consumer: Arc::clone(&c),
            });
        }
        if let Some(to) = later.dead_letter_to {
            self.route_dead_letters(&to, later.dead_letters);
        }
        if later.delete {
            if let Some(home) = self.home.get() {
                if let (Some(broker), Some(vhost)) = (home.broker.upgrade(), home.vhost.upgrade()) {
                    crate::lifecycle::expire_queue(&broker, &vhost, &home.vhost_name, self);
                }
            }
        }
    }

    /// Republishes dead letters through the queue's dead-letter exchange,
    /// each target queue taking its share in one batch. A dead letter that
    /// would close an automatic cycle skips that queue; one whose exchange
    /// is missing is dropped.
    fn route_dead_letters(
        self: &Arc<Self>,
        (exchange, routing_key): &(String, Option<String>),
        letters: Vec<(Arc<Message>, Reason)>,
    ) {
        let Some(home) = self.home.get() else {
            return;
        };
        let Some(vhost) = home.vhost.upgrade() else {
            return;
        };
        let target = warren_core::dead_letter::Target {
            exchange,
            routing_key: routing_key.as_deref(),
        };
        let now = now_ms();
        let mut batches: Vec<(Arc<QueueCell>, Vec<Arc<Message>>)> = Vec::new();
        let mut targets: Vec<Arc<QueueCell>> = Vec::new();
        for (msg, reason) in letters {
            let letter =
                warren_core::dead_letter::dead_letter(&msg, reason, self.name(), &target, now);
            targets.clear();
            {
                let topo = vhost.read();
                if !exchange.is_empty() && topo.exchange(exchange).is_err() {
                    continue;
                }
                for key in letter.routing_keys() {
                    topo.route(&letter.exchange, key, letter.headers.as_ref(), &mut |q| {
                        if !targets.iter().any(|t| Arc::ptr_eq(t, q)) {
                            targets.push(Arc::clone(q));
                        }
                    });
                }
            }
            for q in targets.drain(..) {
                if reason != Reason::Rejected
                    && warren_core::dead_letter::is_cycle(&letter, q.name())
                {
                    continue;
                }
                match batches.iter_mut().find(|(b, _)| Arc::ptr_eq(b, &q)) {
                    Some((_, msgs)) => msgs.push(Arc::clone(&letter)),
                    None => batches.push((q, vec![Arc::clone(&letter)])),
                }
            }
        }
        for (q, msgs) in batches {
            q.publish_batch(&msgs);
        }
    }
}

/// The consumer's spec as its queue's state machine keeps it.
/// Hands each publisher's tags to its sink in one call per run of the same
/// publisher (usually all of them), draining `refs`.
fn tell_publishers(refs: &mut Vec<ConfirmRef>, mut tell: impl FnMut(&dyn ConfirmSink, &[u64])) {
    if refs.is_empty() {
        return;
    }
    let mut tags = Vec::with_capacity(refs.len());
    let mut run: Option<&ConfirmRef> = None;
    for r in refs.iter() {
        if let Some(first) = run {
            if !Arc::ptr_eq(&first.sink, &r.sink) {
                tell(&*first.sink, &tags);
                tags.clear();
                run = Some(r);
            }
        } else {
            run = Some(r);
        }
        tags.push(r.tag);
    }
    if let Some(first) = run {
        tell(&*first.sink, &tags);
    }
    refs.clear();
}

pub fn consumer_spec(consumer: &Consumer, prefetch: u32, priority: i32) -> ConsumerSpec {
    ConsumerSpec {
        priority,
        prefetch,
        no_ack: consumer.no_ack,
        exclusive: consumer.exclusive,
    }
}
