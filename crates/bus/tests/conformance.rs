//! One conformance suite for both bus implementations: every case runs against the in-process
//! bus and against a real nats-server (started per test by the testkit).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use shopmind_bus::{
    Bus, BusError, ConsumerSpec, Delivery, DeliveryStream, Headers, Message, StartAt, StreamSpec,
    TraceContext,
};

const WAIT: Duration = Duration::from_secs(10);

fn stream_spec(name: &str, subjects: &[&str]) -> StreamSpec {
    StreamSpec {
        name: name.into(),
        subjects: subjects.iter().map(|s| s.to_string()).collect(),
        max_age: Duration::ZERO,
        duplicate_window: Duration::from_secs(120),
        max_bytes: -1,
    }
}

fn consumer_spec(durable: &str, ack_wait: Duration) -> ConsumerSpec {
    ConsumerSpec {
        stream: "EV".into(),
        durable: durable.into(),
        filter_subjects: vec![],
        ack_wait,
        max_deliver: -1,
    }
}

async fn setup(bus: &dyn Bus) {
    bus.ensure_stream(&stream_spec("EV", &["ev.>"])).await.unwrap();
}

async fn publish(bus: &dyn Bus, subject: &str, body: &str) -> u64 {
    bus.publish(Message::new(subject, Bytes::from(body.to_string())), None).await.unwrap().sequence
}

async fn next(deliveries: &mut DeliveryStream) -> Delivery {
    tokio::time::timeout(WAIT, deliveries.next()).await.expect("a delivery in time").unwrap().unwrap()
}

/// Asserts that nothing is delivered within `quiet` (a bounded negative check).
async fn assert_quiet(deliveries: &mut DeliveryStream, quiet: Duration) {
    if let Ok(Some(d)) = tokio::time::timeout(quiet, deliveries.next()).await {
        let d = d.unwrap();
        panic!("unexpected delivery of seq {} ({:?})", d.stream_sequence, d.message.payload);
    }
}

pub async fn publish_consume_ack_in_order_with_headers(bus: Arc<dyn Bus>) {
    setup(&*bus).await;
    let trace = TraceContext::new_root();
    let mut headers = Headers::new().with("x-kind", "view");
    headers.set_trace(&trace);
    for i in 0..3 {
        let m =
            Message::new(format!("ev.t1.k{i}"), Bytes::from(format!("m{i}"))).with_headers(headers.clone());
        bus.publish(m, None).await.unwrap();
    }
    let mut deliveries = bus.consume(&consumer_spec("c", Duration::from_secs(30))).await.unwrap();
    for i in 0..3u64 {
        let d = next(&mut deliveries).await;
        assert_eq!(d.message.payload, Bytes::from(format!("m{i}")));
        assert_eq!(d.message.subject, format!("ev.t1.k{i}"));
        assert_eq!(d.message.headers.get("x-kind"), Some("view"));
        assert_eq!(d.message.headers.trace(), Some(trace));
        assert_eq!(d.stream_sequence, i + 1);
        assert_eq!(d.delivered, 1);
        d.acker.ack().await.unwrap();
    }
    assert_quiet(&mut deliveries, Duration::from_millis(300)).await;
}

pub async fn unacked_message_is_redelivered_after_ack_wait(bus: Arc<dyn Bus>) {
    setup(&*bus).await;
    publish(&*bus, "ev.t1.a", "x").await;
    let mut deliveries = bus.consume(&consumer_spec("c", Duration::from_millis(500))).await.unwrap();
    let first = next(&mut deliveries).await;
    let seq = first.stream_sequence;
    drop(first); // neither acked nor nacked: as if the consumer crashed
    let again = next(&mut deliveries).await;
    assert_eq!(again.stream_sequence, seq);
    assert_eq!(again.delivered, 2);
    again.acker.ack().await.unwrap();
    assert_quiet(&mut deliveries, Duration::from_millis(900)).await;
}

pub async fn unconfirmed_acks_settle_like_acks(bus: Arc<dyn Bus>) {
    setup(&*bus).await;
    for i in 0..5 {
        publish(&*bus, "ev.t1.a", &format!("u{i}")).await;
    }
    let spec = consumer_spec("c", Duration::from_millis(500));
    let mut deliveries = bus.consume(&spec).await.unwrap();
    for i in 0..5 {
        let d = next(&mut deliveries).await;
        assert_eq!(d.message.payload, Bytes::from(format!("u{i}")));
        d.acker.ack_unconfirmed().await.unwrap();
    }
    bus.flush().await.unwrap();
    // Well past the ack wait: nothing comes back, and the consumer has nothing outstanding.
    assert_quiet(&mut deliveries, Duration::from_millis(1200)).await;
    let lag = bus.consumer_lag("EV", "c").await.unwrap();
    assert!(lag.is_caught_up(), "{lag:?}");
}

pub async fn nak_redelivers_and_term_does_not(bus: Arc<dyn Bus>) {
    setup(&*bus).await;
    publish(&*bus, "ev.t1.a", "nak-me").await;
    publish(&*bus, "ev.t1.b", "term-me").await;
    let mut deliveries = bus.consume(&consumer_spec("c", Duration::from_millis(600))).await.unwrap();
    let a = next(&mut deliveries).await;
    assert_eq!(a.message.payload, "nak-me");
    a.acker.nak(None).await.unwrap();
    let mut seen_nak_again = false;
    for _ in 0..2 {
        let d = next(&mut deliveries).await;
        if d.message.payload == "nak-me" {
            assert_eq!(d.delivered, 2);
            seen_nak_again = true;
            d.acker.ack().await.unwrap();
        } else {
            assert_eq!(d.message.payload, "term-me");
            d.acker.term().await.unwrap();
        }
    }
    assert!(seen_nak_again, "a nacked message must come back");
    assert_quiet(&mut deliveries, Duration::from_millis(1500)).await;
}

pub async fn duplicate_message_ids_are_stored_once(bus: Arc<dyn Bus>) {
    setup(&*bus).await;
    let first = bus.publish(Message::new("ev.t1.a", "one"), Some("evt-1")).await.unwrap();
    let second = bus.publish(Message::new("ev.t1.a", "one again"), Some("evt-1")).await.unwrap();
    let other = bus.publish(Message::new("ev.t1.a", "two"), Some("evt-2")).await.unwrap();
    assert!(!first.duplicate);
    assert!(second.duplicate);
    assert_eq!(second.sequence, first.sequence);
    assert!(!other.duplicate);
    assert_eq!(first.stream, "EV");
    let state = bus.stream_state("EV").await.unwrap();
    assert_eq!(state.messages, 2);
    assert_eq!(state.last_sequence, other.sequence);
}

pub async fn readers_of_one_durable_share_the_work(bus: Arc<dyn Bus>) {
    setup(&*bus).await;
    for i in 0..20 {
        publish(&*bus, "ev.t1.a", &i.to_string()).await;
    }
    let spec = consumer_spec("shared", Duration::from_secs(30));
    let a = bus.consume(&spec).await.unwrap();
    let b = bus.consume(&spec).await.unwrap();
    let mut merged = futures::stream::select(a, b);
    let mut seen = BTreeSet::new();
    while seen.len() < 20 {
        let d = tokio::time::timeout(WAIT, merged.next()).await.expect("in time").unwrap().unwrap();
        assert!(seen.insert(d.stream_sequence), "seq {} delivered twice", d.stream_sequence);
        d.acker.ack().await.unwrap();
    }
    assert_eq!(seen, (1..=20).collect());
}

pub async fn consumer_lag_counts_undelivered_and_unacked(bus: Arc<dyn Bus>) {
    setup(&*bus).await;
    let err = bus.consumer_lag("EV", "nobody").await.unwrap_err();
    assert!(matches!(err, BusError::UnknownConsumer { .. }), "{err:?}");
    let mut spec = consumer_spec("lag", Duration::from_secs(30));
    spec.filter_subjects = vec!["ev.*.order".into()];
    let mut deliveries = bus.consume(&spec).await.unwrap();
    for i in 0..3 {
        publish(&*bus, "ev.t1.order", &format!("o{i}")).await;
        publish(&*bus, "ev.t1.view", &format!("v{i}")).await;
    }
    let first = next(&mut deliveries).await;
    // NATS pulls ahead of the reader, so what is "pending" vs "ack pending" may differ by backend;
    // their sum is the backlog, and it must shrink to zero as messages are acked.
    let lag = bus.consumer_lag("EV", "lag").await.unwrap();
    assert_eq!(lag.pending + lag.ack_pending, 3, "{lag:?}");
    assert!(lag.ack_pending >= 1);
    first.acker.ack().await.unwrap();
    for _ in 0..2 {
        next(&mut deliveries).await.acker.ack().await.unwrap();
    }
    let lag = bus.consumer_lag("EV", "lag").await.unwrap();
    assert!(lag.is_caught_up(), "{lag:?}");
}

pub async fn deleted_messages_are_gone_for_readers(bus: Arc<dyn Bus>) {
    setup(&*bus).await;
    for i in 1..=3 {
        publish(&*bus, "ev.t1.a", &format!("m{i}")).await;
    }
    assert!(bus.delete_message("EV", 2).await.unwrap());
    assert!(!bus.delete_message("EV", 2).await.unwrap(), "already deleted");
    assert_eq!(bus.stream_state("EV").await.unwrap().messages, 2);
    let mut all = bus.replay("EV", None, StartAt::First).await.unwrap();
    let mut seqs = Vec::new();
    for _ in 0..2 {
        seqs.push(tokio::time::timeout(WAIT, all.next()).await.unwrap().unwrap().unwrap().sequence);
    }
    assert_eq!(seqs, vec![1, 3]);
}

pub async fn durable_resumes_after_the_last_ack(bus: Arc<dyn Bus>) {
    setup(&*bus).await;
    for i in 0..3 {
        publish(&*bus, "ev.t1.a", &format!("old{i}")).await;
    }
    let spec = consumer_spec("resume", Duration::from_secs(30));
    {
        let mut deliveries = bus.consume(&spec).await.unwrap();
        for _ in 0..3 {
            next(&mut deliveries).await.acker.ack().await.unwrap();
        }
    }
    publish(&*bus, "ev.t1.a", "new").await;
    let mut deliveries = bus.consume(&spec).await.unwrap();
    let d = next(&mut deliveries).await;
    assert_eq!(d.message.payload, "new");
    d.acker.ack().await.unwrap();
}

pub async fn filters_select_subjects(bus: Arc<dyn Bus>) {
    setup(&*bus).await;
    publish(&*bus, "ev.t1.view", "v1").await;
    publish(&*bus, "ev.t1.order", "o1").await;
    publish(&*bus, "ev.t2.order", "o2").await;
    let mut spec = consumer_spec("orders", Duration::from_secs(30));
    spec.filter_subjects = vec!["ev.*.order".into()];
    let mut deliveries = bus.consume(&spec).await.unwrap();
    for want in ["o1", "o2"] {
        let d = next(&mut deliveries).await;
        assert_eq!(d.message.payload, want);
        d.acker.ack().await.unwrap();
    }
    assert_quiet(&mut deliveries, Duration::from_millis(300)).await;
}

pub async fn replay_reads_from_the_requested_position(bus: Arc<dyn Bus>) {
    setup(&*bus).await;
    for i in 1..=5 {
        publish(&*bus, "ev.t1.a", &format!("m{i}")).await;
    }
    let mut all = bus.replay("EV", None, StartAt::First).await.unwrap();
    for i in 1..=5u64 {
        let m = tokio::time::timeout(WAIT, all.next()).await.unwrap().unwrap().unwrap();
        assert_eq!(m.sequence, i);
        assert_eq!(m.pending, 5 - i, "pending after seq {i}");
    }
    let mut from3 = bus.replay("EV", None, StartAt::Sequence(3)).await.unwrap();
    let m = tokio::time::timeout(WAIT, from3.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(m.message.payload, "m3");

    let mut new = bus.replay("EV", Some("ev.t1.>"), StartAt::New).await.unwrap();
    // The replay follows the stream: a message published now arrives.
    let bus2 = bus.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        publish(&*bus2, "ev.t1.a", "m6").await;
    });
    let m = tokio::time::timeout(WAIT, new.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(m.message.payload, "m6");
    assert_eq!(m.sequence, 6);
}

pub async fn publishing_outside_any_stream_or_to_a_bad_subject_fails(bus: Arc<dyn Bus>) {
    setup(&*bus).await;
    let err = bus.publish(Message::new("nowhere.x", "x"), None).await.unwrap_err();
    assert!(matches!(err, BusError::NoStream(ref s) if s == "nowhere.x"), "{err:?}");
    let err = bus.publish(Message::new("ev.*.x", "x"), None).await.unwrap_err();
    assert!(matches!(err, BusError::InvalidSubject(_)), "{err:?}");
    let err = bus.stream_state("NOPE").await.unwrap_err();
    assert!(matches!(err, BusError::UnknownStream(_)), "{err:?}");
}

pub async fn ensure_stream_is_idempotent_and_keeps_messages(bus: Arc<dyn Bus>) {
    setup(&*bus).await;
    publish(&*bus, "ev.t1.a", "kept").await;
    setup(&*bus).await;
    let mut spec = stream_spec("EV", &["ev.>"]);
    spec.max_age = Duration::from_secs(3600);
    bus.ensure_stream(&spec).await.unwrap();
    assert_eq!(bus.stream_state("EV").await.unwrap().messages, 1);
}

pub async fn request_reply_with_queue_groups_and_errors(bus: Arc<dyn Bus>) {
    let err = bus.request(Message::new("echo.x", "x"), Duration::from_secs(1)).await.unwrap_err();
    assert!(matches!(err, BusError::NoResponders(_)), "{err:?}");

    let answered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for _ in 0..2 {
        let mut requests = bus.serve("echo.*", "echo").await.unwrap();
        let answered = answered.clone();
        tokio::spawn(async move {
            while let Some(req) = requests.next().await {
                answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut body = b"echo:".to_vec();
                body.extend_from_slice(&req.message.payload);
                let headers = Headers::new().with("x-echo", req.message.subject.clone());
                req.respond(headers, Bytes::from(body)).await.unwrap();
            }
        });
    }
    // Subscriptions on NATS become active asynchronously; wait until the service answers.
    shopmind_testkit::eventually(WAIT, "echo service answers", || {
        let bus = bus.clone();
        async move { bus.request(Message::new("echo.ping", "ping"), Duration::from_secs(1)).await.ok() }
    })
    .await;
    answered.store(0, std::sync::atomic::Ordering::SeqCst);
    for i in 0..10 {
        let reply =
            bus.request(Message::new("echo.x", format!("{i}")), Duration::from_secs(5)).await.unwrap();
        assert_eq!(reply.payload, Bytes::from(format!("echo:{i}")));
        assert_eq!(reply.headers.get("x-echo"), Some("echo.x"));
    }
    assert_eq!(answered.load(std::sync::atomic::Ordering::SeqCst), 10, "one responder per request");

    // A service that receives but never answers: the request times out.
    let mut silent = bus.serve("silent.x", "silent").await.unwrap();
    let keep = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Some(req) = silent.next().await {
            held.push(req);
        }
    });
    // The subscription is active on the server once everything sent before is flushed.
    bus.flush().await.unwrap();
    let err = bus.request(Message::new("silent.x", "x"), Duration::from_millis(300)).await.unwrap_err();
    assert!(matches!(err, BusError::Timeout { .. }), "{err:?}");
    keep.abort();
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(std::sync::Arc::new(shopmind_bus::MemoryBus::new())).await;
                }
            )*
        }
        mod nats {
            $(
                #[tokio::test]
                async fn $case() {
                    let server = shopmind_testkit::NatsServer::start();
                    let bus = shopmind_bus::NatsBus::connect(&server.url(), "conformance").await.unwrap();
                    super::$case(std::sync::Arc::new(bus)).await;
                    drop(server);
                }
            )*
        }
    };
}

conformance!(
    publish_consume_ack_in_order_with_headers,
    unacked_message_is_redelivered_after_ack_wait,
    unconfirmed_acks_settle_like_acks,
    nak_redelivers_and_term_does_not,
    duplicate_message_ids_are_stored_once,
    readers_of_one_durable_share_the_work,
    durable_resumes_after_the_last_ack,
    consumer_lag_counts_undelivered_and_unacked,
    deleted_messages_are_gone_for_readers,
    filters_select_subjects,
    replay_reads_from_the_requested_position,
    publishing_outside_any_stream_or_to_a_bad_subject_fails,
    ensure_stream_is_idempotent_and_keeps_messages,
    request_reply_with_queue_groups_and_errors,
);
