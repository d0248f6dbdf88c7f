//! The queues (and fanout exchanges) a run uses: declared before it, counted
//! between the phases of a backlog run and while waiting for them to empty,
//! probed until the broker has deleted them (x-expires), deleted after it.

use std::time::{Duration, Instant};

use warren_protocol::{
    ChannelOpen, ExchangeDeclare, ExchangeDelete, FieldTable, Method, QueueBind, QueueDeclare,
    QueueDelete,
};

use crate::plan::{DEAD_LETTER_EXCHANGE, FANOUT_EXCHANGE};
use crate::{Connection, PerfError, Plan};

/// The channel of the setup connection that topology methods use.
const CHANNEL: u16 = 1;
/// The exchange that `wait_deleted` binds queues to, to see whether they
/// still exist.
const PROBE_EXCHANGE: &str = "amq.direct";
const PROBE_KEY: &str = "perf-probe";
/// How often a queue that still exists is probed again.
const PROBE_INTERVAL: Duration = Duration::from_millis(10);

/// What to declare and delete.
#[derive(Debug, Clone)]
pub struct Topology {
    queues: Vec<String>,
    arguments: FieldTable,
    fanout: bool,
    dead_letter_queue: Option<String>,
    durable: bool,
    keep: bool,
}

impl Topology {
    pub fn new(plan: &Plan) -> Self {
        Topology {
            queues: plan.queues.clone(),
            arguments: plan.queue_args.clone(),
            fanout: plan.fanout,
            dead_letter_queue: plan.dead_letter_queue.clone(),
            durable: plan.durable,
            keep: plan.keep_queues,
        }
    }

    /// Opens the setup channel; deletes the queues and exchanges (unless
    /// keeping them), then declares and binds them. Returns how long
    /// declaring (and binding) the run's queues took.
    pub async fn setup(&self, s: &mut Connection) -> Result<Duration, PerfError> {
        s.call(CHANNEL, ChannelOpen::default().into()).await?;
        if !self.keep {
            self.delete(s, true).await?;
        }
        if let Some(dlq) = &self.dead_letter_queue {
            self.declare_fanout(s, DEAD_LETTER_EXCHANGE).await?;
            self.declare_bound(s, dlq, FieldTable::new(), DEAD_LETTER_EXCHANGE)
                .await?;
        }
        if self.fanout {
            self.declare_fanout(s, FANOUT_EXCHANGE).await?;
        }
        let started = Instant::now();
        let exchange = if self.fanout { FANOUT_EXCHANGE } else { "" };
        for q in &self.queues {
            self.declare_bound(s, q, self.arguments.clone(), exchange)
                .await?;
        }
        Ok(started.elapsed())
    }

    async fn declare_fanout(&self, s: &mut Connection, name: &str) -> Result<(), PerfError> {
        let declare = ExchangeDeclare {
            exchange: name.into(),
            kind: "fanout".into(),
            durable: self.durable,
            ..Default::default()
        };
        s.call(CHANNEL, declare.into()).await?;
        Ok(())
    }

    /// Declares queue `q`, bound to `exchange` unless that is "".
    async fn declare_bound(
        &self,
        s: &mut Connection,
        q: &str,
        arguments: FieldTable,
        exchange: &str,
    ) -> Result<(), PerfError> {
        let declare = QueueDeclare {
            queue: q.into(),
            durable: self.durable,
            arguments,
            ..Default::default()
        };
        s.call(CHANNEL, declare.into()).await?;
        if !exchange.is_empty() {
            let bind = QueueBind {
                queue: q.into(),
                exchange: exchange.into(),
                ..Default::default()
            };
            s.call(CHANNEL, bind.into()).await?;
        }
        Ok(())
    }

    /// Messages ready in all the queues.
    pub async fn depth(&self, s: &mut Connection) -> Result<u64, PerfError> {
        let mut total = 0;
        for q in &self.queues {
            total += message_count(s, q).await?;
        }
        Ok(total)
    }

    /// Messages ready in the dead-letter queue (0 without one).
    pub async fn dead_lettered(&self, s: &mut Connection) -> Result<u64, PerfError> {
        match &self.dead_letter_queue {
            Some(q) => message_count(s, q).await,
            None => Ok(0),
        }
    }

    /// Waits until the broker has deleted every queue of the run, or until
    /// `limit`; returns when the last one was seen gone, or `None` at the
    /// limit. Probes the queues in the order they were declared (the order
    /// their x-expires runs out): binds the first one not yet seen gone to
    /// amq.direct every 10 ms until the broker answers 404 (and closes the
    /// channel, which is opened again), then moves on to the next. A bind
    /// is not a use of the queue, so probing does not put off its expiry
    /// (a declare, even a passive one, would).
    pub async fn wait_deleted(
        &self,
        s: &mut Connection,
        limit: Instant,
    ) -> Result<Option<Instant>, PerfError> {
        let mut next = 0;
        while next < self.queues.len() {
            let probe = QueueBind {
                queue: self.queues[next].clone(),
                exchange: PROBE_EXCHANGE.into(),
                routing_key: PROBE_KEY.into(),
                ..Default::default()
            };
            match s.call(CHANNEL, probe.into()).await {
                Ok(_) => {
                    if Instant::now() >= limit {
                        return Ok(None);
                    }
                    tokio::time::sleep(PROBE_INTERVAL).await;
                }
                Err(PerfError::ChannelClosed { code: 404, .. }) => {
                    s.call(CHANNEL, ChannelOpen::default().into()).await?;
                    next += 1;
                }
                Err(err) => return Err(err),
            }
        }
        Ok(Some(Instant::now()))
    }

    /// Deletes the queues and exchanges after the run, unless keeping them;
    /// with `queues_gone` (the broker deleted them) only the others.
    pub async fn teardown(&self, s: &mut Connection, queues_gone: bool) -> Result<(), PerfError> {
        if self.keep {
            return Ok(());
        }
        self.delete(s, !queues_gone).await
    }

    async fn delete(&self, s: &mut Connection, queues: bool) -> Result<(), PerfError> {
        let mut exchanges = Vec::new();
        if self.fanout {
            exchanges.push(FANOUT_EXCHANGE);
        }
        let mut names: Vec<&str> = Vec::new();
        if let Some(dlq) = &self.dead_letter_queue {
            exchanges.push(DEAD_LETTER_EXCHANGE);
            names.push(dlq);
        }
        if queues {
            names.extend(self.queues.iter().map(String::as_str));
        }
        for exchange in exchanges {
            let delete = ExchangeDelete {
                exchange: exchange.into(),
                ..Default::default()
            };
            s.call(CHANNEL, delete.into()).await?;
        }
        for q in names {
            let delete = QueueDelete {
                queue: q.into(),
                ..Default::default()
            };
            s.call(CHANNEL, delete.into()).await?;
        }
        Ok(())
    }
}

/// Messages ready in queue `q` (a passive declare).
async fn message_count(s: &mut Connection, q: &str) -> Result<u64, PerfError> {
    let declare = QueueDeclare {
        queue: q.into(),
        passive: true,
        ..Default::default()
    };
    match s.call(CHANNEL, declare.into()).await? {
        Method::QueueDeclareOk(ok) => Ok(ok.message_count as u64),
        _ => Ok(0),
    }
}
