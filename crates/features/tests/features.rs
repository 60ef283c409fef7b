//! How events change features, on Redis and on the in-memory store.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use shopmind_domain::{
    Event, EventId, ItemId, OrderId, OrderLine, OrderStatus, Payload, TenantId, UnixMillis, UserId,
};
use shopmind_features::{Applied, FeatureSettings, apply_event, keys, read_orders, read_user_context};
use shopmind_store::FeatureStore;

fn ev(id: &str, user: &str, at: i64, payload: Payload) -> Event {
    Event {
        id: EventId::parse(id).unwrap(),
        tenant: TenantId::parse("acme").unwrap(),
        occurred_at: UnixMillis(at),
        user: Some(UserId::parse(user).unwrap()),
        session: None,
        payload,
    }
}

fn item(s: &str) -> ItemId {
    ItemId::parse(s).unwrap()
}

async fn history_and_dedup(store: Arc<dyn FeatureStore>) {
    let s = FeatureSettings { recent_cap: 3, ..FeatureSettings::default() };
    let t = TenantId::parse("acme").unwrap();
    let alice = UserId::parse("alice").unwrap();
    for (n, it) in ["a", "b", "c", "d"].iter().enumerate() {
        let e = ev(&format!("v{n}"), "alice", 1000 + n as i64, Payload::ProductViewed { item: item(it) });
        assert_eq!(apply_event(&*store, &e, &s).await.unwrap(), Applied::Applied);
    }
    // A redelivery of v3 changes nothing.
    let again = ev("v3", "alice", 1003, Payload::ProductViewed { item: item("d") });
    assert_eq!(apply_event(&*store, &again, &s).await.unwrap(), Applied::Duplicate);

    let order = ev(
        "o1",
        "alice",
        2000,
        Payload::OrderPlaced {
            order: OrderId::parse("ord-1").unwrap(),
            lines: vec![OrderLine { item: item("c"), quantity: 1, unit_price: None }],
        },
    );
    apply_event(&*store, &order, &s).await.unwrap();
    let status = ev(
        "s1",
        "alice",
        3000,
        Payload::OrderStatusChanged { order: OrderId::parse("ord-1").unwrap(), status: OrderStatus::Shipped },
    );
    apply_event(&*store, &status, &s).await.unwrap();

    let ctx = read_user_context(&*store, &t, &alice, 10, 10).await.unwrap();
    let recent: Vec<&str> = ctx.recent.iter().map(|i| i.item.as_str()).collect();
    assert_eq!(recent, vec!["c", "d", "c"], "newest first, capped at 3");
    assert!(ctx.bought.contains(&item("c")));
    assert_eq!(ctx.bought.len(), 1);
    // popularity: views 1 each (d counted once despite the redelivery), purchase of c adds 3.
    let pop: Vec<(&str, f64)> = ctx.popular.iter().map(|(i, s)| (i.as_str(), *s)).collect();
    assert_eq!(pop[0], ("c", 4.0));
    assert!(pop.contains(&("d", 1.0)), "{pop:?}");
    assert_eq!(
        read_orders(&*store, &t, &alice).await.unwrap(),
        vec![("ord-1".to_string(), "shipped".to_string())]
    );
    assert!(store.ttl(&keys::user_recent(&t, &alice)).await.unwrap().is_some(), "user keys expire");
    assert!(store.ttl(&keys::applied(&t, "v0")).await.unwrap().is_some(), "markers expire");
}

async fn cart_follows_adds_removals_and_orders(store: Arc<dyn FeatureStore>) {
    let s = FeatureSettings::default();
    let t = TenantId::parse("acme").unwrap();
    let bob = UserId::parse("bob").unwrap();
    let add = |id: &str, it: &str, q| {
        ev(id, "bob", 1, Payload::AddedToCart { item: item(it), quantity: q, unit_price: None })
    };
    apply_event(&*store, &add("c1", "x", 2), &s).await.unwrap();
    apply_event(&*store, &add("c2", "y", 1), &s).await.unwrap();
    apply_event(&*store, &add("c3", "z", 1), &s).await.unwrap();
    let rm = ev("c4", "bob", 2, Payload::RemovedFromCart { item: item("y"), quantity: 1 });
    apply_event(&*store, &rm, &s).await.unwrap();
    let order = ev(
        "c5",
        "bob",
        3,
        Payload::OrderPlaced {
            order: OrderId::parse("o").unwrap(),
            lines: vec![OrderLine { item: item("z"), quantity: 1, unit_price: None }],
        },
    );
    apply_event(&*store, &order, &s).await.unwrap();
    let ctx = read_user_context(&*store, &t, &bob, 10, 10).await.unwrap();
    assert_eq!(ctx.cart.into_iter().collect::<Vec<_>>(), vec![item("x")]);
}

mod memory {
    #[tokio::test]
    async fn history_and_dedup() {
        super::history_and_dedup(std::sync::Arc::new(shopmind_store::MemoryStore::new())).await;
    }

    #[tokio::test]
    async fn cart_follows_adds_removals_and_orders() {
        super::cart_follows_adds_removals_and_orders(std::sync::Arc::new(shopmind_store::MemoryStore::new()))
            .await;
    }
}

mod redis {
    async fn store() -> (shopmind_testkit::RedisServer, std::sync::Arc<dyn shopmind_store::FeatureStore>) {
        let server = shopmind_testkit::RedisServer::start();
        let store = shopmind_store::RedisStore::connect(&server.url()).await.unwrap();
        (server, std::sync::Arc::new(store))
    }

    #[tokio::test]
    async fn history_and_dedup() {
        let (_server, store) = store().await;
        super::history_and_dedup(store).await;
    }

    #[tokio::test]
    async fn cart_follows_adds_removals_and_orders() {
        let (_server, store) = store().await;
        super::cart_follows_adds_removals_and_orders(store).await;
    }
}
