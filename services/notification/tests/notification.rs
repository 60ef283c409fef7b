//! The notification service against a real nats-server and redis-server: an order status change notifies the
//! customer once, even when the event is delivered twice; other events notify nobody.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use prost::Message as _;
use shopmind_bus::{Bus, Headers, Message, NatsBus, StartAt, TraceContext};
use shopmind_config::Config;
use shopmind_domain::{
    Event, EventId, ItemId, OrderId, OrderLine, OrderStatus, Payload, TenantId, UnixMillis, UserId,
};
use shopmind_proto::v1 as pb;
use shopmind_runtime::topology::{self, DLQ_STREAM, EVENTS_STREAM, NOTIFICATIONS_STREAM};
use shopmind_runtime::{Shutdown, connect};
use shopmind_store::{FeatureStore, RedisStore};
use shopmind_testkit::{NatsServer, RedisServer, eventually};

const WAIT: Duration = Duration::from_secs(10);

fn tenant() -> TenantId {
    TenantId::parse("acme").unwrap()
}

fn event(id: &str, payload: Payload) -> Event {
    Event {
        id: EventId::parse(id).unwrap(),
        tenant: tenant(),
        occurred_at: UnixMillis::now(),
        user: Some(UserId::parse("u1").unwrap()),
        session: None,
        payload,
    }
}

async fn publish(bus: &dyn Bus, event: &Event, msg_id: &str, headers: Headers) {
    let subject = topology::event_subject(&event.tenant, event.kind());
    let message = Message::new(subject, Bytes::from(event.to_proto().encode_to_vec())).with_headers(headers);
    let published = bus.publish(message, Some(msg_id)).await.unwrap();
    assert!(!published.duplicate, "the test publishes distinct message ids");
}

#[tokio::test]
async fn an_order_status_change_notifies_the_customer_exactly_once() {
    let nats = NatsServer::start();
    let bus: Arc<dyn Bus> = Arc::new(NatsBus::connect(&nats.url(), "notification-test").await.unwrap());
    let config = Config::default();
    connect::ensure_streams(&*bus, &config).await.unwrap();
    let shutdown = Shutdown::new();
    let redis = RedisServer::start();
    let store: Arc<dyn FeatureStore> = Arc::new(RedisStore::connect(&redis.url()).await.unwrap());
    let task = tokio::spawn(shopmind_notification::run(config, bus.clone(), store, shutdown.clone()));

    // Events of other kinds, for the same customer and order: no notification.
    let order = OrderId::parse("o1").unwrap();
    let placed = Payload::OrderPlaced {
        order: order.clone(),
        lines: vec![OrderLine { item: ItemId::parse("i1").unwrap(), quantity: 1, unit_price: None }],
    };
    publish(&*bus, &event("e0", placed), "acme:e0", Headers::new()).await;
    let viewed = Payload::ProductViewed { item: ItemId::parse("i1").unwrap() };
    publish(&*bus, &event("e1", viewed), "acme:e1", Headers::new()).await;

    // The same status change twice, under two message ids: JetStream stores both.
    let trace = TraceContext::new_root();
    let mut headers = Headers::new();
    headers.set_trace(&trace);
    let shipped = event("e2", Payload::OrderStatusChanged { order, status: OrderStatus::Shipped });
    publish(&*bus, &shipped, "first-publish", headers.clone()).await;
    publish(&*bus, &shipped, "second-publish", headers).await;
    assert_eq!(bus.stream_state(EVENTS_STREAM).await.unwrap().messages, 4);

    eventually(WAIT, "the notification consumer acked both deliveries", || async {
        let lag = bus.consumer_lag(EVENTS_STREAM, shopmind_notification::DURABLE).await.ok()?;
        lag.is_caught_up().then_some(())
    })
    .await;
    let state = bus.stream_state(NOTIFICATIONS_STREAM).await.unwrap();
    assert_eq!(state.messages, 1, "exactly one notification");

    let mut replay = bus.replay(NOTIFICATIONS_STREAM, None, StartAt::First).await.unwrap();
    let stored = tokio::time::timeout(WAIT, replay.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(stored.message.subject, "sm.notify.acme.customer");
    let n = pb::Notification::decode(stored.message.payload.as_ref()).unwrap();
    assert_eq!(n.notification_id, "order_status:acme:e2", "derived from its cause, and so its msg id");
    assert_eq!(n.tenant, "acme");
    assert_eq!(n.audience, "customer");
    assert_eq!(n.user_id, "u1");
    assert_eq!(n.kind, pb::NotificationKind::OrderStatus as i32);
    assert_eq!(n.source_event_id, "e2");
    assert_eq!(n.data.get("order_id").map(String::as_str), Some("o1"));
    assert_eq!(n.data.get("status").map(String::as_str), Some("shipped"));
    assert!(n.title.contains("o1") && n.title.contains("shipped"), "{}", n.title);
    let carried = stored.message.headers.trace().expect("the notification continues the event's trace");
    assert_eq!(carried.trace_id, trace.trace_id);
    assert_ne!(carried.span_id, trace.span_id);

    assert_eq!(bus.stream_state(DLQ_STREAM).await.unwrap().messages, 0);
    shutdown.trigger();
    let result = tokio::time::timeout(Duration::from_secs(5), task).await.expect("stops in time").unwrap();
    assert!(result.is_ok(), "{result:?}");
}

#[tokio::test]
async fn status_changes_of_two_events_make_two_notifications_and_other_kinds_none() {
    let nats = NatsServer::start();
    let bus: Arc<dyn Bus> = Arc::new(NatsBus::connect(&nats.url(), "notification-test").await.unwrap());
    let config = Config::default();
    connect::ensure_streams(&*bus, &config).await.unwrap();
    let shutdown = Shutdown::new();
    let redis = RedisServer::start();
    let store: Arc<dyn FeatureStore> = Arc::new(RedisStore::connect(&redis.url()).await.unwrap());
    let task = tokio::spawn(shopmind_notification::run(config, bus.clone(), store, shutdown.clone()));

    let order = OrderId::parse("o1").unwrap();
    let cart = Payload::AddedToCart { item: ItemId::parse("i1").unwrap(), quantity: 1, unit_price: None };
    publish(&*bus, &event("e0", cart), "acme:e0", Headers::new()).await;
    let paid = Payload::OrderStatusChanged { order: order.clone(), status: OrderStatus::Paid };
    publish(&*bus, &event("e1", paid), "acme:e1", Headers::new()).await;
    let delivered = Payload::OrderStatusChanged { order, status: OrderStatus::Delivered };
    publish(&*bus, &event("e2", delivered), "acme:e2", Headers::new()).await;

    let notifications = eventually(WAIT, "two notifications", || async {
        let n = bus.stream_state(NOTIFICATIONS_STREAM).await.ok()?.messages;
        (n >= 2).then_some(n)
    })
    .await;
    eventually(WAIT, "the notification consumer caught up", || async {
        let lag = bus.consumer_lag(EVENTS_STREAM, shopmind_notification::DURABLE).await.ok()?;
        lag.is_caught_up().then_some(())
    })
    .await;
    assert_eq!(notifications, 2);
    assert_eq!(bus.stream_state(NOTIFICATIONS_STREAM).await.unwrap().messages, 2);

    let mut replay = bus.replay(NOTIFICATIONS_STREAM, None, StartAt::First).await.unwrap();
    let mut statuses = Vec::new();
    for _ in 0..2 {
        let m = tokio::time::timeout(WAIT, replay.next()).await.unwrap().unwrap().unwrap();
        let n = pb::Notification::decode(m.message.payload.as_ref()).unwrap();
        statuses.push((n.notification_id, n.data["status"].clone()));
    }
    assert_eq!(
        statuses,
        [
            ("order_status:acme:e1".to_string(), "paid".to_string()),
            ("order_status:acme:e2".to_string(), "delivered".to_string())
        ]
    );
    shutdown.trigger();
    let result = tokio::time::timeout(Duration::from_secs(5), task).await.expect("stops in time").unwrap();
    assert!(result.is_ok(), "{result:?}");
}
