//! Private servers on loopback, for the tools that need real ones (`shopmind bench
//! --spawn-servers`) and for the tests (`shopmind-testkit` wraps these).
//!
//! [`NatsServer::start`] and [`RedisServer::start`] launch `nats-server` (with JetStream in a
//! temporary store directory) and `redis-server` (nothing on disk) on free loopback ports, wait
//! until they accept connections, and kill them on drop. Every start gets its own port and
//! directory, so any number run side by side. [`Certificates`] makes a private CA with a server
//! and a client certificate (`openssl`).
//!
//! A missing binary is an [`Error::MissingBinary`] that says how to install it.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

mod certs;
pub use certs::Certificates;

/// How long a server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// Starts tried, each on a fresh port, before giving up (another process may take a free port
/// between finding it and the server binding it).
const START_ATTEMPTS: usize = 5;

/// Why a server (or the certificates) could not be had.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "`{name}` was not found on PATH, and a real one is needed.\nInstall it with: {install_hint}\n\
         (scripts/setup.sh does this on Debian/Ubuntu)"
    )]
    MissingBinary { name: &'static str, install_hint: &'static str },
    /// A file, directory, socket or process operation failed.
    #[error("{what}: {error}")]
    Io { what: String, error: std::io::Error },
    #[error("{what} exited with {status} before accepting connections: {stderr}")]
    Exited { what: String, status: ExitStatus, stderr: String },
    #[error("{what} did not accept connections on {addr} within {timeout:?}")]
    NotListening { what: String, addr: SocketAddr, timeout: Duration },
    #[error("{what} accepted connections but is not ready: {reason}")]
    NotReady { what: String, reason: String },
    /// Every attempt failed; the last one's reason.
    #[error("could not start {what}: {last}")]
    GaveUp { what: String, last: Box<Error> },
    #[error("openssl {args}: {stderr}")]
    Openssl { args: String, stderr: String },
}

impl Error {
    /// An I/O failure while doing `what`.
    pub fn io(what: impl Into<String>, error: std::io::Error) -> Self {
        Self::Io { what: what.into(), error }
    }
}

/// A free TCP port on 127.0.0.1, found by binding port 0. The port is released before it is
/// returned, so another process may in rare cases take it first; servers are started with
/// retries for that reason.
pub fn free_port() -> Result<u16, Error> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| Error::io("cannot bind a loopback port", e))
}

/// `name` on PATH (or in /usr/sbin, /usr/local/bin), or how to install it.
pub(crate) fn find_binary(name: &'static str, install_hint: &'static str) -> Result<PathBuf, Error> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in
        std::env::split_paths(&path).chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/bin")])
    {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(Error::MissingBinary { name, install_hint })
}

/// Starts `command` (`bin`, for errors) with its stderr kept, and waits until it accepts
/// connections on `port` and `ready` holds for that address; a server that exits or does not get
/// there in time is killed and the reason returned.
fn spawn_listening(
    command: &mut Command,
    bin: &Path,
    port: u16,
    what: &str,
    ready: fn(SocketAddr) -> Result<(), String>,
) -> Result<Child, Error> {
    let mut child = command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::io(format!("starting {}", bin.display()), e))?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let started = wait_for_port(&mut child, addr, what)
        .and_then(|()| ready(addr).map_err(|reason| Error::NotReady { what: what.to_string(), reason }));
    match started {
        Ok(()) => Ok(child),
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(e)
        }
    }
}

fn wait_for_port(child: &mut Child, addr: SocketAddr, what: &str) -> Result<(), Error> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let mut stderr = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut stderr);
            }
            return Err(Error::Exited { what: what.to_string(), status, stderr });
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Error::NotListening { what: what.to_string(), addr, timeout: START_TIMEOUT });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A server process on a port of its own, with a temporary directory removed after it.
struct Process {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Process {
    /// Starts `bin` as `configure` sets it up for a free port and a fresh temporary directory,
    /// and waits until it listens on that port and `ready` holds; tried [`START_ATTEMPTS`]
    /// times, each with a new port and directory.
    fn start(
        bin: &Path,
        what: &str,
        mut configure: impl FnMut(&mut Command, u16, &Path) -> Result<(), Error>,
        ready: fn(SocketAddr) -> Result<(), String>,
    ) -> Result<Self, Error> {
        let mut attempt = 1;
        loop {
            let dir = tempfile::tempdir().map_err(|e| Error::io("creating a temporary directory", e))?;
            let port = free_port()?;
            let mut command = Command::new(bin);
            configure(&mut command, port, dir.path())?;
            match spawn_listening(&mut command, bin, port, what, ready) {
                Ok(child) => return Ok(Self { child, port, _dir: dir }),
                Err(e) if attempt >= START_ATTEMPTS => {
                    return Err(Error::GaveUp { what: what.to_string(), last: Box::new(e) });
                }
                Err(_) => attempt += 1,
            }
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

fn listening(_: SocketAddr) -> Result<(), String> {
    Ok(())
}

/// A private `nats-server` with JetStream, killed on drop.
pub struct NatsServer(Process);

impl NatsServer {
    /// JetStream in a temporary store directory, on a free loopback port.
    pub fn start() -> Result<Self, Error> {
        Self::start_with("nats-server", |command, port, dir| {
            command.args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"]).arg(dir);
            Ok(())
        })
    }

    /// A `nats-server` set up by `configure` to listen on the given loopback port, with the given
    /// temporary directory of its own (for its store, a configuration file); `what` names it in
    /// errors. For servers set up differently, e.g. with TLS in the testkit.
    pub fn start_with(
        what: &str,
        configure: impl FnMut(&mut Command, u16, &Path) -> Result<(), Error>,
    ) -> Result<Self, Error> {
        let bin = find_binary("nats-server", "apt-get install -y nats-server")?;
        Process::start(&bin, what, configure, listening).map(Self)
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.0.port)
    }

    pub fn port(&self) -> u16 {
        self.0.port
    }

    /// The server's process id (e.g. to read its CPU time).
    pub fn pid(&self) -> u32 {
        self.0.child.id()
    }

    /// Stops the server (for tests of what happens when it goes away).
    pub fn kill(&mut self) {
        self.0.kill();
    }
}

/// A private `redis-server` that keeps nothing on disk, killed on drop.
pub struct RedisServer(Process);

impl RedisServer {
    /// Plaintext, no password, on a free loopback port; ready once it answers PING.
    pub fn start() -> Result<Self, Error> {
        let plain = |command: &mut Command, port: u16, _: &Path| {
            command.args(["--port", &port.to_string()]);
            Ok(())
        };
        Self::launch("redis-server", plain, ping)
    }

    /// A `redis-server` set up by `configure` (after the arguments that keep nothing on disk) to
    /// listen on the given loopback port, with the given temporary directory as its working
    /// directory; `what` names it in errors; ready once it accepts connections. For servers with
    /// a password or TLS, e.g. in the testkit.
    pub fn start_with(
        what: &str,
        configure: impl FnMut(&mut Command, u16, &Path) -> Result<(), Error>,
    ) -> Result<Self, Error> {
        Self::launch(what, configure, listening)
    }

    fn launch(
        what: &str,
        mut configure: impl FnMut(&mut Command, u16, &Path) -> Result<(), Error>,
        ready: fn(SocketAddr) -> Result<(), String>,
    ) -> Result<Self, Error> {
        let bin = find_binary("redis-server", "apt-get install -y redis-server")?;
        let configure = |command: &mut Command, port: u16, dir: &Path| {
            command.args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]).arg("--dir").arg(dir);
            configure(command, port, dir)
        };
        Process::start(&bin, what, configure, ready).map(Self)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.0.port)
    }

    pub fn port(&self) -> u16 {
        self.0.port
    }

    /// The server's process id (e.g. to read its CPU time).
    pub fn pid(&self) -> u32 {
        self.0.child.id()
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn nats_server_starts_with_jetstream_and_stops_on_drop() {
        let nats = NatsServer::start().unwrap();
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
        let redis = RedisServer::start().unwrap();
        let addr = SocketAddr::from(([127, 0, 0, 1], redis.port()));
        ping(addr).unwrap();
        drop(redis);
        assert!(ping(addr).is_err(), "server still up");
    }

    #[test]
    fn two_servers_get_different_ports() {
        let a = RedisServer::start().unwrap();
        let b = RedisServer::start().unwrap();
        assert_ne!(a.port(), b.port());
    }

    #[test]
    fn a_missing_binary_says_how_to_install_it() {
        let e = find_binary("shopmind-no-such-server", "apt-get install -y it").unwrap_err();
        let text = e.to_string();
        assert!(text.contains("`shopmind-no-such-server` was not found on PATH"), "{text}");
        assert!(text.contains("Install it with: apt-get install -y it"), "{text}");
    }
}
