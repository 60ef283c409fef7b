//! Webhook delivery: each notification for an endpoint waits in `SM_WEBHOOKS`
//! (`sm.webhook.<tenant>.<endpoint>`) until a POST to the endpoint answers 2xx. A failed attempt
//! is retried after an exponential backoff with jitter (the message is negatively acked with that
//! delay, so the schedule lives in JetStream and survives restarts); after
//! `notification.webhook.max_attempts` attempts it goes to the dead letters (`SM_DLQ`, stage
//! `webhook`), where `shopmind notifications dead-letters list|replay` finds it.
//!
//! The request: `POST <url>` with a JSON body (see [`body`]) and the headers
//! `Shopmind-Notification-Id` (for the receiver to drop repeats: delivery is at least once),
//! `Shopmind-Attempt`, `Shopmind-Timestamp` (unix seconds) and
//! `Shopmind-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.
//!
//! `https://` endpoints are reached over TLS (rustls, ring provider) and verified against the
//! platform's root certificates plus those of `notification.webhook.ca_file`; a certificate that
//! does not verify fails the attempt like any other error.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};

use bytes::Bytes;
use http_body_util::Full;
use hyper::Request;
use hyper_util::rt::TokioIo;
use prost::Message as _;
use shopmind_bus::{BusError, Message};
use shopmind_metrics::global as metrics;
use shopmind_proto::v1 as pb;
use shopmind_runtime::consume::{Outcome, consume_with_attempts};
use shopmind_runtime::{Shutdown, topology};
use tracing::{debug, warn};

use crate::{Kind, NotificationError, Notifier, WEBHOOK_DURABLE};

pub const SIGNATURE_HEADER: &str = "Shopmind-Signature";
pub const TIMESTAMP_HEADER: &str = "Shopmind-Timestamp";
pub const ID_HEADER: &str = "Shopmind-Notification-Id";
pub const ATTEMPT_HEADER: &str = "Shopmind-Attempt";

/// The signature header's value for `body` sent at `timestamp`.
pub fn sign(secret: &str, timestamp: u64, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let mut ctx = ring::hmac::Context::with_key(&key);
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    let tag = ctx.sign();
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("v1={hex}")
}

/// Whether `signature` is the valid signature of `body` at `timestamp` (constant time).
pub fn verify(secret: &str, timestamp: u64, body: &[u8], signature: &str) -> bool {
    let Some(hex) = signature.strip_prefix("v1=") else { return false };
    let Some(tag) = decode_hex(hex) else { return false };
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let mut message = timestamp.to_string().into_bytes();
    message.push(b'.');
    message.extend_from_slice(body);
    ring::hmac::verify(&key, &message, &tag).is_ok()
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

/// The delay before attempt `attempt + 1`: random in `[d/2, d]`, `d = min(base * 2^(attempt-1), max)`.
pub fn backoff(attempt: u64, base: Duration, max: Duration) -> Duration {
    let exp = u32::try_from(attempt.saturating_sub(1)).unwrap_or(u32::MAX).min(30);
    let d = base.saturating_mul(1u32 << exp).min(max);
    d.mul_f64(0.5 + 0.5 * rand::random::<f64>())
}

/// The JSON body of a notification.
pub fn body(n: &pb::Notification) -> Vec<u8> {
    let created_at_ms = n.created_at.as_ref().map(|t| t.seconds * 1000 + i64::from(t.nanos) / 1_000_000);
    let value = serde_json::json!({
        "notification_id": n.notification_id,
        "tenant": n.tenant,
        "kind": Kind::from_proto(n.kind).map(Kind::as_str),
        "audience": n.audience,
        "user_id": n.user_id,
        "title": n.title,
        "body": n.body,
        "data": n.data,
        "created_at_ms": created_at_ms,
        "source_event_id": n.source_event_id,
    });
    serde_json::to_vec(&value).unwrap_or_default()
}

#[derive(Debug, thiserror::Error)]
pub enum PostError {
    #[error("invalid url {0:?}")]
    Url(String),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("tls: {0}")]
    Tls(String),
    #[error("{0}")]
    Io(String),
}

/// The HTTP/1.1 client of webhook deliveries: plain TCP for `http://`, TLS for `https://`
/// (verified against the platform's roots and the extra CA certificates it was given).
#[derive(Clone)]
pub struct WebhookClient {
    tls: tokio_rustls::TlsConnector,
}

impl std::fmt::Debug for WebhookClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookClient").finish_non_exhaustive()
    }
}

impl WebhookClient {
    /// Trusts the platform's root certificates and those in the PEM file `ca_file` (none when
    /// empty). An unreadable `ca_file`, or one without certificates, is an error.
    pub fn new(ca_file: &str) -> Result<Self, NotificationError> {
        let native = rustls_native_certs::load_native_certs();
        for e in &native.errors {
            warn!(error = %e, "could not load some platform root certificates");
        }
        let extra = if ca_file.is_empty() {
            Vec::new()
        } else {
            let certs = CertificateDer::pem_file_iter(ca_file)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| NotificationError::Webhook(format!("ca_file {ca_file:?}: {e}")))?;
            if certs.is_empty() {
                return Err(NotificationError::Webhook(format!("ca_file {ca_file:?}: no certificates")));
            }
            certs
        };
        Self::with_roots(native.certs, extra)
    }

    /// Trusts `platform` (certificates that do not parse are skipped) and `extra` (each must parse).
    pub fn with_roots(
        platform: Vec<CertificateDer<'static>>,
        extra: Vec<CertificateDer<'static>>,
    ) -> Result<Self, NotificationError> {
        let mut roots = rustls::RootCertStore::empty();
        let (added, ignored) = roots.add_parsable_certificates(platform);
        debug!(added, ignored, "platform root certificates");
        for cert in extra {
            roots.add(cert).map_err(|e| NotificationError::Webhook(format!("ca_file certificate: {e}")))?;
        }
        if roots.is_empty() {
            warn!("no trusted root certificates: https:// webhooks will fail");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| NotificationError::Webhook(format!("tls: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self { tls: tokio_rustls::TlsConnector::from(Arc::new(config)) })
    }

    /// POSTs `body` to `url` (`http[s]://host[:port]/path`); the response status, or why there
    /// is none. `timeout` bounds the whole exchange (connect, TLS, request, response headers).
    pub async fn post(
        &self,
        url: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<u16, PostError> {
        let uri: hyper::Uri = url.parse().map_err(|_| PostError::Url(url.to_string()))?;
        let (Some(host), Some(authority)) = (uri.host(), uri.authority()) else {
            return Err(PostError::Url(url.to_string()));
        };
        let tls = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(PostError::Url(url.to_string())),
        };
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
        let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
        let mut request = Request::post(path)
            .header(hyper::header::HOST, authority.as_str())
            .header(hyper::header::CONTENT_TYPE, "application/json");
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let request = request.body(Full::new(Bytes::from(body))).map_err(|e| PostError::Io(e.to_string()))?;
        let attempt = async move {
            let stream = tokio::net::TcpStream::connect((host.as_str(), port))
                .await
                .map_err(|e| PostError::Io(format!("connect: {e}")))?;
            if !tls {
                return exchange(stream, request).await;
            }
            let name = ServerName::try_from(host).map_err(|e| PostError::Tls(e.to_string()))?;
            let stream = self.tls.connect(name, stream).await.map_err(|e| PostError::Tls(e.to_string()))?;
            exchange(stream, request).await
        };
        tokio::time::timeout(timeout, attempt).await.map_err(|_| PostError::Timeout(timeout))?
    }
}

/// Sends `request` over `stream` (HTTP/1.1) and returns the response status.
async fn exchange<S>(stream: S, request: Request<Full<Bytes>>) -> Result<u16, PostError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| PostError::Io(format!("handshake: {e}")))?;
    let connection = tokio::spawn(conn);
    let response = sender.send_request(request).await.map_err(|e| PostError::Io(format!("request: {e}")));
    connection.abort();
    Ok(response?.status().as_u16())
}

/// Delivers one message of `SM_WEBHOOKS`, attempt `attempt`.
async fn deliver(n: &Notifier, client: &WebhookClient, message: Message, attempt: u64) -> Outcome {
    let mut tokens = message.subject.split('.').skip(2);
    let (tenant, endpoint) = (tokens.next().unwrap_or_default(), tokens.next().unwrap_or_default());
    let w = &n.config.notification.webhook;
    let Some(target) = n.config.notification.tenant(tenant).webhooks.iter().find(|e| e.name == endpoint)
    else {
        return Outcome::Reject {
            code: "unknown_endpoint",
            reason: format!("tenant {tenant:?} has no webhook endpoint {endpoint:?}"),
        };
    };
    let notification = match pb::Notification::decode(message.payload.as_ref()) {
        Ok(n) => n,
        Err(e) => return Outcome::Reject { code: "malformed", reason: format!("not a Notification: {e}") },
    };
    let body = body(&notification);
    let timestamp = u64::try_from(n.now().0 / 1000).unwrap_or(0);
    let headers = [
        (ID_HEADER, notification.notification_id.clone()),
        (ATTEMPT_HEADER, attempt.to_string()),
        (TIMESTAMP_HEADER, timestamp.to_string()),
        (SIGNATURE_HEADER, sign(&target.secret, timestamp, &body)),
    ];
    let started = Instant::now();
    let result = client.post(&target.url, &headers, body, Duration::from_millis(w.timeout_ms)).await;
    let label = match &result {
        Ok(s) if (200..300).contains(s) => "ok",
        Ok(_) => "http_error",
        Err(PostError::Timeout(_)) => "timeout",
        Err(_) => "error",
    };
    metrics().webhook_attempt(label, started.elapsed());
    if label == "ok" {
        debug!(endpoint, id = %notification.notification_id, attempt, "webhook delivered");
        return Outcome::Done;
    }
    let reason = match result {
        Ok(status) => format!("{} answered HTTP {status}", target.url),
        Err(e) => format!("{}: {e}", target.url),
    };
    let delay =
        backoff(attempt, Duration::from_millis(w.backoff_base_ms), Duration::from_millis(w.backoff_max_ms));
    warn!(endpoint, id = %notification.notification_id, attempt, %reason, retry_in = ?delay, "webhook attempt failed");
    Outcome::Retry { delay, reason }
}

/// Consumes `SM_WEBHOOKS` with `client` until `shutdown`.
pub async fn run(n: Arc<Notifier>, client: WebhookClient, shutdown: Shutdown) -> Result<(), BusError> {
    let w = &n.config.notification.webhook;
    let ack_wait = Duration::from_millis(w.timeout_ms.saturating_mul(2))
        .max(Duration::from_secs(n.config.notification.ack_wait_s));
    let spec =
        topology::consumer(topology::WEBHOOKS_STREAM, WEBHOOK_DURABLE, Vec::new(), ack_wait, w.max_attempts);
    let concurrency = w.concurrency;
    consume_with_attempts(n.bus.clone(), spec, "webhook", concurrency, shutdown, move |message, attempt| {
        let (n, client) = (n.clone(), client.clone());
        async move { deliver(&n, &client, message, attempt).await }
    })
    .await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_and_detect_tampering() {
        let s = sign("secret", 1_700_000_000, b"{\"a\":1}");
        assert!(s.starts_with("v1=") && s.len() == 3 + 64, "{s}");
        assert!(verify("secret", 1_700_000_000, b"{\"a\":1}", &s));
        assert!(!verify("secret", 1_700_000_001, b"{\"a\":1}", &s));
        assert!(!verify("other", 1_700_000_000, b"{\"a\":1}", &s));
        assert!(!verify("secret", 1_700_000_000, b"{\"a\":2}", &s));
        assert!(!verify("secret", 1_700_000_000, b"{\"a\":1}", "v1=zz"));
    }

    #[test]
    fn the_ca_file_must_hold_certificates() {
        let dir = env!("CARGO_MANIFEST_DIR");
        assert!(WebhookClient::new("").is_ok(), "the platform's roots only");
        assert!(WebhookClient::new(&format!("{dir}/tests/fixtures/ca.pem")).is_ok());
        for bad in [format!("{dir}/tests/fixtures/missing.pem"), format!("{dir}/Cargo.toml")] {
            let err = WebhookClient::new(&bad).unwrap_err();
            assert!(matches!(&err, NotificationError::Webhook(m) if m.contains("ca_file")), "{err}");
        }
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_max() {
        let (base, max) = (Duration::from_millis(100), Duration::from_secs(1));
        for _ in 0..100 {
            let first = backoff(1, base, max);
            assert!(first >= base / 2 && first <= base, "{first:?}");
            let third = backoff(3, base, max);
            assert!(third >= base * 2 && third <= base * 4, "{third:?}");
            let late = backoff(40, base, max);
            assert!(late >= max / 2 && late <= max, "{late:?}");
        }
    }
}
