//! A channel's publishing side: content assembly (method, header, body
//! frames), the checks RabbitMQ makes on a publish, routing (sender-selected
//! distribution and direct replies included) and mandatory returns; the
//! confirms of what it publishes are in `confirms`.

use super::*;

impl Channel {
    pub(super) fn on_header(
        &mut self,
        h: ContentHeader,
        ctx: &mut ConnCtx,
        out: &mut Out,
    ) -> Result<(), AmqpError> {
        if self.pending.as_ref().is_none_or(|p| p.header.is_some()) {
            return Err(AmqpError::unexpected_frame(
                "expected method frame, got non method frame instead",
            ));
        }
        if h.class_id != BASIC_CLASS_ID {
            return Err(AmqpError::unexpected_frame(format!(
                "expected content header for class {BASIC_CLASS_ID}, got one for class {} instead",
                h.class_id
            )));
        }
        let max = ctx.broker.config.max_message_size;
        if h.body_size > max {
            self.pending = None;
            return Err(AmqpError::precondition_failed(format!(
                "message size {} is larger than configured max size {max}",
                h.body_size
            )));
        }
        let props = PropertiesRef::decode(&h.properties)
            .map_err(|e| AmqpError::frame_error(format!("cannot decode content header: {e}")))?;
        let mut refused = None;
        let mut rewritten = None;
        if props.reply_to == Some(REPLY_QUEUE.as_bytes()) {
            match self.rewrite_reply_to(&h.properties) {
                Ok(r) => rewritten = Some(r),
                Err(e) => refused = Some(e),
            }
        }
        if refused.is_none() {
            refused = check_properties(&props, &ctx.user).err();
        }
        let persistent = props.is_persistent();
        let expiration = props
            .expiration
            .and_then(warren_core::message::parse_expiration);
        let priority = props.priority.unwrap_or(0);
        let mut headers = props.headers;
        let mut raw = rewritten.unwrap_or(h.properties);
        let mut bcc = Vec::new();
        if headers.as_ref().is_some_and(|h| h.get("BCC").is_some()) {
            // Sender-selected distribution: BCC routes but is not delivered.
            (raw, bcc) = strip_bcc(&raw);
            if let Some(h) = headers.as_mut() {
                h.0.retain(|(k, _)| k != "BCC");
            }
        }
        let Some(p) = self.pending.as_mut() else {
            return Ok(());
        };
        p.header = Some(Header {
            raw,
            persistent,
            headers,
            expiration,
            priority,
            bcc,
            body_size: h.body_size,
            refused,
        });
        if h.body_size == 0 {
            self.complete_publish(ctx, out)?;
        }
        Ok(())
    }

    pub(super) fn on_body(
        &mut self,
        body: Bytes,
        ctx: &mut ConnCtx,
        out: &mut Out,
    ) -> Result<(), AmqpError> {
        let Some(p) = self.pending.as_mut() else {
            return Err(AmqpError::unexpected_frame(
                "expected method frame, got non method frame instead",
            ));
        };
        let Some(Header {
            body_size: size, ..
        }) = &p.header
        else {
            return Err(AmqpError::unexpected_frame(
                "expected content header for class 60, got non content header frame instead",
            ));
        };
        let size = *size;
        p.received += body.len() as u64;
        if p.received > size {
            return Err(AmqpError::unexpected_frame(format!(
                "content body exceeds the size {size} announced in its content header"
            )));
        }
        if p.body.is_empty() {
            p.body = body;
        } else {
            p.more.push(body);
        }
        if p.received == size {
            self.complete_publish(ctx, out)?;
        }
        Ok(())
    }

    pub(super) fn complete_publish(
        &mut self,
        ctx: &mut ConnCtx,
        out: &mut Out,
    ) -> Result<(), AmqpError> {
        let Some(p) = self.pending.take() else {
            return Ok(());
        };
        let Some(header) = p.header else {
            return Ok(());
        };
        let body = if p.more.is_empty() {
            p.body
        } else {
            let mut all = BytesMut::with_capacity(p.received as usize);
            all.extend_from_slice(&p.body);
            for c in &p.more {
                all.extend_from_slice(c);
            }
            all.freeze()
        };
        let publish = p.publish;
        ctx.check(
            &mut self.checks,
            &Operation::Publish {
                exchange: &publish.exchange,
            },
        )?;
        ctx.check_topic(
            &mut self.checks,
            Permission::Write,
            &publish.exchange,
            &publish.routing_key,
        )?;
        if let Some(refused) = header.refused {
            // As RabbitMQ: a missing exchange is named before any property.
            ctx.vhost.read().check_publishable(&publish.exchange)?;
            return Err(refused);
        }
        let mandatory = publish.mandatory;
        ctx.stats.add(Counter::Publish, 1);
        if self.confirm.is_some() {
            ctx.stats.add(Counter::ReceivedConfirm, 1);
        }
        if !self.publisher {
            self.publisher = true;
            crate::stats::Churn::bump(&ctx.broker.churn.publishers, 1);
        }
        let msg = Arc::new(Message {
            exchange: publish.exchange,
            routing_key: publish.routing_key,
            properties: header.raw,
            persistent: header.persistent,
            headers: header.headers,
            expiration: header.expiration,
            priority: header.priority,
            bcc: header.bcc,
            body,
            // Copies on disk-backed queues can be confirmed by their
            // consumers' acks (see `confirms`).
            confirm: self.confirm.as_ref().map(|c| warren_core::ConfirmRef {
                sink: c.book.clone(),
                tag: c.seq + 1,
            }),
        });
        if let Some(tx) = self.tx.as_mut() {
            // Checked now so errors surface at publish, as in RabbitMQ.
            ctx.vhost.read().check_publishable(&msg.exchange)?;
            tx.publishes.push((mandatory, msg));
            return Ok(());
        }
        self.route(ctx, out, mandatory, &msg)?;
        let confirm = self.confirm.as_mut().map(|c| {
            c.seq += 1;
            c.pending.push_back((c.seq, 0, false));
            (self.id, c.seq)
        });
        if confirm.is_some() && !ctx.confirm_dirty.contains(&self.id) {
            ctx.confirm_dirty.push(self.id);
        }
        for q in ctx.route_buf.drain(..) {
            ctx.staging.add(&q, &msg, confirm);
        }
        Ok(())
    }

    /// Routes a complete message, leaving the queues it goes to in
    /// `ctx.route_buf`; returns it to the publisher if mandatory and
    /// unroutable.
    pub(super) fn route(
        &mut self,
        ctx: &mut ConnCtx,
        out: &mut Out,
        mandatory: bool,
        msg: &Arc<Message>,
    ) -> Result<(), AmqpError> {
        let targets = &mut ctx.route_buf;
        targets.clear();
        if let Some(token) = reply_token(&msg.exchange, &msg.routing_key) {
            // A direct reply: no queue; to a gone requester it is dropped.
            // RabbitMQ never counts it as routed, so a mandatory one comes
            // back as well.
            ctx.vhost.read().check_publishable(&msg.exchange)?;
            ctx.broker.replies.deliver(token, msg);
            if mandatory {
                self.return_unroutable(out, msg);
            }
            return Ok(());
        }
        {
            let topo = ctx.vhost.read();
            topo.check_publishable(&msg.exchange)?;
            if msg.has_extra_routing_keys() {
                for key in msg.routing_keys() {
                    topo.route(&msg.exchange, key, msg.headers.as_ref(), &mut |q| {
                        if !targets.iter().any(|t| Arc::ptr_eq(t, q)) {
                            targets.push(Arc::clone(q));
                        }
                    });
                }
            } else {
                topo.route(
                    &msg.exchange,
                    &msg.routing_key,
                    msg.headers.as_ref(),
                    &mut |q| targets.push(Arc::clone(q)),
                );
            }
        }
        let reached = targets.len() as u64;
        match (reached == 0, mandatory) {
            (false, _) => ctx.stats.add(Counter::Routed, reached),
            (true, true) => {
                ctx.stats.add(Counter::ReturnUnroutable, 1);
                self.return_unroutable(out, msg);
            }
            (true, false) => ctx.stats.add(Counter::DropUnroutable, 1),
        }
        Ok(())
    }

    /// basic.return of a mandatory message that reached no queue.
    fn return_unroutable(&self, out: &mut Out, msg: &Message) {
        out.content(
            self.id,
            BasicReturn {
                reply_code: ReplyCode::NoRoute.code(),
                reply_text: "NO_ROUTE".into(),
                exchange: msg.exchange.clone(),
                routing_key: msg.routing_key.clone(),
            },
            msg,
        );
    }
}

/// Checks the properties RabbitMQ validates on publish.
fn check_properties(props: &PropertiesRef<'_>, user: &str) -> Result<(), AmqpError> {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    if let Some(claimed) = props.user_id {
        if claimed != user.as_bytes() {
            return Err(AmqpError::precondition_failed(format!(
                "user_id property set to '{}' but authenticated user was '{user}'",
                text(claimed)
            )));
        }
    }
    if let Some(exp) = props.expiration {
        if let Err(why) = warren_core::arguments::check_expiration(exp) {
            return Err(AmqpError::precondition_failed(format!(
                "invalid expiration '{}': {why}",
                text(exp)
            )));
        }
    }
    match props.delivery_mode {
        None | Some(1) | Some(2) => Ok(()),
        Some(other) => Err(AmqpError::precondition_failed(format!(
            "invalid message: {{delivery_mode_unknown,{other}}}"
        ))),
    }
}

/// Removes the `BCC` header from raw properties, returning them and the
/// header's routing keys.
fn strip_bcc(raw: &Bytes) -> (Bytes, Vec<String>) {
    let Ok(mut props) = warren_protocol::BasicProperties::decode(raw) else {
        return (raw.clone(), Vec::new());
    };
    let mut keys = Vec::new();
    if let Some(h) = props.headers.as_mut() {
        if let Some(warren_protocol::FieldValue::Array(values)) = h.get("BCC") {
            keys = values
                .iter()
                .filter_map(|v| v.as_bytes())
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .collect();
        }
        h.0.retain(|(k, _)| k != "BCC");
    }
    let mut buf = BytesMut::with_capacity(raw.len());
    props.encode(&mut buf);
    (buf.freeze(), keys)
}
