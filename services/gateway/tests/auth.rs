//! API keys, rate limits and TLS of the real gateway (tonic client and server, real NATS): a call
//! needs a known key (UNAUTHENTICATED), may name only the key's tenant (PERMISSION_DENIED), is
//! refused with RESOURCE_EXHAUSTED and a RetryInfo when its tenant's bucket is empty, and over TLS
//! works for a client that trusts the CA while a plaintext client fails. No log line of any of
//! it contains a key.

#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use shopmind_bus::{Bus, NatsBus};
use shopmind_config::{Config, TenantRateLimit};
use shopmind_domain::UnixMillis;
use shopmind_proto::v1 as pb;
use shopmind_proto::v1::gateway_client::GatewayClient;
use shopmind_runtime::{Shutdown, connect};
use shopmind_testkit::{NatsServer, TestCerts, eventually};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Request, Status};
use tonic_types::StatusExt;

const ACME_KEY: &str = "acme-secret-key-7f3a9c21";
const GLOBEX_KEY: &str = "globex-secret-key-0b5e44d8";
const ADMIN_KEY: &str = "admin-secret-key-99d0e1aa";
const KEYS: [&str; 3] = [ACME_KEY, GLOBEX_KEY, ADMIN_KEY];

/// Everything every test of this binary logs, at TRACE, for any library.
fn logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let sink = buffer.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || Sink(sink.clone()))
            .init();
        buffer
    })
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn view(tenant: &str, id: &str) -> pb::Event {
    pb::Event {
        event_id: id.into(),
        tenant: tenant.into(),
        occurred_at: Some(UnixMillis::now().to_proto()),
        user_id: "alice".into(),
        session_id: String::new(),
        payload: Some(pb::event::Payload::ProductViewed(pb::ProductViewed {
            item_id: "sku-1".into(),
            source: String::new(),
        })),
    }
}

fn publish(tenant: &str, id: &str, key: Option<&str>) -> Request<pb::PublishEventsRequest> {
    with_key(pb::PublishEventsRequest { tenant: tenant.into(), events: vec![view(tenant, id)] }, key)
}

fn with_key<T>(message: T, key: Option<&str>) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(key) = key {
        request.metadata_mut().insert("authorization", format!("Bearer {key}").parse().unwrap());
    }
    request
}

struct Gateway {
    endpoint: String,
    shutdown: Shutdown,
    _nats: NatsServer,
    _dir: tempfile::TempDir,
}

/// A gateway on a fresh NATS with `configure` applied to its configuration.
async fn start(configure: impl FnOnce(&mut Config, &std::path::Path)) -> Gateway {
    logs();
    let nats = NatsServer::start();
    let bus: Arc<dyn Bus> = Arc::new(NatsBus::connect(&nats.url(), "auth-test").await.unwrap());
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    configure(&mut config, dir.path());
    connect::ensure_streams(&*bus, &config).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("127.0.0.1:{}", listener.local_addr().unwrap().port());
    let shutdown = Shutdown::new();
    tokio::spawn(shopmind_gateway::run(config, bus, listener, shutdown.clone()));
    Gateway { endpoint, shutdown, _nats: nats, _dir: dir }
}

async fn plain_client(gateway: &Gateway) -> GatewayClient<Channel> {
    let endpoint = format!("http://{}", gateway.endpoint);
    eventually(Duration::from_secs(10), "the gateway accepts connections", || {
        let endpoint = endpoint.clone();
        async move { GatewayClient::connect(endpoint).await.ok() }
    })
    .await
}

fn code<T: std::fmt::Debug>(result: Result<tonic::Response<T>, Status>) -> Code {
    match result {
        Ok(_) => Code::Ok,
        Err(s) => {
            // Whatever the refusal, its message never quotes a key.
            assert!(KEYS.iter().all(|k| !s.message().contains(k)), "{s:?}");
            s.code()
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_acts_only_for_its_tenant_and_is_never_logged() {
    let gateway = start(|config, dir| {
        config.gateway.api_keys.insert(ACME_KEY.into(), "acme".into());
        let file = dir.join("api-keys");
        std::fs::write(&file, format!("# mounted from a Secret\n{GLOBEX_KEY} = globex\n")).unwrap();
        config.gateway.api_keys_file = file.to_str().unwrap().into();
        config.gateway.admin_keys.push(ADMIN_KEY.into());
    })
    .await;
    let mut c = plain_client(&gateway).await;

    // No key, an unknown key, a malformed header: UNAUTHENTICATED, for every kind of call.
    assert_eq!(code(c.publish_events(publish("acme", "e1", None)).await), Code::Unauthenticated);
    assert_eq!(
        code(c.publish_events(publish("acme", "e1", Some("not-a-key-000000000"))).await),
        Code::Unauthenticated
    );
    let mut malformed = publish("acme", "e1", None);
    malformed.metadata_mut().insert("authorization", ACME_KEY.parse().unwrap());
    assert_eq!(code(c.publish_events(malformed).await), Code::Unauthenticated);
    let recommend =
        pb::RecommendRequest { tenant: "acme".into(), user_id: "alice".into(), ..Default::default() };
    assert_eq!(code(c.recommend(with_key(recommend.clone(), None)).await), Code::Unauthenticated);
    let notifications = pb::StreamNotificationsRequest { tenant: "acme".into(), ..Default::default() };
    assert_eq!(
        code(c.stream_notifications(with_key(notifications.clone(), None)).await),
        Code::Unauthenticated
    );
    let stream = with_key(tokio_stream::iter(vec![view("acme", "s1")]), None);
    assert_eq!(code(c.stream_events(stream).await), Code::Unauthenticated);

    // The key's own tenant: served (inline key and a key from the keys file).
    let ok = c.publish_events(publish("acme", "e1", Some(ACME_KEY))).await.unwrap().into_inner();
    assert_eq!(ok.accepted, 1);
    let ok = c.publish_events(publish("globex", "e2", Some(GLOBEX_KEY))).await.unwrap().into_inner();
    assert_eq!(ok.accepted, 1);
    let stream = with_key(tokio_stream::iter(vec![view("acme", "s1"), view("acme", "s2")]), Some(ACME_KEY));
    assert_eq!(c.stream_events(stream).await.unwrap().into_inner().accepted, 2);
    assert_eq!(code(c.stream_notifications(with_key(notifications.clone(), Some(ACME_KEY))).await), Code::Ok);
    // Authorized, then forwarded: no inference runs, so UNAVAILABLE (not a refusal).
    assert_eq!(code(c.recommend(with_key(recommend.clone(), Some(ACME_KEY))).await), Code::Unavailable);

    // Another tenant: PERMISSION_DENIED, whichever way the tenant is named.
    assert_eq!(code(c.publish_events(publish("globex", "e3", Some(ACME_KEY))).await), Code::PermissionDenied);
    let other = pb::RecommendRequest { tenant: "globex".into(), ..recommend.clone() };
    assert_eq!(code(c.recommend(with_key(other, Some(ACME_KEY))).await), Code::PermissionDenied);
    let other = pb::StreamNotificationsRequest { tenant: "globex".into(), ..notifications.clone() };
    assert_eq!(code(c.stream_notifications(with_key(other, Some(ACME_KEY))).await), Code::PermissionDenied);
    let stream = with_key(tokio_stream::iter(vec![view("acme", "s3"), view("globex", "s4")]), Some(ACME_KEY));
    assert_eq!(code(c.stream_events(stream).await), Code::PermissionDenied);
    let intent = pb::IntentRequest { tenant: "globex".into(), user_id: "u".into(), ..Default::default() };
    assert_eq!(
        code(c.predict_purchase_intent(with_key(intent, Some(ACME_KEY))).await),
        Code::PermissionDenied
    );
    // An admin key is for the Admin service only.
    assert_eq!(code(c.publish_events(publish("acme", "e4", Some(ADMIN_KEY))).await), Code::PermissionDenied);

    gateway.shutdown.trigger();
    let text = String::from_utf8_lossy(&logs().lock().unwrap()).to_string();
    assert!(text.contains("gateway serving"), "the capture works");
    for key in KEYS {
        assert!(!text.contains(key), "a log line contains a key");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_bucket_is_resource_exhausted_with_retry_info() {
    // An open gateway (no keys): limits apply to the tenant each request names.
    let gateway = start(|config, _| {
        config.gateway.rate_limit.requests_per_second = 0.001;
        config.gateway.rate_limit.burst = 2;
        config
            .gateway
            .rate_limit
            .tenants
            .insert("big".into(), TenantRateLimit { requests_per_second: 0.001, burst: 5 });
    })
    .await;
    let mut c = plain_client(&gateway).await;
    for i in 0..2 {
        c.publish_events(publish("acme", &format!("a{i}"), None)).await.unwrap();
    }
    let e = c.publish_events(publish("acme", "a2", None)).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    let retry = e.get_details_retry_info().expect("a google.rpc.RetryInfo detail");
    assert!(retry.retry_delay.is_some_and(|d| d > Duration::ZERO), "{retry:?}");
    // Other tenants have their own buckets, of their own size.
    c.publish_events(publish("globex", "g0", None)).await.unwrap();
    for i in 0..5 {
        c.publish_events(publish("big", &format!("b{i}"), None)).await.unwrap();
    }
    assert_eq!(code(c.publish_events(publish("big", "b5", None)).await), Code::ResourceExhausted);
    gateway.shutdown.trigger();
    // An open gateway says so.
    let text = String::from_utf8_lossy(&logs().lock().unwrap()).to_string();
    assert!(text.contains("no API keys configured"), "the open gateway warns");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_clients_that_trust_the_ca_and_refuses_plaintext() {
    let certs = TestCerts::generate();
    let (cert, key, client_ca) = (certs.server_cert(), certs.server_key(), certs.ca());
    let gateway = start(|config, _| {
        config.gateway.tls.cert_file = cert.to_str().unwrap().into();
        config.gateway.tls.key_file = key.to_str().unwrap().into();
        config.gateway.tls.client_ca_file = client_ca.to_str().unwrap().into();
    })
    .await;
    let ca = Certificate::from_pem(std::fs::read(certs.ca()).unwrap());
    let identity = Identity::from_pem(
        std::fs::read(certs.client_cert()).unwrap(),
        std::fs::read(certs.client_key()).unwrap(),
    );
    let url = format!("https://localhost:{}", gateway.endpoint.rsplit(':').next().unwrap());
    let tls = ClientTlsConfig::new().ca_certificate(ca.clone()).domain_name("localhost").identity(identity);
    let channel = eventually(Duration::from_secs(10), "the gateway accepts TLS connections", || {
        let (url, tls) = (url.clone(), tls.clone());
        async move { Endpoint::from_shared(url).unwrap().tls_config(tls).unwrap().connect().await.ok() }
    })
    .await;
    let ok = GatewayClient::new(channel).publish_events(publish("acme", "t1", None)).await.unwrap();
    assert_eq!(ok.into_inner().accepted, 1);

    // Plaintext to a TLS port: no answer.
    let plain = format!("http://{}", gateway.endpoint);
    let refused = match GatewayClient::connect(plain).await {
        Err(_) => true,
        Ok(mut c) => c.publish_events(publish("acme", "t2", None)).await.is_err(),
    };
    assert!(refused, "a plaintext call succeeded on a TLS port");

    // Mutual TLS: a client without a certificate is refused.
    let anonymous = ClientTlsConfig::new().ca_certificate(ca).domain_name("localhost");
    let refused = match Endpoint::from_shared(url).unwrap().tls_config(anonymous).unwrap().connect().await {
        Err(_) => true,
        Ok(channel) => GatewayClient::new(channel).publish_events(publish("acme", "t3", None)).await.is_err(),
    };
    assert!(refused, "a client without a certificate was served");
    gateway.shutdown.trigger();
}
