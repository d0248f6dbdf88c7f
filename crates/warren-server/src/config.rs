//! Server settings that clients can observe: negotiation limits, message
//! size, users.

use std::path::PathBuf;
use std::time::Duration;

use crate::resources::AlarmConfig;

/// One user allowed to connect.
#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    pub password: String,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Largest frame offered in connection.tune, overhead included.
    pub frame_max: u32,
    /// Highest channel number offered in connection.tune.
    pub channel_max: u16,
    /// Heartbeat interval offered in connection.tune, in seconds.
    pub heartbeat: u16,
    /// Largest message body accepted.
    pub max_message_size: u64,
    /// Time a client has to complete the handshake (up to connection.open).
    pub handshake_timeout: Duration,
    pub users: Vec<User>,
    pub vhosts: Vec<String>,
    /// Where durable definitions and messages live; `None` keeps
    /// everything in memory.
    pub data_dir: Option<PathBuf>,
    /// Memory and disk limits that block publishers.
    pub alarms: AlarmConfig,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            frame_max: 131_072,
            channel_max: 2047,
            heartbeat: 60,
            max_message_size: 128 * 1024 * 1024,
            handshake_timeout: Duration::from_secs(10),
            users: vec![User {
                name: "guest".into(),
                password: "guest".into(),
            }],
            vhosts: vec!["/".into()],
            data_dir: None,
            alarms: AlarmConfig::default(),
        }
    }
}
