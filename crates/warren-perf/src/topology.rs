//! The queues (and fanout exchange) a run uses: declared before it, counted
//! between the phases of a backlog run, deleted after it.

use warren_protocol::{
    ChannelOpen, ExchangeDeclare, ExchangeDelete, Method, QueueBind, QueueDeclare, QueueDelete,
};

use crate::plan::FANOUT_EXCHANGE;
use crate::{Connection, PerfError, Plan};

/// The channel of the setup connection that topology methods use.
const CHANNEL: u16 = 1;

/// What to declare and delete.
#[derive(Debug, Clone)]
pub struct Topology {
    queues: Vec<String>,
    fanout: bool,
    durable: bool,
    keep: bool,
}

impl Topology {
    pub fn new(plan: &Plan) -> Self {
        Topology {
            queues: plan.queues.clone(),
            fanout: plan.fanout,
            durable: plan.durable,
            keep: plan.keep_queues,
        }
    }

    /// Opens the setup channel; deletes the queues and exchange (unless
    /// keeping them), then declares and binds them.
    pub async fn setup(&self, s: &mut Connection) -> Result<(), PerfError> {
        s.call(CHANNEL, ChannelOpen::default().into()).await?;
        if !self.keep {
            self.delete(s).await?;
        }
        if self.fanout {
            let declare = ExchangeDeclare {
                exchange: FANOUT_EXCHANGE.into(),
                kind: "fanout".into(),
                durable: self.durable,
                ..Default::default()
            };
            s.call(CHANNEL, declare.into()).await?;
        }
        for q in &self.queues {
            let declare = QueueDeclare {
                queue: q.clone(),
                durable: self.durable,
                ..Default::default()
            };
            s.call(CHANNEL, declare.into()).await?;
            if self.fanout {
                let bind = QueueBind {
                    queue: q.clone(),
                    exchange: FANOUT_EXCHANGE.into(),
                    ..Default::default()
                };
                s.call(CHANNEL, bind.into()).await?;
            }
        }
        Ok(())
    }

    /// Messages ready in all the queues.
    pub async fn depth(&self, s: &mut Connection) -> Result<u64, PerfError> {
        let mut total = 0;
        for q in &self.queues {
            let declare = QueueDeclare {
                queue: q.clone(),
                passive: true,
                ..Default::default()
            };
            if let Method::QueueDeclareOk(ok) = s.call(CHANNEL, declare.into()).await? {
                total += ok.message_count as u64;
            }
        }
        Ok(total)
    }

    /// Deletes the queues and exchange after the run, unless keeping them.
    pub async fn teardown(&self, s: &mut Connection) -> Result<(), PerfError> {
        if self.keep {
            return Ok(());
        }
        self.delete(s).await
    }

    async fn delete(&self, s: &mut Connection) -> Result<(), PerfError> {
        if self.fanout {
            let delete = ExchangeDelete {
                exchange: FANOUT_EXCHANGE.into(),
                ..Default::default()
            };
            s.call(CHANNEL, delete.into()).await?;
        }
        for q in &self.queues {
            let delete = QueueDelete {
                queue: q.clone(),
                ..Default::default()
            };
            s.call(CHANNEL, delete.into()).await?;
        }
        Ok(())
    }
}
