//! Real servers for tests.
//!
//! [`NatsServer::start`] and [`RedisServer::start`] launch `nats-server` (with JetStream in a
//! temporary store directory) and `redis-server` on free loopback ports, wait until they accept
//! connections, and kill them on drop. Tests never share a server, so they run in parallel. The
//! processes are those of `shopmind-local-servers` (which `shopmind bench --spawn-servers` uses
//! too); this crate adds what only tests want: starts that fail the test, [`eventually`], and
//! servers that demand TLS and credentials (`secure.rs`).
//!
//! A missing binary fails the test with the exact instruction to install it: a skipped test
//! would hide that nothing was tested.

use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::time::{Duration, Instant};

use shopmind_local_servers as local;

mod secure;
pub use secure::TestCerts;

/// A free TCP port on 127.0.0.1, found by binding port 0. The port is released before it is
/// returned, so another process may in rare cases take it first; servers are started with
/// retries for that reason.
pub fn free_port() -> u16 {
    local::free_port().unwrap_or_else(|e| panic!("{e}"))
}

/// A `nats-server` with JetStream, private to one test (its `url`, `port`, `pid` and `kill` are
/// those of [`local::NatsServer`]).
pub struct NatsServer(local::NatsServer);

impl NatsServer {
    /// Starts one; fails the test with the install instruction when `nats-server` is missing.
    pub fn start() -> Self {
        Self(local::NatsServer::start().unwrap_or_else(|e| panic!("{e}")))
    }
}

impl Deref for NatsServer {
    type Target = local::NatsServer;

    fn deref(&self) -> &local::NatsServer {
        &self.0
    }
}

impl DerefMut for NatsServer {
    fn deref_mut(&mut self) -> &mut local::NatsServer {
        &mut self.0
    }
}

/// A `redis-server` that keeps nothing on disk, private to one test (its `url`, `port` and `pid`
/// are those of [`local::RedisServer`]).
pub struct RedisServer(local::RedisServer);

impl RedisServer {
    /// Starts one; fails the test with the install instruction when `redis-server` is missing.
    pub fn start() -> Self {
        Self(local::RedisServer::start().unwrap_or_else(|e| panic!("{e}")))
    }
}

impl Deref for RedisServer {
    type Target = local::RedisServer;

    fn deref(&self) -> &local::RedisServer {
        &self.0
    }
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
