//! The connection's task: the TLS handshake of an AMQPS client, the loop
//! that waits on the socket, queue events, the heartbeat timer, the sync
//! ticket and the broker's alarms, and the timers themselves (handshake
//! deadline, heartbeats, publisher flow). Frames and events are handled by
//! the connection's methods in `connection/mod.rs`.

use super::*;
enum Wake {
    Read(std::io::Result<usize>),
    Event(Option<ConnEvent>),
    Wrote(std::io::Result<usize>),
    Tick,
    Stop,
    Synced,
    Alarm,
}

/// Serves one client until it disconnects or the broker stops.
pub async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    broker: Arc<Broker>,
    stop: watch::Receiver<bool>,
) {
    let local = stream.local_addr().unwrap_or(peer);
    let conn = Connection::new(peer, local, None, broker);
    let (reader, writer) = stream.into_split();
    conn.run(reader, writer, stop).await;
}

/// Serves one client of the AMQPS listener: the TLS handshake first, under
/// the connection's handshake timeout, then AMQP over the TLS stream.
pub async fn serve_tls(
    stream: TcpStream,
    peer: SocketAddr,
    acceptor: crate::tls::TlsAcceptor,
    broker: Arc<Broker>,
    stop: watch::Receiver<bool>,
) {
    let local = stream.local_addr().unwrap_or(peer);
    let timeout = broker.config.handshake_timeout;
    let tls = match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(err)) => {
            info!(%peer, %err, "TLS handshake failed");
            return;
        }
        Err(_) => {
            info!(%peer, "TLS handshake timeout");
            return;
        }
    };
    let version = tls
        .get_ref()
        .1
        .protocol_version()
        .and_then(|v| v.as_str())
        .map(|v| v.replace("TLSv1_", "tlsv1."))
        .unwrap_or_default();
    let conn = Connection::new(peer, local, Some(version), broker);
    let (reader, writer) = tokio::io::split(tls);
    conn.run(reader, writer, stop).await;
}

impl Connection {
    fn new(peer: SocketAddr, local: SocketAddr, tls: Option<String>, broker: Arc<Broker>) -> Self {
        let (tx, rx) = unbounded_channel();
        let now = Instant::now();
        Churn::bump(&broker.churn.connections_opened, 1);
        Connection {
            id: broker.next_connection_id(),
            peer,
            local,
            client_properties: FieldTable::default(),
            auth_mechanism: String::new(),
            phase: Phase::ProtocolHeader,
            rbuf: BytesMut::with_capacity(READ_RESERVE),
            large_frames: false,
            out: Out::new(64 * 1024, broker.config.frame_max),
            rx,
            tx,
            ctx: None,
            channels: Channels::default(),
            channel_max: broker.config.channel_max,
            heartbeat: 0,
            cancel_notify: false,
            user: String::new(),
            last_read: now,
            last_write: now,
            deadline: Some(now + broker.config.handshake_timeout),
            synced: broker.synced(),
            alarms: broker.alarms(),
            published: false,
            blocked: false,
            blocked_notify: false,
            tls,
            broker,
        }
    }

    /// The connection's loop, over the two halves of its stream.
    async fn run<R, W>(self, mut reader: R, mut writer: W, mut stop: watch::Receiver<bool>)
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let mut conn = self;
        debug!(conn = conn.id, peer = %conn.peer, tls = conn.tls.is_some(), "accepted");
        let mut stopping = false;
        while conn.phase != Phase::Closed {
            conn.apply_alarms();
            let tick = conn.next_tick();
            let reserve = if conn.large_frames {
                LARGE_READ_RESERVE
            } else {
                READ_RESERVE
            };
            if conn.rbuf.capacity() - conn.rbuf.len() < reserve / 4 {
                conn.rbuf.reserve(reserve);
            }
            let can_read = conn.out.len() < WRITE_HIGH_WATER;
            let read_socket = can_read && !conn.blocked;
            let want_write = !conn.out.is_empty();
            let wait_sync = conn.waiting_for_sync();
            let wake = {
                let pieces = conn.out.slices();
                tokio::select! {
                    r = reader.read_buf(&mut conn.rbuf), if read_socket => Wake::Read(r),
                    e = conn.rx.recv(), if can_read => Wake::Event(e),
                    w = writer.write_vectored(&pieces), if want_write => Wake::Wrote(w),
                    _ = tokio::time::sleep_until(tick.into()) => Wake::Tick,
                    _ = stop.changed(), if !stopping => Wake::Stop,
                    _ = conn.synced.changed(), if wait_sync => Wake::Synced,
                    Ok(()) = conn.alarms.changed() => Wake::Alarm,
                }
            };
            match wake {
                Wake::Read(Ok(0)) | Wake::Read(Err(_)) => break,
                Wake::Read(Ok(_)) => {
                    conn.last_read = Instant::now();
                    conn.on_bytes();
                }
                Wake::Event(Some(ev)) => {
                    conn.on_event(ev);
                    // Take whatever else is queued while we are here, within
                    // a budget so the other sources get their turn.
                    let mut budget = EVENT_BUDGET;
                    while conn.out.len() < WRITE_HIGH_WATER && budget > 0 {
                        budget -= 1;
                        match conn.rx.try_recv() {
                            Ok(ev) => conn.on_event(ev),
                            Err(_) => break,
                        }
                    }
                    conn.flush_stats();
                }
                Wake::Event(None) => {}
                Wake::Wrote(Ok(n)) => {
                    conn.out.advance(n);
                    conn.last_write = Instant::now();
                    if conn.out.is_idle_and_large(4 * WRITE_HIGH_WATER) {
                        conn.out.buf = BytesMut::with_capacity(64 * 1024);
                    }
                }
                Wake::Wrote(Err(_)) => break,
                Wake::Tick => conn.on_tick(),
                Wake::Synced => conn.flush_confirms(),
                Wake::Alarm => {}
                Wake::Stop => {
                    if conn.phase == Phase::Running {
                        conn.close_with(Fault::new(AmqpError::new(
                            ReplyCode::ConnectionForced,
                            "broker forced connection closure with reason 'shutdown'",
                        )));
                    } else {
                        conn.phase = Phase::Closed;
                    }
                    stopping = true;
                }
            }
        }
        if !conn.out.is_empty() {
            let rest = conn.out.take_all();
            let _ = tokio::time::timeout(Duration::from_secs(1), writer.write_all(&rest)).await;
        }
        let _ = writer.shutdown().await;
        conn.cleanup();
        Churn::bump(&conn.broker.churn.connections_closed, 1);
        debug!(conn = conn.id, peer = %conn.peer, "closed");
    }
}

impl Connection {
    /// Blocks or unblocks a publishing connection as alarms come and go.
    fn apply_alarms(&mut self) {
        let alarms = *self.alarms.borrow_and_update();
        let block = alarms.any() && self.published && self.phase == Phase::Running;
        if block == self.blocked {
            return;
        }
        self.blocked = block;
        // A blocked client's heartbeats go unread; do not hold that
        // against it.
        self.last_read = Instant::now();
        if self.blocked_notify {
            if block {
                self.out.method(
                    0,
                    warren_protocol::ConnectionBlocked {
                        reason: alarms.reason().to_string(),
                    },
                );
            } else {
                self.out.method(0, warren_protocol::ConnectionUnblocked {});
            }
        }
        info!(conn = self.id, peer = %self.peer, blocked = block, "publisher flow");
    }

    fn next_tick(&self) -> Instant {
        if let Some(d) = self.deadline {
            return d;
        }
        if self.heartbeat == 0 {
            return Instant::now() + Duration::from_secs(3600);
        }
        let hb = Duration::from_secs(self.heartbeat as u64);
        let silent_peer = self.last_read + hb * 2;
        if self.out.is_empty() {
            (self.last_write + hb / 2).min(silent_peer)
        } else {
            // A write is pending; it will reset the heartbeat clock.
            silent_peer
        }
    }

    fn on_tick(&mut self) {
        let now = Instant::now();
        if let Some(d) = self.deadline {
            if now >= d {
                if !matches!(self.phase, Phase::Closing | Phase::Draining) {
                    info!(conn = self.id, peer = %self.peer, "handshake timeout");
                }
                self.phase = Phase::Closed;
            }
            return;
        }
        if self.heartbeat == 0 {
            return;
        }
        if self.blocked {
            self.last_read = now;
        }
        let hb = Duration::from_secs(self.heartbeat as u64);
        if now >= self.last_read + hb * 2 {
            warn!(conn = self.id, peer = %self.peer, "missed heartbeats from client, timeout: {}s", self.heartbeat);
            self.phase = Phase::Closed;
            return;
        }
        if now >= self.last_write + hb / 2 && self.out.is_empty() {
            encode_heartbeat(&mut self.out.buf);
            self.last_write = now;
        }
    }
}
