//! TLS certificates and servers that demand TLS and credentials, for tests of encryption in
//! transit. The certificates are [`local::Certificates`] (a private CA, a server certificate for
//! `localhost` and `127.0.0.1`, a client certificate).

use std::ops::Deref;
use std::path::Path;

use shopmind_local_servers as local;

use crate::{NatsServer, RedisServer};

/// A CA and the server and client certificates it signed (PEM files in a temporary directory).
pub struct TestCerts(local::Certificates);

impl TestCerts {
    /// Makes them; fails the test with the install instruction when `openssl` is missing.
    pub fn generate() -> Self {
        Self(local::Certificates::generate().unwrap_or_else(|e| panic!("{e}")))
    }
}

impl Deref for TestCerts {
    type Target = local::Certificates;

    fn deref(&self) -> &local::Certificates {
        &self.0
    }
}

fn quoted(p: &Path) -> String {
    format!("{:?}", p.display().to_string())
}

impl NatsServer {
    /// A `nats-server` with JetStream that requires TLS (the certificates' server identity) and
    /// the user `user` with `password`.
    pub fn start_secure(certs: &TestCerts, user: &str, password: &str) -> Self {
        Self::try_start_secure(certs, user, password).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn try_start_secure(certs: &TestCerts, user: &str, password: &str) -> Result<Self, local::Error> {
        let configure = |command: &mut std::process::Command, port: u16, dir: &Path| {
            let conf = dir.join("nats.conf");
            let text = format!(
                "listen: \"127.0.0.1:{port}\"\njetstream {{ store_dir: {} }}\n\
                 tls {{ cert_file: {}, key_file: {}, timeout: 5 }}\n\
                 authorization {{ user: {user:?}, password: {password:?} }}\n",
                quoted(&dir.join("js")),
                quoted(&certs.server_cert()),
                quoted(&certs.server_key()),
            );
            std::fs::write(&conf, text)
                .map_err(|e| local::Error::io(format!("writing {}", conf.display()), e))?;
            command.arg("-c").arg(&conf);
            Ok(())
        };
        local::NatsServer::start_with("nats-server with TLS", configure).map(Self)
    }

    /// The `tls://` URL of a server started with [`NatsServer::start_secure`].
    pub fn tls_url(&self) -> String {
        format!("tls://127.0.0.1:{}", self.port())
    }
}

impl RedisServer {
    /// A `redis-server` that requires `password` (`requirepass`) and, with `certs`, speaks only
    /// TLS (no plaintext port; clients are not asked for certificates).
    pub fn start_secure(password: &str, certs: Option<&TestCerts>) -> Self {
        Self::try_start_secure(password, certs).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn try_start_secure(password: &str, certs: Option<&TestCerts>) -> Result<Self, local::Error> {
        let configure = |cmd: &mut std::process::Command, port: u16, _: &Path| {
            cmd.args(["--requirepass", password]);
            match certs {
                Some(c) => {
                    cmd.args(["--port", "0", "--tls-port", &port.to_string(), "--tls-auth-clients", "no"]);
                    cmd.arg("--tls-cert-file").arg(c.server_cert());
                    cmd.arg("--tls-key-file").arg(c.server_key());
                    cmd.arg("--tls-ca-cert-file").arg(c.ca());
                }
                None => {
                    cmd.args(["--port", &port.to_string()]);
                }
            }
            Ok(())
        };
        local::RedisServer::start_with("redis-server with a password", configure).map(Self)
    }

    /// The `rediss://` URL of a server started with TLS.
    pub fn tls_url(&self) -> String {
        format!("rediss://127.0.0.1:{}/", self.port())
    }
}
