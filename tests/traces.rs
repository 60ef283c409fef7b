//! One trace spans the services: gateway -> feature for an event (the gateway publishes it to the
//! stream), gateway -> inference
//! for a recommendation, with the W3C trace context carried in NATS headers, exported over OTLP
//! to a collector (an in-memory one in this test) when the process shuts down.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use shopmind_proto::v1 as pb;
use shopmind_proto::v1::gateway_client::GatewayClient;
use shopmind_testkit::{NatsServer, RedisServer, eventually, free_port};

/// A received span: (trace id, span id, parent span id, name), ids in hex.
type ReceivedSpan = (String, String, String, String);

/// A collector that keeps every span it is sent.
#[derive(Default, Clone)]
struct Collector(Arc<Mutex<Vec<ReceivedSpan>>>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        let mut spans = self.0.lock().unwrap();
        for rs in request.into_inner().resource_spans {
            for ss in rs.scope_spans {
                for s in ss.spans {
                    spans.push((hex(&s.trace_id), hex(&s.span_id), hex(&s.parent_span_id), s.name));
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

fn traced<T>(message: T, traceparent: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert("traceparent", traceparent.parse().unwrap());
    request
}

#[tokio::test]
async fn one_trace_spans_gateway_feature_and_gateway_inference() {
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let otlp = listener.local_addr().unwrap();
    let server = tonic::transport::Server::builder()
        .add_service(TraceServiceServer::new(collector.clone()))
        .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener));
    tokio::spawn(server);

    let nats = NatsServer::start();
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // One process, but every hop between services goes through NATS (and its headers).
    let mut child = Command::new(env!("CARGO_BIN_EXE_shopmind"))
        .arg("all-in-one")
        .env("SHOPMIND__NATS__URL", nats.url())
        .env("SHOPMIND__REDIS__URL", redis.url())
        .env("SHOPMIND__GATEWAY__LISTEN", format!("127.0.0.1:{port}"))
        .env("SHOPMIND__METRICS__LISTEN", "")
        .env("SHOPMIND__TELEMETRY__OTLP_ENDPOINT", format!("http://{otlp}"))
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("log")).unwrap())
        .spawn()
        .unwrap();
    let endpoint = format!("http://127.0.0.1:{port}");
    let client = eventually(Duration::from_secs(30), "the gateway accepts connections", || {
        let endpoint = endpoint.clone();
        async move { GatewayClient::connect(endpoint).await.ok() }
    })
    .await;

    let publish_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let recommend_trace = "0af7651916cd43dd8448eb211c80319c";
    let event = pb::Event {
        event_id: "t-1".into(),
        tenant: "acme".into(),
        occurred_at: Some(prost_types::Timestamp::from(std::time::SystemTime::now())),
        user_id: "alice".into(),
        session_id: String::new(),
        payload: Some(pb::event::Payload::ProductViewed(pb::ProductViewed {
            item_id: "sku-1".into(),
            source: String::new(),
        })),
    };
    eventually(Duration::from_secs(30), "the gateway publishes", || {
        let mut c = client.clone();
        let request = pb::PublishEventsRequest { tenant: "acme".into(), events: vec![event.clone()] };
        async move {
            c.publish_events(traced(request, &format!("00-{publish_trace}-00f067aa0ba902b7-01"))).await.ok()
        }
    })
    .await;
    eventually(Duration::from_secs(30), "inference answers", || {
        let mut c = client.clone();
        let request =
            pb::RecommendRequest { tenant: "acme".into(), user_id: "alice".into(), ..Default::default() };
        async move {
            c.recommend(traced(request, &format!("00-{recommend_trace}-00f067aa0ba902b7-01"))).await.ok()
        }
    })
    .await;
    // Wait until the feature service has applied the event, then stop: the process exports its
    // spans on exit.
    let bus = shopmind_bus::NatsBus::connect(&nats.url(), "traces-test").await.unwrap();
    eventually(Duration::from_secs(30), "the feature consumer applied the event", || {
        let bus = bus.clone();
        async move {
            use shopmind_bus::Bus;
            bus.consumer_lag("SM_EVENTS", "feature").await.ok().filter(|l| l.is_caught_up())
        }
    })
    .await;
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let status = tokio::task::spawn_blocking(move || child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "{}", std::fs::read_to_string(dir.path().join("log")).unwrap_or_default());

    let spans = collector.0.lock().unwrap().clone();
    let by_trace = |trace: &str| -> BTreeMap<String, (String, String)> {
        spans.iter().filter(|s| s.0 == trace).map(|s| (s.3.clone(), (s.1.clone(), s.2.clone()))).collect()
    };
    let publish = by_trace(publish_trace);
    let (gateway, feature) = (&publish["PublishEvents"], &publish["consume"]);
    assert_eq!(gateway.1, "00f067aa0ba902b7", "the gateway span continues the client's trace");
    assert_eq!(
        feature.1, gateway.0,
        "the feature consumer is a child of the gateway call, which published the event (via the stream's headers)"
    );
    let recommend = by_trace(recommend_trace);
    assert_eq!(
        recommend["recommend"].1, recommend["Recommend"].0,
        "inference is a child of the gateway call"
    );
}
