//! The feature service against a real nats-server and redis-server: events change features, a
//! redelivered event is applied once, undecodable or invalid events are dead-lettered with their
//! reason while later events are still applied, and every message is acked.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use prost::Message as _;
use shopmind_bus::{Bus, Headers, Message, NatsBus, StartAt, StoredMessage};
use shopmind_config::Config;
use shopmind_domain::{
    Event, EventId, InteractionKind, ItemId, OrderId, OrderLine, Payload, TenantId, UnixMillis, UserId,
};
use shopmind_features::{UserContext, read_user_context};
use shopmind_runtime::topology::{
    self, DLQ_CODE_HEADER, DLQ_REASON_HEADER, DLQ_SEQUENCE_HEADER, DLQ_STREAM, DLQ_SUBJECT_HEADER,
    EVENTS_STREAM,
};
use shopmind_runtime::{Shutdown, connect};
use shopmind_store::{FeatureStore, RedisStore};
use shopmind_testkit::{NatsServer, RedisServer, eventually};
use tokio::task::JoinHandle;

const WAIT: Duration = Duration::from_secs(10);

/// A running feature service on a private nats-server and redis-server.
struct Feature {
    bus: Arc<dyn Bus>,
    store: Arc<dyn FeatureStore>,
    shutdown: Shutdown,
    task: JoinHandle<Result<(), shopmind_feature::FeatureError>>,
    _nats: NatsServer,
    _redis: RedisServer,
}

impl Feature {
    async fn start() -> Self {
        let nats = NatsServer::start();
        let redis = RedisServer::start();
        let bus: Arc<dyn Bus> = Arc::new(NatsBus::connect(&nats.url(), "feature-test").await.unwrap());
        let store: Arc<dyn FeatureStore> = Arc::new(RedisStore::connect(&redis.url()).await.unwrap());
        let config = Config::default();
        connect::ensure_streams(&*bus, &config).await.unwrap();
        let shutdown = Shutdown::new();
        let task = tokio::spawn(shopmind_feature::run(config, bus.clone(), store.clone(), shutdown.clone()));
        Self { bus, store, shutdown, task, _nats: nats, _redis: redis }
    }

    /// Publishes `payload` to the events stream; returns its stream sequence.
    async fn publish_raw(&self, subject: &str, payload: Vec<u8>, headers: Headers, msg_id: &str) -> u64 {
        let message = Message::new(subject, Bytes::from(payload)).with_headers(headers);
        let published = self.bus.publish(message, Some(msg_id)).await.unwrap();
        assert!(!published.duplicate, "the test publishes distinct message ids");
        published.sequence
    }

    /// Publishes the canonical form of `event`, as ingest does.
    async fn publish(&self, event: &Event, msg_id: &str) -> u64 {
        let subject = topology::event_subject(&event.tenant, event.kind());
        self.publish_raw(&subject, event.to_proto().encode_to_vec(), Headers::new(), msg_id).await
    }

    async fn context(&self, user: &str) -> UserContext {
        read_user_context(&*self.store, &tenant(), &UserId::parse(user).unwrap(), 50, 50).await.unwrap()
    }

    /// Waits until the durable consumer has been given every message and acked it.
    async fn wait_caught_up(&self) {
        eventually(WAIT, "the feature consumer acked every event", || async {
            let lag = self.bus.consumer_lag(EVENTS_STREAM, shopmind_feature::DURABLE).await.ok()?;
            lag.is_caught_up().then_some(())
        })
        .await;
    }

    async fn stop(self) {
        self.shutdown.trigger();
        let result = tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("feature stops within 5 s of shutdown")
            .unwrap();
        assert!(result.is_ok(), "feature returned {result:?}");
    }
}

fn tenant() -> TenantId {
    TenantId::parse("acme").unwrap()
}

fn item(s: &str) -> ItemId {
    ItemId::parse(s).unwrap()
}

/// Events made one after another get strictly increasing times (features order by event time).
fn event(id: &str, user: &str, payload: Payload) -> Event {
    static TICK: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);
    let tick = TICK.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    Event {
        id: EventId::parse(id).unwrap(),
        tenant: tenant(),
        occurred_at: UnixMillis(UnixMillis::now().0 + tick),
        user: Some(UserId::parse(user).unwrap()),
        session: None,
        payload,
    }
}

fn viewed(id: &str, user: &str, it: &str) -> Event {
    event(id, user, Payload::ProductViewed { item: item(it) })
}

fn popularity(ctx: &UserContext, it: &str) -> Option<f64> {
    ctx.popular.iter().find(|(i, _)| i.as_str() == it).map(|(_, s)| *s)
}

async fn dead_letters(bus: &dyn Bus, n: usize) -> Vec<StoredMessage> {
    let subject = topology::dlq_subject("acme", "feature");
    let mut replay = bus.replay(DLQ_STREAM, Some(&subject), StartAt::First).await.unwrap();
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let m = tokio::time::timeout(WAIT, replay.next()).await.expect("a dead letter in time").unwrap();
        out.push(m.unwrap());
    }
    out
}

#[tokio::test]
async fn events_from_the_stream_update_features() {
    let feature = Feature::start().await;
    feature.publish(&viewed("e1", "u1", "i1"), "acme:e1").await;
    let cart = Payload::AddedToCart { item: item("i2"), quantity: 1, unit_price: None };
    feature.publish(&event("e2", "u1", cart), "acme:e2").await;
    let order = Payload::OrderPlaced {
        order: OrderId::parse("o1").unwrap(),
        lines: vec![OrderLine { item: item("i3"), quantity: 1, unit_price: None }],
    };
    feature.publish(&event("e3", "u1", order), "acme:e3").await;

    let ctx = eventually(WAIT, "the three events are applied", || async {
        let ctx = feature.context("u1").await;
        (ctx.recent.len() == 3).then_some(ctx)
    })
    .await;
    let recent: Vec<(&str, InteractionKind)> = ctx.recent.iter().map(|i| (i.item.as_str(), i.kind)).collect();
    assert_eq!(
        recent,
        [("i3", InteractionKind::Purchase), ("i2", InteractionKind::Cart), ("i1", InteractionKind::View)],
        "newest first"
    );
    assert!(ctx.cart.contains(&item("i2")));
    assert!(ctx.bought.contains(&item("i3")));
    assert_eq!(popularity(&ctx, "i1"), Some(1.0));
    assert_eq!(popularity(&ctx, "i2"), Some(2.0));
    assert_eq!(popularity(&ctx, "i3"), Some(3.0));
    // Another user's features are untouched.
    assert!(feature.context("u2").await.recent.is_empty());

    feature.wait_caught_up().await;
    assert_eq!(feature.bus.stream_state(DLQ_STREAM).await.unwrap().messages, 0);
    feature.stop().await;
}

#[tokio::test]
async fn the_same_event_delivered_twice_is_applied_once() {
    let feature = Feature::start().await;
    let e1 = viewed("e1", "u1", "i1");
    // Two message ids, so JetStream's de-duplication does not catch it: only the service's can.
    feature.publish(&e1, "first-publish").await;
    feature.publish(&e1, "second-publish").await;
    feature.publish(&viewed("e2", "u1", "i2"), "acme:e2").await;
    assert_eq!(feature.bus.stream_state(EVENTS_STREAM).await.unwrap().messages, 3);

    feature.wait_caught_up().await;
    let ctx = feature.context("u1").await;
    assert_eq!(popularity(&ctx, "i1"), Some(1.0), "counted once: {:?}", ctx.popular);
    assert_eq!(popularity(&ctx, "i2"), Some(1.0));
    let recent: Vec<&str> = ctx.recent.iter().map(|i| i.item.as_str()).collect();
    assert_eq!(recent, ["i2", "i1"], "one history entry per event");
    assert_eq!(feature.bus.stream_state(DLQ_STREAM).await.unwrap().messages, 0, "a duplicate is no failure");
    feature.stop().await;
}

#[tokio::test]
async fn undecodable_and_invalid_events_are_dead_lettered_and_later_events_applied() {
    let feature = Feature::start().await;
    let subject = topology::event_subject(&tenant(), shopmind_domain::EventKind::ProductViewed);
    let garbage = vec![0xff, 0xff, 0xff, 0xff, 0x0f];
    let headers = Headers::new().with("x-origin", "test");
    let garbage_seq = feature.publish_raw(&subject, garbage.clone(), headers.clone(), "garbage").await;

    let mut no_id = viewed("placeholder", "u1", "i1").to_proto();
    no_id.event_id = String::new();
    let no_id = no_id.encode_to_vec();
    let no_id_seq = feature.publish_raw(&subject, no_id.clone(), Headers::new(), "no-id").await;

    feature.publish(&viewed("e3", "u1", "i3"), "acme:e3").await;

    let dlq = dead_letters(&*feature.bus, 2).await;
    let (malformed, invalid) = (&dlq[0].message, &dlq[1].message);
    assert_eq!(malformed.subject, "sm.dlq.acme.feature");
    assert_eq!(malformed.headers.get(DLQ_CODE_HEADER), Some("malformed"));
    assert!(malformed.headers.get(DLQ_REASON_HEADER).unwrap().contains("shopmind.v1.Event"), "{malformed:?}");
    assert_eq!(malformed.headers.get(DLQ_SUBJECT_HEADER), Some(subject.as_str()));
    assert_eq!(malformed.headers.get(DLQ_SEQUENCE_HEADER), Some(garbage_seq.to_string().as_str()));
    assert_eq!(malformed.headers.get("x-origin"), Some("test"), "the original headers are kept");
    assert_eq!(malformed.payload, Bytes::from(garbage));

    assert_eq!(invalid.subject, "sm.dlq.acme.feature");
    assert_eq!(invalid.headers.get(DLQ_CODE_HEADER), Some("missing_field"));
    assert!(invalid.headers.get(DLQ_REASON_HEADER).unwrap().contains("event_id"), "{invalid:?}");
    assert_eq!(invalid.headers.get(DLQ_SUBJECT_HEADER), Some(subject.as_str()));
    assert_eq!(invalid.headers.get(DLQ_SEQUENCE_HEADER), Some(no_id_seq.to_string().as_str()));
    assert_eq!(invalid.payload, Bytes::from(no_id));

    let ctx = eventually(WAIT, "the event after the bad ones is applied", || async {
        let ctx = feature.context("u1").await;
        (!ctx.recent.is_empty()).then_some(ctx)
    })
    .await;
    let recent: Vec<&str> = ctx.recent.iter().map(|i| i.item.as_str()).collect();
    assert_eq!(recent, ["i3"], "the invalid event changed nothing");

    // Dead-lettered messages are acked, not left to be redelivered.
    feature.wait_caught_up().await;
    assert_eq!(feature.bus.stream_state(DLQ_STREAM).await.unwrap().messages, 2);
    feature.stop().await;
}
