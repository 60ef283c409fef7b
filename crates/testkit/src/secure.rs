//! TLS certificates and servers that demand TLS and credentials, for tests of encryption in
//! transit. Certificates are made with the `openssl` command-line tool: a private CA, a server
//! certificate for `localhost` and `127.0.0.1`, and a client certificate, valid for two days.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{NatsServer, RedisServer, find_binary, spawn_listening, try_free_port};

/// A CA and the server and client certificates it signed (PEM files in a temporary directory).
pub struct TestCerts {
    dir: tempfile::TempDir,
}

fn openssl(bin: &Path, dir: &Path, args: &[&str]) -> Result<(), String> {
    let out = Command::new(bin)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running openssl: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("openssl {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr)))
    }
}

impl TestCerts {
    /// Makes them; fails the test with the install instruction when `openssl` is missing.
    pub fn generate() -> Self {
        Self::try_generate().unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn try_generate() -> Result<Self, String> {
        let bin = find_binary("openssl", "apt-get install -y openssl")?;
        let dir = tempfile::tempdir().map_err(|e| format!("creating a temporary directory: {e}"))?;
        let d = dir.path();
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
        let mut ca = vec!["req", "-x509"];
        ca.extend(ec);
        ca.extend([
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=shopmind test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        openssl(&bin, d, &ca)?;
        std::fs::write(
            d.join("leaf.ext"),
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n\
             extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n",
        )
        .map_err(|e| e.to_string())?;
        for name in ["server", "client"] {
            let (key, csr, pem) = (format!("{name}.key"), format!("{name}.csr"), format!("{name}.pem"));
            let subject = format!("/CN={}", if name == "server" { "localhost" } else { "shopmind-client" });
            let mut req = vec!["req"];
            req.extend(ec);
            req.extend(["-keyout", &key, "-out", &csr, "-subj", &subject]);
            openssl(&bin, d, &req)?;
            openssl(
                &bin,
                d,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &csr,
                    "-CA",
                    "ca.pem",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-out",
                    &pem,
                    "-days",
                    "2",
                    "-extfile",
                    "leaf.ext",
                ],
            )?;
        }
        Ok(Self { dir })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn ca(&self) -> PathBuf {
        self.path("ca.pem")
    }
    pub fn server_cert(&self) -> PathBuf {
        self.path("server.pem")
    }
    pub fn server_key(&self) -> PathBuf {
        self.path("server.key")
    }
    pub fn client_cert(&self) -> PathBuf {
        self.path("client.pem")
    }
    pub fn client_key(&self) -> PathBuf {
        self.path("client.key")
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

    pub fn try_start_secure(certs: &TestCerts, user: &str, password: &str) -> Result<Self, String> {
        let bin = find_binary("nats-server", "apt-get install -y nats-server")?;
        let mut last_err = String::new();
        for _ in 0..5 {
            let store = tempfile::tempdir().map_err(|e| format!("creating a temporary directory: {e}"))?;
            let port = try_free_port()?;
            let conf = store.path().join("nats.conf");
            let text = format!(
                "listen: \"127.0.0.1:{port}\"\njetstream {{ store_dir: {} }}\n\
                 tls {{ cert_file: {}, key_file: {}, timeout: 5 }}\n\
                 authorization {{ user: {user:?}, password: {password:?} }}\n",
                quoted(&store.path().join("js")),
                quoted(&certs.server_cert()),
                quoted(&certs.server_key()),
            );
            std::fs::write(&conf, text).map_err(|e| format!("writing {}: {e}", conf.display()))?;
            let mut command = std::process::Command::new(&bin);
            command.arg("-c").arg(&conf);
            match spawn_listening(&mut command, &bin, port, "nats-server", |_| Ok(())) {
                Ok(child) => return Ok(Self { child, port, _store: store }),
                Err(e) => last_err = e,
            }
        }
        Err(format!("could not start nats-server with TLS: {last_err}"))
    }

    /// The `tls://` URL of a server started with [`NatsServer::start_secure`].
    pub fn tls_url(&self) -> String {
        format!("tls://127.0.0.1:{}", self.port)
    }
}

impl RedisServer {
    /// A `redis-server` that requires `password` (`requirepass`) and, with `certs`, speaks only
    /// TLS (no plaintext port; clients are not asked for certificates).
    pub fn start_secure(password: &str, certs: Option<&TestCerts>) -> Self {
        Self::try_start_secure(password, certs).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn try_start_secure(password: &str, certs: Option<&TestCerts>) -> Result<Self, String> {
        let bin = find_binary("redis-server", "apt-get install -y redis-server")?;
        let mut last_err = String::new();
        for _ in 0..5 {
            let dir = tempfile::tempdir().map_err(|e| format!("creating a temporary directory: {e}"))?;
            let port = try_free_port()?;
            let mut cmd = std::process::Command::new(&bin);
            cmd.args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--requirepass", password]);
            cmd.arg("--dir").arg(dir.path());
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
            match spawn_listening(&mut cmd, &bin, port, "redis-server", |_| Ok(())) {
                Ok(child) => return Ok(Self { child, port, _dir: dir }),
                Err(e) => last_err = e,
            }
        }
        Err(format!("could not start redis-server with a password: {last_err}"))
    }

    /// The `rediss://` URL of a server started with TLS.
    pub fn tls_url(&self) -> String {
        format!("rediss://127.0.0.1:{}/", self.port)
    }
}
