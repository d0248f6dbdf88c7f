//! The connection's own methods on channel 0: connection.start with the
//! server's properties and capabilities, authentication (PLAIN and
//! AMQPLAIN), tune negotiation, open, close and update-secret.

use super::*;
use crate::connections::ConnectionInfo;
use crate::stats::LocalStats;

impl Connection {
    pub(super) fn send_start(&mut self) {
        let caps: FieldTable = [
            "publisher_confirms",
            "exchange_exchange_bindings",
            "basic.nack",
            "consumer_cancel_notify",
            "connection.blocked",
            "per_consumer_qos",
            "authentication_failure_close",
        ]
        .into_iter()
        .map(|c| (c.to_string(), FieldValue::Bool(true)))
        .collect();
        let s = |v: &str| FieldValue::LongString(Bytes::copy_from_slice(v.as_bytes()));
        let props: FieldTable = [
            ("product".to_string(), s("Warren")),
            ("version".to_string(), s(env!("CARGO_PKG_VERSION"))),
            ("platform".to_string(), s("Rust")),
            ("copyright".to_string(), s("The Warren authors")),
            (
                "information".to_string(),
                s("Licensed under the Apache License 2.0"),
            ),
            ("cluster_name".to_string(), s("warren")),
            ("capabilities".to_string(), FieldValue::Table(caps)),
        ]
        .into_iter()
        .collect();
        self.out.method(
            0,
            ConnectionStart {
                version_major: 0,
                version_minor: 9,
                server_properties: props,
                mechanisms: Bytes::from_static(b"PLAIN AMQPLAIN"),
                locales: Bytes::from_static(b"en_US"),
            },
        );
    }

    pub(super) fn on_connection_method(&mut self, method: Method) -> Result<(), Fault> {
        let fault = |e: AmqpError, m: &Method| Fault {
            error: e,
            class_id: m.class_id(),
            method_id: m.method_id(),
        };
        match (self.phase, &method) {
            (Phase::StartOk, Method::ConnectionStartOk(m)) => {
                let (user, pass) = match m.mechanism.as_str() {
                    "PLAIN" => parse_plain(&m.response),
                    "AMQPLAIN" => parse_amqplain(&m.response),
                    other => {
                        return Err(fault(
                            AmqpError::command_invalid(format!(
                                "unknown authentication mechanism '{other}'"
                            )),
                            &method,
                        ))
                    }
                }
                .unwrap_or_default();
                if let Err(why) = self.broker.login(&user, &pass, self.peer.ip()) {
                    info!(conn = self.id, peer = %self.peer, user, reason = ?why, "login refused");
                    let told = matches!(
                        m.client_properties.get("capabilities"),
                        Some(FieldValue::Table(caps))
                            if caps.get("authentication_failure_close").and_then(FieldValue::as_bool) == Some(true)
                    );
                    if !told {
                        // Clients that did not ask to be told get the socket
                        // closed, as RabbitMQ does.
                        self.phase = Phase::Closed;
                        return Ok(());
                    }
                    return Err(Fault::new(AmqpError::access_refused(format!(
                        "Login was refused using authentication mechanism {}. For details see the broker logfile.",
                        m.mechanism
                    ))));
                }
                self.user = user;
                self.client_properties = m.client_properties.clone();
                self.auth_mechanism = m.mechanism.clone();
                if let Some(FieldValue::Table(caps)) = m.client_properties.get("capabilities") {
                    let has = |c: &str| caps.get(c).and_then(FieldValue::as_bool).unwrap_or(false);
                    self.cancel_notify = has("consumer_cancel_notify");
                    self.blocked_notify = has("connection.blocked");
                }
                let cfg = &self.broker.config;
                self.out.method(
                    0,
                    ConnectionTune {
                        channel_max: cfg.channel_max,
                        frame_max: cfg.frame_max,
                        heartbeat: cfg.heartbeat,
                    },
                );
                self.phase = Phase::TuneOk;
                Ok(())
            }
            (Phase::TuneOk, Method::ConnectionTuneOk(m)) => {
                let cfg = &self.broker.config;
                let negotiation = |what: &str, value: u64, max: u64| {
                    fault(
                        AmqpError::not_allowed(format!(
                            "negotiated {what} = {value} is higher than the maximum allowed value ({max})"
                        )),
                        &method,
                    )
                };
                if m.frame_max != 0 && m.frame_max < FRAME_MIN_SIZE {
                    return Err(fault(
                        AmqpError::not_allowed(format!(
                            "frame_max={} < {FRAME_MIN_SIZE} min size",
                            m.frame_max
                        )),
                        &method,
                    ));
                }
                if m.frame_max == 0 || m.frame_max > cfg.frame_max {
                    return Err(negotiation(
                        "frame_max",
                        m.frame_max as u64,
                        cfg.frame_max as u64,
                    ));
                }
                if m.channel_max == 0 {
                    return Err(fault(
                        AmqpError::not_allowed(format!(
                            "negotiated channel_max = 0 (no limit) is higher than the maximum allowed value ({})",
                            cfg.channel_max
                        )),
                        &method,
                    ));
                }
                if m.channel_max > cfg.channel_max {
                    return Err(negotiation(
                        "channel_max",
                        m.channel_max as u64,
                        cfg.channel_max as u64,
                    ));
                }
                self.out.frame_max = m.frame_max;
                self.channel_max = if m.channel_max == 0 {
                    cfg.channel_max
                } else {
                    m.channel_max
                };
                self.heartbeat = m.heartbeat;
                self.phase = Phase::Open;
                Ok(())
            }
            (Phase::Open, Method::ConnectionOpen(m)) => {
                // The connection limit is checked before permissions, as
                // RabbitMQ does.
                let limit = self.broker.vhost_connection_limit(&m.virtual_host);
                let limit_reached = || {
                    AmqpError::not_allowed(format!(
                        "access to vhost '{}' refused for user '{}': connection limit ({}) is reached",
                        m.virtual_host,
                        self.user,
                        limit.unwrap_or(0)
                    ))
                };
                if limit.is_some_and(|l| {
                    self.broker.connections.count_in_vhost(&m.virtual_host) as u64 >= l
                }) {
                    return Err(fault(limit_reached(), &method));
                }
                // Read first: a change made meanwhile is then picked up.
                let grants_generation = self.broker.access_generation();
                let (vhost, grants) = self
                    .broker
                    .open_vhost(&self.user, &m.virtual_host)
                    .map_err(|e| fault(e, &method))?;
                let info = ConnectionInfo {
                    id: self.id,
                    peer: self.peer,
                    local: self.local,
                    user: self.user.clone(),
                    vhost: m.virtual_host.clone(),
                    opened_at: crate::queue::now_ms(),
                    client_properties: std::mem::take(&mut self.client_properties),
                    channels: Arc::clone(&self.channels.shown),
                    frame_max: self.out.frame_max,
                    channel_max: self.channel_max,
                    heartbeat: self.heartbeat,
                    auth_mechanism: std::mem::take(&mut self.auth_mechanism),
                    tls: self.tls.clone(),
                    tx: self.tx.clone(),
                };
                if !self.broker.connections.register(info, limit) {
                    return Err(fault(limit_reached(), &method));
                }
                self.ctx = Some(ConnCtx {
                    id: self.id,
                    broker: Arc::clone(&self.broker),
                    vhost,
                    vhost_name: m.virtual_host.clone(),
                    tx: self.tx.clone(),
                    exclusive_queues: Vec::new(),
                    route_buf: Vec::new(),
                    confirm_dirty: Vec::new(),
                    staging: Staging::default(),
                    acks: PendingAcks::default(),
                    user: self.user.clone(),
                    grants,
                    grants_generation,
                    stats: LocalStats::default(),
                    vhost_stats: self.broker.message_stats_of(&m.virtual_host),
                });
                self.out.method(0, ConnectionOpenOk::default());
                self.phase = Phase::Running;
                self.deadline = None;
                info!(conn = self.id, peer = %self.peer, user = %self.user, vhost = %m.virtual_host, "connection open");
                Ok(())
            }
            (_, Method::ConnectionClose(_)) => {
                self.out.method(0, ConnectionCloseOk {});
                self.phase = Phase::Draining;
                self.deadline = Some(Instant::now() + DRAIN_TIMEOUT);
                self.release_channels();
                Ok(())
            }
            (Phase::Running, Method::ConnectionUpdateSecret(_)) => {
                self.out
                    .method(0, warren_protocol::ConnectionUpdateSecretOk {});
                Ok(())
            }
            (phase, m) => {
                let state = match phase {
                    Phase::StartOk => "starting",
                    Phase::TuneOk => "tuning",
                    Phase::Open => "opening",
                    _ => "running",
                };
                Err(fault(
                    AmqpError::channel_error(format!(
                        "unexpected method in connection state {state}"
                    )),
                    m,
                ))
            }
        }
    }
}

/// PLAIN: `authzid NUL authcid NUL password`.
fn parse_plain(response: &[u8]) -> Option<(String, String)> {
    let mut parts = response.split(|b| *b == 0);
    let _authzid = parts.next()?;
    let user = parts.next()?;
    let pass = parts.next()?;
    Some((
        String::from_utf8_lossy(user).into_owned(),
        String::from_utf8_lossy(pass).into_owned(),
    ))
}

/// AMQPLAIN: a field table without its length prefix, with LOGIN and
/// PASSWORD.
fn parse_amqplain(response: &[u8]) -> Option<(String, String)> {
    let mut framed = Vec::with_capacity(response.len() + 4);
    framed.extend_from_slice(&(response.len() as u32).to_be_bytes());
    framed.extend_from_slice(response);
    let table = Reader::new(&framed).table().ok()?;
    let get = |k: &str| {
        table
            .get(k)
            .and_then(FieldValue::as_bytes)
            .map(|b| String::from_utf8_lossy(b).into_owned())
    };
    Some((get("LOGIN")?, get("PASSWORD")?))
}
