//! One AMQP connection: a single task that owns the socket, the connection's
//! channels and its write buffer.
//!
//! The task (`connection/task.rs`) waits on four things at once: bytes from the client, events from
//! queues (deliveries, cancellations), room in the socket for buffered
//! output, and the heartbeat timer. Everything it writes goes into one
//! buffer that is flushed when the socket is writable, so replies and
//! deliveries produced while handling a batch of frames leave in one write.
//! Reading pauses while the buffer is over its high-water mark, which pushes
//! back on a client that does not read what it is sent.

mod handshake;
mod out;
mod task;

pub use out::Out;
pub use task::{serve, serve_tls};

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::sync::watch;
use tracing::{debug, info, warn};
use warren_core::access::{CheckCache, Grants, Operation, Permission};
use warren_core::{AmqpError, Message, QueuedMessage, SyncTicket};

use crate::resources::Alarms;
use warren_protocol::{
    encode_heartbeat, parse_frame, ConnectionClose, ConnectionCloseOk, ConnectionOpenOk,
    ConnectionStart, ConnectionTune, DecodeError, FieldTable, FieldValue, Frame, FrameError,
    FramePayload, Method, Reader, ReplyCode, PROTOCOL_HEADER,
};

use crate::broker::{Broker, VHost};
use crate::channel::{Channel, PendingAcks};
use crate::queue::{Consumer, QueueCell};
use crate::staging::Staging;
use crate::stats::{Churn, Counter, LocalStats, MessageStats};

/// Stop reading from the client while this much output waits to be written.
const WRITE_HIGH_WATER: usize = 1 << 20;
/// Events taken from the queue channel in one go.
const EVENT_BUDGET: usize = 1024;
/// Room made in the read buffer before each read, so reads stay large.
const READ_RESERVE: usize = 64 * 1024;
/// The same for a client that sends large frames: a frame cut by the end
/// of the buffer is copied into the next one, so the buffer is made large
/// enough that this happens seldom.
const LARGE_READ_RESERVE: usize = 1 << 20;
/// A body frame at least this large makes a client's frames large.
const LARGE_FRAME: usize = 16 * 1024;
/// The least frame_max a client may negotiate (AMQP's frame-min-size).
const FRAME_MIN_SIZE: u32 = 4096;
/// How long the server waits for close-ok after sending connection.close.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(3);
/// How long the server keeps the socket after sending close-ok.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);

/// What queues send to a connection.
pub enum ConnEvent {
    /// Messages for one of this connection's consumers, in order.
    Deliver {
        consumer: Arc<Consumer>,
        msgs: Vec<QueuedMessage>,
    },
    /// The consumer's queue was deleted.
    Cancelled { consumer: Arc<Consumer> },
    /// A direct reply for the reply consumer of `channel`.
    Reply {
        channel: u16,
        token: String,
        msg: Arc<Message>,
    },
    /// The broker closes this connection (its vhost or user was deleted,
    /// or an operator closed it).
    Close(AmqpError),
    /// A listing wants this connection's channels and consumers.
    Describe(tokio::sync::oneshot::Sender<Vec<crate::connections::ChannelSnapshot>>),
    /// Consumers settled messages this channel waits to confirm.
    ConfirmsDue(u16),
}

/// A connection's open channels, indexed by channel number (looked up for
/// every frame, so a plain index rather than a hash).
#[derive(Default)]
struct Channels {
    slots: Vec<Option<Box<Channel>>>,
    open: usize,
    /// `open`, shared with the connection registry's listings.
    shown: Arc<AtomicUsize>,
}

impl Channels {
    fn len(&self) -> usize {
        self.open
    }

    fn iter(&self) -> impl Iterator<Item = &Channel> {
        self.slots.iter().flatten().map(|c| &**c)
    }

    fn get(&self, id: u16) -> Option<&Channel> {
        self.slots.get(id as usize)?.as_deref()
    }

    fn get_mut(&mut self, id: u16) -> Option<&mut Channel> {
        self.slots.get_mut(id as usize)?.as_deref_mut()
    }

    fn insert(&mut self, channel: Channel) {
        let at = channel.id as usize;
        if self.slots.len() <= at {
            self.slots.resize_with(at + 1, || None);
        }
        if self.slots[at].replace(Box::new(channel)).is_none() {
            self.open += 1;
            self.shown.store(self.open, Ordering::Relaxed);
        }
    }

    fn remove(&mut self, id: u16) -> Option<Channel> {
        let channel = self.slots.get_mut(id as usize)?.take()?;
        self.open -= 1;
        self.shown.store(self.open, Ordering::Relaxed);
        Some(*channel)
    }

    fn drain(&mut self) -> impl Iterator<Item = Channel> + '_ {
        self.open = 0;
        self.shown.store(0, Ordering::Relaxed);
        self.slots.drain(..).flatten().map(|ch| *ch)
    }
}

/// Connection-wide state the channels use: the broker, the vhost, the
/// connection's identity and what it owns.
pub struct ConnCtx {
    pub id: u64,
    pub broker: Arc<Broker>,
    pub vhost: Arc<VHost>,
    pub vhost_name: String,
    pub tx: UnboundedSender<ConnEvent>,
    /// Exclusive queues declared by this connection.
    pub exclusive_queues: Vec<Arc<QueueCell>>,
    /// Scratch space for routing results, reused across publishes.
    pub route_buf: Vec<Arc<QueueCell>>,
    /// Channels with publisher confirms waiting to be sent.
    pub confirm_dirty: Vec<u16>,
    /// Routed publishes not yet enqueued.
    pub staging: Staging,
    /// Acks not yet applied.
    pub acks: PendingAcks,
    /// The authenticated user.
    pub user: String,
    /// What the user may do in this vhost, as of `grants_generation`.
    pub grants: Grants,
    pub grants_generation: u64,
    /// Message counts not yet added to the broker's.
    pub stats: LocalStats,
    /// The vhost's message counters (the broker's, for its vhost only).
    pub vhost_stats: Arc<MessageStats>,
}

impl ConnCtx {
    /// Checks that the user may perform `op` (403 otherwise), against the
    /// registry as it is now.
    /// `cache` is the channel's memory of checks it passed.
    pub fn check(&mut self, cache: &mut CheckCache, op: &Operation<'_>) -> Result<(), AmqpError> {
        self.refresh_grants();
        self.grants.check_cached(op, cache)
    }

    /// Checks a routing key against the user's topic permissions on a
    /// topic exchange.
    pub fn check_topic(
        &mut self,
        cache: &mut CheckCache,
        permission: Permission,
        exchange: &str,
        routing_key: &str,
    ) -> Result<(), AmqpError> {
        self.refresh_grants();
        if self.grants.topics.is_empty() {
            return Ok(());
        }
        let is_topic = self
            .vhost
            .read()
            .exchange(exchange)
            .is_ok_and(|x| x.spec.kind == warren_core::ExchangeKind::Topic);
        if !is_topic {
            return Ok(());
        }
        self.grants
            .check_topic(permission, exchange, routing_key, cache)
    }

    fn refresh_grants(&mut self) {
        let now = self.broker.access_generation();
        if now != self.grants_generation {
            self.grants = self.broker.grants(&self.user, &self.vhost_name);
            self.grants_generation = now;
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    ProtocolHeader,
    StartOk,
    TuneOk,
    Open,
    Running,
    /// The server sent connection.close and waits for close-ok.
    Closing,
    /// The client closed and got close-ok; the server waits briefly for it
    /// to drop the socket (as RabbitMQ does), so the reply is not lost.
    Draining,
    /// Done: flush and drop the socket.
    Closed,
}

/// A connection-level failure: the connection.close to send.
struct Fault {
    error: AmqpError,
    class_id: u16,
    method_id: u16,
}

impl Fault {
    fn new(error: AmqpError) -> Self {
        Fault {
            error,
            class_id: 0,
            method_id: 0,
        }
    }
}

struct Connection {
    id: u64,
    peer: SocketAddr,
    /// The TLS version of an AMQPS connection (`tlsv1.3`).
    tls: Option<String>,
    local: SocketAddr,
    client_properties: FieldTable,
    auth_mechanism: String,
    broker: Arc<Broker>,
    phase: Phase,
    rbuf: BytesMut,
    /// The client has sent a large body frame (see [`LARGE_READ_RESERVE`]).
    large_frames: bool,
    out: Out,
    rx: UnboundedReceiver<ConnEvent>,
    tx: UnboundedSender<ConnEvent>,
    ctx: Option<ConnCtx>,
    channels: Channels,
    channel_max: u16,
    heartbeat: u16,
    cancel_notify: bool,
    user: String,
    last_read: Instant,
    last_write: Instant,
    deadline: Option<Instant>,
    /// The storage sync ticket reached so far, for confirms that wait.
    synced: watch::Receiver<SyncTicket>,
    alarms: watch::Receiver<Alarms>,
    /// The connection has published: alarms block it.
    published: bool,
    /// Reading is paused by an alarm.
    blocked: bool,
    /// Client announced the `connection.blocked` capability.
    blocked_notify: bool,
}

impl Connection {
    fn on_bytes(&mut self) {
        if self.phase == Phase::ProtocolHeader {
            if self.rbuf.len() < 8 {
                return;
            }
            let header = self.rbuf.split_to(8);
            if &header[..] != PROTOCOL_HEADER {
                self.out.buf.extend_from_slice(PROTOCOL_HEADER);
                self.phase = Phase::Closed;
                return;
            }
            self.send_start();
            self.phase = Phase::StartOk;
        }
        let mut flush_confirms = false;
        while !matches!(self.phase, Phase::Closed) {
            let frame_max = self.out.frame_max;
            match parse_frame(&mut self.rbuf, frame_max) {
                Ok(Some(frame)) => {
                    if matches!(&frame.payload, FramePayload::Body(b) if b.len() >= LARGE_FRAME) {
                        self.large_frames = true;
                    }
                    if let Err(fault) = self.on_frame(frame) {
                        self.close_with(fault);
                    }
                    flush_confirms = true;
                }
                Ok(None) => break,
                Err(err) => {
                    let fault = match err {
                        FrameError::Method {
                            class_id,
                            method_id,
                            error,
                            ..
                        } => {
                            let text =
                                match (&error, warren_protocol::method_name(class_id, method_id)) {
                                    (DecodeError::UnknownMethod { .. }, _) | (_, None) => {
                                        error.to_string()
                                    }
                                    (_, Some(name)) => format!("cannot decode {name}: {error}"),
                                };
                            Fault {
                                error: AmqpError::new(error.reply_code(), text),
                                class_id,
                                method_id,
                            }
                        }
                        FrameError::ShortHeader { .. } => {
                            Fault::new(AmqpError::frame_error(err.to_string()))
                        }
                        other => Fault::new(AmqpError::frame_error(other.to_string())),
                    };
                    self.close_with(fault);
                    // Whatever follows a broken frame cannot be parsed.
                    self.rbuf.clear();
                    if self.phase != Phase::Closing {
                        self.phase = Phase::Closed;
                    }
                    break;
                }
            }
        }
        self.flush_staged();
        self.flush_acks();
        if flush_confirms {
            self.flush_confirms();
        }
        self.flush_stats();
    }

    /// Adds this connection's message counts to the broker's.
    fn flush_stats(&mut self) {
        if let Some(ctx) = self.ctx.as_mut() {
            ctx.stats.flush(&ctx.broker.stats, &ctx.vhost_stats);
        }
    }

    /// Applies the acks gathered so far and wakes the consumers they may
    /// have let under their prefetch limits.
    fn flush_acks(&mut self) {
        let Some(ctx) = self.ctx.as_mut() else {
            return;
        };
        if ctx.acks.is_empty() {
            return;
        }
        for id in ctx.acks.apply() {
            if let Some(ch) = self.channels.get(id) {
                ch.wake_consumers();
            }
        }
    }

    /// Enqueues the publishes staged so far and records their outcomes
    /// for confirms.
    fn flush_staged(&mut self) {
        let Some(ctx) = self.ctx.as_mut() else {
            return;
        };
        if ctx.staging.is_empty() {
            return;
        }
        let channels = &mut self.channels;
        ctx.staging.flush(|(channel, seq), outcome| {
            if let Some(ch) = channels.get_mut(channel) {
                ch.settle_confirm(seq, outcome);
            }
        });
    }

    /// Sends the confirms that are due; channels still waiting for a sync
    /// stay on the list.
    fn flush_confirms(&mut self) {
        let Some(ctx) = self.ctx.as_mut() else {
            return;
        };
        let synced = *self.synced.borrow_and_update();
        let mut still = std::mem::take(&mut ctx.confirm_dirty);
        let mut confirmed = 0;
        still.retain(|id| match self.channels.get_mut(*id) {
            Some(ch) => ch.flush_confirms(&mut self.out, synced, &mut confirmed),
            None => false,
        });
        ctx.confirm_dirty = still;
        ctx.stats.add(Counter::Confirm, confirmed);
        ctx.stats.flush(&ctx.broker.stats, &ctx.vhost_stats);
    }

    fn waiting_for_sync(&self) -> bool {
        self.ctx
            .as_ref()
            .is_some_and(|c| !c.confirm_dirty.is_empty())
    }

    /// Sends connection.close and waits for close-ok.
    fn close_with(&mut self, fault: Fault) {
        if matches!(self.phase, Phase::Closing | Phase::Draining | Phase::Closed) {
            return;
        }
        debug!(conn = self.id, error = %fault.error, "closing connection");
        self.out.method(
            0,
            ConnectionClose {
                reply_code: fault.error.code.code(),
                reply_text: fault.error.reply_text(),
                class_id: fault.class_id,
                method_id: fault.method_id,
            },
        );
        self.phase = Phase::Closing;
        self.deadline = Some(Instant::now() + CLOSE_TIMEOUT);
        self.release_channels();
    }

    fn on_frame(&mut self, frame: Frame) -> Result<(), Fault> {
        // Every other method sees the publishes and acks sent before it
        // applied.
        let (staging_due, acks_due) = match &frame.payload {
            FramePayload::Method(Method::BasicPublish(_)) => (
                self.ctx.as_ref().is_some_and(|c| c.staging.is_full()),
                false,
            ),
            FramePayload::Method(Method::BasicAck(_)) => {
                (false, self.ctx.as_ref().is_some_and(|c| c.acks.is_full()))
            }
            FramePayload::Method(_) => (true, true),
            _ => (false, false),
        };
        if staging_due {
            self.flush_staged();
        }
        if acks_due {
            self.flush_acks();
        }
        match self.phase {
            Phase::Closing => {
                // Only close-ok (or a crossing close) matters now.
                if let FramePayload::Method(m) = frame.payload {
                    match m {
                        Method::ConnectionCloseOk(_) => self.phase = Phase::Closed,
                        Method::ConnectionClose(_) => {
                            self.out.method(0, ConnectionCloseOk {});
                            self.phase = Phase::Closed;
                        }
                        _ => {}
                    }
                }
                return Ok(());
            }
            Phase::Closed | Phase::Draining | Phase::ProtocolHeader => return Ok(()),
            _ => {}
        }
        match frame.payload {
            FramePayload::Heartbeat if frame.channel == 0 => Ok(()),
            FramePayload::Method(method) if frame.channel == 0 => self.on_connection_method(method),
            _ if self.phase != Phase::Running => Err(Fault::new(AmqpError::unexpected_frame(
                "expected a connection method on channel 0 during the handshake",
            ))),
            payload => self.on_channel_frame(frame.channel, payload),
        }
    }

    fn on_channel_frame(&mut self, id: u16, payload: FramePayload) -> Result<(), Fault> {
        let Some(ctx) = self.ctx.as_mut() else {
            return Err(Fault::new(AmqpError::unexpected_frame(
                "connection not open",
            )));
        };
        if payload == FramePayload::Heartbeat {
            return Err(Fault::new(AmqpError::unexpected_frame(
                "type 8, all octets = <<>>",
            )));
        }
        // Errors about a publish's content name the publish, as RabbitMQ's do.
        let publishing = self
            .channels
            .get(id)
            .is_some_and(|c| c.has_pending_content());
        if matches!(payload, FramePayload::Method(Method::BasicPublish(_))) {
            self.published = true;
        }
        let (class_id, method_id) = match &payload {
            _ if publishing => (60, 40),
            FramePayload::Method(m) => (m.class_id(), m.method_id()),
            _ => (0, 0),
        };
        let channel = match self.channels.get_mut(id) {
            Some(ch) => ch,
            None => {
                return match payload {
                    FramePayload::Method(Method::ChannelOpen(_))
                        if self.channels.len() >= usize::from(self.channel_max) =>
                    {
                        Err(Fault::new(AmqpError::not_allowed(format!(
                            "number of channels opened ({}) has reached the negotiated channel_max ({})",
                            self.channels.len(),
                            self.channel_max
                        ))))
                    }
                    FramePayload::Method(Method::ChannelOpen(_)) => {
                        self.channels.insert(Channel::new(id));
                        Churn::bump(&self.broker.churn.channels_opened, 1);
                        self.out
                            .method(id, warren_protocol::ChannelOpenOk::default());
                        Ok(())
                    }
                    // A late reply to a close we already completed.
                    FramePayload::Method(Method::ChannelCloseOk(_)) => Ok(()),
                    _ => Err(Fault {
                        error: AmqpError::channel_error("expected 'channel.open'"),
                        class_id,
                        method_id,
                    }),
                };
            }
        };
        let result = channel.on_frame(payload, ctx, &mut self.out);
        if channel.finished {
            if let Some(ch) = self.channels.remove(id) {
                ch.close(ctx);
            }
        }
        match result {
            Ok(()) => Ok(()),
            Err(error) if error.code.is_connection_error() => Err(Fault {
                error,
                class_id,
                method_id,
            }),
            Err(error) => {
                if let Some(ch) = self.channels.get_mut(id) {
                    ch.fail(error, class_id, method_id, ctx, &mut self.out);
                }
                Ok(())
            }
        }
    }

    fn on_event(&mut self, ev: ConnEvent) {
        match ev {
            ConnEvent::Deliver { consumer, msgs } => {
                consumer.release_in_flight(msgs.len());
                if let Some(ctx) = self.ctx.as_mut() {
                    let kind = if consumer.no_ack {
                        Counter::DeliverNoAck
                    } else {
                        Counter::Deliver
                    };
                    let queue = consumer.queue.kind();
                    ctx.stats.add_for(kind, queue, msgs.len() as u64);
                    let again = msgs.iter().filter(|m| m.redelivered).count();
                    ctx.stats.add_for(Counter::Redeliver, queue, again as u64);
                }
                match self.channels.get_mut(consumer.channel) {
                    Some(ch) if self.phase == Phase::Running => {
                        ch.deliver(consumer, msgs, &mut self.out)
                    }
                    // The connection is closing: the consumer must not be
                    // offered these messages (or any other) again.
                    _ => consumer.hand_back(msgs),
                }
            }
            ConnEvent::Cancelled { consumer } => {
                if let Some(ch) = self.channels.get_mut(consumer.channel) {
                    ch.on_queue_deleted(&consumer, self.cancel_notify, &mut self.out);
                }
            }
            ConnEvent::Reply {
                channel,
                token,
                msg,
            } => {
                if let Some(ch) = self.channels.get_mut(channel) {
                    if self.phase == Phase::Running {
                        ch.deliver_reply(&token, &msg, &mut self.out);
                    }
                }
            }
            ConnEvent::ConfirmsDue(channel) => {
                if let Some(ctx) = self.ctx.as_mut() {
                    if !ctx.confirm_dirty.contains(&channel) {
                        ctx.confirm_dirty.push(channel);
                    }
                }
                self.flush_confirms();
            }
            ConnEvent::Describe(reply) => {
                let mut list: Vec<_> = self.channels.iter().map(|ch| ch.snapshot()).collect();
                list.sort_by_key(|c| c.number);
                let _ = reply.send(list);
            }
            ConnEvent::Close(error) => {
                if self.phase == Phase::Running {
                    info!(conn = self.id, peer = %self.peer, reason = %error.text, "closing connection");
                    self.close_with(Fault::new(error));
                }
            }
        }
    }

    /// Closes every channel as the connection stops serving them: consumers
    /// are cancelled, unacked messages requeued and exclusive queues
    /// deleted at once, not when the socket finally goes, so queues stop
    /// offering this connection work.
    fn release_channels(&mut self) {
        self.flush_acks();
        let Some(ctx) = self.ctx.as_mut() else {
            return;
        };
        for ch in self.channels.drain() {
            ch.close(ctx);
        }
        // Exclusive queues go with the connection: before its close-ok
        // leaves, so a client that saw it finds them gone.
        for q in std::mem::take(&mut ctx.exclusive_queues) {
            crate::channel::delete_queue(ctx, q.name(), Default::default()).ok();
        }
    }

    /// Releases what the connection held: unacked messages go back to their
    /// queues, consumers are cancelled, exclusive queues are deleted.
    fn cleanup(&mut self) {
        self.flush_acks();
        let Some(ctx) = self.ctx.as_mut() else {
            return;
        };
        ctx.broker.connections.unregister(self.id);
        for ch in self.channels.drain() {
            ch.close(ctx);
        }
        for q in std::mem::take(&mut ctx.exclusive_queues) {
            crate::channel::delete_queue(ctx, q.name(), Default::default()).ok();
        }
        // Deliveries still queued for us go back too.
        self.rx.close();
        while let Ok(ev) = self.rx.try_recv() {
            if let ConnEvent::Deliver { consumer, msgs } = ev {
                consumer.release_in_flight(msgs.len());
                consumer.hand_back(msgs);
            }
        }
    }
}
