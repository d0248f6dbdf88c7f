//! Runs a whole scenario: declares the queues, opens every connection,
//! opens the gates in order (consumers, then publishers; or for a backlog
//! run, publishers, then consumers once the backlog is in), watches the
//! counters, prints progress, decides when to stop, and sums up.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use crate::client::Gates;
use crate::summary::{BacklogPhases, LatencySummary, WaitSummary};
use crate::{
    AmqpUri, Client, Connection, CpuSample, CpuSampler, PerfArgs, PerfError, Plan, Progress,
    RunStats, Summary, Topology,
};

/// How often the runner looks at the counters.
const TICK: Duration = Duration::from_millis(10);

/// The runners' clock: a tick every [`TICK`], late ticks not made up for.
pub(crate) fn ticker() -> tokio::time::Interval {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick
}
/// How long consumers may take to start consuming.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(30);
/// A bounded run that moves nothing for this long gives up.
const STALL_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the waits after a run may take when no --duration bounds them.
const WAIT_LIMIT: Duration = Duration::from_secs(600);
/// How long connection tasks may take to close after the stop.
const JOIN_TIMEOUT: Duration = Duration::from_secs(10);

/// What the run is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the consumers' `basic.consume-ok`.
    Subscribing,
    /// Publishing and consuming at once.
    Running,
    /// Publishing a backlog with no consumer.
    Backlog,
    /// Consuming the backlog.
    Draining,
}

impl Phase {
    fn label(self) -> &'static str {
        match self {
            Phase::Subscribing => "[start]",
            Phase::Running => "",
            Phase::Backlog => "[backlog]",
            Phase::Draining => "[drain]",
        }
    }
}

/// When things happened, as the runner saw them.
#[derive(Debug, Default)]
struct Timeline {
    publish_start: Option<Instant>,
    consume_start: Option<Instant>,
    publish_end: Option<Instant>,
    stop: Option<Instant>,
    queued: Option<u64>,
    complete: Option<bool>,
    interrupted: bool,
    cpu_start: CpuSample,
    cpu_end: CpuSample,
}

/// A scenario ready to run.
pub struct Runner {
    args: PerfArgs,
    plan: Arc<Plan>,
    uri: AmqpUri,
}

impl Runner {
    pub fn new(args: &PerfArgs) -> Result<Runner, PerfError> {
        Ok(Runner {
            plan: Arc::new(Plan::new(args)?),
            uri: AmqpUri::parse(&args.uri)?,
            args: args.clone(),
        })
    }

    /// Runs to the end (or until `interrupt` completes), waits for what
    /// the options say to wait for afterwards, and sums up.
    pub async fn run(self, interrupt: impl Future<Output = ()>) -> Result<Summary, PerfError> {
        let mut admin = Connection::open(&self.uri, "warren-perf setup").await?;
        let topology = Topology::new(&self.plan);
        let declare = topology.setup(&mut admin).await?;
        let declared_at = Instant::now();
        let stats = Arc::new(RunStats::new(
            self.plan.producers.len(),
            self.plan.consumers.len(),
            self.plan.latency,
        ));
        tokio::pin!(interrupt);
        let mut timeline = if self.plan.connections.is_empty() {
            // Nothing to publish or consume: the queues are the run.
            let now = CpuSampler::new(self.args.broker_pid).sample();
            Timeline {
                stop: Some(declared_at),
                cpu_start: now,
                cpu_end: now,
                ..Default::default()
            }
        } else {
            let clients = self.connect_all(&stats).await?;
            let (gates, gate_rx) = watch::channel(Gates::default());
            let mut tasks = JoinSet::new();
            for client in clients {
                tasks.spawn(client.run(gate_rx.clone()));
            }
            let driven = self
                .drive(
                    &stats,
                    &gates,
                    &mut tasks,
                    &mut admin,
                    &topology,
                    interrupt.as_mut(),
                )
                .await;
            gates.send_modify(|g| g.stop = true);
            let joined = join_all(&mut tasks).await;
            let timeline = driven?;
            joined?;
            timeline
        };
        let mut wait = None;
        if !timeline.interrupted {
            tokio::select! {
                waited = self.wait(&stats, &mut timeline, &mut admin, &topology, declared_at) => {
                    wait = waited?;
                }
                () = interrupt.as_mut() => timeline.interrupted = true,
            }
        }
        let gone = wait.as_ref().is_some_and(|w| w.deleted_s.is_some());
        if let Err(err) = topology.teardown(&mut admin, gone).await {
            eprintln!("note: could not delete the queues after the run: {err}");
        }
        admin.close().await;
        let mut summary = self.summarize(&stats, &timeline);
        summary.declare_s = declare.as_secs_f64();
        summary.wait = wait;
        Ok(summary)
    }

    /// After the run: waits until the queues are empty (`--wait-empty`),
    /// until the dead-letter queue holds what the run should have put there
    /// (`--dead-letter-queue`), and until the broker has deleted the queues
    /// (`--wait-deleted`), each at most until the run's time limit (from
    /// the start of publishing, or from the declares).
    async fn wait(
        &self,
        stats: &RunStats,
        t: &mut Timeline,
        admin: &mut Connection,
        topology: &Topology,
        declared_at: Instant,
    ) -> Result<Option<WaitSummary>, PerfError> {
        let plan = &self.plan;
        if !(plan.wait_empty || plan.dead_letter_queue.is_some() || plan.wait_deleted) {
            return Ok(None);
        }
        let from = t.publish_start.unwrap_or(declared_at);
        let limit = from
            .checked_add(plan.duration.unwrap_or(WAIT_LIMIT))
            .unwrap_or(from);
        let sampler = CpuSampler::new(self.args.broker_pid);
        let mut w = WaitSummary::default();
        let mut missed = Vec::new();
        let mut tick = ticker();
        if plan.wait_empty {
            loop {
                let now = Instant::now();
                if topology.depth(admin).await? == 0 {
                    w.empty_s = Some(now.duration_since(from).as_secs_f64());
                    break;
                }
                if now >= limit {
                    missed.push("the queues to empty");
                    break;
                }
                tick.tick().await;
            }
        }
        if plan.dead_letter_queue.is_some() {
            let totals = stats.totals();
            let target = if plan.reject {
                totals.delivered
            } else {
                totals.published.saturating_sub(totals.delivered)
            };
            let since = t.consume_start.unwrap_or(from);
            loop {
                let now = Instant::now();
                let n = topology.dead_lettered(admin).await?;
                w.dead_lettered = Some(n);
                if n >= target {
                    w.dead_letter_s = Some(now.duration_since(since).as_secs_f64());
                    break;
                }
                if now >= limit {
                    missed.push("the dead-letter queue to fill");
                    break;
                }
                tick.tick().await;
            }
        }
        if plan.wait_deleted {
            match topology.wait_deleted(admin, limit).await? {
                Some(at) => w.deleted_s = Some(at.duration_since(declared_at).as_secs_f64()),
                None => missed.push("the broker to delete the queues"),
            }
        }
        if !missed.is_empty() {
            eprintln!("note: gave up waiting for {}", missed.join(" and "));
            t.complete = Some(false);
        }
        t.cpu_end = sampler.sample();
        Ok(Some(w))
    }

    /// Opens every connection of the plan, at most `--connect-concurrency`
    /// at a time.
    async fn connect_all(&self, stats: &Arc<RunStats>) -> Result<Vec<Client>, PerfError> {
        let mut connecting = JoinSet::new();
        let slots = Arc::new(Semaphore::new(self.args.connect_concurrency));
        for index in 0..self.plan.connections.len() {
            let (uri, plan, stats) = (self.uri.clone(), Arc::clone(&self.plan), Arc::clone(stats));
            let slots = Arc::clone(&slots);
            connecting.spawn(async move {
                let _slot = slots.acquire_owned().await;
                Client::connect(&uri, &plan, index, &stats).await
            });
        }
        let mut clients = Vec::with_capacity(self.plan.connections.len());
        while let Some(joined) = connecting.join_next().await {
            clients.push(joined.map_err(task_failed)??);
        }
        Ok(clients)
    }

    /// Opens the gates in order and watches the counters until the run is
    /// over.
    async fn drive(
        &self,
        stats: &RunStats,
        gates: &watch::Sender<Gates>,
        tasks: &mut JoinSet<Result<(), PerfError>>,
        admin: &mut Connection,
        topology: &Topology,
        interrupt: impl Future<Output = ()>,
    ) -> Result<Timeline, PerfError> {
        let plan = &self.plan;
        let bounded = plan.count.is_some() || plan.backlog.is_some();
        let has_consumers = !plan.consumers.is_empty();
        let sampler = CpuSampler::new(self.args.broker_pid);
        let mut t = Timeline {
            cpu_start: sampler.sample(),
            ..Default::default()
        };
        let start = Instant::now();
        let mut progress = Progress::new(start, t.cpu_start, self.args.quiet);
        let mut deadline = None;
        let mut phase = if plan.backlog.is_some() || !has_consumers {
            gates.send_modify(|g| g.publish = true);
            t.publish_start = Some(start);
            deadline = plan.duration.and_then(|d| start.checked_add(d));
            if plan.backlog.is_some() {
                Phase::Backlog
            } else {
                Phase::Running
            }
        } else {
            gates.send_modify(|g| g.consume = true);
            Phase::Subscribing
        };
        let mut moved_at = (0u64, start);
        let mut tick = ticker();
        tokio::pin!(interrupt);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                Some(joined) = tasks.join_next() => {
                    joined.map_err(task_failed)??;
                    return Err(PerfError::Protocol {
                        addr: self.uri.addr(),
                        what: "a connection ended before the run did".into(),
                    });
                }
                () = &mut interrupt => {
                    t.interrupted = true;
                    break;
                }
            }
            let now = Instant::now();
            let totals = stats.totals();
            match phase {
                Phase::Subscribing => {
                    if stats.all_consuming() {
                        gates.send_modify(|g| g.publish = true);
                        t.publish_start = Some(now);
                        // With producers the queues fill from now on; without
                        // them, consumers may have been draining a kept
                        // backlog since their gate opened.
                        t.consume_start = Some(if plan.producers.is_empty() {
                            start
                        } else {
                            now
                        });
                        deadline = plan.duration.and_then(|d| now.checked_add(d));
                        phase = Phase::Running;
                    } else if now.duration_since(start) > SUBSCRIBE_TIMEOUT {
                        return Err(PerfError::Timeout {
                            addr: self.uri.addr(),
                            what: "basic.consume".into(),
                        });
                    }
                }
                Phase::Backlog => {
                    if stats.producers_done() {
                        t.publish_end = stats.last_producer_done();
                        t.queued = Some(topology.depth(admin).await?);
                        if !has_consumers {
                            t.complete = Some(true);
                            break;
                        }
                        gates.send_modify(|g| g.consume = true);
                        t.consume_start = Some(Instant::now());
                        phase = Phase::Draining;
                    }
                }
                Phase::Running | Phase::Draining => {
                    if bounded && stats.producers_done() && totals.delivered >= self.expected(stats)
                    {
                        t.complete = Some(true);
                        break;
                    }
                }
            }
            let moved = totals.published + totals.confirmed + totals.nacked + totals.delivered;
            if moved != moved_at.0 {
                moved_at = (moved, now);
            } else if bounded
                && phase != Phase::Subscribing
                && now.duration_since(moved_at.1) > STALL_TIMEOUT
            {
                eprintln!("nothing moved for {} s; stopping", STALL_TIMEOUT.as_secs());
                break;
            }
            if deadline.is_some_and(|d| now >= d) {
                break;
            }
            // Merging every consumer's interval histogram takes a few
            // milliseconds with a thousand consumers: not done when quiet.
            if !self.args.quiet && progress.due(now) {
                let latency = plan.latency.then(|| stats.latencies(true));
                progress.print(
                    now,
                    phase.label(),
                    totals,
                    sampler.sample(),
                    latency.as_ref(),
                );
            }
        }
        t.stop = Some(Instant::now());
        t.cpu_end = sampler.sample();
        if bounded && t.complete.is_none() {
            t.complete = Some(false);
        }
        Ok(t)
    }

    /// Deliveries a bounded run waits for, given what was published.
    fn expected(&self, stats: &RunStats) -> u64 {
        if self.plan.producers.is_empty() {
            self.plan.count.unwrap_or(0)
        } else {
            self.plan
                .expected_deliveries(&stats.published_by_producer())
        }
    }

    fn summarize(&self, stats: &RunStats, t: &Timeline) -> Summary {
        let plan = &self.plan;
        let totals = stats.totals();
        let stop = t.stop.unwrap_or_else(Instant::now);
        let secs = |from: Option<Instant>, to: Option<Instant>| match (from, to) {
            (Some(a), Some(b)) => b.saturating_duration_since(a).as_secs_f64(),
            _ => 0.0,
        };
        let publish_end = if stats.producers_done() {
            stats.last_producer_done().or(Some(stop))
        } else {
            Some(stop)
        };
        let consume_end = if t.complete == Some(true) {
            stats.last_delivery().or(Some(stop))
        } else {
            Some(stop)
        };
        let publish_s = if plan.producers.is_empty() {
            0.0
        } else {
            secs(t.publish_start, t.publish_end.or(publish_end))
        };
        let consume_s = secs(t.consume_start, consume_end);
        let first = [t.publish_start, t.consume_start]
            .into_iter()
            .flatten()
            .min();
        let latency = plan
            .latency
            .then(|| LatencySummary::of(&stats.latencies(false)));
        let bounded = plan.count.is_some() || plan.backlog.is_some();
        Summary {
            uri: self.uri.redacted(),
            scenario: self.scenario(),
            producers: plan.producers.len(),
            consumers: plan.consumers.len(),
            published: totals.published,
            confirmed: totals.confirmed,
            nacked: totals.nacked,
            delivered: totals.delivered,
            expected: bounded.then(|| self.expected(stats)),
            complete: t.complete,
            interrupted: t.interrupted,
            elapsed_s: secs(first, Some(stop)),
            publish_s,
            consume_s,
            backlog: plan.backlog.map(|messages| BacklogPhases {
                messages,
                queued: t.queued.unwrap_or(0),
                publish_s,
                drain_s: consume_s,
            }),
            latency,
            idle: None,
            queues_declared: plan.queues.len(),
            declare_s: 0.0,
            wait: None,
            tool_cpu_s: t.cpu_end.tool - t.cpu_start.tool,
            broker_cpu_s: match (t.cpu_start.broker, t.cpu_end.broker) {
                (Some(a), Some(b)) => Some(b - a),
                _ => None,
            },
        }
    }

    fn scenario(&self) -> serde_json::Value {
        let (p, a) = (&self.plan, &self.args);
        json!({
            "producers": p.producers.len(),
            "consumers": p.consumers.len(),
            "queues": p.queues.len(),
            "queue_pattern": a.queue_pattern,
            "size": p.size,
            "persistent": p.persistent,
            "durable": p.durable,
            "confirm": p.confirm,
            "prefetch": p.prefetch,
            "ack_every": p.ack_every,
            "fanout": a.fanout,
            "connections": p.connections.len(),
            "rate": p.rate,
            "latency": p.latency,
            "backlog": p.backlog,
            "duration_s": p.duration.map(|d| d.as_secs_f64()),
            "count": p.count,
            "threads": a.threads,
            "queue_args": a.queue_arg,
            "priorities": p.priorities,
            "expiration": p.expiration,
            "first_expiration": p.first_expiration,
            "reject": p.reject,
            "dead_letter_queue": p.dead_letter_queue,
            "wait_empty": p.wait_empty,
            "wait_deleted": p.wait_deleted,
        })
    }
}

/// Waits for every connection task to close; the first error wins.
async fn join_all(tasks: &mut JoinSet<Result<(), PerfError>>) -> Result<(), PerfError> {
    let mut first = Ok(());
    let all = async {
        while let Some(joined) = tasks.join_next().await {
            let result = joined.map_err(task_failed).and_then(|r| r);
            if first.is_ok() {
                first = result;
            }
        }
    };
    if tokio::time::timeout(JOIN_TIMEOUT, all).await.is_err() {
        tasks.abort_all();
    }
    first
}

fn task_failed(err: tokio::task::JoinError) -> PerfError {
    PerfError::Internal(format!("a connection task failed: {err}"))
}
