//! Real servers for tests.
//!
//! [`NatsServer::start`] and [`RedisServer::start`] launch `nats-server` (with JetStream in a
//! temporary store directory) and `redis-server` on free loopback ports, wait until they accept
//! connections, and kill them on drop. Tests never share a server, so they run in parallel.
//!
//! A missing binary fails the test with the exact instruction to install it: a skipped test
//! would hide that nothing was tested.

#![allow(clippy::unwrap_used)]

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod secure;
pub use secure::TestCerts;

const START_TIMEOUT: Duration = Duration::from_secs(15);

/// A free TCP port on 127.0.0.1, found by binding port 0. The port is released before it is
/// returned, so another process may in rare cases take it first; servers are started with
/// retries for that reason.
pub fn free_port() -> u16 {
    try_free_port().unwrap_or_else(|e| panic!("{e}"))
}

fn find_binary(name: &str, install_hint: &str) -> Result<PathBuf, String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in
        std::env::split_paths(&path).chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/bin")])
    {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(format!(
        "`{name}` was not found on PATH, and a real one is needed.\n\
         Install it with: {install_hint}\n\
         (scripts/setup.sh does this on Debian/Ubuntu)"
    ))
}

/// A free loopback port, or why none could be had.
fn try_free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("cannot bind a loopback port: {e}"))
}

/// Starts `command` (`bin`, for errors) with its stderr kept, and waits until it accepts
/// connections on `port` and `ready` holds for that address; a server that exits or does not get
/// there in time is killed and the reason returned.
pub(crate) fn spawn_listening(
    command: &mut Command,
    bin: &std::path::Path,
    port: u16,
    what: &str,
    ready: impl Fn(SocketAddr) -> Result<(), String>,
) -> Result<Child, String> {
    let mut child = command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting {}: {e}", bin.display()))?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    match wait_for_port(&mut child, addr, what).and_then(|()| ready(addr)) {
        Ok(()) => Ok(child),
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(e)
        }
    }
}

fn wait_for_port(child: &mut Child, addr: SocketAddr, what: &str) -> Result<(), String> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            return Err(format!("{what} exited with {status} before accepting connections: {err}"));
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("{what} did not accept connections on {addr} within {START_TIMEOUT:?}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A `nats-server` with JetStream, private to one test.
pub struct NatsServer {
    child: Child,
    port: u16,
    _store: tempfile::TempDir,
}

impl NatsServer {
    /// Starts one; fails the test with the install instruction when `nats-server` is missing.
    pub fn start() -> Self {
        Self::try_start().unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts one, or says why it could not (for tools that report rather than panic).
    pub fn try_start() -> Result<Self, String> {
        let bin = find_binary("nats-server", "apt-get install -y nats-server")?;
        let mut last_err = String::new();
        for _ in 0..5 {
            let store = tempfile::tempdir().map_err(|e| format!("creating a temporary directory: {e}"))?;
            let port = try_free_port()?;
            let mut command = Command::new(&bin);
            command.args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"]).arg(store.path());
            match spawn_listening(&mut command, &bin, port, "nats-server", |_| Ok(())) {
                Ok(child) => return Ok(Self { child, port, _store: store }),
                Err(e) => last_err = e,
            }
        }
        Err(format!("could not start nats-server: {last_err}"))
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's process id (e.g. to read its CPU time).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the server (for tests of what happens when it goes away).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A `redis-server` that keeps nothing on disk, private to one test.
pub struct RedisServer {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts one; fails the test with the install instruction when `redis-server` is missing.
    pub fn start() -> Self {
        Self::try_start().unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts one, or says why it could not (for tools that report rather than panic).
    pub fn try_start() -> Result<Self, String> {
        let bin = find_binary("redis-server", "apt-get install -y redis-server")?;
        let mut last_err = String::new();
        for _ in 0..5 {
            let dir = tempfile::tempdir().map_err(|e| format!("creating a temporary directory: {e}"))?;
            let port = try_free_port()?;
            let mut command = Command::new(&bin);
            command
                .args([
                    "--port",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ])
                .arg("--dir")
                .arg(dir.path());
            match spawn_listening(&mut command, &bin, port, "redis-server", ping) {
                Ok(child) => return Ok(Self { child, port, _dir: dir }),
                Err(e) => last_err = e,
            }
        }
        Err(format!("could not start redis-server: {last_err}"))
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's process id (e.g. to read its CPU time).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ping(addr: SocketAddr) -> Result<(), String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(2))).map_err(|e| e.to_string())?;
    s.write_all(b"PING\r\n").map_err(|e| e.to_string())?;
    let mut buf = [0u8; 7];
    s.read_exact(&mut buf).map_err(|e| e.to_string())?;
    if &buf == b"+PONG\r\n" { Ok(()) } else { Err(format!("unexpected PING reply {buf:?}")) }
}

/// Polls `check` until it returns `Some`, or fails the test after `timeout` with `what`.
/// For outcomes that arrive asynchronously; it asserts the outcome, not a duration.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "not reached within {timeout:?}: {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The directory of the workspace (for tests that need repository files).
pub fn workspace_root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nats_server_starts_with_jetstream_and_stops_on_drop() {
        let nats = NatsServer::start();
        let addr = SocketAddr::from(([127, 0, 0, 1], nats.port()));
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut info = [0u8; 512];
        let n = s.read(&mut info).unwrap();
        let info = String::from_utf8_lossy(&info[..n]);
        assert!(info.starts_with("INFO"), "{info}");
        assert!(info.contains("\"jetstream\":true"), "JetStream must be on: {info}");
        drop(s);
        drop(nats);
        assert!(TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err(), "server still up");
    }

    #[test]
    fn redis_server_answers_ping_and_stops_on_drop() {
        let redis = RedisServer::start();
        let addr = SocketAddr::from(([127, 0, 0, 1], redis.port()));
        ping(addr).unwrap();
        drop(redis);
        assert!(ping(addr).is_err(), "server still up");
    }

    #[test]
    fn two_servers_get_different_ports() {
        let a = RedisServer::start();
        let b = RedisServer::start();
        assert_ne!(a.port(), b.port());
    }
}
