//! `/metrics` and `/healthz` of a real `shopmind all-in-one` process: after events (one invalid)
//! and a recommendation through gRPC, the counters moved by exactly what happened, the latency
//! histograms saw the calls, and SIGTERM stops the endpoint with the process.

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use shopmind_proto::v1 as pb;
use shopmind_proto::v1::gateway_client::GatewayClient;
use shopmind_testkit::{eventually, free_port};
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;

const WAIT: Duration = Duration::from_secs(60);
const TENANT: &str = "metrics-shop";

/// `shopmind all-in-one`, killed on drop; prints its log if the test failed.
struct AllInOne {
    child: Child,
    log: std::path::PathBuf,
}

impl Drop for AllInOne {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- all-in-one log ---\n{}", std::fs::read_to_string(&self.log).unwrap_or_default());
        }
    }
}

/// A plain HTTP/1.1 GET: (status code, body); `None` if nothing listens.
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

/// The value of one series (name and labels exactly as exposed), or 0 if it is absent.
fn value(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .map_or(0.0, |v| v.parse().unwrap())
}

fn view(id: &str, user: &str, item: &str) -> pb::Event {
    pb::Event {
        event_id: id.into(),
        tenant: String::new(),
        occurred_at: Some(prost_types::Timestamp::from(std::time::SystemTime::now())),
        user_id: user.into(),
        session_id: String::new(),
        payload: Some(pb::event::Payload::ProductViewed(pb::ProductViewed {
            item_id: item.into(),
            source: String::new(),
        })),
    }
}

#[tokio::test]
async fn all_in_one_counts_what_happened() {
    let dir = tempfile::tempdir().unwrap();
    let grpc_port = free_port();
    let log = dir.path().join("all-in-one.log");
    let child = Command::new(env!("CARGO_BIN_EXE_shopmind"))
        .arg("all-in-one")
        .env("SHOPMIND__GATEWAY__LISTEN", format!("127.0.0.1:{grpc_port}"))
        // Port 0: the OS picks a free one; the log says which.
        .env("SHOPMIND__METRICS__LISTEN", "127.0.0.1:0")
        .env("SHOPMIND__TRAINER__INTERVAL_S", "3600")
        .env("RUST_LOG", "info")
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut app = AllInOne { child, log: log.clone() };

    let channel = eventually(WAIT, "the gateway reports SERVING", || async {
        let channel =
            Channel::from_shared(format!("http://127.0.0.1:{grpc_port}")).ok()?.connect().await.ok()?;
        let status = tonic_health::pb::health_client::HealthClient::new(channel.clone())
            .check(tonic_health::pb::HealthCheckRequest { service: "shopmind.v1.Gateway".into() })
            .await
            .ok()?
            .into_inner()
            .status;
        (status == ServingStatus::Serving as i32).then_some(channel)
    })
    .await;
    let metrics_port = eventually(WAIT, "the log names the metrics endpoint's address", || async {
        let text = std::fs::read_to_string(&log).ok()?;
        let line = text.lines().find(|l| l.contains("metrics endpoint serving"))?;
        let addr = line.split_whitespace().find_map(|w| w.strip_prefix("addr="))?;
        addr.parse::<std::net::SocketAddr>().ok().map(|a| a.port())
    })
    .await;
    assert_eq!(get(metrics_port, "/healthz"), Some((200, "ok".to_string())));
    assert_eq!(get(metrics_port, "/nope").map(|r| r.0), Some(404));

    let mut client = GatewayClient::new(channel);
    let events = vec![view("m-1", "alice", "i1"), view("m-2", "alice", "i2"), view("m-3", "bob", "i1")];
    let r = client
        .publish_events(pb::PublishEventsRequest { tenant: TENANT.into(), events })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.accepted, 3);
    let mut invalid = view("m-4", "carol", "i3");
    invalid.occurred_at = None;
    let status = client
        .publish_events(pb::PublishEventsRequest { tenant: TENANT.into(), events: vec![invalid] })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    // Inference may still be loading ONNX Runtime: retry until it answers (once).
    eventually(WAIT, "inference answers", || {
        let mut client = client.clone();
        async move {
            let request = pb::RecommendRequest {
                tenant: TENANT.into(),
                user_id: "alice".into(),
                limit: 3,
                ..Default::default()
            };
            client.recommend(request).await.ok()
        }
    })
    .await;

    // The feature service applies events asynchronously: wait until all three are counted.
    let metrics = eventually(WAIT, "the feature service counted 3 applied events", || async {
        let (status, body) = get(metrics_port, "/metrics")?;
        assert_eq!(status, 200);
        (value(&body, "shopmind_feature_events_total{result=\"applied\"}") >= 3.0).then_some(body)
    })
    .await;
    for (series, expected) in [
        ("shopmind_events_received_total{source=\"grpc\",outcome=\"accepted\"}", 3.0),
        ("shopmind_events_received_total{source=\"grpc\",outcome=\"duplicate\"}", 0.0),
        ("shopmind_events_received_total{source=\"grpc\",outcome=\"rejected\"}", 1.0),
        ("shopmind_events_rejected_total{source=\"grpc\",code=\"missing_field\"}", 1.0),
        ("shopmind_feature_events_total{result=\"applied\"}", 3.0),
        ("shopmind_feature_events_total{result=\"duplicate\"}", 0.0),
        ("shopmind_consumer_deliveries_total{stage=\"feature\"}", 3.0),
        ("shopmind_consumer_settlements_total{stage=\"feature\",result=\"ack\"}", 3.0),
        ("shopmind_consumer_settlements_total{stage=\"feature\",result=\"dead_letter\"}", 0.0),
        ("shopmind_gateway_request_duration_seconds_count{method=\"PublishEvents\",status=\"OK\"}", 1.0),
        (
            "shopmind_gateway_request_duration_seconds_count{method=\"PublishEvents\",status=\"INVALID_ARGUMENT\"}",
            1.0,
        ),
        ("shopmind_gateway_request_duration_seconds_count{method=\"Recommend\",status=\"OK\"}", 1.0),
        ("shopmind_inference_request_duration_seconds_count{result=\"ok\"}", 1.0),
        ("shopmind_build_info{version=\"0.1.0\"}", 1.0),
    ] {
        assert_eq!(value(&metrics, series), expected, "{series} in:\n{metrics}");
    }
    let publish_calls: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("shopmind_gateway_request_duration_seconds_count{method=\"PublishEvents\""))
        .map(|l| l.rsplit_once(' ').unwrap().1.parse::<f64>().unwrap())
        .sum();
    assert!(publish_calls >= 2.0, "{metrics}");
    assert!(value(&metrics, "process_start_time_seconds") > 1.7e9, "{metrics}");
    // Every consumer of the process reports its lag (refreshed every 5 s); the feature backlog is 0.
    for stage in ["ingest", "feature", "notification"] {
        assert!(
            metrics.contains(&format!("shopmind_consumer_lag_messages{{stage=\"{stage}\"}}")),
            "{stage}:\n{metrics}"
        );
    }
    eventually(WAIT, "the feature consumer's lag is 0", || async {
        let (_, body) = get(metrics_port, "/metrics")?;
        (value(&body, "shopmind_consumer_lag_messages{stage=\"feature\"}") == 0.0).then_some(())
    })
    .await;

    // SIGTERM: the process exits cleanly and the endpoint is gone.
    let killed = Command::new("kill").args(["-TERM", &app.child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let status = eventually(WAIT, "all-in-one exits after SIGTERM", || {
        let exited = app.child.try_wait().unwrap();
        async move { exited }
    })
    .await;
    assert!(status.success(), "{status}");
    assert_eq!(get(metrics_port, "/healthz"), None, "the metrics endpoint stopped with the process");
}
