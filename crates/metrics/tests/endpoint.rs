//! The endpoint over real TCP: `/metrics`, `/healthz`, unknown paths and methods, shutdown.

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// One HTTP/1.1 request; (status code, body).
fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(stream, "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_metrics_and_health_until_shutdown() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(shopmind_metrics::serve(listener, async move {
        let _ = stopped.await;
    }));
    shopmind_metrics::global().dead_lettered("endpoint-test", "malformed");

    let (status, body) = tokio::task::spawn_blocking(move || http(addr, "GET", "/metrics")).await.unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("# TYPE shopmind_dead_letters_total counter"), "{body}");
    assert!(
        body.contains("shopmind_dead_letters_total{stage=\"endpoint-test\",code=\"malformed\"} 1"),
        "{body}"
    );
    assert!(body.contains("process_start_time_seconds "), "{body}");

    let (status, body) = tokio::task::spawn_blocking(move || http(addr, "GET", "/healthz")).await.unwrap();
    assert_eq!((status, body.as_str()), (200, "ok"));
    let (status, _) = tokio::task::spawn_blocking(move || http(addr, "GET", "/nope")).await.unwrap();
    assert_eq!(status, 404);
    let (status, _) = tokio::task::spawn_blocking(move || http(addr, "POST", "/metrics")).await.unwrap();
    assert_eq!(status, 405);

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), server).await.unwrap().unwrap();
    assert!(TcpStream::connect(addr).is_err(), "the listener is closed after shutdown");
}
