//! A real `warren` process, for tests that restart or kill it.

use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `warren serve` process on a fixed data directory.
pub struct Broker {
    child: Child,
    pub port: u16,
    dir: PathBuf,
}

pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl Broker {
    pub fn start(dir: &Path) -> Broker {
        Self::start_with(dir, &[])
    }

    /// Starts `warren serve` with extra command-line arguments.
    pub fn start_with(dir: &Path, extra: &[&str]) -> Broker {
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_warren"))
            .args([
                "serve",
                "--bind",
                "127.0.0.1",
                "--amqp-port",
                &port.to_string(),
                "--data-dir",
            ])
            .arg(dir)
            // No management or Prometheus listener unless the test asks
            // for one.
            .args(
                ["--management-port", "--prometheus-port"]
                    .into_iter()
                    .filter(|flag| !extra.contains(flag))
                    .flat_map(|flag| [flag, "0"]),
            )
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn warren");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "warren did not start listening");
            std::thread::sleep(Duration::from_millis(20));
        }
        Broker {
            child,
            port,
            dir: dir.to_path_buf(),
        }
    }

    /// Starts `warren serve` with its management API on a free port, and
    /// waits until that listens too; returns the port.
    #[allow(dead_code)]
    pub fn start_with_management(dir: &Path) -> (Broker, u16) {
        let mgmt = free_port();
        let b = Broker::start_with(dir, &["--management-port", &mgmt.to_string()]);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", mgmt)).is_err() {
            assert!(Instant::now() < deadline, "no management listener");
            std::thread::sleep(Duration::from_millis(20));
        }
        (b, mgmt)
    }

    /// How many files the process has open now (Linux).
    #[allow(dead_code)]
    pub fn open_files(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    pub fn uri(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    pub fn kill9(mut self) -> PathBuf {
        self.child.kill().expect("kill -9");
        let _ = self.child.wait();
        self.dir.clone()
    }

    pub fn stop(mut self) -> PathBuf {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill -TERM");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                assert!(status.success(), "warren exited with {status}");
                break;
            }
            assert!(Instant::now() < deadline, "warren did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
        self.dir.clone()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "warren-{name}-{}-{}",
        std::process::id(),
        fastrand_u64()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn fastrand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0);
    h.finish()
}
