//! Everything that can stop a run, worded for the person who started it.

use std::io;

/// Why a run could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum PerfError {
    /// The options contradict each other or are out of range.
    #[error("invalid options: {0}")]
    Usage(String),
    /// The `--uri` could not be understood.
    #[error("invalid --uri: {0}")]
    Uri(String),
    /// The TCP connection could not be made.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: io::Error,
    },
    /// The socket failed after it was connected.
    #[error("connection to {addr} failed: {source}")]
    Io {
        addr: String,
        #[source]
        source: io::Error,
    },
    /// The broker closed the TCP connection without a connection.close.
    #[error("{addr} closed the connection {when}")]
    Eof { addr: String, when: &'static str },
    /// The broker sent connection.close.
    #[error("{addr} closed the connection: {code} {text}")]
    ConnectionClosed {
        addr: String,
        code: u16,
        text: String,
    },
    /// The broker sent channel.close.
    #[error("{addr} closed channel {channel}: {code} {text}")]
    ChannelClosed {
        addr: String,
        channel: u16,
        code: u16,
        text: String,
    },
    /// The broker cancelled a consumer (its queue was deleted, say).
    #[error("{addr} cancelled consumer {tag} (was its queue deleted?)")]
    Cancelled { addr: String, tag: String },
    /// The broker sent something this tool cannot make sense of.
    #[error("protocol error from {addr}: {what}")]
    Protocol { addr: String, what: String },
    /// The broker did not answer in time.
    #[error("{addr} did not answer {what} in time")]
    Timeout { addr: String, what: String },
    /// A task of this tool failed.
    #[error("internal error: {0}")]
    Internal(String),
    /// The runtime could not be started.
    #[error("cannot start the runtime: {0}")]
    Runtime(io::Error),
}
