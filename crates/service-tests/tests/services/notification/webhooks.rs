//! Webhook delivery against a real HTTP receiver, nats-server and redis-server: a receiver that
//! fails its first attempts gets exactly one successful delivery, signed; one that never answers
//! well ends in the dead letters, and a replay delivers it. Over HTTPS (a tokio-rustls receiver
//! with the test certificate of `services/notification/tests/fixtures`): a receiver the client trusts through
//! `notification.webhook.ca_file` gets the signed POST; one it does not trust fails every attempt
//! and ends in the dead letters.

#![allow(clippy::unwrap_used)]

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use super::common::{HOUR, Harness, WAIT, noon};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use shopmind_config::WebhookEndpoint;
use shopmind_domain::OrderStatus;
use shopmind_notification::webhook;
use shopmind_runtime::dlq;
use shopmind_testkit::eventually;

#[derive(Debug, Clone)]
struct Received {
    status: u16,
    attempt: String,
    id: String,
    signed: bool,
    body: serde_json::Value,
}

/// An HTTP receiver answering 500 to the first `failures` requests, then 200.
struct Receiver {
    url: String,
    log: Arc<Mutex<Vec<Received>>>,
    failures: Arc<Mutex<usize>>,
    /// TLS handshakes that failed (HTTPS receivers).
    tls_failures: Arc<Mutex<usize>>,
}

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../services/notification/tests/fixtures")
        .join(name)
}

/// The TLS acceptor of an HTTPS receiver: the `localhost` / `127.0.0.1` certificate signed by
/// `services/notification/tests/fixtures/ca.pem`.
fn acceptor() -> tokio_rustls::TlsAcceptor {
    use rustls_pki_types::pem::PemObject as _;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs =
        CertificateDer::pem_file_iter(fixture("server.pem")).unwrap().collect::<Result<_, _>>().unwrap();
    let key = PrivateKeyDer::from_pem_file(fixture("server.key")).unwrap();
    let config =
        rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

async fn receiver(failures: usize, secret: &'static str) -> Receiver {
    serve(failures, secret, None).await
}

async fn https_receiver(failures: usize, secret: &'static str) -> Receiver {
    serve(failures, secret, Some(acceptor())).await
}

async fn serve(failures: usize, secret: &'static str, tls: Option<tokio_rustls::TlsAcceptor>) -> Receiver {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let url = match tls {
        Some(_) => format!("https://localhost:{port}/hooks/shopmind"),
        None => format!("http://127.0.0.1:{port}/hooks/shopmind"),
    };
    let log = Arc::new(Mutex::new(Vec::new()));
    let left = Arc::new(Mutex::new(failures));
    let tls_failures = Arc::new(Mutex::new(0));
    let (l, f, tf) = (log.clone(), left.clone(), tls_failures.clone());
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let (log, left, tls, tls_failures) = (l.clone(), f.clone(), tls.clone(), tf.clone());
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let (log, left) = (log.clone(), left.clone());
                async move {
                    let h = req.headers().clone();
                    let header =
                        |n: &str| h.get(n).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
                    let body = req.into_body().collect().await.unwrap().to_bytes();
                    let ts: u64 = header(webhook::TIMESTAMP_HEADER).parse().unwrap_or(0);
                    let signed = webhook::verify(secret, ts, &body, &header(webhook::SIGNATURE_HEADER));
                    let status = {
                        let mut left = left.lock().unwrap();
                        if *left > 0 {
                            *left -= 1;
                            500
                        } else {
                            200
                        }
                    };
                    log.lock().unwrap().push(Received {
                        status,
                        attempt: header(webhook::ATTEMPT_HEADER),
                        id: header(webhook::ID_HEADER),
                        signed,
                        body: serde_json::from_slice(&body).unwrap(),
                    });
                    let mut r = Response::new(Full::new(Bytes::new()));
                    *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                    Ok::<_, Infallible>(r)
                }
            });
            tokio::spawn(async move {
                let http = hyper::server::conn::http1::Builder::new();
                match tls {
                    None => {
                        let _ = http.serve_connection(TokioIo::new(stream), service).await;
                    }
                    Some(acceptor) => match acceptor.accept(stream).await {
                        Ok(stream) => {
                            let _ = http.serve_connection(TokioIo::new(stream), service).await;
                        }
                        Err(_) => *tls_failures.lock().unwrap() += 1,
                    },
                }
            });
        }
    });
    Receiver { url, log, failures: left, tls_failures }
}

fn endpoint(url: &str) -> WebhookEndpoint {
    WebhookEndpoint {
        name: "crm".into(),
        url: url.into(),
        secret: "s3cret".into(),
        audiences: vec!["customer".into()],
        kinds: vec!["order_status".into()],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_receiver_failing_its_first_attempts_gets_exactly_one_successful_delivery() {
    let r = receiver(2, "s3cret").await;
    let url = r.url.clone();
    let mut h = Harness::start(noon(), move |c| {
        c.notification.defaults.webhooks = vec![endpoint(&url)];
        c.notification.webhook.max_attempts = 5;
    })
    .await;
    h.status("u1", "o1", OrderStatus::Shipped, h.now() - HOUR).await;
    h.caught_up().await;
    eventually(WAIT, "a successful delivery", || async {
        r.log.lock().unwrap().iter().any(|x| x.status == 200).then_some(())
    })
    .await;
    eventually(WAIT, "the webhook consumer settled", || async {
        let lag = h.bus.consumer_lag(shopmind_runtime::topology::WEBHOOKS_STREAM, "webhook").await.ok()?;
        lag.is_caught_up().then_some(())
    })
    .await;
    let log = r.log.lock().unwrap().clone();
    assert_eq!(log.iter().map(|x| x.status).collect::<Vec<_>>(), [500, 500, 200], "{log:?}");
    assert_eq!(log.iter().map(|x| x.attempt.as_str()).collect::<Vec<_>>(), ["1", "2", "3"]);
    assert!(log.iter().all(|x| x.signed && x.id == "order_status:acme:e1"), "{log:?}");
    assert_eq!(log[2].body["kind"], "order_status");
    assert_eq!(log[2].body["data"]["status"], "shipped");
    assert_eq!(h.bus.stream_state(shopmind_runtime::topology::DLQ_STREAM).await.unwrap().messages, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_delivery_that_fails_every_attempt_is_dead_lettered_and_replayed() {
    let r = receiver(usize::MAX, "s3cret").await;
    let url = r.url.clone();
    let mut h = Harness::start(noon(), move |c| {
        c.notification.defaults.webhooks = vec![endpoint(&url)];
        c.notification.webhook.max_attempts = 3;
    })
    .await;
    h.status("u1", "o1", OrderStatus::Delivered, h.now() - HOUR).await;
    h.caught_up().await;
    let filter = dlq::Filter { stage: Some("webhook".into()), ..Default::default() };
    let letters = eventually(WAIT, "a dead letter", || async {
        let l = dlq::list(&*h.bus, &filter, 10).await.ok()?;
        (!l.is_empty()).then_some(l)
    })
    .await;
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].code, "retries_exhausted");
    assert_eq!(letters[0].original_subject, "sm.webhook.acme.crm");
    assert_eq!(r.log.lock().unwrap().len(), 3, "max_attempts");
    // The receiver recovers; the replay delivers once and empties the dead letters.
    *r.failures.lock().unwrap() = 0;
    let report = dlq::replay(&*h.bus, &filter).await.unwrap();
    assert_eq!(report.replayed, 1);
    eventually(WAIT, "the replayed delivery", || async {
        r.log.lock().unwrap().iter().any(|x| x.status == 200).then_some(())
    })
    .await;
    let log = r.log.lock().unwrap().clone();
    assert_eq!(log.iter().filter(|x| x.status == 200).count(), 1);
    assert!(dlq::list(&*h.bus, &filter, 10).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_https_receiver_trusted_through_the_ca_file_gets_the_signed_post() {
    let r = https_receiver(0, "s3cret").await;
    assert!(r.url.starts_with("https://localhost:"), "{}", r.url);
    let url = r.url.clone();
    let mut h = Harness::start(noon(), move |c| {
        c.notification.defaults.webhooks = vec![endpoint(&url)];
        c.notification.webhook.ca_file = fixture("ca.pem").to_string_lossy().into_owned();
        c.notification.webhook.max_attempts = 3;
    })
    .await;
    h.status("u1", "o1", OrderStatus::Shipped, h.now() - HOUR).await;
    h.caught_up().await;
    eventually(WAIT, "a delivery over TLS", || async {
        r.log.lock().unwrap().iter().any(|x| x.status == 200).then_some(())
    })
    .await;
    eventually(WAIT, "the webhook consumer settled", || async {
        let lag = h.bus.consumer_lag(shopmind_runtime::topology::WEBHOOKS_STREAM, "webhook").await.ok()?;
        lag.is_caught_up().then_some(())
    })
    .await;
    let log = r.log.lock().unwrap().clone();
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0].attempt, "1");
    assert!(log[0].signed, "the signature verifies");
    assert_eq!(log[0].id, "order_status:acme:e1");
    assert_eq!(log[0].body["data"]["status"], "shipped");
    assert_eq!(*r.tls_failures.lock().unwrap(), 0);
    assert_eq!(h.bus.stream_state(shopmind_runtime::topology::DLQ_STREAM).await.unwrap().messages, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_https_receiver_with_an_untrusted_certificate_fails_every_attempt_and_is_dead_lettered() {
    let r = https_receiver(0, "s3cret").await;
    let url = r.url.clone();
    // No ca_file: the test CA is not among the platform's roots.
    let mut h = Harness::start(noon(), move |c| {
        c.notification.defaults.webhooks = vec![endpoint(&url)];
        c.notification.webhook.max_attempts = 2;
    })
    .await;
    h.status("u1", "o1", OrderStatus::Shipped, h.now() - HOUR).await;
    h.caught_up().await;
    let filter = dlq::Filter { stage: Some("webhook".into()), ..Default::default() };
    let letters = eventually(WAIT, "a dead letter", || async {
        let l = dlq::list(&*h.bus, &filter, 10).await.ok()?;
        (!l.is_empty()).then_some(l)
    })
    .await;
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].code, "retries_exhausted");
    assert!(letters[0].reason.contains("tls:"), "{}", letters[0].reason);
    assert!(r.log.lock().unwrap().is_empty(), "no request got through");
    eventually(WAIT, "two refused handshakes", || async {
        (*r.tls_failures.lock().unwrap() == 2).then_some(())
    })
    .await;
}

#[tokio::test]
async fn the_client_posts_over_tls_and_fails_cleanly_without_trust() {
    let r = https_receiver(0, "k").await;
    let client = webhook::WebhookClient::new(fixture("ca.pem").to_str().unwrap()).unwrap();
    let timeout = std::time::Duration::from_secs(10);
    let ts = 1_700_000_000;
    let headers = [
        (webhook::TIMESTAMP_HEADER, ts.to_string()),
        (webhook::SIGNATURE_HEADER, webhook::sign("k", ts, b"{}")),
    ];
    assert_eq!(client.post(&r.url, &headers, b"{}".to_vec(), timeout).await.unwrap(), 200);
    // A client that does not trust the test CA: a TLS error, no request.
    let untrusting = webhook::WebhookClient::with_roots(Vec::new(), Vec::new()).unwrap();
    let err = untrusting.post(&r.url, &headers, b"{}".to_vec(), timeout).await;
    assert!(matches!(err, Err(webhook::PostError::Tls(_))), "{err:?}");
    // Plain HTTP to a TLS port is no 2xx either.
    let plain = r.url.replace("https://", "http://");
    let plain = client.post(&plain, &headers, b"{}".to_vec(), timeout).await;
    assert!(!matches!(plain, Ok(200..=299)), "{plain:?}");
    assert_eq!(r.log.lock().unwrap().len(), 1);
    assert!(r.log.lock().unwrap()[0].signed);
}
