//! TLS of the gRPC listener (`gateway.tls`): rustls with the ring provider, the one crypto
//! provider in the build. With `client_ca_file`, clients must present a certificate that CA
//! signed (mutual TLS).

use shopmind_config::GatewayTlsConfig;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

/// Why TLS could not be set up (names the setting).
#[derive(Debug, thiserror::Error)]
#[error("config key `{key}`: reading {path}: {reason}")]
pub struct TlsError {
    key: &'static str,
    path: String,
    reason: String,
}

fn read(key: &'static str, path: &str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError { key, path: path.into(), reason: e.to_string() })
}

/// The listener's TLS settings; `None` for plaintext (no `cert_file`).
pub fn server_config(config: &GatewayTlsConfig) -> Result<Option<ServerTlsConfig>, TlsError> {
    if config.cert_file.is_empty() {
        return Ok(None);
    }
    let cert = read("gateway.tls.cert_file", &config.cert_file)?;
    let key = read("gateway.tls.key_file", &config.key_file)?;
    let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(cert, key));
    if !config.client_ca_file.is_empty() {
        let ca = read("gateway.tls.client_ca_file", &config.client_ca_file)?;
        tls = tls.client_ca_root(Certificate::from_pem(ca));
    }
    Ok(Some(tls))
}
