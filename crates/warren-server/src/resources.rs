//! Resource alarms: a memory high watermark and a free-disk low watermark.
//!
//! A monitor task samples memory use and the free space of the data
//! directory's file system. While either limit is crossed, connections that
//! publish are blocked: they get `connection.blocked` (if the client
//! announced the capability) and the broker stops reading from them, while
//! connections that only consume carry on and drain the queues. When usage
//! falls back, they get `connection.unblocked` and reading resumes.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{info, warn};

/// How the broker measures its memory use, in bytes.
#[derive(Clone)]
pub struct MemoryProbe(pub Arc<dyn Fn() -> u64 + Send + Sync>);

impl MemoryProbe {
    /// The resident set size from `/proc/self/statm` (0 where unavailable).
    pub fn resident_set() -> Self {
        MemoryProbe(Arc::new(|| {
            std::fs::read_to_string("/proc/self/statm")
                .ok()
                .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
                .map_or(0, |pages| pages * 4096)
        }))
    }

    pub fn measure(&self) -> u64 {
        (self.0)()
    }
}

impl fmt::Debug for MemoryProbe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MemoryProbe")
    }
}

/// Which alarms are raised.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Alarms {
    pub memory: bool,
    pub disk: bool,
}

impl Alarms {
    pub fn any(self) -> bool {
        self.memory || self.disk
    }

    /// The reason sent in `connection.blocked`.
    pub fn reason(self) -> &'static str {
        if self.memory {
            "low on memory"
        } else {
            "low on disk"
        }
    }
}

/// Limits and sampling for the alarms.
#[derive(Debug, Clone)]
pub struct AlarmConfig {
    /// Memory use above which publishers are blocked, in bytes.
    pub memory_limit: u64,
    /// Free disk space below which publishers are blocked, in bytes.
    pub disk_free_limit: u64,
    pub memory_probe: MemoryProbe,
    /// How often usage is sampled.
    pub interval: Duration,
}

impl Default for AlarmConfig {
    fn default() -> Self {
        AlarmConfig {
            memory_limit: default_memory_limit(),
            disk_free_limit: 50_000_000,
            memory_probe: MemoryProbe::resident_set(),
            interval: Duration::from_secs(1),
        }
    }
}

/// Total physical memory from `/proc/meminfo`, if known.
pub fn total_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// RabbitMQ's default: 40% of physical memory (1 GiB if unknown).
pub fn default_memory_limit() -> u64 {
    total_memory().map_or(1 << 30, |t| t / 10 * 4)
}

/// Free bytes available to unprivileged users on `dir`'s file system.
pub fn free_disk(dir: &PathBuf) -> Option<u64> {
    let st = nix::sys::statvfs::statvfs(dir).ok()?;
    Some(st.blocks_available() as u64 * st.fragment_size() as u64)
}

/// Starts sampling; the receiver sees the alarms change.
pub fn spawn_monitor(config: AlarmConfig, data_dir: Option<PathBuf>) -> watch::Receiver<Alarms> {
    let (tx, rx) = watch::channel(Alarms::default());
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(config.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let used = config.memory_probe.measure();
            let free = data_dir.as_ref().and_then(free_disk);
            let now = Alarms {
                memory: used > config.memory_limit,
                disk: free.is_some_and(|f| f < config.disk_free_limit),
            };
            let before = *tx.borrow();
            if now != before {
                if now.memory != before.memory {
                    if now.memory {
                        warn!(
                            used,
                            limit = config.memory_limit,
                            "memory alarm raised: blocking publishers"
                        );
                    } else {
                        info!(used, limit = config.memory_limit, "memory alarm cleared");
                    }
                }
                if now.disk != before.disk {
                    if now.disk {
                        warn!(
                            free,
                            limit = config.disk_free_limit,
                            "disk alarm raised: blocking publishers"
                        );
                    } else {
                        info!(free, limit = config.disk_free_limit, "disk alarm cleared");
                    }
                }
                if tx.send(now).is_err() {
                    return;
                }
            }
        }
    });
    rx
}
