//! The command line of `warren perf`.

use clap::Parser;

/// Options of `warren perf`. Every flag has a default, so `warren perf` alone
/// runs one producer and one consumer of 16-byte messages for 10 seconds
/// against a broker on `127.0.0.1:5672`.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "warren perf",
    about = "Load an AMQP 0-9-1 broker (Warren, RabbitMQ or any other) and report rates",
    long_about = "Load an AMQP 0-9-1 broker (Warren, RabbitMQ or any other) and report rates.\n\n\
        Prints published/s, confirmed/s, delivered/s and the tool's own CPU use to stderr \
        every second, and a summary at the end (one JSON object on stdout with --json). \
        Queues named by --queue-pattern are deleted and declared afresh before the run and \
        deleted after it, unless --keep-queues is given. Exits with status 1 on connection \
        or protocol errors, and when a --count or --backlog run did not consume every \
        message it published."
)]
pub struct PerfArgs {
    /// Broker to load: amqp://user:password@host:port/vhost, with the vhost
    /// percent-encoded (`%2f` is `/`; no path at all also means `/`).
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    pub uri: String,

    /// Publishing clients, each on its own channel.
    #[arg(long, default_value_t = 1)]
    pub producers: usize,

    /// Consuming clients, each on its own channel [default: 1, or one per
    /// queue with --fanout].
    #[arg(long)]
    pub consumers: Option<usize>,

    /// Number of queues; producer i publishes to queue i mod N, consumer j
    /// consumes from queue j mod N.
    #[arg(long, default_value_t = 1, conflicts_with = "fanout")]
    pub queues: usize,

    /// Queue names; `%d` is replaced by the queue's index (perf-0, perf-1, ...).
    #[arg(long, default_value = "perf-%d")]
    pub queue_pattern: String,

    /// Message body size in bytes; at least 8 with --latency, which puts the
    /// send time into the first 8.
    #[arg(long, default_value_t = 16)]
    pub size: usize,

    /// Publish persistent messages (delivery mode 2).
    #[arg(long)]
    pub persistent: bool,

    /// Declare the queues (and the fanout exchange) durable.
    #[arg(long)]
    pub durable: bool,

    /// Use publisher confirms, with at most this many unconfirmed messages
    /// per producer; 0 publishes without confirms.
    #[arg(long, default_value_t = 0, value_name = "WINDOW")]
    pub confirm: u32,

    /// basic.qos prefetch count of each consumer (0 = unlimited); the broker
    /// applies it only to consumers that ack (--ack-every > 0).
    #[arg(long, default_value_t = 1000)]
    pub prefetch: u16,

    /// Acknowledge every N deliveries with one `multiple` basic.ack; 0
    /// consumes with no-ack (the broker acks on delivery).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub ack_every: u32,

    /// Publish to one fanout exchange (perf-fanout) bound to N queues, with
    /// one consumer per queue.
    #[arg(long, value_name = "N")]
    pub fanout: Option<usize>,

    /// TCP connections to spread the producers and consumers over, round
    /// robin, each on its own channel [default: one connection per producer
    /// and per consumer]; connections beyond that are opened and left idle.
    #[arg(long, value_name = "N")]
    pub connections: Option<usize>,

    /// Publish at most R messages per second per producer.
    #[arg(long, value_name = "R")]
    pub rate: Option<f64>,

    /// Latency mode (needs --rate): put the send time into each body and
    /// report end-to-end p50/p99/p99.9 latency as the consumers see it.
    #[arg(long, requires = "rate")]
    pub latency: bool,

    /// Publish N messages in total while no consumer runs, then start the
    /// consumers and drain the queues; reports the rate of each phase.
    #[arg(long, value_name = "N", conflicts_with = "count")]
    pub backlog: Option<u64>,

    /// Stop after this many seconds [default: 10 unless --count or --backlog
    /// is given; with them, an upper bound].
    #[arg(long, value_name = "SECONDS")]
    pub duration: Option<f64>,

    /// Publish N messages in total (split evenly between producers) and stop
    /// when all are confirmed (with --confirm) and consumed. With no
    /// producers, consume N messages.
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,

    /// An extra argument for the queues the run declares, as KEY=VALUE
    /// (repeatable): integers become signed 32-bit ints (64-bit if they do
    /// not fit), `true` and `false` bools, anything else a long string; e.g.
    /// `--queue-arg x-message-ttl=1000 --queue-arg x-max-priority=10`.
    #[arg(long, value_name = "KEY=VALUE")]
    pub queue_arg: Vec<String>,

    /// Producers give message i the priority i mod N (0 to N - 1).
    #[arg(long, value_name = "N")]
    pub priorities: Option<u16>,

    /// Give every message this per-message TTL (the `expiration`
    /// property), in milliseconds.
    #[arg(long, value_name = "MS")]
    pub expiration: Option<u32>,

    /// Give each producer's first message this expiration instead: brokers
    /// expire messages only at the head of a queue, so a first message that
    /// expires later holds the others back until it goes, and then they
    /// all expire at once.
    #[arg(long, value_name = "MS", requires = "expiration")]
    pub first_expiration: Option<u32>,

    /// Consumers reject what they receive with `basic.nack` requeue=false
    /// (every --ack-every messages, `multiple` like their acks) instead of
    /// acking it: with a dead-letter exchange, the broker dead-letters it.
    #[arg(long)]
    pub reject: bool,

    /// Also declare queue NAME and a fanout exchange (perf-dead-letter)
    /// bound to it, make that exchange the run's queues'
    /// x-dead-letter-exchange, and once the run is over wait until NAME
    /// holds every message the consumers rejected (with --reject; without
    /// it, every message published but not consumed), reporting how long
    /// that took from the consumers' start.
    #[arg(long, value_name = "NAME")]
    pub dead_letter_queue: Option<String>,

    /// Once the run is over, wait until the queues are empty (for instance
    /// until x-message-ttl has expired everything), polling their message
    /// counts every 10 ms, and report when that was.
    #[arg(long)]
    pub wait_empty: bool,

    /// Once the queues are declared (and the run, if any, is over), wait
    /// until the broker has deleted every one of them (x-expires) and
    /// report how long that took. Each queue is probed in turn with
    /// `queue.bind` to amq.direct, which does not count as use. With
    /// --producers 0 --consumers 0 only the queues are declared.
    #[arg(long)]
    pub wait_deleted: bool,

    /// Print the final summary as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,

    /// Do not print the progress line every second.
    #[arg(long)]
    pub quiet: bool,

    /// Keep the queues and their messages: declare them without deleting
    /// them first, and leave them after the run (so separate producer-only
    /// and consumer-only runs can share them).
    #[arg(long)]
    pub keep_queues: bool,

    /// Connections being set up at once (TCP connect, handshake and
    /// channels); the others wait their turn, so that a broker that accepts
    /// slowly is not flooded with handshakes it would time out.
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub connect_concurrency: usize,

    /// Idle mode: open N connections (each with the handshake done, the
    /// heartbeat interval the broker proposes, and one channel open), hold
    /// them for --hold seconds sending nothing but heartbeats, close them,
    /// and report how many connected and stayed open. Declares, publishes
    /// and consumes nothing.
    #[arg(
        long,
        value_name = "N",
        conflicts_with_all = [
            "producers", "consumers", "queues", "fanout", "connections", "rate",
            "backlog", "count", "duration", "confirm", "ack_every",
        ]
    )]
    pub idle_connections: Option<usize>,

    /// How long idle mode holds its connections once all are open
    /// [default: 10].
    #[arg(long, value_name = "SECONDS", requires = "idle_connections")]
    pub hold: Option<f64>,

    /// Worker threads of the tool's own runtime.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,

    /// Also sample the CPU time of this process (the broker, when it runs on
    /// the same machine) from /proc and report it next to the tool's.
    #[arg(long, value_name = "PID")]
    pub broker_pid: Option<u32>,
}
