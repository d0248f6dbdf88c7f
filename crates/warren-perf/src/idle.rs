//! Idle mode (`--idle-connections N --hold SECONDS`): what open connections
//! cost a broker.
//!
//! Opens N connections, at most `--connect-concurrency` handshakes at a
//! time (spread over the runtime's threads), each with the heartbeat
//! interval the broker proposes and one channel open; holds them for the
//! given time once all are open, sending nothing but heartbeats (every half
//! interval) and reading nothing but heartbeats; then closes them. Reports
//! how many connected, failed, and were dropped by the broker during the
//! hold. Run with `--broker-pid`, the broker's memory before and during the
//! hold gives its memory per connection.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use crate::client::open_channel;
use crate::connection::Heartbeats;
use crate::progress::grouped;
use crate::summary::IdleSummary;
use crate::{fds, AmqpUri, Connection, CpuSampler, PerfArgs, PerfError, Summary};

/// How often a progress line is printed.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// How long the connections may take to close after the hold.
const JOIN_TIMEOUT: Duration = Duration::from_secs(15);
/// Hold time when `--hold` is not given.
const DEFAULT_HOLD: Duration = Duration::from_secs(10);
/// Files the tool needs besides its connections (runtime, stdio, margin).
const SPARE_FILES: u64 = 32;

/// What the connection tasks report.
#[derive(Debug, Default)]
struct Counts {
    connected: AtomicUsize,
    failed: AtomicUsize,
    dropped: AtomicUsize,
    /// The negotiated heartbeat interval of the first connection, plus one
    /// (0 = no connection yet).
    heartbeat: AtomicUsize,
    first_error: Mutex<Option<PerfError>>,
}

impl Counts {
    fn connected(&self, heartbeat: u16) {
        let _ = self.heartbeat.compare_exchange(
            0,
            heartbeat as usize + 1,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
        self.connected.fetch_add(1, Ordering::Relaxed);
    }

    fn failed(&self, err: PerfError) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        self.note(err);
    }

    fn dropped(&self, err: PerfError) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
        self.note(err);
    }

    fn note(&self, err: PerfError) {
        if let Ok(mut first) = self.first_error.lock() {
            first.get_or_insert(err);
        }
    }

    /// Connections that are no longer being opened.
    fn settled(&self) -> usize {
        self.connected.load(Ordering::Relaxed) + self.failed.load(Ordering::Relaxed)
    }

    fn first_error(&self) -> Option<String> {
        self.first_error
            .lock()
            .ok()
            .and_then(|e| e.as_ref().map(|e| e.to_string()))
    }
}

/// An idle-connections run ready to go.
pub struct IdleRunner {
    args: PerfArgs,
    uri: AmqpUri,
    count: usize,
    hold: Duration,
}

impl IdleRunner {
    pub fn new(args: &PerfArgs) -> Result<IdleRunner, PerfError> {
        let usage = |s: String| Err(PerfError::Usage(s));
        let count = args.idle_connections.unwrap_or(0);
        if count == 0 {
            return usage("--idle-connections must be at least 1".into());
        }
        let hold = match args.hold.map(Duration::try_from_secs_f64) {
            None => DEFAULT_HOLD,
            Some(Ok(d)) if !d.is_zero() => d,
            Some(_) => return usage("--hold must be a positive number of seconds".into()),
        };
        if args.threads == 0 || args.connect_concurrency == 0 {
            return usage("--threads and --connect-concurrency must be at least 1".into());
        }
        if let Some(limit) = fds::open_files_limit() {
            if count as u64 + SPARE_FILES > limit {
                return usage(format!(
                    "{count} connections need about {} open files, but this process may open \
                     only {limit} (ulimit -n)",
                    count as u64 + SPARE_FILES
                ));
            }
        }
        Ok(IdleRunner {
            uri: AmqpUri::parse(&args.uri)?,
            args: args.clone(),
            count,
            hold,
        })
    }

    /// Opens the connections, holds them, closes them, and sums up. Fails
    /// only when not one connection could be opened.
    pub async fn run(self, interrupt: impl Future<Output = ()>) -> Result<Summary, PerfError> {
        let sampler = CpuSampler::new(self.args.broker_pid);
        let cpu_start = sampler.sample();
        let counts = Arc::new(Counts::default());
        let (stop, stop_rx) = watch::channel(false);
        let slots = Arc::new(Semaphore::new(self.args.connect_concurrency));
        let mut tasks = JoinSet::new();
        let start = Instant::now();
        for index in 0..self.count {
            tasks.spawn(hold_one(
                self.uri.clone(),
                index,
                Arc::clone(&slots),
                Arc::clone(&counts),
                stop_rx.clone(),
            ));
        }
        let mut connected_at = None;
        let mut interrupted = false;
        let mut last_progress = start;
        let mut tick = crate::runner::ticker();
        tokio::pin!(interrupt);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = &mut interrupt => {
                    interrupted = true;
                    break;
                }
            }
            let now = Instant::now();
            if connected_at.is_none() && counts.settled() >= self.count {
                connected_at = Some(now);
                if counts.connected.load(Ordering::Relaxed) == 0 {
                    break;
                }
            }
            if connected_at.is_some_and(|at| now.duration_since(at) >= self.hold) {
                break;
            }
            if !self.args.quiet && now.duration_since(last_progress) >= PROGRESS_EVERY {
                last_progress = now;
                self.progress(now.duration_since(start), &counts, connected_at.is_some());
            }
        }
        let stopped = Instant::now();
        let cpu_end = sampler.sample();
        let connected = counts.connected.load(Ordering::Relaxed);
        let summary = IdleSummary {
            requested: self.count,
            connected,
            failed: counts.failed.load(Ordering::Relaxed),
            dropped: counts.dropped.load(Ordering::Relaxed),
            heartbeat_s: match counts.heartbeat.load(Ordering::Relaxed) {
                0 => None,
                h => Some((h - 1) as u16),
            },
            connect_s: connected_at
                .unwrap_or(stopped)
                .duration_since(start)
                .as_secs_f64(),
            hold_s: connected_at.map_or(0.0, |at| stopped.duration_since(at).as_secs_f64()),
            first_error: counts.first_error(),
        };
        let _ = stop.send(true);
        if tokio::time::timeout(JOIN_TIMEOUT, async {
            while tasks.join_next().await.is_some() {}
        })
        .await
        .is_err()
        {
            tasks.abort_all();
        }
        if connected == 0 && !interrupted {
            if let Some(err) = counts.first_error.lock().ok().and_then(|mut e| e.take()) {
                return Err(err);
            }
        }
        Ok(Summary {
            uri: self.uri.redacted(),
            scenario: json!({
                "idle_connections": self.count,
                "hold_s": self.hold.as_secs_f64(),
                "connect_concurrency": self.args.connect_concurrency,
                "threads": self.args.threads,
            }),
            producers: 0,
            consumers: 0,
            published: 0,
            confirmed: 0,
            nacked: 0,
            delivered: 0,
            expected: None,
            complete: None,
            interrupted,
            elapsed_s: stopped.duration_since(start).as_secs_f64(),
            publish_s: 0.0,
            consume_s: 0.0,
            backlog: None,
            latency: None,
            idle: Some(summary),
            queues_declared: 0,
            declare_s: 0.0,
            wait: None,
            tool_cpu_s: cpu_end.tool - cpu_start.tool,
            broker_cpu_s: match (cpu_start.broker, cpu_end.broker) {
                (Some(a), Some(b)) => Some(b - a),
                _ => None,
            },
        })
    }

    fn progress(&self, elapsed: Duration, counts: &Counts, holding: bool) {
        let open =
            counts.connected.load(Ordering::Relaxed) - counts.dropped.load(Ordering::Relaxed);
        eprintln!(
            "{:>6.1}s {} {} of {} open, {} failed, {} dropped",
            elapsed.as_secs_f64(),
            if holding { "[hold]" } else { "[connect]" },
            grouped(open as u64),
            grouped(self.count as u64),
            grouped(counts.failed.load(Ordering::Relaxed) as u64),
            grouped(counts.dropped.load(Ordering::Relaxed) as u64),
        );
    }
}

/// Connection `index`: waits for a slot, connects, opens channel 1, then
/// sends heartbeats until `stop` and closes.
async fn hold_one(
    uri: AmqpUri,
    index: usize,
    slots: Arc<Semaphore>,
    counts: Arc<Counts>,
    mut stop: watch::Receiver<bool>,
) {
    let opened = {
        let _slot = slots.acquire_owned().await;
        if *stop.borrow() {
            return;
        }
        open_idle(&uri, index).await
    };
    let mut conn = match opened {
        Ok(conn) => conn,
        Err(err) => return counts.failed(err),
    };
    counts.connected(conn.heartbeat);
    let beat = Duration::from_secs(conn.heartbeat.into()) / 2;
    let next_beat = tokio::time::sleep(beat);
    tokio::pin!(next_beat);
    loop {
        tokio::select! {
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    break;
                }
            }
            err = conn.wait_closed() => return counts.dropped(err),
            () = &mut next_beat, if !beat.is_zero() => {
                if let Err(err) = conn.send_heartbeat().await {
                    return counts.dropped(err);
                }
                next_beat.as_mut().reset(tokio::time::Instant::now() + beat);
            }
        }
    }
    conn.close().await;
}

async fn open_idle(uri: &AmqpUri, index: usize) -> Result<Connection, PerfError> {
    let name = format!("warren-perf idle {index}");
    let mut conn = Connection::open_with(uri, &name, Heartbeats::AsProposed).await?;
    open_channel(&mut conn, 1).await?;
    Ok(conn)
}

impl IdleSummary {
    /// Connections still open at the end of the hold.
    pub fn held(&self) -> usize {
        self.connected - self.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn runner(args: &[&str]) -> Result<IdleRunner, PerfError> {
        let mut all = vec!["perf"];
        all.extend_from_slice(args);
        IdleRunner::new(&PerfArgs::try_parse_from(all).expect("parse"))
    }

    #[test]
    fn checks_its_options() {
        let r = runner(&["--idle-connections", "10"]).expect("runner");
        assert_eq!((r.count, r.hold), (10, DEFAULT_HOLD));
        let r = runner(&["--idle-connections", "3", "--hold", "0.5"]).expect("runner");
        assert_eq!(r.hold, Duration::from_millis(500));
        assert!(runner(&["--idle-connections", "0"]).is_err());
        assert!(runner(&["--idle-connections", "1", "--hold", "0"]).is_err());
        assert!(runner(&["--idle-connections", "1", "--connect-concurrency", "0"]).is_err());
        assert!(runner(&["--idle-connections", "100000000"]).is_err());
        assert!(
            PerfArgs::try_parse_from(["perf", "--idle-connections", "5", "--producers", "2"])
                .is_err()
        );
        assert!(PerfArgs::try_parse_from(["perf", "--hold", "5"]).is_err());
    }
}
