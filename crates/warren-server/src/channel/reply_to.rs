//! Direct reply-to (`amq.rabbitmq.reply-to`), as RabbitMQ does it: a
//! channel consumes the pseudo-queue without acks, its requests' `reply_to`
//! is rewritten to `amq.rabbitmq.reply-to.<token>`, and a reply published
//! to the default exchange with that routing key goes straight to the
//! channel, with no queue in between. A reply to a channel that is gone is
//! dropped.
//!
//! The broker keeps the token of every live reply consumer
//! ([`ReplyRegistry`]); replies reach the requesting connection as an
//! event, like deliveries.

use ahash::AHashMap;
use bytes::BytesMut;
use parking_lot::Mutex;
use std::sync::Arc;
use tokio::sync::mpsc::UnboundedSender;
use warren_core::{AmqpError, Message};
use warren_protocol::{BasicConsumeOk, BasicProperties, QueueDeclareOk};

use super::Channel;
use crate::connection::{ConnCtx, ConnEvent, Out};

/// The pseudo-queue a reply consumer consumes from.
pub const REPLY_QUEUE: &str = "amq.rabbitmq.reply-to";
/// The prefix of the routing key (and `reply_to`) of a reply.
pub const REPLY_PREFIX: &str = "amq.rabbitmq.reply-to.";

/// A channel's reply consumer.
pub struct ReplyConsumer {
    pub tag: String,
    pub token: String,
}

/// Where replies go: token -> (connection, channel).
#[derive(Default)]
pub struct ReplyRegistry {
    targets: Mutex<AHashMap<String, (UnboundedSender<ConnEvent>, u16)>>,
}

impl ReplyRegistry {
    fn register(&self, token: &str, tx: UnboundedSender<ConnEvent>, channel: u16) {
        self.targets.lock().insert(token.to_string(), (tx, channel));
    }

    fn unregister(&self, token: &str) {
        self.targets.lock().remove(token);
    }

    fn exists(&self, token: &str) -> bool {
        self.targets.lock().contains_key(token)
    }

    /// Sends a reply to the channel that owns `token`; false if there is
    /// none (the reply is dropped).
    pub fn deliver(&self, token: &str, msg: &Arc<Message>) -> bool {
        let target = self.targets.lock().get(token).cloned();
        match target {
            Some((tx, channel)) => tx
                .send(ConnEvent::Reply {
                    channel,
                    token: token.to_string(),
                    msg: Arc::clone(msg),
                })
                .is_ok(),
            None => false,
        }
    }
}

/// The token a reply's routing key names, if it names one.
pub fn reply_token<'a>(exchange: &str, routing_key: &'a str) -> Option<&'a str> {
    if exchange.is_empty() {
        routing_key.strip_prefix(REPLY_PREFIX)
    } else {
        None
    }
}

impl Channel {
    /// basic.consume of [`REPLY_QUEUE`].
    pub(super) fn consume_replies(
        &mut self,
        tag: String,
        no_ack: bool,
        nowait: bool,
        ctx: &mut ConnCtx,
        out: &mut Out,
    ) -> Result<(), AmqpError> {
        if !no_ack {
            return Err(AmqpError::precondition_failed(
                "reply consumer cannot acknowledge",
            ));
        }
        if self.reply.is_some() {
            return Err(AmqpError::precondition_failed("reply consumer already set"));
        }
        let token = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
        ctx.broker.replies.register(&token, ctx.tx.clone(), self.id);
        self.reply = Some(ReplyConsumer {
            tag: tag.clone(),
            token,
        });
        if !nowait {
            out.method(self.id, BasicConsumeOk { consumer_tag: tag });
        }
        Ok(())
    }

    /// basic.cancel of the reply consumer (true if `tag` names it).
    pub(super) fn cancel_replies(&mut self, tag: &str, ctx: &ConnCtx) -> bool {
        if self.reply.as_ref().is_some_and(|r| r.tag == tag) {
            self.release_replies(ctx);
            true
        } else {
            false
        }
    }

    /// Forgets the reply consumer (cancelled, or the channel closes).
    pub(super) fn release_replies(&mut self, ctx: &ConnCtx) {
        if let Some(r) = self.reply.take() {
            ctx.broker.replies.unregister(&r.token);
        }
    }

    /// A request asking for a direct reply: its properties with `reply_to`
    /// naming this channel's token, or the error RabbitMQ gives without a
    /// reply consumer.
    pub(super) fn rewrite_reply_to(&self, raw: &[u8]) -> Result<bytes::Bytes, AmqpError> {
        let Some(r) = &self.reply else {
            return Err(AmqpError::precondition_failed(
                "fast reply consumer does not exist",
            ));
        };
        let mut props = BasicProperties::decode(raw)
            .map_err(|e| AmqpError::frame_error(format!("cannot decode content header: {e}")))?;
        props.reply_to = Some(format!("{REPLY_PREFIX}{}", r.token));
        let mut buf = BytesMut::with_capacity(raw.len() + 48);
        props.encode(&mut buf);
        Ok(buf.freeze())
    }

    /// queue.declare of a name starting with [`REPLY_QUEUE`]: the
    /// pseudo-queue itself, or a reply token, which exists while its reply
    /// consumer does; any other such name is not found (never refused as
    /// reserved).
    pub(super) fn declare_reply_queue(
        &self,
        name: &str,
        nowait: bool,
        ctx: &ConnCtx,
        out: &mut Out,
    ) -> Result<(), AmqpError> {
        let exists = name == REPLY_QUEUE
            || name
                .strip_prefix(REPLY_PREFIX)
                .is_some_and(|token| ctx.broker.replies.exists(token));
        if !exists {
            return Err(AmqpError::not_found(format!(
                "no queue '{name}' in vhost '{}'",
                ctx.vhost_name
            )));
        }
        if !nowait {
            out.method(
                self.id,
                QueueDeclareOk {
                    queue: name.to_string(),
                    message_count: 0,
                    consumer_count: 1,
                },
            );
        }
        Ok(())
    }

    /// A reply for this channel's reply consumer: delivered (no ack), or
    /// dropped if the consumer is gone. As in RabbitMQ, a reply carries the
    /// channel's next delivery tag without using it up (no ack will name
    /// it).
    pub fn deliver_reply(&mut self, token: &str, msg: &Message, out: &mut Out) {
        let Some(r) = &self.reply else {
            return;
        };
        if r.token != token || self.closing {
            return;
        }
        out.deliver(self.id, &r.tag, self.next_tag, false, msg);
    }
}
