//! One AMQP channel: content assembly, the methods of classes exchange,
//! queue, basic, confirm and tx, delivery tags and unacked messages.
//!
//! A channel lives inside its connection's task and is only touched from
//! there; queues reach it through the connection's event channel.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use ahash::AHashMap as HashMap;
use bytes::{Bytes, BytesMut};
use warren_core::access::{CheckCache, Operation, Permission};
use warren_core::arguments::{describe, type_name, validate_consumer_args, validate_queue_args};
use warren_core::exchange::ExchangeSpec;
use warren_core::names;
use warren_core::{AmqpError, Destination, ExchangeKind, Message, QueuedMessage, SyncTicket};
use warren_protocol::{
    AccessRequestOk, BasicCancel, BasicCancelOk, BasicConsumeOk, BasicGetEmpty, BasicGetOk,
    BasicPublish, BasicQosOk, BasicRecoverOk, BasicReturn, ChannelClose, ChannelCloseOk,
    ChannelFlowOk, ConfirmSelectOk, ContentHeader, ExchangeBindOk, ExchangeDeclareOk,
    ExchangeDeleteOk, ExchangeUnbindOk, FieldTable, FramePayload, Method, PropertiesRef,
    QueueBindOk, QueueDeclareOk, QueueDeleteOk, QueuePurgeOk, QueueUnbindOk, ReplyCode, TxCommitOk,
    TxRollbackOk, TxSelectOk, BASIC_CLASS_ID,
};

mod confirms;
mod publish;
pub(crate) mod queues;
mod reply_to;
mod settle;

use confirms::Confirms;
pub use reply_to::ReplyRegistry;
use reply_to::{reply_token, ReplyConsumer, REPLY_QUEUE};
pub use settle::PendingAcks;
use settle::{settle, settle_all};

use crate::connection::{ConnCtx, Out};
use crate::lifecycle::DeleteWhen;
use crate::queue::{consumer_spec, ChannelLimit, Consumer, Enqueued, QueueCell, QueueSpec, Settle};
use crate::stats::Counter;

/// A publish whose content is still arriving.
struct Pending {
    publish: BasicPublish,
    header: Option<Header>,
    /// The body as received so far: usually one frame's worth, copied
    /// together only when it came in several.
    body: Bytes,
    more: Vec<Bytes>,
    received: u64,
}

/// What a publish's content header said, read once it arrived.
struct Header {
    /// The property flags and list, forwarded verbatim.
    raw: Bytes,
    persistent: bool,
    headers: Option<FieldTable>,
    expiration: Option<u64>,
    priority: u8,
    /// The `BCC` header's keys (the header itself was removed).
    bcc: Vec<String>,
    body_size: u64,
    /// Why the publish is refused (reported once the body is in).
    refused: Option<AmqpError>,
}

/// A delivered message awaiting ack, reject or nack. The message itself is
/// checked out in its queue, under its sequence number.
struct Unacked {
    tag: u64,
    queue: Arc<QueueCell>,
    seq: u64,
    /// None for basic.get.
    consumer: Option<Arc<Consumer>>,
}

#[derive(Default)]
struct TxBuffer {
    /// Publishes held until commit: (mandatory, message).
    publishes: Vec<(bool, Arc<Message>)>,
    /// A commit waiting for its messages to be synced before commit-ok.
    commit_waits_for: Option<SyncTicket>,
    /// Acked or rejected inside the transaction.
    settles: Vec<(Unacked, Settle)>,
}

pub struct Channel {
    pub id: u16,
    /// Permission checks this channel passed lately (RabbitMQ's cache).
    checks: CheckCache,
    /// The channel is done (closed by the client, or close-ok received) and
    /// must be removed.
    pub finished: bool,
    /// It has published (it counts among the broker's publishers).
    publisher: bool,
    /// The server sent channel.close and waits for close-ok.
    closing: bool,
    pending: Option<Pending>,
    next_tag: u64,
    unacked: VecDeque<Unacked>,
    consumers: HashMap<String, Arc<Consumer>>,
    prefetch: u32,
    limit: Arc<ChannelLimit>,
    confirm: Option<Confirms>,
    tx: Option<TxBuffer>,
    last_queue: Option<String>,
    /// The direct reply-to consumer, if any.
    reply: Option<ReplyConsumer>,
}

fn locked(q: &QueueCell, vhost: &str) -> AmqpError {
    AmqpError::resource_locked(format!(
        "cannot obtain exclusive access to locked queue '{}' in vhost '{vhost}'. It could be originally declared on another connection or the exclusive property value does not match that of the original declaration.",
        q.name()
    ))
}

/// Looks a queue up for an operation of this connection: 404 if missing,
/// 405 if another connection owns it exclusively.
fn find_queue(ctx: &ConnCtx, name: &str) -> Result<Arc<QueueCell>, AmqpError> {
    let topo = ctx.vhost.read();
    let q = topo
        .queue(name)
        .cloned()
        .ok_or_else(|| topo.no_queue(name))?;
    drop(topo);
    match q.spec.exclusive_owner {
        Some(owner) if owner != ctx.id => Err(locked(&q, &ctx.vhost_name)),
        _ => Ok(q),
    }
}

/// Deletes a queue of the connection's vhost (see
/// [`crate::lifecycle::delete_queue`]).
pub fn delete_queue(ctx: &ConnCtx, name: &str, when: DeleteWhen<'_>) -> Result<u32, AmqpError> {
    crate::lifecycle::delete_queue(&ctx.broker, &ctx.vhost, &ctx.vhost_name, name, when)
}

/// The permissions a (un)binding needs: write on the destination, read on
/// the source, and the topic read permission for the key.
fn check_bind(
    ctx: &mut ConnCtx,
    cache: &mut CheckCache,
    destination: &str,
    to_queue: bool,
    source: &str,
    key: &str,
) -> Result<(), AmqpError> {
    let op = if to_queue {
        Operation::QueueBind {
            queue: destination,
            exchange: source,
        }
    } else {
        Operation::ExchangeBind {
            destination,
            source,
        }
    };
    ctx.check(cache, &op)?;
    ctx.check_topic(cache, Permission::Read, source, key)
}

/// exchange.declare's permissions: configure on the exchange and, for a new
/// one with an alternate exchange, read on it and write on the alternate.
fn check_exchange_declare(
    ctx: &mut ConnCtx,
    cache: &mut CheckCache,
    exchange: &str,
    arguments: &warren_protocol::FieldTable,
) -> Result<(), AmqpError> {
    ctx.check(
        cache,
        &Operation::ExchangeDeclare {
            exchange,
            passive: false,
            alternate_exchange: None,
        },
    )?;
    let ae = arguments
        .get("alternate-exchange")
        .and_then(warren_protocol::FieldValue::as_bytes)
        .map(|b| String::from_utf8_lossy(b).into_owned());
    if let Some(ae) = ae {
        if ctx.vhost.read().exchange(exchange).is_err() {
            ctx.check(
                cache,
                &Operation::ExchangeDeclare {
                    exchange,
                    passive: false,
                    alternate_exchange: Some(&ae),
                },
            )?;
        }
    }
    Ok(())
}

/// queue.bind / exchange.bind (`add`) or their unbind, saving the
/// definitions when both ends are durable.
fn bind(
    ctx: &ConnCtx,
    add: bool,
    source: &str,
    dest: Destination,
    key: &str,
    args: &warren_protocol::FieldTable,
) -> Result<(), AmqpError> {
    let mut topo = ctx.vhost.write();
    if add {
        topo.bind(source, dest, key, args)?;
    } else {
        topo.unbind(source, dest, key, args)?;
    }
    ctx.broker.persist(&ctx.vhost_name, &mut topo);
    Ok(())
}

/// Removes a consumer from its queue, deleting an auto-delete queue that
/// lost its last consumer.
fn detach_consumer(ctx: &ConnCtx, consumer: &Arc<Consumer>) {
    consumer.cancelled.store(true, Ordering::SeqCst);
    let q = &consumer.queue;
    let now_idle = q.run(|inner, now, fx| {
        inner.queue.cancel(consumer.id, now, fx);
        !inner.deleted && inner.queue.consumer_count() == 0 && inner.had_consumer
    });
    if now_idle && q.spec.auto_delete {
        let when = DeleteWhen {
            idle: Some(q),
            ..Default::default()
        };
        let _ = delete_queue(ctx, q.name(), when);
    }
}

impl Channel {
    pub fn new(id: u16) -> Self {
        Channel {
            id,
            checks: CheckCache::default(),
            finished: false,
            publisher: false,
            closing: false,
            pending: None,
            next_tag: 1,
            unacked: VecDeque::new(),
            consumers: HashMap::new(),
            prefetch: 0,
            limit: Arc::new(ChannelLimit::new()),
            confirm: None,
            tx: None,
            last_queue: None,
            reply: None,
        }
    }

    /// Whether a publish's content header or body is awaited.
    pub fn has_pending_content(&self) -> bool {
        self.pending.is_some()
    }

    pub fn on_frame(
        &mut self,
        payload: FramePayload,
        ctx: &mut ConnCtx,
        out: &mut Out,
    ) -> Result<(), AmqpError> {
        if self.closing {
            match payload {
                FramePayload::Method(Method::ChannelCloseOk(_)) => self.finished = true,
                FramePayload::Method(Method::ChannelClose(_)) => {
                    out.method(self.id, ChannelCloseOk {});
                    self.finished = true;
                }
                _ => {}
            }
            return Ok(());
        }
        match payload {
            FramePayload::Method(m) => {
                if let Some(p) = &self.pending {
                    return Err(AmqpError::unexpected_frame(if p.header.is_none() {
                        "expected content header for class 60, got non content header frame instead"
                    } else {
                        "expected content body, got non content body frame instead"
                    }));
                }
                self.on_method(m, ctx, out)
            }
            FramePayload::Header(h) => self.on_header(h, ctx, out),
            FramePayload::Body(b) => self.on_body(b, ctx, out),
            FramePayload::Heartbeat => Ok(()),
        }
    }

    /// Writes deliveries to the client, or hands the messages back if this
    /// channel or consumer is going away.
    pub fn deliver(&mut self, consumer: Arc<Consumer>, msgs: Vec<QueuedMessage>, out: &mut Out) {
        let current = self
            .consumers
            .get(&consumer.tag)
            .is_some_and(|c| Arc::ptr_eq(c, &consumer));
        if self.closing || !current || consumer.cancelled.load(Ordering::SeqCst) {
            consumer.hand_back(msgs);
            return;
        }
        for msg in msgs {
            let tag = self.next_tag;
            self.next_tag += 1;
            out.deliver(self.id, &consumer.tag, tag, msg.redelivered, &msg.message);
            if !consumer.no_ack {
                self.unacked.push_back(Unacked {
                    tag,
                    queue: Arc::clone(&consumer.queue),
                    seq: msg.seq,
                    consumer: Some(Arc::clone(&consumer)),
                });
            }
        }
        consumer.wake_if_blocked();
    }

    /// The consumer's queue was deleted: forget the consumer and tell the
    /// client if it asked to be told.
    pub fn on_queue_deleted(&mut self, consumer: &Arc<Consumer>, notify: bool, out: &mut Out) {
        let ours = self
            .consumers
            .get(&consumer.tag)
            .is_some_and(|c| Arc::ptr_eq(c, consumer));
        if ours {
            self.consumers.remove(&consumer.tag);
            if notify && !self.closing {
                out.method(
                    self.id,
                    BasicCancel {
                        consumer_tag: consumer.tag.clone(),
                        nowait: true,
                    },
                );
            }
        }
    }

    /// Closes the channel after a channel-level error.
    pub fn fail(
        &mut self,
        error: AmqpError,
        class_id: u16,
        method_id: u16,
        ctx: &mut ConnCtx,
        out: &mut Out,
    ) {
        out.method(
            self.id,
            ChannelClose {
                reply_code: error.code.code(),
                reply_text: error.reply_text(),
                class_id,
                method_id,
            },
        );
        self.closing = true;
        self.release(ctx);
    }

    /// Final cleanup when the channel goes away.
    pub fn close(mut self, ctx: &mut ConnCtx) {
        crate::stats::Churn::bump(&ctx.broker.churn.channels_closed, 1);
        if self.publisher {
            crate::stats::Churn::drop_one(&ctx.broker.churn.publishers);
        }
        self.release(ctx);
    }

    /// Cancels consumers and requeues unacked messages (idempotent).
    fn release(&mut self, ctx: &mut ConnCtx) {
        self.pending = None;
        self.release_replies(ctx);
        for (_, c) in self.consumers.drain() {
            detach_consumer(ctx, &c);
        }
        let mut entries: Vec<Unacked> = self.unacked.drain(..).collect();
        if let Some(tx) = self.tx.as_mut() {
            entries.extend(tx.settles.drain(..).map(|(e, _)| e));
            tx.publishes.clear();
        }
        entries.sort_by_key(|e| e.tag);
        settle_all(entries, Settle::Requeue);
    }

    pub fn wake_consumers(&self) {
        for c in self.consumers.values() {
            c.wake_if_blocked();
        }
    }

    /// Resolves an empty queue name to the channel's last declared queue.
    /// What listings show of this channel.
    pub fn snapshot(&self) -> crate::connections::ChannelSnapshot {
        use crate::connections::{ChannelSnapshot, ConsumerSnapshot};
        ChannelSnapshot {
            number: self.id,
            prefetch_count: self.prefetch,
            global_prefetch_count: self.limit.global_prefetch.load(Ordering::Relaxed),
            unacked: self.unacked.len(),
            confirm: self.confirm.is_some(),
            transactional: self.tx.is_some(),
            consumers: self
                .consumers
                .values()
                .map(|c| ConsumerSnapshot {
                    tag: c.tag.clone(),
                    queue: c.queue.name().to_string(),
                    ack_required: !c.no_ack,
                    prefetch_count: c.prefetch,
                    exclusive: c.exclusive,
                    arguments: c.arguments.clone(),
                    active: c.queue.lock().queue.is_consumer_active(c.id),
                })
                .collect(),
        }
    }

    fn queue_name(&self, name: &str) -> Result<String, AmqpError> {
        if !name.is_empty() {
            return Ok(strip_cr_lf(name.to_string()));
        }
        self.last_queue
            .clone()
            .ok_or_else(|| AmqpError::not_found("no previously declared queue"))
    }

    /// Takes the unacked entries an ack/reject/nack names.
    fn on_method(
        &mut self,
        method: Method,
        ctx: &mut ConnCtx,
        out: &mut Out,
    ) -> Result<(), AmqpError> {
        let id = self.id;
        match method {
            Method::ChannelOpen(_) => Err(AmqpError::channel_error("second 'channel.open' seen")),
            Method::ChannelClose(_) => {
                self.release(ctx);
                out.method(id, ChannelCloseOk {});
                self.finished = true;
                Ok(())
            }
            // Only valid in reply to a channel.close from the server.
            Method::ChannelCloseOk(_) => Err(AmqpError::command_invalid("unimplemented method")),
            Method::ChannelFlow(m) => {
                self.limit.flow_active.store(m.active, Ordering::SeqCst);
                out.method(id, ChannelFlowOk { active: m.active });
                if m.active {
                    self.wake_consumers();
                }
                Ok(())
            }
            Method::ChannelFlowOk(_) => Ok(()),
            Method::AccessRequest(_) => {
                out.method(id, AccessRequestOk { ticket: 1 });
                Ok(())
            }
            Method::ExchangeDeclare(m) => {
                let kind = if m.passive {
                    ExchangeKind::Direct
                } else {
                    ExchangeKind::parse(&m.kind)?
                };
                if !m.passive && !m.exchange.is_empty() {
                    check_exchange_declare(ctx, &mut self.checks, &m.exchange, &m.arguments)?;
                }
                let spec = ExchangeSpec {
                    name: m.exchange,
                    kind,
                    durable: m.durable,
                    auto_delete: m.auto_delete,
                    internal: m.internal,
                    arguments: m.arguments,
                };
                {
                    let mut topo = ctx.vhost.write();
                    let name = spec.name.clone();
                    if topo.declare_exchange(spec, m.passive)? {
                        topo.set_creator(&name, &ctx.user);
                        topo.set_exchange_policies(Some(&name), |n| {
                            ctx.broker.exchange_policies(&ctx.vhost_name, n)
                        });
                    }
                    ctx.broker.persist(&ctx.vhost_name, &mut topo);
                }
                if !m.nowait {
                    out.method(id, ExchangeDeclareOk {});
                }
                Ok(())
            }
            Method::ExchangeDelete(m) => {
                if !m.exchange.is_empty() && !names::is_reserved(&m.exchange) {
                    ctx.check(
                        &mut self.checks,
                        &Operation::ExchangeDelete {
                            exchange: &m.exchange,
                        },
                    )?;
                }
                {
                    let mut topo = ctx.vhost.write();
                    topo.delete_exchange(&m.exchange, m.if_unused)?;
                    ctx.broker.persist(&ctx.vhost_name, &mut topo);
                }
                if !m.nowait {
                    out.method(id, ExchangeDeleteOk {});
                }
                Ok(())
            }
            Method::ExchangeBind(m) => {
                check_bind(
                    ctx,
                    &mut self.checks,
                    &m.destination,
                    false,
                    &m.source,
                    &m.routing_key,
                )?;
                let dest = Destination::Exchange(m.destination);
                bind(ctx, true, &m.source, dest, &m.routing_key, &m.arguments)?;
                if !m.nowait {
                    out.method(id, ExchangeBindOk {});
                }
                Ok(())
            }
            Method::ExchangeUnbind(m) => {
                check_bind(
                    ctx,
                    &mut self.checks,
                    &m.destination,
                    false,
                    &m.source,
                    &m.routing_key,
                )?;
                let dest = Destination::Exchange(m.destination);
                bind(ctx, false, &m.source, dest, &m.routing_key, &m.arguments)?;
                if !m.nowait {
                    out.method(id, ExchangeUnbindOk {});
                }
                Ok(())
            }
            Method::QueueDeclare(m) => self.queue_declare(m, ctx, out),
            Method::QueueBind(m) => {
                let queue = self.queue_name(&m.queue)?;
                let key = if m.queue.is_empty() && m.routing_key.is_empty() {
                    queue.clone()
                } else {
                    m.routing_key
                };
                check_bind(ctx, &mut self.checks, &queue, true, &m.exchange, &key)?;
                {
                    // RabbitMQ names a missing exchange before a missing queue.
                    let topo = ctx.vhost.read();
                    if !m.exchange.is_empty() {
                        topo.exchange(&m.exchange)?;
                    }
                }
                find_queue(ctx, &queue)?;
                bind(
                    ctx,
                    true,
                    &m.exchange,
                    Destination::Queue(queue),
                    &key,
                    &m.arguments,
                )?;
                if !m.nowait {
                    out.method(id, QueueBindOk {});
                }
                Ok(())
            }
            Method::QueueUnbind(m) => {
                // Unbinding succeeds whatever is missing, and RabbitMQ does not
                // check exclusive ownership here.
                let queue = self.queue_name(&m.queue)?;
                check_bind(
                    ctx,
                    &mut self.checks,
                    &queue,
                    true,
                    &m.exchange,
                    &m.routing_key,
                )?;
                bind(
                    ctx,
                    false,
                    &m.exchange,
                    Destination::Queue(queue),
                    &m.routing_key,
                    &m.arguments,
                )?;
                out.method(id, QueueUnbindOk {});
                Ok(())
            }
            Method::QueuePurge(m) => {
                let name = self.queue_name(&m.queue)?;
                ctx.check(&mut self.checks, &Operation::Purge { queue: &name })?;
                let q = find_queue(ctx, &name)?;
                let n = q
                    .run(|inner, _, _| inner.queue.purge())
                    .map_err(store_failure)? as u32;
                if !m.nowait {
                    out.method(id, QueuePurgeOk { message_count: n });
                }
                Ok(())
            }
            Method::QueueDelete(m) => {
                let name = self.queue_name(&m.queue)?;
                ctx.check(&mut self.checks, &Operation::QueueDelete { queue: &name })?;
                let exists = ctx.vhost.read().queue(&name).is_some();
                let n = if exists {
                    find_queue(ctx, &name)?;
                    let when = DeleteWhen {
                        if_unused: m.if_unused,
                        if_empty: m.if_empty,
                        idle: None,
                    };
                    delete_queue(ctx, &name, when)?
                } else {
                    0
                };
                ctx.exclusive_queues.retain(|q| q.name() != name);
                if !m.nowait {
                    out.method(id, QueueDeleteOk { message_count: n });
                }
                Ok(())
            }
            Method::BasicQos(m) => {
                if m.prefetch_size != 0 {
                    return Err(AmqpError::not_implemented(format!(
                        "prefetch_size!=0 ({})",
                        m.prefetch_size
                    )));
                }
                if m.global {
                    self.limit
                        .global_prefetch
                        .store(m.prefetch_count as u32, Ordering::SeqCst);
                    self.wake_consumers();
                } else {
                    self.prefetch = m.prefetch_count as u32;
                }
                out.method(id, BasicQosOk {});
                Ok(())
            }
            Method::BasicConsume(m) => self.consume(m, ctx, out),
            Method::BasicCancel(m) => {
                if let Some(c) = self.consumers.remove(&m.consumer_tag) {
                    detach_consumer(ctx, &c);
                } else {
                    self.cancel_replies(&m.consumer_tag, ctx);
                }
                if !m.nowait {
                    out.method(
                        id,
                        BasicCancelOk {
                            consumer_tag: m.consumer_tag,
                        },
                    );
                }
                Ok(())
            }
            Method::BasicPublish(m) => {
                if m.immediate {
                    return Err(AmqpError::not_implemented("immediate=true"));
                }
                self.pending = Some(Pending {
                    publish: m,
                    header: None,
                    body: Bytes::new(),
                    more: Vec::new(),
                    received: 0,
                });
                Ok(())
            }
            Method::BasicGet(m) => {
                let name = self.queue_name(&m.queue)?;
                ctx.check(&mut self.checks, &Operation::Get { queue: &name })?;
                let q = find_queue(ctx, &name)?;
                let got = q
                    .run(|inner, now, fx| inner.queue.get(now, !m.no_ack, fx))
                    .map_err(store_failure)?;
                match got {
                    None => {
                        ctx.stats.add_for(Counter::GetEmpty, q.kind(), 1);
                        out.method(id, BasicGetEmpty::default())
                    }
                    Some((msg, remaining)) => {
                        let kind = if m.no_ack {
                            Counter::GetNoAck
                        } else {
                            Counter::Get
                        };
                        ctx.stats.add_for(kind, q.kind(), 1);
                        if msg.redelivered {
                            ctx.stats.add_for(Counter::Redeliver, q.kind(), 1);
                        }
                        let tag = self.next_tag;
                        self.next_tag += 1;
                        out.content(
                            id,
                            BasicGetOk {
                                delivery_tag: tag,
                                redelivered: msg.redelivered,
                                exchange: msg.message.exchange.clone(),
                                routing_key: msg.message.routing_key.clone(),
                                message_count: remaining,
                            },
                            &msg.message,
                        );
                        if !m.no_ack {
                            self.unacked.push_back(Unacked {
                                tag,
                                queue: q,
                                seq: msg.seq,
                                consumer: None,
                            });
                        }
                    }
                }
                Ok(())
            }
            Method::BasicAck(m) => {
                let entries = self.take_unacked(m.delivery_tag, m.multiple)?;
                for e in &entries {
                    ctx.stats.add_for(Counter::Ack, e.queue.kind(), 1);
                }
                self.settle_or_buffer(ctx, entries, None);
                Ok(())
            }
            Method::BasicReject(m) => {
                let entries = self.take_unacked(m.delivery_tag, false)?;
                self.settle_or_buffer(ctx, entries, Some(m.requeue));
                Ok(())
            }
            Method::BasicNack(m) => {
                let entries = self.take_unacked(m.delivery_tag, m.multiple)?;
                self.settle_or_buffer(ctx, entries, Some(m.requeue));
                Ok(())
            }
            Method::BasicRecover(m) => {
                self.recover(m.requeue)?;
                out.method(id, BasicRecoverOk {});
                Ok(())
            }
            Method::BasicRecoverAsync(m) => self.recover(m.requeue),
            Method::ConfirmSelect(m) => {
                if self.tx.is_some() {
                    return Err(AmqpError::precondition_failed(
                        "cannot switch from tx to confirm mode",
                    ));
                }
                if self.confirm.is_none() {
                    self.confirm = Some(Confirms::new(id, ctx.tx.clone()));
                }
                if !m.nowait {
                    out.method(id, ConfirmSelectOk {});
                }
                Ok(())
            }
            Method::TxSelect(_) => {
                if self.confirm.is_some() {
                    return Err(AmqpError::precondition_failed(
                        "cannot switch from confirm to tx mode",
                    ));
                }
                self.tx.get_or_insert_with(TxBuffer::default);
                out.method(id, TxSelectOk {});
                Ok(())
            }
            Method::TxCommit(_) => {
                let tx = self.tx.as_mut().ok_or_else(|| {
                    AmqpError::precondition_failed("channel is not transactional")
                })?;
                let publishes = std::mem::take(&mut tx.publishes);
                let settles = std::mem::take(&mut tx.settles);
                let mut wait_for = 0;
                let mut failed = None;
                let mut written: Vec<Arc<QueueCell>> = Vec::new();
                for (mandatory, msg) in publishes {
                    self.route(ctx, out, mandatory, &msg)?;
                    for q in ctx.route_buf.drain(..) {
                        match q.publish(Arc::clone(&msg)) {
                            Enqueued::Stored(Some(ticket), _) => {
                                wait_for = wait_for.max(ticket);
                                if !written.iter().any(|w| Arc::ptr_eq(w, &q)) {
                                    written.push(q);
                                }
                            }
                            Enqueued::Failed(err) => failed = Some(err),
                            Enqueued::Stored(None, _) | Enqueued::QueueDeleted => {}
                        }
                    }
                }
                // Commit-ok means stored: the writes are not left behind.
                for q in written {
                    if let Err(err) = q.write_now() {
                        failed = Some(err);
                    }
                }
                settle(settles);
                if let Some(err) = failed {
                    // The transaction did not happen as a whole: no commit-ok.
                    return Err(store_failure(err));
                }
                self.wake_consumers();
                if wait_for == 0 {
                    out.method(id, TxCommitOk {});
                } else if let Some(tx) = self.tx.as_mut() {
                    tx.commit_waits_for = Some(wait_for);
                    if !ctx.confirm_dirty.contains(&id) {
                        ctx.confirm_dirty.push(id);
                    }
                }
                Ok(())
            }
            Method::TxRollback(_) => {
                let tx = self.tx.as_mut().ok_or_else(|| {
                    AmqpError::precondition_failed("channel is not transactional")
                })?;
                tx.publishes.clear();
                let restored: Vec<Unacked> = tx.settles.drain(..).map(|(e, _)| e).collect();
                self.unacked.extend(restored);
                self.unacked.make_contiguous().sort_by_key(|e| e.tag);
                out.method(id, TxRollbackOk {});
                Ok(())
            }
            // A delivery sent back by a confused client is ignored, as RabbitMQ
            // does; any other server-to-client method is refused.
            Method::BasicDeliver(_) => Ok(()),
            _ => Err(AmqpError::command_invalid("unimplemented method")),
        }
    }
}

/// A storage failure as the client sees it: 541 INTERNAL_ERROR, a
/// connection error.
fn store_failure(err: warren_core::StoreError) -> AmqpError {
    tracing::error!(%err, "storage failure");
    AmqpError::new(ReplyCode::InternalError, err.to_string())
}

/// Names arrive with CR and LF removed, as RabbitMQ strips them.
fn strip_cr_lf(name: String) -> String {
    if name.contains(['\r', '\n']) {
        name.replace(['\r', '\n'], "")
    } else {
        name
    }
}
