//! The consumer loop's settlement on a real nats-server: retries are redeliveries of the same
//! message and end in an ack, exhausted retries and rejections end in a dead letter (and an ack),
//! and shutdown stops the loop.

#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use shopmind_bus::{Bus, ConsumerSpec, Message, NatsBus, StartAt, StoredMessage};
use shopmind_config::Config;
use shopmind_runtime::consume::{BatchOptions, Outcome, RETRIES_EXHAUSTED, consume_batches, consume_loop};
use shopmind_runtime::topology::{
    self, DLQ_CODE_HEADER, DLQ_REASON_HEADER, DLQ_SEQUENCE_HEADER, DLQ_STREAM, DLQ_SUBJECT_HEADER,
    EVENTS_STREAM,
};
use shopmind_runtime::{Shutdown, connect};
use shopmind_testkit::{NatsServer, eventually};
use tokio::task::JoinHandle;

const WAIT: Duration = Duration::from_secs(10);
const STAGE: &str = "test-stage";
const SUBJECT: &str = "sm.events.acme.product_viewed";
const RETRY_DELAY: Duration = Duration::from_millis(50);

/// The payloads the handler was given, in order.
type Seen = Arc<Mutex<Vec<Bytes>>>;
type LoopTask = JoinHandle<Result<(), shopmind_bus::BusError>>;

struct Setup {
    bus: Arc<dyn Bus>,
    _nats: NatsServer,
}

async fn setup() -> Setup {
    let nats = NatsServer::start();
    let bus: Arc<dyn Bus> = Arc::new(NatsBus::connect(&nats.url(), "consume-test").await.unwrap());
    connect::ensure_streams(&*bus, &Config::default()).await.unwrap();
    Setup { bus, _nats: nats }
}

fn spec(max_deliver: i64) -> ConsumerSpec {
    topology::events_consumer("worker", Vec::new(), Duration::from_secs(30), max_deliver)
}

/// Runs `consume_loop` with a handler that records each payload it is given and answers with
/// `decide(number of the call, starting at 1)`.
fn run_loop(
    bus: &Arc<dyn Bus>,
    spec: ConsumerSpec,
    shutdown: &Shutdown,
    decide: impl Fn(usize) -> Outcome + Send + 'static,
) -> (Seen, LoopTask) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let recorder = seen.clone();
    let task = tokio::spawn(consume_loop(bus.clone(), spec, STAGE, shutdown.clone(), move |m: Message| {
        let calls = {
            let mut seen = recorder.lock().unwrap();
            seen.push(m.payload);
            seen.len()
        };
        std::future::ready(decide(calls))
    }));
    (seen, task)
}

fn calls(seen: &Mutex<Vec<Bytes>>) -> Vec<Bytes> {
    seen.lock().unwrap().clone()
}

async fn wait_caught_up(bus: &dyn Bus) {
    eventually(WAIT, "the consumer acked every message", || async {
        bus.consumer_lag(EVENTS_STREAM, "worker").await.ok()?.is_caught_up().then_some(())
    })
    .await;
}

async fn dead_letter(bus: &dyn Bus) -> StoredMessage {
    let subject = topology::dlq_subject("acme", STAGE);
    let mut replay = bus.replay(DLQ_STREAM, Some(&subject), StartAt::First).await.unwrap();
    tokio::time::timeout(WAIT, replay.next()).await.expect("a dead letter in time").unwrap().unwrap()
}

async fn stop(shutdown: &Shutdown, task: LoopTask) {
    shutdown.trigger();
    let result = tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the loop stops within 5 s of shutdown")
        .unwrap();
    assert!(result.is_ok(), "{result:?}");
}

#[tokio::test]
async fn a_retried_message_is_delivered_again_and_acked_when_done() {
    let s = setup().await;
    s.bus.publish(Message::new(SUBJECT, "m1"), None).await.unwrap();
    let shutdown = Shutdown::new();
    let (seen, task) = run_loop(&s.bus, spec(5), &shutdown, |call| {
        if call < 3 {
            Outcome::Retry { delay: RETRY_DELAY, reason: format!("transient failure {call}") }
        } else {
            Outcome::Done
        }
    });
    eventually(WAIT, "three deliveries", || async { (calls(&seen).len() >= 3).then_some(()) }).await;
    wait_caught_up(&*s.bus).await;
    // Done means acked: nothing comes again.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(calls(&seen), vec![Bytes::from_static(b"m1"); 3], "the same message, three times");
    assert_eq!(s.bus.stream_state(DLQ_STREAM).await.unwrap().messages, 0, "nothing dead-lettered");
    stop(&shutdown, task).await;
}

#[tokio::test]
async fn exhausted_retries_end_in_a_dead_letter_and_an_ack() {
    let s = setup().await;
    let published = s.bus.publish(Message::new(SUBJECT, "m1"), None).await.unwrap();
    let shutdown = Shutdown::new();
    let (seen, task) = run_loop(&s.bus, spec(3), &shutdown, |_| Outcome::Retry {
        delay: RETRY_DELAY,
        reason: "store down".into(),
    });
    let dead = dead_letter(&*s.bus).await;
    assert_eq!(dead.message.subject, "sm.dlq.acme.test-stage");
    assert_eq!(dead.message.headers.get(DLQ_CODE_HEADER), Some(RETRIES_EXHAUSTED));
    assert_eq!(dead.message.headers.get(DLQ_CODE_HEADER), Some("retries_exhausted"));
    let reason = dead.message.headers.get(DLQ_REASON_HEADER).unwrap();
    assert!(reason.contains("after 3 attempts") && reason.contains("store down"), "{reason}");
    assert_eq!(dead.message.headers.get(DLQ_SUBJECT_HEADER), Some(SUBJECT));
    assert_eq!(dead.message.headers.get(DLQ_SEQUENCE_HEADER), Some(published.sequence.to_string().as_str()));
    assert_eq!(dead.message.payload, Bytes::from_static(b"m1"));

    wait_caught_up(&*s.bus).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(calls(&seen).len(), 3, "max_deliver bounds the attempts");
    assert_eq!(s.bus.stream_state(DLQ_STREAM).await.unwrap().messages, 1, "one dead letter");
    stop(&shutdown, task).await;
}

#[tokio::test]
async fn a_rejected_message_is_dead_lettered_at_once_and_the_next_one_processed() {
    let s = setup().await;
    s.bus.publish(Message::new(SUBJECT, "bad"), None).await.unwrap();
    s.bus.publish(Message::new("sm.events.acme.added_to_cart", "good"), None).await.unwrap();
    let shutdown = Shutdown::new();
    let (seen, task) = run_loop(&s.bus, spec(5), &shutdown, |call| {
        if call == 1 {
            Outcome::Reject { code: "malformed", reason: "not an event".into() }
        } else {
            Outcome::Done
        }
    });
    let dead = dead_letter(&*s.bus).await;
    assert_eq!(dead.message.headers.get(DLQ_CODE_HEADER), Some("malformed"));
    assert_eq!(dead.message.headers.get(DLQ_REASON_HEADER), Some("not an event"));
    assert_eq!(dead.message.payload, Bytes::from_static(b"bad"));
    wait_caught_up(&*s.bus).await;
    assert_eq!(
        calls(&seen),
        [Bytes::from_static(b"bad"), Bytes::from_static(b"good")],
        "no retry of a reject"
    );
    stop(&shutdown, task).await;
}

#[tokio::test]
async fn a_dead_letter_from_a_subject_without_a_tenant_goes_to_the_unknown_tenant() {
    let s = setup().await;
    // A subject of the events stream whose tenant token is not a valid tenant.
    s.bus.publish(Message::new("sm.events.Not-A-Tenant.x", "m"), None).await.unwrap();
    let shutdown = Shutdown::new();
    let (_seen, task) = run_loop(&s.bus, spec(5), &shutdown, |_| Outcome::Reject {
        code: "invalid_tenant",
        reason: "no tenant".into(),
    });
    let subject = topology::dlq_subject(topology::UNKNOWN_TENANT_TOKEN, STAGE);
    let mut replay = s.bus.replay(DLQ_STREAM, Some(&subject), StartAt::First).await.unwrap();
    let dead = tokio::time::timeout(WAIT, replay.next()).await.expect("a dead letter").unwrap().unwrap();
    assert_eq!(dead.message.subject, "sm.dlq._unknown.test-stage");
    assert_eq!(dead.message.headers.get(DLQ_SUBJECT_HEADER), Some("sm.events.Not-A-Tenant.x"));
    wait_caught_up(&*s.bus).await;
    stop(&shutdown, task).await;
}

/// `consume_batches`: messages come in batches (never larger than asked), each message of a
/// batch is settled by its own outcome (done: acked without confirmation; retry: delivered
/// again; reject: dead-lettered; none returned: retried), and every message ends settled.
#[tokio::test]
async fn batches_settle_each_message_by_its_own_outcome() {
    let s = setup().await;
    for i in 0..40 {
        s.bus.publish(Message::new(SUBJECT, format!("m{i}")), None).await.unwrap();
    }
    s.bus.publish(Message::new(SUBJECT, "reject-me"), None).await.unwrap();
    s.bus.publish(Message::new(SUBJECT, "retry-me"), None).await.unwrap();
    s.bus.publish(Message::new(SUBJECT, "forget-me"), None).await.unwrap();
    let shutdown = Shutdown::new();
    let batches: Arc<Mutex<Vec<Vec<Bytes>>>> = Arc::new(Mutex::new(Vec::new()));
    let recorder = batches.clone();
    let options = BatchOptions { max_batch: 8, max_in_flight: 16, unconfirmed_acks: true };
    let task = tokio::spawn(consume_batches(s.bus.clone(), spec(5), STAGE, options, shutdown.clone(), {
        move |messages: Vec<Message>| {
            let payloads: Vec<Bytes> = messages.iter().map(|m| m.payload.clone()).collect();
            let retried_before = {
                let mut seen = recorder.lock().unwrap();
                let before = seen.iter().flatten().any(|p| p == "retry-me");
                seen.push(payloads.clone());
                before
            };
            let outcomes: Vec<Outcome> = payloads
                .iter()
                .filter(|p| *p != "forget-me" || retried_before)
                .map(|p| match p.as_ref() {
                    b"reject-me" => Outcome::Reject { code: "malformed", reason: "bad".into() },
                    b"retry-me" if !retried_before => {
                        Outcome::Retry { delay: RETRY_DELAY, reason: "later".into() }
                    }
                    _ => Outcome::Done,
                })
                .collect();
            std::future::ready(outcomes)
        }
    }));
    let dead = dead_letter(&*s.bus).await;
    assert_eq!(dead.message.payload, Bytes::from_static(b"reject-me"));
    wait_caught_up(&*s.bus).await;
    let seen = batches.lock().unwrap().clone();
    assert!(
        seen.iter().all(|b| !b.is_empty() && b.len() <= 8),
        "batch sizes {:?}",
        seen.iter().map(Vec::len)
    );
    let all: Vec<Bytes> = seen.into_iter().flatten().collect();
    for i in 0..40 {
        let m = Bytes::from(format!("m{i}"));
        assert_eq!(all.iter().filter(|p| **p == m).count(), 1, "m{i} handled once, acked");
    }
    assert_eq!(all.iter().filter(|p| *p == "reject-me").count(), 1, "no retry of a reject");
    assert!(all.iter().filter(|p| *p == "retry-me").count() >= 2, "a retry is delivered again");
    assert!(all.iter().filter(|p| *p == "forget-me").count() >= 2, "a missing outcome is a retry");
    assert_eq!(s.bus.stream_state(DLQ_STREAM).await.unwrap().messages, 1, "one dead letter");
    stop(&shutdown, task).await;
}
