//! Short `warren perf` runs against a Warren server started in this process
//! on an ephemeral port: the counts must add up.

use std::time::Duration;

use clap::Parser;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use warren_perf::{PerfArgs, PerfError, Summary};
use warren_server::ServerConfig;

/// A server on 127.0.0.1:0, stopped when dropped.
struct Server {
    uri: String,
    stop: Option<oneshot::Sender<()>>,
}

impl Server {
    async fn start(config: ServerConfig) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(warren_server::run(listener, config, async move {
            let _ = rx.await;
        }));
        Server {
            uri: format!("amqp://guest:guest@{addr}/%2f"),
            stop: Some(tx),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

async fn perf(server: &Server, args: &[&str]) -> Summary {
    let mut all = vec!["perf", "--quiet", "--uri", &server.uri];
    all.extend_from_slice(args);
    let args = PerfArgs::try_parse_from(all).expect("arguments");
    tokio::time::timeout(Duration::from_secs(60), warren_perf::run(&args))
        .await
        .expect("the run stops by itself")
        .expect("the run succeeds")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmed_and_acked_messages_all_arrive() {
    let server = Server::start(ServerConfig::default()).await;
    let s = perf(
        &server,
        &[
            "--count",
            "20000",
            "--confirm",
            "500",
            "--ack-every",
            "50",
            "--prefetch",
            "200",
        ],
    )
    .await;
    assert_eq!(s.published, 20_000);
    assert_eq!(s.confirmed, 20_000);
    assert_eq!(s.nacked, 0);
    assert_eq!(s.delivered, 20_000);
    assert_eq!((s.expected, s.complete), (Some(20_000), Some(true)));
    assert!(s.publish_rate() > 0.0 && s.consume_rate() > 0.0);
    let json = s.to_json();
    assert_eq!(json["published"], 20_000);
    assert_eq!(json["scenario"]["confirm"], 500);
    assert!(json["tool_cpu_s_per_million"].is_number());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_messages_to_a_durable_queue_with_several_producers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(ServerConfig {
        data_dir: Some(dir.path().to_path_buf()),
        ..ServerConfig::default()
    })
    .await;
    let s = perf(
        &server,
        &[
            "--count",
            "10001",
            "--producers",
            "3",
            "--consumers",
            "2",
            "--queues",
            "2",
            "--connections",
            "2",
            "--persistent",
            "--durable",
            "--confirm",
            "100",
            "--ack-every",
            "10",
        ],
    )
    .await;
    assert_eq!(
        (s.published, s.confirmed, s.delivered),
        (10_001, 10_001, 10_001)
    );
    assert_eq!(s.complete, Some(true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_is_published_first_then_drained() {
    let server = Server::start(ServerConfig::default()).await;
    let s = perf(&server, &["--backlog", "20000", "--confirm", "1000"]).await;
    let backlog = s.backlog.clone().expect("backlog phases");
    assert_eq!(backlog.queued, 20_000);
    assert_eq!(
        (s.published, s.confirmed, s.delivered),
        (20_000, 20_000, 20_000)
    );
    assert!(backlog.publish_s > 0.0 && backlog.drain_s > 0.0);
    assert_eq!(s.complete, Some(true));
    assert!(s.to_json()["backlog"]["drain_rate"].is_number());

    let s = perf(&server, &["--backlog", "5000", "--ack-every", "100"]).await;
    assert_eq!((s.published, s.delivered), (5_000, 5_000));
    assert_eq!(s.backlog.map(|b| b.queued), Some(5_000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_delivers_a_copy_to_every_queue() {
    let server = Server::start(ServerConfig::default()).await;
    let s = perf(
        &server,
        &["--fanout", "4", "--count", "3000", "--size", "100"],
    )
    .await;
    assert_eq!((s.published, s.delivered), (3_000, 12_000));
    assert_eq!(s.complete, Some(true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_mode_paces_and_measures_every_message() {
    let server = Server::start(ServerConfig::default()).await;
    let s = perf(&server, &["--latency", "--rate", "4000", "--count", "1000"]).await;
    assert_eq!(s.delivered, 1_000);
    let latency = s.latency.expect("latency measured");
    assert_eq!(latency.count, 1_000);
    assert!(latency.p50_us > 0.0 && latency.p50_us <= latency.p99_us);
    assert!(latency.p99_us <= latency.p999_us && latency.p999_us <= latency.max_us);
    assert!(s.publish_s >= 0.2, "1000 messages at 4000/s take 0.25 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_time_bounded_run_stops_by_itself() {
    let server = Server::start(ServerConfig::default()).await;
    let s = perf(&server, &["--duration", "0.5", "--size", "1000"]).await;
    assert!(s.published > 0 && s.delivered > 0);
    assert!(s.delivered <= s.published);
    assert_eq!(s.complete, None);
    // It stops by itself (well inside the 60 s guard); the upper bound is loose
    // because a loaded machine may take a while to drain what is in flight.
    assert!((0.4..20.0).contains(&s.elapsed_s), "{}", s.elapsed_s);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_opened_held_with_heartbeats_and_closed() {
    let server = Server::start(ServerConfig {
        heartbeat: 1,
        ..ServerConfig::default()
    })
    .await;
    let s = perf(
        &server,
        &[
            "--idle-connections",
            "50",
            "--hold",
            "2.5",
            "--connect-concurrency",
            "8",
        ],
    )
    .await;
    let idle = s.idle.clone().expect("idle summary");
    assert_eq!((idle.connected, idle.failed, idle.dropped), (50, 0, 0));
    assert_eq!(idle.held(), 50);
    // The broker proposed 1 s and closes a connection after 2 s without a
    // frame from the client: the hold outlasts that only with heartbeats.
    assert_eq!(idle.heartbeat_s, Some(1));
    assert!(idle.hold_s >= 2.5, "{}", idle.hold_s);
    assert_eq!(s.to_json()["idle"]["held"], 50);
}

#[tokio::test]
async fn connection_errors_are_reported() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let uri = format!("amqp://{addr}");
    let args =
        PerfArgs::try_parse_from(["perf", "--quiet", "--uri", &uri, "--count", "1"]).expect("args");
    match warren_perf::run(&args).await {
        Err(PerfError::Connect { .. }) => {}
        other => panic!("expected a connect error, got {other:?}"),
    }

    let server = Server::start(ServerConfig::default()).await;
    let uri = server.uri.replace("guest:guest", "guest:wrong");
    let args =
        PerfArgs::try_parse_from(["perf", "--quiet", "--uri", &uri, "--count", "1"]).expect("args");
    match warren_perf::run(&args).await {
        Err(PerfError::ConnectionClosed { code: 403, .. }) | Err(PerfError::Eof { .. }) => {}
        other => panic!("expected a refused login, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_expire_by_ttl_and_the_run_waits_for_the_empty_queue() {
    let server = Server::start(ServerConfig::default()).await;
    let s = perf(
        &server,
        &[
            "--consumers",
            "0",
            "--count",
            "20000",
            "--queue-arg",
            "x-message-ttl=300",
            "--wait-empty",
        ],
    )
    .await;
    assert_eq!((s.published, s.delivered), (20_000, 0));
    assert_eq!(s.complete, Some(true));
    let empty = s.wait.expect("waited").empty_s.expect("emptied");
    assert!(empty >= 0.3, "nothing expires before its 300 ms: {empty}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_messages_are_dead_lettered_into_the_target_queue() {
    let server = Server::start(ServerConfig::default()).await;
    let s = perf(
        &server,
        &[
            "--backlog",
            "10000",
            "--ack-every",
            "100",
            "--reject",
            "--dead-letter-queue",
            "perf-dead",
        ],
    )
    .await;
    assert_eq!((s.published, s.delivered), (10_000, 10_000));
    assert_eq!(s.complete, Some(true));
    let wait = s.wait.clone().expect("waited");
    assert_eq!(wait.dead_lettered, Some(10_000));
    assert!(wait.dead_letter_s.is_some());
    assert_eq!(s.to_json()["wait"]["dead_lettered"], 10_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priority_messages_are_all_delivered() {
    let server = Server::start(ServerConfig::default()).await;
    let s = perf(
        &server,
        &[
            "--count",
            "10000",
            "--queue-arg",
            "x-max-priority=10",
            "--priorities",
            "10",
            "--ack-every",
            "100",
        ],
    )
    .await;
    assert_eq!((s.published, s.delivered), (10_000, 10_000));
    assert_eq!(s.complete, Some(true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_declared_with_x_expires_are_waited_for_until_deleted() {
    let server = Server::start(ServerConfig::default()).await;
    let s = perf(
        &server,
        &[
            "--producers",
            "0",
            "--consumers",
            "0",
            "--queues",
            "50",
            "--queue-arg",
            "x-expires=300",
            "--wait-deleted",
        ],
    )
    .await;
    assert_eq!(s.queues_declared, 50);
    assert!(s.declare_s > 0.0);
    let deleted = s.wait.expect("waited").deleted_s.expect("all deleted");
    assert!(
        deleted >= 0.25,
        "the last expires 300 ms after its declare: {deleted}"
    );
}
