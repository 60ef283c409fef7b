//! The events stream's contract on a real nats-server: an event published with
//! `intake::publish_event` decodes back to itself with `intake::decode_event` (and a message that
//! is not an event is rejected with its code), and the tombstones of `SM_ERASURES` cover the
//! events of erased customers, those there are at start and those that come later.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use shopmind_bus::{Bus, Headers, Message, NatsBus};
use shopmind_config::Config;
use shopmind_domain::{Event, EventId, ItemId, Payload, RejectCode, TenantId, UnixMillis, UserId};
use shopmind_runtime::snapshot::read_stream;
use shopmind_runtime::tombstones::Tombstones;
use shopmind_runtime::topology::{self, EVENTS_STREAM};
use shopmind_runtime::{Shutdown, connect, intake};
use shopmind_testkit::{NatsServer, eventually};

async fn bus() -> (NatsServer, Arc<dyn Bus>) {
    let nats = NatsServer::start();
    let bus: Arc<dyn Bus> = Arc::new(NatsBus::connect(&nats.url(), "events-test").await.unwrap());
    connect::ensure_streams(&*bus, &Config::default()).await.unwrap();
    (nats, bus)
}

fn view(tenant: &str, user: &str, id: &str) -> Event {
    Event {
        id: EventId::parse(id).unwrap(),
        tenant: TenantId::parse(tenant).unwrap(),
        occurred_at: UnixMillis(1_700_000_000_000),
        user: Some(UserId::parse(user).unwrap()),
        session: None,
        payload: Payload::ProductViewed { item: ItemId::parse("sku-1").unwrap() },
    }
}

async fn erase(bus: &dyn Bus, tenant: &str, user: &str) {
    let tenant = TenantId::parse(tenant).unwrap();
    let stone = shopmind_privacy::tombstone_of(&tenant, &UserId::parse(user).unwrap());
    bus.publish(Message::new(topology::erased_subject(&tenant), Bytes::from(stone)), None).await.unwrap();
}

#[tokio::test]
async fn a_published_event_decodes_to_itself_and_anything_else_is_rejected() {
    let (_nats, bus) = bus().await;
    let event = view("acme", "alice", "e1");
    intake::publish_event(&*bus, &event, &Headers::new()).await.unwrap();
    let stored = read_stream(&*bus, EVENTS_STREAM).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].message.subject, "sm.events.acme.product_viewed");
    assert_eq!(intake::decode_event(&stored[0].message).unwrap(), event);

    let garbage = Message::new("sm.events.acme.product_viewed", Bytes::from_static(b"\xff\xff"));
    let (code, reason) = intake::decode_event(&garbage).unwrap_err();
    assert_eq!(code, RejectCode::Malformed.as_str());
    assert!(reason.contains("not a shopmind.v1.Event"), "{reason}");
}

#[tokio::test]
async fn tombstones_cover_erased_customers_known_at_start_and_later() {
    let (_nats, bus) = bus().await;
    erase(&*bus, "acme", "alice").await;
    let loaded = Tombstones::load(&*bus).await.unwrap();
    assert!(loaded.covers(&view("acme", "alice", "e1")));
    assert!(!loaded.covers(&view("globex", "alice", "e2")), "a tombstone is of one tenant");
    assert!(!loaded.covers(&view("acme", "bob", "e3")));

    let shutdown = Shutdown::new();
    let followed = Tombstones::follow(bus.clone(), shutdown.clone()).await.unwrap();
    assert!(followed.covers(&view("acme", "alice", "e4")));
    erase(&*bus, "acme", "bob").await;
    eventually(Duration::from_secs(10), "bob's tombstone is followed", || async {
        followed.covers(&view("acme", "bob", "e5")).then_some(())
    })
    .await;
    assert!(!loaded.covers(&view("acme", "bob", "e6")), "a loaded set stays as it was");
    shutdown.trigger();
}
