//! Operations on a vhost's topology and messages made from outside AMQP
//! (the management API, definitions imports): the same checks, texts and
//! persistence as the channel methods they mirror, without a connection.

use std::sync::Arc;

use bytes::Bytes;
use warren_core::arguments::validate_queue_args;
use warren_core::exchange::ExchangeSpec;
use warren_core::{AmqpError, Destination, Message, QueuedMessage};
use warren_protocol::FieldTable;

use crate::broker::{Broker, VHost};
use crate::channel::queues::check_queue_equivalent;
use crate::lifecycle::{delete_queue, DeleteWhen};
use crate::queue::{Enqueued, QueueCell, QueueSpec, Settle};

/// What `get_messages` does with what it took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GetMode {
    /// Put back (marked redelivered), as RabbitMQ's `ack_requeue_true` and
    /// `reject_requeue_true`.
    Requeue,
    /// Acknowledged: gone (`ack_requeue_false`).
    Ack,
    /// Rejected without requeue: dead-lettered or dropped
    /// (`reject_requeue_false`).
    Reject,
}

impl Broker {
    fn topology(&self, vhost: &str) -> Result<Arc<VHost>, AmqpError> {
        self.vhost(vhost)
            .ok_or_else(|| AmqpError::not_found(format!("no vhost '{vhost}'")))
    }

    /// exchange.declare by `user`; true if it was created.
    pub fn declare_exchange(
        &self,
        vhost: &str,
        user: &str,
        spec: ExchangeSpec,
    ) -> Result<bool, AmqpError> {
        let topo = self.topology(vhost)?;
        let mut topo = topo.write();
        let name = spec.name.clone();
        let created = topo.declare_exchange(spec, false)?;
        if created {
            topo.set_creator(&name, user);
            topo.set_exchange_policies(Some(&name), |n| self.exchange_policies(vhost, n));
        }
        self.persist(vhost, &mut topo);
        Ok(created)
    }

    /// exchange.delete; false if there was no such exchange.
    pub fn delete_exchange(
        &self,
        vhost: &str,
        name: &str,
        if_unused: bool,
    ) -> Result<bool, AmqpError> {
        let topo = self.topology(vhost)?;
        let mut topo = topo.write();
        let deleted = topo.delete_exchange(name, if_unused)?;
        self.persist(vhost, &mut topo);
        Ok(deleted)
    }

    /// queue.declare of a queue no connection owns; true if it was created.
    pub fn declare_queue(
        self: &Arc<Self>,
        vhost: &str,
        name: &str,
        durable: bool,
        auto_delete: bool,
        arguments: FieldTable,
    ) -> Result<bool, AmqpError> {
        let topo = self.topology(vhost)?;
        crate::stats::Churn::bump(&self.churn.queues_declared, 1);
        validate_queue_args(name, vhost, durable, false, auto_delete, &arguments)?;
        let wanted = warren_protocol::QueueDeclare {
            ticket: 0,
            queue: name.to_string(),
            passive: false,
            durable,
            exclusive: false,
            auto_delete,
            nowait: false,
            arguments: arguments.clone(),
        };
        let mut guard = topo.write();
        if let Some(q) = guard.queue(name) {
            check_queue_equivalent(&q.spec, &wanted, 0, vhost)?;
            return Ok(false);
        }
        if let Some(limit) = self.vhost_queue_limit(vhost) {
            if guard.queue_count() as u64 >= limit {
                return Err(AmqpError::precondition_failed(format!(
                    "cannot declare queue '{name}': queue limit in vhost '{vhost}' ({limit}) is reached"
                )));
            }
        }
        let q = self
            .new_queue(
                vhost,
                QueueSpec {
                    name: name.to_string(),
                    id: 0,
                    durable,
                    exclusive_owner: None,
                    auto_delete,
                    arguments,
                },
            )
            .map_err(|e| {
                AmqpError::new(warren_protocol::ReplyCode::InternalError, e.to_string())
            })?;
        guard.insert_queue(name.to_string(), Arc::clone(&q));
        self.persist(vhost, &mut guard);
        drop(guard);
        q.set_home(self.home(vhost));
        Ok(true)
    }

    /// The queue named `name`, if any.
    pub fn find_queue(&self, vhost: &str, name: &str) -> Option<Arc<QueueCell>> {
        self.vhost(vhost)?.read().queue(name).cloned()
    }

    /// queue.delete; `None` if there was no such queue, else the number of
    /// ready messages it held.
    pub fn delete_queue(
        &self,
        vhost: &str,
        name: &str,
        if_unused: bool,
        if_empty: bool,
    ) -> Result<Option<u32>, AmqpError> {
        let topo = self.topology(vhost)?;
        if topo.read().queue(name).is_none() {
            return Ok(None);
        }
        let when = DeleteWhen {
            if_unused,
            if_empty,
            idle: None,
        };
        delete_queue(self, &topo, vhost, name, when).map(Some)
    }

    /// queue.purge; `None` if there is no such queue.
    pub fn purge_queue(&self, vhost: &str, name: &str) -> Result<Option<u32>, AmqpError> {
        let Some(q) = self.find_queue(vhost, name) else {
            return Ok(None);
        };
        let n = q.run(|inner, _, _| inner.queue.purge()).map_err(|e| {
            AmqpError::new(warren_protocol::ReplyCode::InternalError, e.to_string())
        })?;
        Ok(Some(n as u32))
    }

    /// queue.bind / exchange.bind (`add`), or their unbind.
    pub fn bind(
        &self,
        vhost: &str,
        add: bool,
        source: &str,
        destination: Destination,
        key: &str,
        arguments: &FieldTable,
    ) -> Result<(), AmqpError> {
        let topo = self.topology(vhost)?;
        let mut topo = topo.write();
        if add {
            topo.bind(source, destination, key, arguments)?;
        } else {
            topo.unbind(source, destination, key, arguments)?;
        }
        self.persist(vhost, &mut topo);
        Ok(())
    }

    /// Takes up to `count` messages from a queue, as basic.get does, and
    /// settles them as `mode` says. Each comes with the number of messages
    /// left after it.
    pub fn get_messages(
        &self,
        vhost: &str,
        queue: &str,
        count: usize,
        mode: GetMode,
    ) -> Result<Option<Vec<(QueuedMessage, u32)>>, AmqpError> {
        let Some(q) = self.find_queue(vhost, queue) else {
            return Ok(None);
        };
        let mut out = Vec::new();
        for _ in 0..count {
            let got = q
                .run(|inner, now, fx| inner.queue.get(now, true, fx))
                .map_err(|e| {
                    AmqpError::new(warren_protocol::ReplyCode::InternalError, e.to_string())
                })?;
            let Some(got) = got else { break };
            out.push(got);
        }
        // Settled after all are taken, so a requeued one is not taken again.
        let how = match mode {
            GetMode::Requeue => Settle::Requeue,
            GetMode::Ack => Settle::Ack,
            GetMode::Reject => Settle::Discard,
        };
        let settles: Vec<(u64, Settle)> = out.iter().map(|(m, _)| (m.seq, how)).collect();
        if !settles.is_empty() {
            q.settle(&settles);
        }
        Ok(Some(out))
    }

    /// basic.publish with raw properties; whether the message reached a
    /// queue.
    pub fn publish(
        &self,
        vhost: &str,
        exchange: &str,
        routing_key: &str,
        properties: Bytes,
        body: Bytes,
    ) -> Result<bool, AmqpError> {
        let topo = self.topology(vhost)?;
        let msg = Message::new(
            exchange.to_string(),
            routing_key.to_string(),
            properties,
            body,
        )
        .map_err(|e| AmqpError::frame_error(format!("cannot decode the properties: {e}")))?;
        let msg = Arc::new(msg);
        let mut targets: Vec<Arc<QueueCell>> = Vec::new();
        {
            let topo = topo.read();
            topo.check_publishable(exchange)?;
            for key in msg.routing_keys() {
                topo.route(exchange, key, msg.headers.as_ref(), &mut |q| {
                    if !targets.iter().any(|t| Arc::ptr_eq(t, q)) {
                        targets.push(Arc::clone(q));
                    }
                });
            }
        }
        let mut routed = false;
        for q in targets {
            if let Enqueued::Stored(..) = q.publish(Arc::clone(&msg)) {
                routed = true;
            }
        }
        Ok(routed)
    }
}
