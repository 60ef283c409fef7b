//! TLS certificates for loopback servers, made with the `openssl` command-line tool: a private
//! CA, a server certificate for `localhost` and `127.0.0.1`, and a client certificate, valid for
//! two days. For measuring what TLS costs (`shopmind bench edge`) and for tests of encryption in
//! transit.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::{Error, find_binary};

/// A CA and the server and client certificates it signed (PEM files in a temporary directory,
/// removed on drop).
pub struct Certificates {
    dir: tempfile::TempDir,
}

fn openssl(bin: &Path, dir: &Path, args: &[&str]) -> Result<(), Error> {
    let out = Command::new(bin)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::io("running openssl", e))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Openssl {
            args: args.join(" "),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}

impl Certificates {
    /// Makes them, or says why not (e.g. `openssl` is missing, and how to install it).
    pub fn generate() -> Result<Self, Error> {
        let bin = find_binary("openssl", "apt-get install -y openssl")?;
        let dir = tempfile::tempdir().map_err(|e| Error::io("creating a temporary directory", e))?;
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
        .map_err(|e| Error::io("writing leaf.ext", e))?;
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
