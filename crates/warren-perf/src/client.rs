//! One connection's task: sets up its channels, then runs the loop that
//! fills the write buffer from the producers, writes it, reads whatever
//! arrived and hands each frame to [`Channels`].
//!
//! The loop waits on socket readiness and uses non-blocking reads and
//! writes, so one task both publishes and takes confirms (or deliveries)
//! without locks. Each write carries up to 64 KiB and each read up to
//! 256 KiB, so a run of small messages costs a few syscalls per thousand.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Buf;
use tokio::net::TcpStream;
use tokio::sync::watch;
use warren_protocol::{BasicQos, ChannelOpen, ConfirmSelect, Method};

use crate::channels::Event;
use crate::plan::FANOUT_EXCHANGE;
use crate::{
    AmqpUri, Channels, Connection, Consumer, FrameReader, PerfError, Plan, Producer,
    PublishTemplate, RunStats,
};

/// How long closing a connection may take once the run is over. A no-ack
/// consumer behind a backlog may keep receiving deliveries for long after
/// its `connection.close` (a broker that is busy writing may not read it);
/// those are not counted, so the socket is simply dropped after this.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// What the runner currently allows the connections to do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Gates {
    pub consume: bool,
    pub publish: bool,
    pub stop: bool,
}

/// A connection with its channels set up.
pub struct Client {
    stream: TcpStream,
    reader: FrameReader,
    chans: Channels,
    addr: String,
}

impl Client {
    /// Opens connection `index` of the plan: a channel per consumer (with
    /// `basic.qos` when acking) and per producer (with `confirm.select` when
    /// confirming). Consumers start consuming when the consume gate opens.
    pub async fn connect(
        uri: &AmqpUri,
        plan: &Plan,
        index: usize,
        stats: &RunStats,
    ) -> Result<Client, PerfError> {
        let roles = &plan.connections[index];
        let mut conn = Connection::open(uri, &format!("warren-perf {index}")).await?;
        let needed = roles.producers.len() + roles.consumers.len();
        if needed > conn.channel_max as usize {
            return Err(PerfError::Usage(format!(
                "{} allows {} channels per connection but one connection needs {needed}; \
                 use more --connections",
                conn.addr, conn.channel_max
            )));
        }
        let mut channel = 0u16;
        let mut consumers = Vec::with_capacity(roles.consumers.len());
        for &j in &roles.consumers {
            channel += 1;
            open_channel(&mut conn, channel).await?;
            if plan.ack_every > 0 {
                let qos = BasicQos {
                    prefetch_count: plan.prefetch,
                    ..Default::default()
                };
                conn.call(channel, qos.into()).await?;
            }
            consumers.push(Consumer::new(
                channel,
                &plan.queues[plan.consumers[j].queue],
                format!("perf-c{j}"),
                plan.ack_every,
                plan.reject,
                Arc::clone(&stats.consumers[j]),
                stats.origin,
            ));
        }
        let mut producers = Vec::with_capacity(roles.producers.len());
        for &i in &roles.producers {
            channel += 1;
            open_channel(&mut conn, channel).await?;
            if plan.confirm > 0 {
                conn.call(channel, ConfirmSelect { nowait: false }.into())
                    .await?;
            }
            let p = &plan.producers[i];
            let (exchange, routing_key, target) = match p.queue {
                Some(q) => ("", plan.queues[q].as_str(), plan.queues[q].as_str()),
                None => (FANOUT_EXCHANGE, "", FANOUT_EXCHANGE),
            };
            let template = |expiration: Option<&str>| {
                PublishTemplate::new(
                    channel,
                    exchange,
                    routing_key,
                    plan.size,
                    plan.persistent,
                    plan.latency,
                    conn.frame_max,
                    plan.priorities,
                    expiration,
                )
            };
            let first = plan.first_expiration.as_deref().map(|e| template(Some(e)));
            producers.push(
                Producer::new(
                    channel,
                    template(plan.expiration.as_deref()),
                    target,
                    p.queue.is_none(),
                    p.messages,
                    plan.confirm,
                    plan.rate,
                    Arc::clone(&stats.producers[i]),
                    stats.origin,
                )
                .with_phase(plan.phase(i))
                .with_first(first),
            );
        }
        let addr = conn.addr.clone();
        Ok(Client {
            stream: conn.stream,
            reader: conn.reader,
            chans: Channels::new(addr.clone(), producers, consumers),
            addr,
        })
    }

    /// Runs until the stop gate opens (then closes the connection) or the
    /// connection fails.
    pub async fn run(mut self, mut gates: watch::Receiver<Gates>) -> Result<(), PerfError> {
        let mut state = *gates.borrow_and_update();
        let (mut consuming, mut publishing) = (false, false);
        let sleep = tokio::time::sleep(Duration::from_secs(3600));
        tokio::pin!(sleep);
        while !state.stop {
            if state.consume && !consuming {
                consuming = true;
                self.chans.start_consuming();
            }
            let now = Instant::now();
            if state.publish && !publishing {
                publishing = true;
                self.chans.start_publishing(now);
            }
            if publishing {
                self.chans.fill(now, wall_ns());
            }
            self.try_flush()?;
            let want_write =
                !self.chans.out.is_empty() || (publishing && self.chans.can_publish(now));
            let wake = if publishing && !want_write {
                self.chans.wake_at()
            } else {
                None
            };
            if let Some(at) = wake {
                sleep.as_mut().reset(at.into());
            }
            tokio::select! {
                changed = gates.changed() => match changed {
                    Ok(()) => state = *gates.borrow_and_update(),
                    Err(_) => state.stop = true,
                },
                ready = self.stream.readable() => {
                    ready.map_err(|e| self.io(e))?;
                    if self.read_once()? == Event::Closed {
                        return Ok(());
                    }
                }
                ready = self.stream.writable(), if want_write => {
                    ready.map_err(|e| self.io(e))?;
                }
                () = &mut sleep, if wake.is_some() => {}
            }
        }
        self.close().await;
        Ok(())
    }

    /// Reads once (if anything is there) and handles every complete frame.
    fn read_once(&mut self) -> Result<Event, PerfError> {
        match self.reader.try_read(&self.stream) {
            Ok(0) => {
                return Err(PerfError::Eof {
                    addr: self.addr.clone(),
                    when: "unexpectedly",
                })
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Event::Continue),
            Err(e) => return Err(self.io(e)),
        }
        let now_ns = wall_ns();
        let mut event = Event::Continue;
        while let Some(head) = self.reader.next_frame_from(&self.addr)? {
            if self
                .chans
                .on_frame(head, self.reader.payload(&head), now_ns)?
                == Event::Closed
            {
                event = Event::Closed;
            }
        }
        self.chans.flush_stats(Instant::now());
        Ok(event)
    }

    /// Writes as much of the buffer as the socket takes without waiting.
    fn try_flush(&mut self) -> Result<(), PerfError> {
        if self.chans.out.is_empty() {
            return Ok(());
        }
        match self.stream.try_write(&self.chans.out) {
            Ok(n) => {
                self.chans.out.advance(n);
                if self.chans.out.is_empty() {
                    self.chans.out.clear();
                }
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(self.io(e)),
        }
    }

    /// Acks what is unacked, sends `connection.close` and waits (briefly)
    /// for `close-ok`. Failures here no longer matter to the results.
    async fn close(mut self) {
        self.chans.begin_close(Instant::now());
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
            loop {
                self.try_flush()?;
                let want_write = !self.chans.out.is_empty();
                tokio::select! {
                    ready = self.stream.readable() => {
                        ready.map_err(|e| self.io(e))?;
                        if self.read_once()? == Event::Closed {
                            self.try_flush()?;
                            return Ok::<(), PerfError>(());
                        }
                    }
                    ready = self.stream.writable(), if want_write => {
                        ready.map_err(|e| self.io(e))?;
                    }
                }
            }
        })
        .await;
    }

    fn io(&self, source: io::Error) -> PerfError {
        PerfError::Io {
            addr: self.addr.clone(),
            source,
        }
    }
}

pub(crate) async fn open_channel(conn: &mut Connection, channel: u16) -> Result<(), PerfError> {
    match conn.call(channel, ChannelOpen::default().into()).await? {
        Method::ChannelOpenOk(_) => Ok(()),
        other => Err(PerfError::Protocol {
            addr: conn.addr.clone(),
            what: format!("expected channel.open-ok, got {}", other.name()),
        }),
    }
}

/// The wall clock in nanoseconds since the Unix epoch: the send time that
/// latency mode puts into bodies, comparable across processes on one host.
pub fn wall_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}
