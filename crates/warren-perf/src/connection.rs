//! An AMQP 0-9-1 connection during setup: connect, handshake, and
//! request/reply methods one at a time.
//!
//! The handshake offers PLAIN, accepts the broker's `frame_max` and
//! `channel_max`, and turns heartbeats off (so the broker never closes the
//! tool's idle connections, and the hot loops need no heartbeat timers),
//! unless asked to accept the broker's heartbeat interval as ordinary
//! clients do (idle mode). Once setup is done, a [`crate::Client`] takes the
//! socket and the read buffer over.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use warren_protocol::{
    encode_heartbeat, encode_method_frame, frame_type, ChannelCloseOk, ConnectionClose,
    ConnectionCloseOk, ConnectionOpen, ConnectionStartOk, ConnectionTuneOk, FieldTable, FieldValue,
    Method, PROTOCOL_HEADER,
};

use crate::{AmqpUri, FrameReader, PerfError};

/// How long a broker may take to answer one setup method (deleting a queue
/// with a large backlog can take a while).
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long connecting and the handshake may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// What to answer to the heartbeat interval the broker proposes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heartbeats {
    /// Turn heartbeats off (0).
    Off,
    /// Take the broker's proposal, as client libraries do by default; the
    /// caller must then send heartbeats (see [`Connection::send_heartbeat`]).
    AsProposed,
}

/// An open connection, used one method at a time.
pub struct Connection {
    pub(crate) stream: TcpStream,
    pub(crate) reader: FrameReader,
    pub(crate) addr: String,
    pub(crate) frame_max: u32,
    pub(crate) channel_max: u16,
    /// The negotiated heartbeat interval in seconds (0 = none).
    pub(crate) heartbeat: u16,
    out: BytesMut,
}

impl Connection {
    /// Connects and completes the handshake up to `connection.open-ok`,
    /// with heartbeats off. `name` is shown by the broker as the
    /// connection's name.
    pub async fn open(uri: &AmqpUri, name: &str) -> Result<Connection, PerfError> {
        Connection::open_with(uri, name, Heartbeats::Off).await
    }

    /// Like [`Connection::open`], answering the broker's heartbeat proposal
    /// as `heartbeats` says.
    pub async fn open_with(
        uri: &AmqpUri,
        name: &str,
        heartbeats: Heartbeats,
    ) -> Result<Connection, PerfError> {
        let addr = uri.addr();
        let stream =
            match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((&*uri.host, uri.port)))
                .await
            {
                Ok(Ok(s)) => s,
                Ok(Err(source)) => return Err(PerfError::Connect { addr, source }),
                Err(_) => {
                    return Err(PerfError::Timeout {
                        addr,
                        what: "the TCP connect".into(),
                    })
                }
            };
        let _ = stream.set_nodelay(true);
        let mut conn = Connection {
            stream,
            reader: FrameReader::new(),
            addr,
            frame_max: 0,
            channel_max: 0,
            heartbeat: 0,
            out: BytesMut::with_capacity(4096),
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, conn.handshake(uri, name, heartbeats)).await {
            Ok(result) => result.map(|()| conn),
            Err(_) => Err(PerfError::Timeout {
                addr: conn.addr,
                what: "the AMQP handshake".into(),
            }),
        }
    }

    async fn handshake(
        &mut self,
        uri: &AmqpUri,
        name: &str,
        heartbeats: Heartbeats,
    ) -> Result<(), PerfError> {
        self.write_raw(PROTOCOL_HEADER).await?;
        let start = match self.recv(0, "before connection.start").await? {
            Method::ConnectionStart(start) => start,
            other => return Err(self.unexpected(&other, "connection.start")),
        };
        let plain = start
            .mechanisms
            .split(|&b| b == b' ')
            .any(|m| m == b"PLAIN");
        if !plain {
            return Err(PerfError::Protocol {
                addr: self.addr.clone(),
                what: format!(
                    "the broker does not offer PLAIN authentication (it offers {:?})",
                    String::from_utf8_lossy(&start.mechanisms)
                ),
            });
        }
        let mut response = Vec::with_capacity(uri.user.len() + uri.password.len() + 2);
        response.push(0);
        response.extend_from_slice(uri.user.as_bytes());
        response.push(0);
        response.extend_from_slice(uri.password.as_bytes());
        self.send(
            0,
            ConnectionStartOk {
                client_properties: client_properties(name),
                mechanism: "PLAIN".into(),
                response: Bytes::from(response),
                locale: "en_US".into(),
            }
            .into(),
        )
        .await?;
        let tune = match self
            .recv(0, "during authentication (wrong user or password?)")
            .await?
        {
            Method::ConnectionTune(tune) => tune,
            other => return Err(self.unexpected(&other, "connection.tune")),
        };
        self.channel_max = if tune.channel_max == 0 {
            u16::MAX
        } else {
            tune.channel_max
        };
        self.frame_max = tune.frame_max;
        self.reader.set_frame_max(tune.frame_max);
        self.heartbeat = match heartbeats {
            Heartbeats::Off => 0,
            Heartbeats::AsProposed => tune.heartbeat,
        };
        self.send(
            0,
            ConnectionTuneOk {
                channel_max: self.channel_max,
                frame_max: tune.frame_max,
                heartbeat: self.heartbeat,
            }
            .into(),
        )
        .await?;
        self.send(
            0,
            ConnectionOpen {
                virtual_host: uri.vhost.clone(),
                ..Default::default()
            }
            .into(),
        )
        .await?;
        match self.recv(0, "after connection.open").await? {
            Method::ConnectionOpenOk(_) => Ok(()),
            other => Err(self.unexpected(&other, "connection.open-ok")),
        }
    }

    /// Sends one method frame.
    pub async fn send(&mut self, channel: u16, method: Method) -> Result<(), PerfError> {
        self.out.clear();
        encode_method_frame(&mut self.out, channel, &method);
        let out = std::mem::take(&mut self.out);
        let result = self.write_raw(&out).await;
        self.out = out;
        result
    }

    /// Sends a method and waits for the broker's reply on the same channel.
    pub async fn call(&mut self, channel: u16, method: Method) -> Result<Method, PerfError> {
        let name = method.name();
        self.send(channel, method).await?;
        match tokio::time::timeout(REPLY_TIMEOUT, self.recv(channel, "unexpectedly")).await {
            Ok(reply) => reply,
            Err(_) => Err(PerfError::Timeout {
                addr: self.addr.clone(),
                what: name.to_string(),
            }),
        }
    }

    /// Sends one heartbeat frame.
    pub async fn send_heartbeat(&mut self) -> Result<(), PerfError> {
        self.out.clear();
        encode_heartbeat(&mut self.out);
        let out = std::mem::take(&mut self.out);
        let result = self.write_raw(&out).await;
        self.out = out;
        result
    }

    /// Reads until the connection ends, skipping heartbeats and whatever
    /// else arrives; returns why it ended (a `connection.close` is
    /// answered). Cancel-safe: nothing read is lost when dropped.
    pub async fn wait_closed(&mut self) -> PerfError {
        loop {
            if let Err(err) = self.recv(0, "while idle").await {
                return err;
            }
        }
    }

    /// Sends `connection.close` and waits briefly for `close-ok`.
    pub async fn close(mut self) {
        let close = ConnectionClose {
            reply_code: 200,
            reply_text: "perf run finished".into(),
            ..Default::default()
        };
        if self.send(0, close.into()).await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(2), async {
                loop {
                    match self.recv(0, "").await {
                        Ok(Method::ConnectionCloseOk(_)) | Err(_) => break,
                        Ok(_) => {}
                    }
                }
            })
            .await;
        }
    }

    /// The next method on `channel`, skipping content and other channels.
    /// A `connection.close` or a `channel.close` of this channel is
    /// answered and turned into an error. `when` completes "closed the
    /// connection ..." if the socket ends.
    async fn recv(&mut self, channel: u16, when: &'static str) -> Result<Method, PerfError> {
        loop {
            while let Some(head) = self.reader.next_frame_from(&self.addr)? {
                if head.kind != frame_type::METHOD {
                    continue;
                }
                let method = Method::decode(self.reader.payload(&head)).map_err(|e| {
                    PerfError::Protocol {
                        addr: self.addr.clone(),
                        what: e.to_string(),
                    }
                })?;
                match method {
                    Method::ConnectionClose(close) if head.channel == 0 => {
                        let _ = self.send(0, ConnectionCloseOk {}.into()).await;
                        return Err(PerfError::ConnectionClosed {
                            addr: self.addr.clone(),
                            code: close.reply_code,
                            text: close.reply_text,
                        });
                    }
                    Method::ChannelClose(close) if head.channel == channel => {
                        let _ = self.send(channel, ChannelCloseOk {}.into()).await;
                        return Err(PerfError::ChannelClosed {
                            addr: self.addr.clone(),
                            channel,
                            code: close.reply_code,
                            text: close.reply_text,
                        });
                    }
                    m if head.channel == channel => return Ok(m),
                    _ => {}
                }
            }
            match self.reader.read(&mut self.stream).await {
                Ok(0) => {
                    return Err(PerfError::Eof {
                        addr: self.addr.clone(),
                        when,
                    })
                }
                Ok(_) => {}
                Err(source) => {
                    return Err(PerfError::Io {
                        addr: self.addr.clone(),
                        source,
                    })
                }
            }
        }
    }

    async fn write_raw(&mut self, bytes: &[u8]) -> Result<(), PerfError> {
        self.stream
            .write_all(bytes)
            .await
            .map_err(|source| PerfError::Io {
                addr: self.addr.clone(),
                source,
            })
    }

    fn unexpected(&self, got: &Method, wanted: &str) -> PerfError {
        PerfError::Protocol {
            addr: self.addr.clone(),
            what: format!("expected {wanted}, got {}", got.name()),
        }
    }
}

fn client_properties(name: &str) -> FieldTable {
    let text = |s: &str| FieldValue::LongString(Bytes::copy_from_slice(s.as_bytes()));
    let mut capabilities = FieldTable::new();
    for cap in [
        "publisher_confirms",
        "basic.nack",
        "consumer_cancel_notify",
        "connection.blocked",
        "authentication_failure_close",
    ] {
        capabilities.insert(cap, FieldValue::Bool(true));
    }
    let mut props = FieldTable::new();
    props.insert("product", text("warren-perf"));
    props.insert("version", text(env!("CARGO_PKG_VERSION")));
    props.insert("platform", text("Rust"));
    props.insert("connection_name", text(name));
    props.insert("capabilities", FieldValue::Table(capabilities));
    props
}
