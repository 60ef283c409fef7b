//! Listing and replaying the dead-letter stream on a real nats-server, and replayed messages
//! reaching only the stage that failed.

#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use shopmind_bus::{Bus, Headers, Message, NatsBus, StartAt};
use shopmind_config::Config;
use shopmind_runtime::consume::{Outcome, consume_loop, dead_letter};
use shopmind_runtime::dlq::{self, Filter, REPLAY_STAGE_HEADER};
use shopmind_runtime::topology::{self, DLQ_STREAM, EVENTS_STREAM};
use shopmind_runtime::{Shutdown, connect};
use shopmind_testkit::{NatsServer, eventually};

const WAIT: Duration = Duration::from_secs(10);

async fn bus() -> (NatsServer, Arc<dyn Bus>) {
    let nats = NatsServer::start();
    let bus: Arc<dyn Bus> = Arc::new(NatsBus::connect(&nats.url(), "dlq-test").await.unwrap());
    connect::ensure_streams(&*bus, &Config::default()).await.unwrap();
    (nats, bus)
}

fn original(subject: &str, body: &str) -> Message {
    Message::new(subject, Bytes::from(body.to_string())).with_headers(Headers::new().with("x-origin", "shop"))
}

#[tokio::test]
async fn list_filters_and_replay_sends_back_to_the_failed_stage_only() {
    let (_nats, bus) = bus().await;
    assert!(dlq::list(&*bus, &Filter::default(), 10).await.unwrap().is_empty(), "empty stream lists nothing");
    let a = original("sm.events.acme.product_viewed", "a");
    let b = original("sm.events.globex.order_status_changed", "b");
    let c = original("sm.events.acme.order_placed", "c");
    dead_letter(&*bus, &a, 11, "feature", "malformed", "not protobuf").await.unwrap();
    dead_letter(&*bus, &b, 12, "notification", "retries_exhausted", "after 10 attempts").await.unwrap();
    dead_letter(&*bus, &c, 13, "feature", "retries_exhausted", "store down").await.unwrap();

    let all = dlq::list(&*bus, &Filter::default(), 10).await.unwrap();
    assert_eq!(
        all.iter().map(|d| d.original_sequence).collect::<Vec<_>>(),
        vec![Some(11), Some(12), Some(13)]
    );
    assert_eq!((all[1].tenant.as_str(), all[1].stage.as_str()), ("globex", "notification"));
    assert_eq!(all[0].original_subject, "sm.events.acme.product_viewed");
    assert_eq!(all[0].reason, "not protobuf");
    let acme = Filter { tenant: Some("acme".into()), ..Filter::default() };
    assert_eq!(dlq::list(&*bus, &acme, 10).await.unwrap().len(), 2);
    let exhausted_feature =
        Filter { stage: Some("feature".into()), code: Some("retries_exhausted".into()), ..Filter::default() };
    let only_c = dlq::list(&*bus, &exhausted_feature, 10).await.unwrap();
    assert_eq!(only_c.len(), 1);
    assert_eq!(dlq::list(&*bus, &Filter::default(), 1).await.unwrap().len(), 1, "limit");

    let report = dlq::replay(&*bus, &exhausted_feature).await.unwrap();
    assert_eq!(report.replayed, 1);
    let left = dlq::list(&*bus, &Filter::default(), 10).await.unwrap();
    assert_eq!(left.len(), 2, "the replayed dead letter is removed");
    assert!(left.iter().all(|d| d.sequence != only_c[0].sequence));

    let mut events = bus.replay(EVENTS_STREAM, None, StartAt::First).await.unwrap();
    let back = tokio::time::timeout(WAIT, events.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(back.message.subject, "sm.events.acme.order_placed");
    assert_eq!(back.message.payload, "c");
    assert_eq!(back.message.headers.get(REPLAY_STAGE_HEADER), Some("feature"));
    assert_eq!(back.message.headers.get("x-origin"), Some("shop"), "original headers are kept");
    assert_eq!(back.message.headers.get(topology::DLQ_CODE_HEADER), None, "dead-letter headers are not");
    assert_eq!(bus.stream_state(DLQ_STREAM).await.unwrap().messages, 2);
}

#[tokio::test]
async fn a_replayed_message_is_processed_by_its_stage_and_skipped_by_the_others() {
    let (_nats, bus) = bus().await;
    let mut headers = Headers::new();
    headers.insert(REPLAY_STAGE_HEADER, "feature");
    let replayed = Message::new("sm.events.acme.product_viewed", "again").with_headers(headers);
    bus.publish(replayed, None).await.unwrap();

    let shutdown = Shutdown::new();
    let mut tasks = Vec::new();
    let seen: Arc<Mutex<Vec<&'static str>>> = Arc::default();
    for stage in ["feature", "notification"] {
        let spec = topology::events_consumer(stage, Vec::new(), Duration::from_secs(30), 5);
        let seen = seen.clone();
        tasks.push(tokio::spawn(consume_loop(bus.clone(), spec, stage, shutdown.clone(), move |_m| {
            seen.lock().unwrap().push(stage);
            async { Outcome::Done }
        })));
    }
    for durable in ["feature", "notification"] {
        let bus = bus.clone();
        eventually(WAIT, "both consumers settled the message", || {
            let bus = bus.clone();
            async move { bus.consumer_lag(EVENTS_STREAM, durable).await.ok().filter(|l| l.is_caught_up()) }
        })
        .await;
    }
    assert_eq!(*seen.lock().unwrap(), vec!["feature"], "only the failed stage processes a replay");
    shutdown.trigger();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
}
