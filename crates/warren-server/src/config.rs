//! Server settings that clients can observe: negotiation limits, message
//! size, the default user and vhost.

use std::path::PathBuf;
use std::time::Duration;

use crate::resources::AlarmConfig;

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
    /// The user, password, tags and vhost created on first start (when no
    /// definitions exist yet), with all permissions in that vhost, as
    /// RabbitMQ's `default_user`, `default_pass`, `default_user_tags` and
    /// `default_vhost`.
    pub default_user: String,
    pub default_pass: String,
    pub default_user_tags: Vec<String>,
    pub default_vhost: String,
    /// Users that may log in only from a loopback address (RabbitMQ's
    /// `loopback_users`).
    pub loopback_users: Vec<String>,
    /// Where durable definitions and messages live; `None` keeps
    /// everything in memory.
    pub data_dir: Option<PathBuf>,
    /// Memory and disk limits that block publishers.
    pub alarms: AlarmConfig,
    /// Files the stores keep open at once; idle ones are closed beyond it
    /// (sockets are not counted).
    pub max_open_files: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            frame_max: 131_072,
            channel_max: 2047,
            heartbeat: 60,
            max_message_size: 128 * 1024 * 1024,
            handshake_timeout: Duration::from_secs(10),
            default_user: "guest".into(),
            default_pass: "guest".into(),
            default_user_tags: vec!["administrator".into()],
            default_vhost: "/".into(),
            loopback_users: vec!["guest".into()],
            data_dir: None,
            alarms: AlarmConfig::default(),
            max_open_files: 4096,
        }
    }
}
