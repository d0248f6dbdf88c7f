//! A channel's side of queues: queue.declare (with RabbitMQ's equivalence
//! checks on a redeclare) and basic.consume.

use super::*;

impl Channel {
    pub(super) fn queue_declare(
        &mut self,
        m: warren_protocol::QueueDeclare,
        ctx: &mut ConnCtx,
        out: &mut Out,
    ) -> Result<(), AmqpError> {
        if !m.passive {
            crate::stats::Churn::bump(&ctx.broker.churn.queues_declared, 1);
        }
        let vhost = ctx.vhost_name.clone();
        let name = if m.queue.is_empty() {
            if m.passive {
                return Err(AmqpError::not_found(format!(
                    "no queue '' in vhost '{vhost}'"
                )));
            }
            names::generate("amq.gen-", || fastrand::u64(..))
        } else {
            strip_cr_lf(m.queue.clone())
        };
        if name.starts_with(REPLY_QUEUE) {
            return self.declare_reply_queue(&name, m.nowait, ctx, out);
        }
        if !m.passive {
            ctx.check(
                &mut self.checks,
                &Operation::QueueDeclare {
                    queue: &name,
                    passive: false,
                    dead_letter_exchange: None,
                },
            )?;
        }
        if !m.passive {
            validate_queue_args(
                &name,
                &vhost,
                m.durable,
                m.exclusive,
                m.auto_delete,
                &m.arguments,
            )?;
        }
        let existing = ctx.vhost.read().queue(&name).cloned();
        let q = match existing {
            Some(q) => {
                if let Some(owner) = q.spec.exclusive_owner {
                    if owner != ctx.id {
                        return Err(locked(&q, &vhost));
                    }
                }
                if !m.passive {
                    check_queue_equivalent(&q.spec, &m, ctx.id, &vhost)?;
                }
                // A declare counts as use (x-expires).
                q.run(|inner, now, fx| inner.queue.touch(now, fx));
                q
            }
            None if m.passive => {
                return Err(AmqpError::not_found(format!(
                    "no queue '{name}' in vhost '{vhost}'"
                )))
            }
            None => {
                if names::is_reserved(&name) && !m.queue.is_empty() {
                    return Err(AmqpError::access_refused(format!(
                        "queue name '{name}' contains reserved prefix 'amq.*'"
                    )));
                }
                if let Some(limit) = ctx.broker.vhost_queue_limit(&vhost) {
                    if ctx.vhost.read().queue_count() as u64 >= limit {
                        return Err(AmqpError::precondition_failed(format!(
                            "cannot declare queue '{name}': queue limit in vhost '{vhost}' ({limit}) is reached"
                        )));
                    }
                }
                let dlx = m
                    .arguments
                    .get("x-dead-letter-exchange")
                    .and_then(warren_protocol::FieldValue::as_bytes)
                    .map(|b| String::from_utf8_lossy(b).into_owned());
                if let Some(dlx) = dlx {
                    ctx.check(
                        &mut self.checks,
                        &Operation::QueueDeclare {
                            queue: &name,
                            passive: false,
                            dead_letter_exchange: Some(&dlx),
                        },
                    )?;
                }
                let mut topo = ctx.vhost.write();
                match topo.queue(&name) {
                    // Declared by someone else since we looked.
                    Some(q) => Arc::clone(q),
                    None => {
                        let q = ctx
                            .broker
                            .new_queue(
                                &ctx.vhost_name,
                                QueueSpec {
                                    name: name.clone(),
                                    id: 0,
                                    durable: m.durable,
                                    exclusive_owner: m.exclusive.then_some(ctx.id),
                                    auto_delete: m.auto_delete,
                                    arguments: m.arguments.clone(),
                                },
                            )
                            .map_err(store_failure)?;
                        topo.insert_queue(name.clone(), Arc::clone(&q));
                        ctx.broker.persist(&ctx.vhost_name, &mut topo);
                        if m.exclusive {
                            ctx.exclusive_queues.push(Arc::clone(&q));
                        }
                        drop(topo);
                        q.set_home(ctx.broker.home(&ctx.vhost_name));
                        q
                    }
                }
            }
        };
        self.last_queue = Some(name.clone());
        if !m.nowait {
            let (message_count, consumer_count) = q.counts();
            out.method(
                self.id,
                QueueDeclareOk {
                    queue: name,
                    message_count,
                    consumer_count,
                },
            );
        }
        Ok(())
    }

    pub(super) fn consume(
        &mut self,
        m: warren_protocol::BasicConsume,
        ctx: &mut ConnCtx,
        out: &mut Out,
    ) -> Result<(), AmqpError> {
        if m.queue == REPLY_QUEUE {
            let tag = if m.consumer_tag.is_empty() {
                names::generate("amq.ctag-", || fastrand::u64(..))
            } else {
                m.consumer_tag.clone()
            };
            if self.consumers.contains_key(&tag) {
                return Err(AmqpError::not_allowed(format!(
                    "attempt to reuse consumer tag '{tag}'"
                )));
            }
            return self.consume_replies(tag, m.no_ack, m.nowait, ctx, out);
        }
        let name = self.queue_name(&m.queue)?;
        ctx.check(&mut self.checks, &Operation::Consume { queue: &name })?;
        let q = find_queue(ctx, &name)?;
        validate_consumer_args(q.name(), &ctx.vhost_name, &m.arguments)?;
        if q.is_quorum() && self.limit.global_prefetch.load(Ordering::SeqCst) != 0 {
            return Err(AmqpError::not_implemented(format!(
                "queue '{}' in vhost '{}' does not support global qos",
                q.name(),
                ctx.vhost_name
            )));
        }
        let tag = if m.consumer_tag.is_empty() {
            names::generate("amq.ctag-", || fastrand::u64(..))
        } else {
            m.consumer_tag.clone()
        };
        if self.consumers.contains_key(&tag) {
            return Err(AmqpError::not_allowed(format!(
                "attempt to reuse consumer tag '{tag}'"
            )));
        }
        let priority = m
            .arguments
            .get("x-priority")
            .and_then(warren_protocol::FieldValue::as_i64)
            .map_or(0, |p| p.clamp(i32::MIN.into(), i32::MAX.into()) as i32);
        let consumer = Arc::new(Consumer {
            id: ctx.broker.next_consumer_id(),
            tag: tag.clone(),
            channel: self.id,
            connection: ctx.id,
            no_ack: m.no_ack,
            exclusive: m.exclusive,
            prefetch: self.prefetch,
            arguments: m.arguments.clone(),
            in_flight: Default::default(),
            limit: Arc::clone(&self.limit),
            blocked: Default::default(),
            cancelled: Default::default(),
            queue: Arc::clone(&q),
            tx: ctx.tx.clone(),
        });
        let spec = consumer_spec(&consumer, self.prefetch, priority);
        // Deliveries reach the connection as events, handled after this
        // frame: consume-ok still goes out first.
        let added = q.run(|inner, now, _| {
            let exclusive_taken = inner.queue.has_exclusive_consumer();
            if exclusive_taken || (m.exclusive && inner.queue.refuses_exclusive_consumer()) {
                return false;
            }
            inner
                .queue
                .consume(consumer.id, Arc::clone(&consumer), spec, now);
            inner.had_consumer = true;
            true
        });
        if !added {
            return Err(AmqpError::access_refused(format!(
                "queue '{}' in vhost '{}' in exclusive use",
                q.name(),
                ctx.vhost_name
            )));
        }
        if !m.nowait {
            out.method(
                self.id,
                BasicConsumeOk {
                    consumer_tag: tag.clone(),
                },
            );
        }
        self.consumers.insert(tag, consumer);
        Ok(())
    }
}

/// The queue arguments RabbitMQ compares when a queue is redeclared.
const EQUIVALENCE_ARGS: &[&str] = &[
    "x-expires",
    "x-message-ttl",
    "x-dead-letter-exchange",
    "x-dead-letter-routing-key",
    "x-max-length",
    "x-max-length-bytes",
    "x-max-priority",
    "x-overflow",
    "x-queue-mode",
    "x-queue-type",
    "x-single-active-consumer",
    "x-delivery-limit",
];

pub(crate) fn check_queue_equivalent(
    current: &QueueSpec,
    wanted: &warren_protocol::QueueDeclare,
    conn: u64,
    vhost: &str,
) -> Result<(), AmqpError> {
    let name = &current.name;
    let is_exclusive = current.exclusive_owner == Some(conn);
    if wanted.exclusive != is_exclusive {
        return Err(AmqpError::resource_locked(format!(
            "cannot obtain exclusive access to locked queue '{name}' in vhost '{vhost}'. It could be originally declared on another connection or the exclusive property value does not match that of the original declaration."
        )));
    }
    let mismatch = |arg: &str, received: String, current: String| {
        AmqpError::precondition_failed(format!(
            "inequivalent arg '{arg}' for queue '{name}' in vhost '{vhost}': received {received} but current is {current}"
        ))
    };
    let quoted = |b: bool| format!("'{b}'");
    if current.durable != wanted.durable {
        return Err(mismatch(
            "durable",
            quoted(wanted.durable),
            quoted(current.durable),
        ));
    }
    if current.auto_delete != wanted.auto_delete {
        return Err(mismatch(
            "auto_delete",
            quoted(wanted.auto_delete),
            quoted(current.auto_delete),
        ));
    }
    for key in EQUIVALENCE_ARGS {
        let (w, c) = (wanted.arguments.get(key), current.arguments.get(key));
        match (w, c) {
            (Some(a), Some(b)) if a.loosely_equals(b) => {}
            (None, None) => {}
            (Some(a), Some(b))
                if type_name(a) == type_name(b) || a.as_i64().is_some() && b.as_i64().is_some() =>
            {
                return Err(mismatch(
                    key,
                    format!("'{}'", a.display()),
                    format!("'{}'", b.display()),
                ));
            }
            _ => return Err(mismatch(key, describe(w), describe(c))),
        }
    }
    Ok(())
}
