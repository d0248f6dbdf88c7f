//! The `warren` binary: command line, logging, signals.

use std::net::SocketAddr;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use tokio::net::TcpListener;
use tracing::{error, info, warn};
use warren_server::{AlarmConfig, MemoryProbe, ServerConfig};

mod alloc;
mod ctl;
mod settings;

use settings::{ServeArgs, Settings};

#[global_allocator]
static ALLOCATOR: alloc::CountingAlloc = alloc::CountingAlloc;

#[derive(Parser)]
#[command(
    name = "warren",
    version,
    about = "Warren, an AMQP 0-9-1 message broker"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the broker in the foreground until SIGTERM or SIGINT.
    // Both boxed: the command line is parsed once, and neither is small.
    Serve(Box<ServeArgs>),
    Perf(Box<warren_perf::PerfArgs>),
    /// rabbitmqctl's common verbs, through the running broker's management API.
    Ctl(Box<ctl::CtlArgs>),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match cli.command {
        Command::Serve(args) => serve(*args),
        Command::Perf(args) => warren_perf::main(*args),
        Command::Ctl(args) => ctl::main(*args),
    }
}

fn serve(args: ServeArgs) -> std::process::ExitCode {
    let args = match Settings::resolve(args) {
        Ok(s) => s,
        Err(err) => {
            error!(%err, "bad configuration");
            return std::process::ExitCode::FAILURE;
        }
    };
    if let Err(err) = std::fs::create_dir_all(&args.data_dir) {
        error!(dir = %args.data_dir.display(), %err, "cannot create the data directory");
        return std::process::ExitCode::FAILURE;
    }
    // Each connection takes a file descriptor; a shell's soft limit (often
    // 1024) would cap the broker far below what the machine allows.
    let files_limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(err) => {
            warn!(%err, "cannot raise the open files limit");
            1024
        }
    };
    // The rest of the limit is for sockets (one per connection) and the
    // runtime's own files.
    let max_open_files = args.max_open_files.unwrap_or((files_limit / 5 * 2).max(64));
    info!(
        limit = files_limit,
        store_files = max_open_files,
        "open files limit"
    );
    let memory_limit = args.vm_memory_high_watermark_absolute.unwrap_or_else(|| {
        let total = warren_server::total_memory().unwrap_or(1 << 30) as f64;
        (total * args.vm_memory_high_watermark) as u64
    });
    let alarms = AlarmConfig {
        memory_limit,
        disk_free_limit: args.disk_free_limit,
        memory_probe: MemoryProbe(Arc::new(alloc::allocated)),
        ..AlarmConfig::default()
    };
    let config = ServerConfig {
        alarms,
        frame_max: args.frame_max,
        channel_max: args.channel_max,
        heartbeat: args.heartbeat,
        max_message_size: args.max_message_size,
        data_dir: Some(args.data_dir.clone()),
        default_user: args.default_user.clone(),
        default_pass: args.default_pass.clone(),
        default_user_tags: args.default_user_tags.clone(),
        default_vhost: args.default_vhost.clone(),
        loopback_users: args.loopback_users.clone(),
        max_open_files: usize::try_from(max_open_files).unwrap_or(usize::MAX),
        ..ServerConfig::default()
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            error!(%err, "cannot start the runtime");
            return std::process::ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        // Recover before listening: once the port accepts connections, every
        // durable queue and message is back.
        let broker = match warren_server::Broker::open(config) {
            Ok(b) => b,
            Err(err) => {
                error!(%err, "cannot start");
                return std::process::ExitCode::FAILURE;
            }
        };
        if let Some(path) = &args.load_definitions {
            let loaded = std::fs::read(path)
                .map_err(|e| e.to_string())
                .and_then(|bytes| serde_json::from_slice(&bytes).map_err(|e| e.to_string()))
                .and_then(|doc| warren_management::import_definitions(&broker, &doc, None, None));
            if let Err(err) = loaded {
                error!(file = %path.display(), %err, "cannot load the definitions");
                broker.shutdown();
                return std::process::ExitCode::FAILURE;
            }
            info!(file = %path.display(), "definitions loaded");
        }
        // The TLS listener first: once the plain port accepts, both do.
        let amqps = match &args.amqps {
            None => None,
            Some(a) => {
                let acceptor = match a.files.acceptor() {
                    Ok(acceptor) => acceptor,
                    Err(err) => {
                        error!(%err, "cannot start the AMQPS listener");
                        broker.shutdown();
                        return std::process::ExitCode::FAILURE;
                    }
                };
                let Some(l) = listen(&a.bind, a.port, "AMQPS").await else {
                    broker.shutdown();
                    return std::process::ExitCode::FAILURE;
                };
                info!(addr = ?l.local_addr().ok(), "Warren listening for AMQP 0-9-1 over TLS");
                Some((l, acceptor))
            }
        };
        let addr = format!("{}:{}", args.bind, args.amqp_port);
        let listener = match TcpListener::bind(&addr).await {
            Ok(l) => l,
            Err(err) => {
                error!(%addr, %err, "cannot listen");
                broker.shutdown();
                return std::process::ExitCode::FAILURE;
            }
        };
        let local: Option<SocketAddr> = listener.local_addr().ok();
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        if args.management_port != 0 {
            let host = args.management_bind.as_deref().unwrap_or(&args.bind);
            let Some(mgmt) = listen(host, args.management_port, "the management API").await else {
                broker.shutdown();
                return std::process::ExitCode::FAILURE;
            };
            let mgmt_addr = mgmt.local_addr().ok();
            let state = warren_management::AppState::new(
                Arc::clone(&broker),
                local.unwrap_or_else(|| ([127, 0, 0, 1], args.amqp_port).into()),
                mgmt_addr.unwrap_or_else(|| ([127, 0, 0, 1], args.management_port).into()),
            );
            info!(addr = ?mgmt_addr, "Warren management API listening");
            tokio::spawn(warren_management::serve(mgmt, state, stopped(stop_rx.clone())));
        }
        if args.prometheus_port != 0 {
            let host = args.prometheus_bind.as_deref().unwrap_or(&args.bind);
            let Some(prom) = listen(host, args.prometheus_port, "Prometheus").await else {
                broker.shutdown();
                return std::process::ExitCode::FAILURE;
            };
            info!(addr = ?prom.local_addr().ok(), "Warren Prometheus metrics listening");
            tokio::spawn(warren_management::serve_prometheus(
                prom,
                Arc::clone(&broker),
                stopped(stop_rx.clone()),
            ));
        }
        tokio::spawn(async move {
            shutdown_signal().await;
            let _ = stop_tx.send(true);
        });
        info!(addr = ?local, data_dir = %args.data_dir.display(), "Warren listening for AMQP 0-9-1");
        warren_server::serve_listeners(Some(listener), amqps, broker, stopped(stop_rx)).await;
        info!("stopped");
        std::process::ExitCode::SUCCESS
    })
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        tokio::select! {
            _ = term.recv() => info!("SIGTERM received"),
            _ = int.recv() => info!("SIGINT received"),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Binds a listener, logging why it cannot.
async fn listen(host: &str, port: u16, what: &str) -> Option<TcpListener> {
    let addr = format!("{host}:{port}");
    match TcpListener::bind(&addr).await {
        Ok(l) => Some(l),
        Err(err) => {
            error!(%addr, %err, "cannot listen for {what}");
            None
        }
    }
}
