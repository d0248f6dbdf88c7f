//! `warren perf`: a lean AMQP 0-9-1 load generator for Warren, RabbitMQ or
//! any other 0-9-1 broker, in the spirit of RabbitMQ's PerfTest.
//!
//! It speaks the protocol itself with `warren-protocol` over tokio TCP, so
//! that the tool is never the bottleneck: publishers copy pre-encoded
//! messages into a 64 KiB buffer and write it with one syscall; consumers
//! split frames in place in a 256 KiB read buffer and count them without
//! allocating.
//!
//! Modules, one main type each:
//! - `args`: the command line ([`PerfArgs`]);
//! - `plan`: the options checked and spelled out (`Plan`);
//! - `uri`: `amqp://` URIs ([`AmqpUri`]);
//! - `connection`: connecting, the handshake, setup methods (`Connection`);
//! - `topology`: declaring and deleting the queues (`Topology`);
//! - `frames`: the in-place read buffer (`FrameReader`);
//! - `template`: pre-encoded messages (`PublishTemplate`);
//! - `confirms`, `rate`: a producer's confirm window and pacing
//!   (`ConfirmTracker`, `RateLimiter`);
//! - `producer`, `consumer`: one channel's role (`Producer`, `Consumer`);
//! - `channels`: a connection's channels and frame dispatch (`Channels`);
//! - `client`: a connection's task (`Client`);
//! - `stats`, `run_stats`: shared counters (`RoleStats`, `RunStats`);
//! - `histogram`: latency percentiles ([`Histogram`]);
//! - `cpu`: CPU time of the tool and the broker (`CpuSampler`);
//! - `progress`: the line printed every second (`Progress`);
//! - `runner`: the whole run (`Runner`);
//! - `idle`: idle mode, many connections doing nothing (`IdleRunner`);
//! - `fds`: the limit on open files;
//! - `summary`: the result ([`Summary`]).

mod args;
mod channels;
mod client;
mod confirms;
mod connection;
mod consumer;
mod cpu;
mod error;
mod fds;
mod frames;
mod histogram;
mod idle;
mod plan;
mod producer;
mod progress;
mod rate;
mod run_stats;
mod runner;
mod stats;
mod summary;
mod template;
mod topology;
mod uri;

use std::future::Future;
use std::process::ExitCode;

pub use args::PerfArgs;
pub use error::PerfError;
pub use histogram::Histogram;
pub use summary::{BacklogPhases, IdleSummary, LatencySummary, Summary, WaitSummary};
pub use uri::AmqpUri;

pub(crate) use channels::Channels;
pub(crate) use client::Client;
pub(crate) use confirms::ConfirmTracker;
pub(crate) use connection::Connection;
pub(crate) use consumer::Consumer;
pub(crate) use cpu::{CpuSample, CpuSampler};
pub(crate) use frames::FrameReader;
pub(crate) use idle::IdleRunner;
pub(crate) use plan::Plan;
pub(crate) use producer::Producer;
pub(crate) use progress::Progress;
pub(crate) use rate::RateLimiter;
pub(crate) use run_stats::RunStats;
pub(crate) use runner::Runner;
pub(crate) use stats::RoleStats;
pub(crate) use template::PublishTemplate;
pub(crate) use topology::Topology;

/// Runs a scenario to its end and returns what it measured.
pub async fn run(args: &PerfArgs) -> Result<Summary, PerfError> {
    run_until(args, std::future::pending()).await
}

/// Like [`run`], but stops early (and still sums up) when `interrupt`
/// completes.
pub async fn run_until(
    args: &PerfArgs,
    interrupt: impl Future<Output = ()>,
) -> Result<Summary, PerfError> {
    if args.idle_connections.is_some() {
        IdleRunner::new(args)?.run(interrupt).await
    } else {
        Runner::new(args)?.run(interrupt).await
    }
}

/// `warren perf`: runs the scenario on its own runtime, stops early on
/// Ctrl-C, prints the summary (text, or JSON on stdout with `--json`).
/// Exits with 1 on errors, on bounded runs that did not consume everything
/// and on idle runs that did not hold every connection, and with 130 when
/// interrupted.
pub fn main(args: PerfArgs) -> ExitCode {
    fds::raise_open_files_limit();
    let runtime = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()
    };
    let result = match runtime {
        Ok(rt) => rt.block_on(run_until(&args, async {
            let _ = tokio::signal::ctrl_c().await;
        })),
        Err(err) => Err(PerfError::Runtime(err)),
    };
    match result {
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
        Ok(summary) => {
            if args.json {
                println!("{}", summary.to_json());
            } else {
                print!("{}", summary.text());
            }
            let idle_short = summary.idle.as_ref().filter(|i| i.held() < i.requested);
            if summary.interrupted {
                ExitCode::from(130)
            } else if let Some(idle) = idle_short {
                eprintln!(
                    "error: {} of {} connections held ({} failed to connect, {} dropped); first \
                     error: {}",
                    idle.held(),
                    idle.requested,
                    idle.failed,
                    idle.dropped,
                    idle.first_error.as_deref().unwrap_or("none")
                );
                ExitCode::FAILURE
            } else if summary.complete == Some(false) && summary.expected.is_none() {
                eprintln!("error: the run did not see what it waited for in time");
                ExitCode::FAILURE
            } else if summary.complete == Some(false) {
                eprintln!(
                    "error: expected {} deliveries but got {}",
                    summary.expected.unwrap_or(0),
                    summary.delivered
                );
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
    }
}
