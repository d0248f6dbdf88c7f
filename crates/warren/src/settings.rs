//! `warren serve`'s settings: command-line flags, a configuration file
//! (`--config FILE`, TOML whose keys follow `rabbitmq.conf`'s names where
//! RabbitMQ has one), and defaults, in that order of precedence.
//!
//! | setting | flag | file key |
//! |---|---|---|
//! | AMQP address | `--bind`, `--amqp-port` | `listeners.tcp.default` (a port, or `"HOST:PORT"`) |
//! | AMQPS (TLS) listener | `--amqps-port` [default: 5671 with a certificate] | `listeners.ssl.default` (a port, or `"HOST:PORT"`) |
//! | TLS certificate and key | `--tls-cert`, `--tls-key` (PEM) | `ssl_options.certfile`, `ssl_options.keyfile` |
//! | data directory | `--data-dir` | `data_dir` |
//! | message size | `--max-message-size` | `max_message_size` |
//! | heartbeat | `--heartbeat` | `heartbeat` |
//! | frame size | `--frame-max` | `frame_max` |
//! | channels | `--channel-max` | `channel_max` |
//! | memory alarm | `--vm-memory-high-watermark`, `--vm-memory-high-watermark-absolute` | `vm_memory_high_watermark.relative`, `vm_memory_high_watermark.absolute` |
//! | disk alarm | `--disk-free-limit` | `disk_free_limit.absolute` |
//! | management | `--management-port`, `--management-bind` | `management.tcp.port`, `management.tcp.ip` |
//! | Prometheus | `--prometheus-port`, `--prometheus-bind` | `prometheus.tcp.port`, `prometheus.tcp.ip` |
//! | store files kept open | `--max-open-files` | `max_open_files` |
//! | definitions at start | `--load-definitions` | `load_definitions` |
//! | first start | `--default-user`, `--default-pass`, `--default-vhost` | `default_user`, `default_pass`, `default_vhost`, `default_user_tags.TAG = true` |
//! | loopback-only users | | `loopback_users.NAME = true/false`, or `loopback_users = "none"` |
//!
//! An unknown key in the file is an error, so a typo does not go unnoticed.

use std::path::PathBuf;

use clap::Parser;
use toml::{Table, Value};

#[derive(Parser, Default)]
pub struct ServeArgs {
    /// A configuration file (TOML, with rabbitmq.conf's key names).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1].
    #[arg(long)]
    pub bind: Option<String>,
    /// Port for AMQP 0-9-1 clients [default: 5672].
    #[arg(long)]
    pub amqp_port: Option<u16>,
    /// Port of the AMQPS (AMQP over TLS) listener, on the AMQP address
    /// [default: 5671 when a certificate is given].
    #[arg(long)]
    pub amqps_port: Option<u16>,
    /// The AMQPS listener's certificate chain, PEM (the server's
    /// certificate first).
    #[arg(long)]
    pub tls_cert: Option<PathBuf>,
    /// The private key of `--tls-cert`, PEM.
    #[arg(long)]
    pub tls_key: Option<PathBuf>,
    /// Directory for the broker's data; created if missing [default: warren-data].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Largest message body accepted, in bytes [default: 134217728].
    #[arg(long)]
    pub max_message_size: Option<u64>,
    /// Heartbeat interval offered to clients, in seconds, 0 disables [default: 60].
    #[arg(long)]
    pub heartbeat: Option<u16>,
    /// Largest frame offered to clients, in bytes [default: 131072].
    #[arg(long, value_parser = clap::value_parser!(u32).range(4096..))]
    pub frame_max: Option<u32>,
    /// Highest channel number offered to clients [default: 2047].
    #[arg(long)]
    pub channel_max: Option<u16>,
    /// Memory use, as a fraction of physical memory, above which publishers
    /// are blocked [default: 0.4].
    #[arg(long)]
    pub vm_memory_high_watermark: Option<f64>,
    /// Memory use in bytes above which publishers are blocked (overrides
    /// the fraction).
    #[arg(long)]
    pub vm_memory_high_watermark_absolute: Option<u64>,
    /// Free disk space in bytes below which publishers are blocked [default: 50000000].
    #[arg(long)]
    pub disk_free_limit: Option<u64>,
    /// Port of the management HTTP API, 0 turns it off [default: 15672].
    #[arg(long)]
    pub management_port: Option<u16>,
    /// Address of the management listener [default: the AMQP address].
    #[arg(long)]
    pub management_bind: Option<String>,
    /// Port of the Prometheus metrics (`/metrics`, `/metrics/per-object`),
    /// 0 turns it off [default: 15692].
    #[arg(long)]
    pub prometheus_port: Option<u16>,
    /// Address of the Prometheus listener [default: the AMQP address].
    #[arg(long)]
    pub prometheus_bind: Option<String>,
    /// Store files (segments, ack logs) kept open at once; beyond it the
    /// least recently used are closed and reopened on use [default: 40% of
    /// the open-files limit].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_open_files: Option<u64>,
    /// A definitions file (RabbitMQ's JSON format) imported at start, as
    /// RabbitMQ's `load_definitions` does.
    #[arg(long)]
    pub load_definitions: Option<PathBuf>,
    /// The user created on a first start [default: guest].
    #[arg(long)]
    pub default_user: Option<String>,
    /// Its password [default: guest].
    #[arg(long)]
    pub default_pass: Option<String>,
    /// The vhost created on a first start [default: /].
    #[arg(long)]
    pub default_vhost: Option<String>,
}

/// Every setting, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub bind: String,
    pub amqp_port: u16,
    /// The AMQPS listener's address and files, if it runs.
    pub amqps: Option<Amqps>,
    pub data_dir: PathBuf,
    pub max_message_size: u64,
    pub heartbeat: u16,
    pub frame_max: u32,
    pub channel_max: u16,
    pub vm_memory_high_watermark: f64,
    pub vm_memory_high_watermark_absolute: Option<u64>,
    pub disk_free_limit: u64,
    pub management_port: u16,
    pub management_bind: Option<String>,
    pub prometheus_port: u16,
    pub prometheus_bind: Option<String>,
    pub load_definitions: Option<PathBuf>,
    /// `None`: a share of the open-files limit, decided once it is raised.
    pub max_open_files: Option<u64>,
    pub default_user: String,
    pub default_pass: String,
    pub default_vhost: String,
    pub default_user_tags: Vec<String>,
    pub loopback_users: Vec<String>,
}

/// The AMQPS listener.
#[derive(Debug, Clone, PartialEq)]
pub struct Amqps {
    pub bind: String,
    pub port: u16,
    pub files: warren_server::tls::TlsFiles,
}

/// The file's keys, flattened to their dotted names.
fn flatten(prefix: &str, table: &Table, out: &mut Vec<(String, Value)>) {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            Value::Table(t) => flatten(&key, t, out),
            other => out.push((key, other.clone())),
        }
    }
}

struct File {
    keys: Vec<(String, Value)>,
    used: Vec<String>,
}

impl File {
    fn get(&mut self, key: &str) -> Option<Value> {
        let v = self
            .keys
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone());
        if v.is_some() {
            self.used.push(key.to_string());
        }
        v
    }

    /// Every `PREFIX.NAME = bool`.
    fn flags(&mut self, prefix: &str) -> Option<Vec<(String, bool)>> {
        let start = format!("{prefix}.");
        let found: Vec<(String, Value)> = self
            .keys
            .iter()
            .filter(|(k, _)| k.starts_with(&start))
            .cloned()
            .collect();
        if found.is_empty() {
            return None;
        }
        let mut out = Vec::new();
        for (k, v) in found {
            self.used.push(k.clone());
            out.push((k[start.len()..].to_string(), v.as_bool().unwrap_or(false)));
        }
        Some(out)
    }

    fn int<T: TryFrom<i64>>(&mut self, key: &str) -> Result<Option<T>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Integer(n)) => T::try_from(n)
                .map(Some)
                .map_err(|_| format!("{key} = {n} is out of range")),
            Some(other) => Err(format!("{key} must be an integer, not {other}")),
        }
    }

    fn string(&mut self, key: &str) -> Result<Option<String>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(format!("{key} must be a string, not {other}")),
        }
    }

    /// A listener key: a port, or `"HOST:PORT"`.
    fn listener(&mut self, key: &str) -> Result<(Option<String>, Option<u16>), String> {
        match self.get(key) {
            None => Ok((None, None)),
            Some(Value::Integer(p)) => Ok((
                None,
                Some(u16::try_from(p).map_err(|_| format!("port {p} is out of range"))?),
            )),
            Some(Value::String(s)) => {
                let (host, port) = s
                    .rsplit_once(':')
                    .ok_or_else(|| format!("{key} = {s:?}: expected HOST:PORT"))?;
                let port = port
                    .parse()
                    .map_err(|_| format!("{key} = {s:?}: bad port"))?;
                Ok((Some(host.trim_matches(['[', ']']).to_string()), Some(port)))
            }
            Some(other) => Err(format!("{key}: unexpected {other}")),
        }
    }

    fn float(&mut self, key: &str) -> Result<Option<f64>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Float(f)) => Ok(Some(f)),
            Some(Value::Integer(n)) => Ok(Some(n as f64)),
            Some(other) => Err(format!("{key} must be a number, not {other}")),
        }
    }
}

impl Settings {
    /// Flags over the file over defaults.
    pub fn resolve(args: ServeArgs) -> Result<Settings, String> {
        let mut file = File {
            keys: Vec::new(),
            used: Vec::new(),
        };
        if let Some(path) = &args.config {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let table: Table = text
                .parse()
                .map_err(|e| format!("{}: {e}", path.display()))?;
            flatten("", &table, &mut file.keys);
        }
        let (file_bind, file_port) = file.listener("listeners.tcp.default")?;
        let (tls_bind, tls_port) = file.listener("listeners.ssl.default")?;
        let tags = file.flags("default_user_tags").map(|tags| {
            tags.into_iter()
                .filter(|(_, on)| *on)
                .map(|(t, _)| t)
                .collect::<Vec<_>>()
        });
        let loopback = match file.get("loopback_users") {
            Some(Value::String(s)) if s == "none" => Some(Vec::new()),
            Some(other) => return Err(format!("loopback_users = {other}: expected \"none\"")),
            None => file.flags("loopback_users").map(|users| {
                users
                    .into_iter()
                    .filter(|(_, on)| *on)
                    .map(|(u, _)| u)
                    .collect()
            }),
        };
        let bind = args
            .bind
            .or(file_bind)
            .unwrap_or_else(|| "127.0.0.1".into());
        let cert = args
            .tls_cert
            .or(file.string("ssl_options.certfile")?.map(PathBuf::from));
        let key = args
            .tls_key
            .or(file.string("ssl_options.keyfile")?.map(PathBuf::from));
        let tls_port = args.amqps_port.or(tls_port);
        let amqps = match (cert, key) {
            (Some(cert), Some(key)) => Some(Amqps {
                bind: tls_bind.unwrap_or_else(|| bind.clone()),
                port: tls_port.unwrap_or(5671),
                files: warren_server::tls::TlsFiles { cert, key },
            }),
            (None, None) if tls_port.is_some() => {
                return Err(
                    "an AMQPS listener needs a certificate and key (--tls-cert, --tls-key)".into(),
                )
            }
            (None, None) => None,
            (Some(_), None) => return Err("--tls-cert needs --tls-key".into()),
            (None, Some(_)) => return Err("--tls-key needs --tls-cert".into()),
        };
        let settings = Settings {
            amqps,
            bind,
            amqp_port: args.amqp_port.or(file_port).unwrap_or(5672),
            data_dir: match args.data_dir {
                Some(d) => d,
                None => file
                    .string("data_dir")?
                    .map(PathBuf::from)
                    .unwrap_or_else(|| "warren-data".into()),
            },
            max_message_size: pick(
                args.max_message_size,
                file.int("max_message_size")?,
                128 << 20,
            ),
            heartbeat: pick(args.heartbeat, file.int("heartbeat")?, 60),
            frame_max: pick(args.frame_max, file.int("frame_max")?, 131_072),
            channel_max: pick(args.channel_max, file.int("channel_max")?, 2047),
            vm_memory_high_watermark: pick(
                args.vm_memory_high_watermark,
                file.float("vm_memory_high_watermark.relative")?,
                0.4,
            ),
            vm_memory_high_watermark_absolute: args
                .vm_memory_high_watermark_absolute
                .or(file.int("vm_memory_high_watermark.absolute")?),
            disk_free_limit: pick(
                args.disk_free_limit,
                file.int("disk_free_limit.absolute")?,
                50_000_000,
            ),
            management_port: pick(
                args.management_port,
                file.int("management.tcp.port")?,
                15672,
            ),
            management_bind: args.management_bind.or(file.string("management.tcp.ip")?),
            prometheus_port: pick(
                args.prometheus_port,
                file.int("prometheus.tcp.port")?,
                15692,
            ),
            prometheus_bind: args.prometheus_bind.or(file.string("prometheus.tcp.ip")?),
            load_definitions: args
                .load_definitions
                .or(file.string("load_definitions")?.map(PathBuf::from)),
            max_open_files: match args.max_open_files.or(file.int("max_open_files")?) {
                Some(0) => return Err("max_open_files must be at least 1".into()),
                n => n,
            },
            default_user: args
                .default_user
                .or(file.string("default_user")?)
                .unwrap_or_else(|| "guest".into()),
            default_pass: args
                .default_pass
                .or(file.string("default_pass")?)
                .unwrap_or_else(|| "guest".into()),
            default_vhost: args
                .default_vhost
                .or(file.string("default_vhost")?)
                .unwrap_or_else(|| "/".into()),
            default_user_tags: tags.unwrap_or_else(|| vec!["administrator".into()]),
            loopback_users: loopback.unwrap_or_else(|| vec!["guest".into()]),
        };
        if settings.frame_max < 4096 {
            return Err(format!("frame_max = {} is below 4096", settings.frame_max));
        }
        let unknown: Vec<&str> = file
            .keys
            .iter()
            .map(|(k, _)| k.as_str())
            .filter(|k| !file.used.iter().any(|u| u == k))
            .collect();
        if !unknown.is_empty() {
            return Err(format!(
                "unknown configuration keys: {}",
                unknown.join(", ")
            ));
        }
        Ok(settings)
    }
}

fn pick<T>(flag: Option<T>, file: Option<T>, default: T) -> T {
    flag.or(file).unwrap_or(default)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_file(text: &str, args: ServeArgs) -> Result<Settings, String> {
        let dir =
            std::env::temp_dir().join(format!("warren-conf-{}-{}", std::process::id(), text.len()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("warren.toml");
        std::fs::write(&path, text).unwrap();
        let out = Settings::resolve(ServeArgs {
            config: Some(path),
            ..args
        });
        std::fs::remove_dir_all(&dir).unwrap();
        out
    }

    #[test]
    fn defaults_without_a_file() {
        let s = Settings::resolve(ServeArgs::default()).unwrap();
        assert_eq!(
            (
                s.bind.as_str(),
                s.amqp_port,
                s.management_port,
                s.prometheus_port
            ),
            ("127.0.0.1", 5672, 15672, 15692)
        );
        assert_eq!(s.default_user_tags, vec!["administrator"]);
        assert_eq!(s.loopback_users, vec!["guest"]);
    }

    #[test]
    fn the_file_uses_rabbitmq_conf_names_and_flags_win() {
        let text = r#"
            listeners.tcp.default = "0.0.0.0:5673"
            management.tcp.port = 15673
            prometheus.tcp.port = 15693
            prometheus.tcp.ip = "0.0.0.0"
            heartbeat = 30
            vm_memory_high_watermark.relative = 0.6
            disk_free_limit.absolute = 1000000
            default_user = "admin"
            default_pass = "s3cret"
            default_user_tags.administrator = true
            default_user_tags.monitoring = true
            loopback_users.guest = false
        "#;
        let s = with_file(
            text,
            ServeArgs {
                heartbeat: Some(10),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!((s.bind.as_str(), s.amqp_port), ("0.0.0.0", 5673));
        assert_eq!(s.management_port, 15673);
        assert_eq!(
            (s.prometheus_port, s.prometheus_bind.as_deref()),
            (15693, Some("0.0.0.0"))
        );
        assert_eq!(s.heartbeat, 10, "the flag wins");
        assert_eq!(s.vm_memory_high_watermark, 0.6);
        assert_eq!(s.disk_free_limit, 1_000_000);
        assert_eq!(
            (s.default_user.as_str(), s.default_pass.as_str()),
            ("admin", "s3cret")
        );
        let mut tags = s.default_user_tags.clone();
        tags.sort();
        assert_eq!(tags, vec!["administrator", "monitoring"]);
        assert!(s.loopback_users.is_empty());
        let s = with_file(
            "listeners.tcp.default = 5999\nloopback_users = \"none\"\n",
            Default::default(),
        )
        .unwrap();
        assert_eq!(s.amqp_port, 5999);
        assert!(s.loopback_users.is_empty());
    }

    #[test]
    fn mistakes_in_the_file_are_refused() {
        let err = with_file("hearbeat = 30\n", Default::default()).unwrap_err();
        assert!(
            err.contains("unknown configuration keys: hearbeat"),
            "{err}"
        );
        let err = with_file("heartbeat = \"x\"\n", Default::default()).unwrap_err();
        assert!(err.contains("heartbeat must be an integer"), "{err}");
        let err = with_file("channel_max = 70000\n", Default::default()).unwrap_err();
        assert!(err.contains("out of range"), "{err}");
        let err = with_file("frame_max = 100\n", Default::default()).unwrap_err();
        assert!(err.contains("below 4096"), "{err}");
        assert!(with_file("not toml =", Default::default()).is_err());
    }

    #[test]
    fn the_tls_listener_from_flags_and_file() {
        assert_eq!(Settings::resolve(ServeArgs::default()).unwrap().amqps, None);
        let s = with_file(
            "ssl_options.certfile = \"/c.pem\"\nssl_options.keyfile = \"/k.pem\"\n",
            Default::default(),
        )
        .unwrap();
        let a = s.amqps.unwrap();
        assert_eq!((a.bind.as_str(), a.port), ("127.0.0.1", 5671));
        assert_eq!(a.files.cert, PathBuf::from("/c.pem"));
        assert_eq!(a.files.key, PathBuf::from("/k.pem"));
        let s = with_file(
            "listeners.ssl.default = \"0.0.0.0:6671\"\nssl_options.certfile = \"/c.pem\"\nssl_options.keyfile = \"/k.pem\"\n",
            ServeArgs {
                tls_cert: Some("/flag.pem".into()),
                ..Default::default()
            },
        )
        .unwrap();
        let a = s.amqps.unwrap();
        assert_eq!((a.bind.as_str(), a.port), ("0.0.0.0", 6671));
        assert_eq!(a.files.cert, PathBuf::from("/flag.pem"));
        let no_key = Settings::resolve(ServeArgs {
            tls_cert: Some("/c.pem".into()),
            ..Default::default()
        });
        assert!(no_key.unwrap_err().contains("--tls-key"));
        let no_cert = Settings::resolve(ServeArgs {
            amqps_port: Some(5671),
            ..Default::default()
        });
        assert!(no_cert.unwrap_err().contains("certificate"));
    }
}
