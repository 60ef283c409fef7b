//! How events change features, on Redis and on the in-memory store — including that the final
//! state does not depend on the order events are applied in.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use shopmind_domain::{
    CatalogItem, Event, EventId, ItemId, Money, OrderId, OrderLine, OrderStatus, Payload, SessionId,
    TenantId, UnixMillis, UserId,
};
use shopmind_features::{
    Applied, CatalogParts, ContextQuery, FeatureSettings, ItemFeatures, SeedNeighbours, UserFeatures,
    apply_event, apply_events, keys, read_catalog_entries, read_category_popular, read_item_features,
    read_items_demand, read_neighbours, read_recommend_context, read_session_and_user_features,
    read_session_features, read_user_context, read_user_features,
};
use shopmind_store::FeatureStore;

const T0: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
const MIN: i64 = 60_000;

fn ev(tenant: &TenantId, id: &str, user: Option<&str>, at: i64, payload: Payload) -> Event {
    Event {
        id: EventId::parse(id).unwrap(),
        tenant: tenant.clone(),
        occurred_at: UnixMillis(at),
        user: user.map(|u| UserId::parse(u).unwrap()),
        session: user.map(|u| SessionId::parse(format!("{u}-s1")).unwrap()),
        payload,
    }
}

fn item(s: &str) -> ItemId {
    ItemId::parse(s).unwrap()
}

fn view(i: &str) -> Payload {
    Payload::ProductViewed { item: item(i) }
}

fn order(o: &str, lines: &[(&str, u32, i64)]) -> Payload {
    Payload::OrderPlaced {
        order: OrderId::parse(o).unwrap(),
        lines: lines
            .iter()
            .map(|(i, q, p)| OrderLine {
                item: item(i),
                quantity: *q,
                unit_price: Some(Money { amount_minor: *p, currency: "EUR".into() }),
            })
            .collect(),
    }
}

fn catalog(tenant: &TenantId, i: &str, category: &str, at: i64) -> Event {
    ev(
        tenant,
        &format!("cat-{i}-{at}"),
        None,
        at,
        Payload::ItemUpserted(CatalogItem {
            item: item(i),
            title: format!("Item {i}"),
            category_path: vec!["Shop".into(), category.into()],
            price: Some(Money { amount_minor: 1000, currency: "EUR".into() }),
            attributes: BTreeMap::new(),
        }),
    )
}

/// A small shop: a catalog, then three users' sessions.
fn scenario(t: &TenantId) -> (Vec<Event>, Vec<Event>) {
    let cat = vec![
        catalog(t, "a1", "Audio", T0),
        catalog(t, "a2", "Audio", T0),
        catalog(t, "b1", "Books", T0),
        catalog(t, "b2", "Books", T0),
    ];
    let mut evs = Vec::new();
    let mut n = 0;
    let mut push = |user: &str, at: i64, p: Payload| {
        n += 1;
        evs.push(ev(t, &format!("e{n}"), Some(user), at, p));
    };
    push("alice", T0 + MIN, view("a1"));
    push("alice", T0 + 2 * MIN, view("a2"));
    push("alice", T0 + 3 * MIN, Payload::AddedToCart { item: item("a2"), quantity: 2, unit_price: None });
    push("alice", T0 + 4 * MIN, view("b1"));
    push("alice", T0 + 5 * MIN, order("o-a", &[("a2", 2, 2500)]));
    push(
        "alice",
        T0 + 6 * MIN,
        Payload::OrderStatusChanged { order: OrderId::parse("o-a").unwrap(), status: OrderStatus::Paid },
    );
    push(
        "alice",
        T0 + 9 * MIN,
        Payload::OrderStatusChanged { order: OrderId::parse("o-a").unwrap(), status: OrderStatus::Shipped },
    );
    push("alice", T0 + 120 * MIN, view("b2")); // outside the co-visit window of the first views
    push("bob", T0 + MIN, view("b1"));
    push("bob", T0 + 2 * MIN, view("b2"));
    push("bob", T0 + 3 * MIN, Payload::AddedToCart { item: item("b2"), quantity: 1, unit_price: None });
    push("bob", T0 + 4 * MIN, Payload::AddedToCart { item: item("b1"), quantity: 1, unit_price: None });
    push("bob", T0 + 5 * MIN, Payload::RemovedFromCart { item: item("b2"), quantity: 1 });
    push("carol", T0 + MIN, view("a1"));
    push("carol", T0 + 2 * MIN, order("o-c", &[("a1", 1, 4000), ("b1", 1, 1200)]));
    push("carol", T0 + 3 * MIN, view("a2"));
    (cat, evs)
}

async fn features(store: &dyn FeatureStore, t: &TenantId) -> (Vec<UserFeatures>, Vec<ItemFeatures>) {
    let now = UnixMillis(T0 + 200 * MIN);
    let s = FeatureSettings::default();
    let mut users = Vec::new();
    for u in ["alice", "bob", "carol"] {
        users.push(read_user_features(store, t, &UserId::parse(u).unwrap(), &s, now).await.unwrap());
    }
    let mut items = Vec::new();
    for i in ["a1", "a2", "b1", "b2"] {
        items.push(read_item_features(store, t, &item(i), 10, now).await.unwrap());
    }
    (users, items)
}

async fn apply_all(store: &dyn FeatureStore, events: &[Event]) {
    let s = FeatureSettings::default();
    for e in events {
        apply_event(store, e, &s).await.unwrap();
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

fn assert_same(a: &(Vec<UserFeatures>, Vec<ItemFeatures>), b: &(Vec<UserFeatures>, Vec<ItemFeatures>)) {
    for (x, y) in a.0.iter().zip(&b.0) {
        let strip = |u: &UserFeatures| UserFeatures { affinity: Vec::new(), ..u.clone() };
        assert_eq!(strip(x), strip(y));
        assert_eq!(x.affinity.len(), y.affinity.len());
        for ((ca, sa), (cb, sb)) in x.affinity.iter().zip(&y.affinity) {
            assert_eq!(ca, cb);
            assert!(close(*sa, *sb), "{sa} vs {sb}");
        }
    }
    for (x, y) in a.1.iter().zip(&b.1) {
        let strip = |i: &ItemFeatures| ItemFeatures { popularity: Vec::new(), ..i.clone() };
        assert_eq!(strip(x), strip(y));
        for ((na, sa), (nb, sb)) in x.popularity.iter().zip(&y.popularity) {
            assert_eq!(na, nb);
            assert!(close(*sa, *sb), "{na}: {sa} vs {sb}");
        }
    }
}

async fn what_events_do(store: Arc<dyn FeatureStore>) {
    let t = TenantId::parse("acme").unwrap();
    let (cat, evs) = scenario(&t);
    apply_all(&*store, &cat).await;
    apply_all(&*store, &evs).await;
    // Redelivery: nothing changes.
    assert_eq!(apply_event(&*store, &evs[0], &FeatureSettings::default()).await.unwrap(), Applied::Duplicate);

    let (users, items) = features(&*store, &t).await;
    let alice = &users[0];
    let recent: Vec<(&str, &str)> = alice.recent.iter().map(|i| (i.kind.as_str(), i.item.as_str())).collect();
    assert_eq!(
        recent,
        vec![
            ("view", "b2"),
            ("purchase", "a2"),
            ("view", "b1"),
            ("cart", "a2"),
            ("view", "a2"),
            ("view", "a1")
        ]
    );
    assert_eq!(alice.counts.get("product_viewed"), Some(&4));
    assert_eq!(alice.orders.get("o-a").map(|(_, s)| s.as_str()), Some("shipped"));
    assert_eq!((alice.order_count, alice.spend.get("EUR")), (1, Some(&5000)));
    assert_eq!(alice.first_order_ms, Some(T0 + 5 * MIN));
    assert!(alice.cart.is_empty(), "the ordered item left the cart");
    assert_eq!(alice.affinity[0].0, "Shop > Audio", "{:?}", alice.affinity);
    assert_eq!(alice.affinity[1].0, "Shop > Books");

    let bob = &users[1];
    assert_eq!(bob.cart.iter().map(|(i, q)| (i.as_str(), *q)).collect::<Vec<_>>(), vec![("b1", 1)]);

    let carol = &users[2];
    assert_eq!((carol.order_count, carol.spend.get("EUR")), (1, Some(&5200)));

    let (a1, a2, b1, b2) = (&items[0], &items[1], &items[2], &items[3]);
    assert_eq!((a2.views, a2.carts, a2.orders, a2.units), (2, 1, 1, 2));
    assert!((a2.conversion_rate - 0.5).abs() < 1e-12);
    assert_eq!(a1.title.as_deref(), Some("Item a1"));
    assert_eq!(a1.category.as_deref(), Some("Shop > Audio"));
    // a1 and a2 were viewed within 30 minutes by alice and by carol.
    assert!(a1.covisited.iter().any(|(i, c)| i.as_str() == "a2" && *c == 2.0), "{:?}", a1.covisited);
    // b2 was viewed by alice two hours after a1: not co-visited with it.
    assert!(!b2.covisited.iter().any(|(i, _)| i.as_str() == "a1"), "{:?}", b2.covisited);
    // carol bought a1 and b1 together.
    assert_eq!(b1.copurchased.iter().map(|(i, c)| (i.as_str(), *c)).collect::<Vec<_>>(), vec![("a1", 1.0)]);
    let day = (T0 + 5 * MIN).div_euclid(86_400_000);
    assert_eq!(a2.demand, vec![(day, 2)]);
    let pop = |f: &ItemFeatures, w: &str| f.popularity.iter().find(|(n, _)| *n == w).unwrap().1;
    assert!(pop(b2, "pop_1h") < pop(b2, "pop_24h") && pop(b2, "pop_24h") < pop(b2, "pop_7d"));
    // b2: alice's view 80 min before `now` (weight 1), bob's view 198 min before (1) and his
    // cart add 197 min before (2).
    let decay = |minutes: f64| 2f64.powf(-(minutes * 60.0) / (7.0 * 86_400.0));
    let expected_7d = decay(80.0) + decay(198.0) + 2.0 * decay(197.0);
    assert!((pop(b2, "pop_7d") - expected_7d).abs() < 1e-9, "{} vs {expected_7d}", pop(b2, "pop_7d"));

    let session = read_session_features(&*store, &t, &SessionId::parse("alice-s1").unwrap()).await.unwrap();
    assert_eq!(session.duration_ms(), Some(119 * MIN));
    assert_eq!(session.user.as_deref(), Some("alice"));
    assert_eq!(session.counts.get("product_viewed"), Some(&4));

    // The combined reads return what the single ones do, in one batch.
    let alice = UserId::parse("alice").unwrap();
    let s1 = SessionId::parse("alice-s1").unwrap();
    let settings = FeatureSettings::default();
    let now = UnixMillis(T0 + 200 * MIN);
    let (both_s, both_u) =
        read_session_and_user_features(&*store, &t, Some(&s1), Some(&alice), &settings, now).await.unwrap();
    assert_eq!(both_s, session);
    assert_eq!(both_u, read_user_features(&*store, &t, &alice, &settings, now).await.unwrap());
    let (no_s, only_u) =
        read_session_and_user_features(&*store, &t, None, Some(&alice), &settings, now).await.unwrap();
    assert_eq!((no_s, only_u), (Default::default(), both_u));
    let demands = read_items_demand(&*store, &t, &[item("a2"), item("nothing"), item("a1")]).await.unwrap();
    assert_eq!(demands, vec![a2.demand.clone(), Vec::new(), a1.demand.clone()]);

    let ctx = read_user_context(&*store, &t, &UserId::parse("alice").unwrap(), 3, 2).await.unwrap();
    assert_eq!(ctx.recent.len(), 3);
    assert!(ctx.bought.contains(&item("a2")));
    assert_eq!(ctx.popular.len(), 2);
    let alice_id = UserId::parse("alice").unwrap();
    assert!(store.ttl(&keys::user_recent(&t, &alice_id)).await.unwrap().is_some(), "user keys expire");
    assert!(store.ttl(&keys::applied(&t, "e1")).await.unwrap().is_some(), "guards expire");
}

async fn any_order_gives_the_same_features(stores: Vec<Arc<dyn FeatureStore>>) {
    let mut results = Vec::new();
    for (n, store) in stores.iter().enumerate() {
        let t = TenantId::parse(format!("shop{n}")).unwrap();
        let (cat, mut evs) = scenario(&t);
        apply_all(&**store, &cat).await;
        evs.shuffle(&mut rand::rngs::StdRng::seed_from_u64(n as u64));
        apply_all(&**store, &evs).await;
        results.push(features(&**store, &t).await);
    }
    for r in &results[1..] {
        assert_same(&results[0], r);
    }
}

/// Applying events in batches ([`apply_events`], as the feature service does), shuffled, with
/// every event sent twice (in the same batch and again in a later one), gives the features of
/// applying them one by one; each event is applied exactly once.
async fn batches_give_the_features_of_one_by_one(stores: Vec<Arc<dyn FeatureStore>>) {
    let s = FeatureSettings::default();
    let mut results = Vec::new();
    for (n, store) in stores.iter().enumerate() {
        let t = TenantId::parse(format!("batch{n}")).unwrap();
        let (cat, mut evs) = scenario(&t);
        if n == 0 {
            apply_all(&**store, &cat).await;
            apply_all(&**store, &evs).await;
        } else {
            let applied = apply_events(&**store, &cat, &s).await.unwrap();
            assert!(applied.iter().all(|r| matches!(r, Ok(Applied::Applied))));
            evs.shuffle(&mut rand::rngs::StdRng::seed_from_u64(n as u64));
            let twice: Vec<Event> = evs.iter().flat_map(|e| [e.clone(), e.clone()]).collect();
            let mut counts = (0, 0);
            for chunk in twice.chunks(n + 2) {
                for r in apply_events(&**store, chunk, &s).await.unwrap() {
                    match r.unwrap() {
                        Applied::Applied => counts.0 += 1,
                        Applied::Duplicate => counts.1 += 1,
                    }
                }
            }
            assert_eq!(counts, (evs.len(), evs.len()), "each event applied once, its copy skipped");
            // Sent once more, all together: all duplicates.
            let again = apply_events(&**store, &evs, &s).await.unwrap();
            assert!(again.iter().all(|r| matches!(r, Ok(Applied::Duplicate))));
        }
        results.push(features(&**store, &t).await);
    }
    for r in &results[1..] {
        assert_same(&results[0], r);
    }
}

/// The reads of the recommend path: category popularity at every level of the path, the newest
/// items of a category, catalog entries with the first upsert's time.
async fn what_recommend_reads(store: Arc<dyn FeatureStore>) {
    let t = TenantId::parse("acme").unwrap();
    let (cat, evs) = scenario(&t);
    apply_all(&*store, &cat).await;
    apply_all(&*store, &evs).await;
    // a1 again, later and earlier: its first upsert's time is the earliest applied.
    apply_all(&*store, &[catalog(&t, "a1", "Audio", T0 + 10 * MIN), catalog(&t, "a1", "Audio", T0 - MIN)])
        .await;
    let now = UnixMillis(T0 + 200 * MIN);
    let query = |category: Option<&'static str>| ContextQuery {
        user: None,
        session: None,
        history_len: 20,
        popular_n: 10,
        category,
        affinity_half_life: FeatureSettings::default().affinity_half_life,
        now,
    };
    let alice = UserId::parse("alice").unwrap();
    let q = ContextQuery { user: Some(&alice), ..query(Some("Audio")) };
    let ctx = read_recommend_context(&*store, &t, q).await.unwrap();
    // a2: alice viewed, carted and bought it, carol viewed it (1 + 2 + 3 + 1); a1: 1 + 1 + 3.
    let names = |v: &[(ItemId, f64)]| v.iter().map(|(i, s)| (i.to_string(), *s)).collect::<Vec<_>>();
    assert_eq!(names(&ctx.category_popular), [("a2".to_string(), 7.0), ("a1".to_string(), 5.0)]);
    assert_eq!(ctx.recent.len(), 6, "views, a cart and an order");
    assert_eq!(ctx.bought.iter().map(ItemId::as_str).collect::<Vec<_>>(), ["a2"]);
    assert_eq!(ctx.affinity[0].0, "Shop > Audio", "{:?}", ctx.affinity);
    // Alice's session: a1, a2 viewed (1 each), a2 carted (2) and bought (3); b1, b2 viewed.
    let session = SessionId::parse("alice-s1").unwrap();
    let q = ContextQuery { user: None, session: Some(&session), ..query(None) };
    let ctx = read_recommend_context(&*store, &t, q).await.unwrap();
    assert_eq!(ctx.session_categories, [("Audio".to_string(), 7), ("Books".to_string(), 2)]);
    assert!(ctx.recent.is_empty());
    let session = read_session_features(&*store, &t, &session).await.unwrap();
    assert_eq!(session.categories.get("Audio"), Some(&7));
    assert!(!session.counts.keys().any(|k| k.starts_with("cat:")), "{session:?}");
    assert_eq!(read_category_popular(&*store, &t, "Audio", 1).await.unwrap(), [(item("a2"), 7.0)]);
    // The root level holds every item with activity.
    let shop = read_recommend_context(&*store, &t, query(Some("Shop"))).await.unwrap();
    assert_eq!(shop.category_popular.len(), 4);
    assert!(shop.recent.is_empty() && shop.popular.len() == 4);

    let books = ["Books".to_string()];
    let seeds = [item("a1")];
    let covisited =
        read_neighbours(&*store, &t, &seeds, SeedNeighbours::Covisited, &books, 10).await.unwrap();
    assert_eq!(covisited.copurchased, [Vec::new()], "co-purchases not read");
    let n = read_neighbours(&*store, &t, &seeds, SeedNeighbours::CovisitedAndCopurchased, &books, 10)
        .await
        .unwrap();
    assert_eq!((&n.covisited, &n.newest), (&covisited.covisited, &covisited.newest));
    assert_eq!(n.covisited.len(), 1);
    assert!(n.covisited[0].iter().any(|(i, _)| i.as_str() == "a2"), "{n:?}");
    assert_eq!(n.copurchased[0].iter().map(|(i, _)| i.as_str()).collect::<Vec<_>>(), ["b1"]);
    let mut books: Vec<&str> = n.newest[0].iter().map(|(i, _)| i.as_str()).collect();
    books.sort_unstable();
    assert_eq!(books, ["b1", "b2"]);

    let both = [item("a1"), item("zz")];
    let attributes = read_catalog_entries(&*store, &t, &both, CatalogParts::Attributes, now).await.unwrap();
    assert_eq!(attributes[0].category.as_deref(), Some("Shop > Audio"));
    assert_eq!((attributes[0].interactions, attributes[0].trending), (0, 0.0), "statistics not read");
    assert!(attributes[0].known && !attributes[1].known);
    let entries =
        read_catalog_entries(&*store, &t, &both, CatalogParts::AttributesAndStats, now).await.unwrap();
    assert!(entries[0].known && !entries[1].known);
    assert_eq!(entries[0].category.as_deref(), Some("Shop > Audio"));
    assert_eq!((entries[0].price_minor, entries[0].stock), (Some(1000), None));
    assert_eq!(entries[0].created_ms, Some(T0 - MIN));
    assert_eq!(entries[0].interactions, 3, "two views and an order");
    assert!(entries[0].trending > 0.0);
}

mod memory {
    use std::sync::Arc;

    use shopmind_store::{FeatureStore, MemoryStore};

    #[tokio::test]
    async fn what_recommend_reads() {
        super::what_recommend_reads(Arc::new(MemoryStore::new())).await;
    }

    #[tokio::test]
    async fn what_events_do() {
        super::what_events_do(Arc::new(MemoryStore::new())).await;
    }

    #[tokio::test]
    async fn any_order_gives_the_same_features() {
        let stores: Vec<Arc<dyn FeatureStore>> = (0..5).map(|_| Arc::new(MemoryStore::new()) as _).collect();
        super::any_order_gives_the_same_features(stores).await;
    }

    #[tokio::test]
    async fn batches_give_the_features_of_one_by_one() {
        let stores: Vec<Arc<dyn FeatureStore>> = (0..4).map(|_| Arc::new(MemoryStore::new()) as _).collect();
        super::batches_give_the_features_of_one_by_one(stores).await;
    }
}

mod redis {
    use std::sync::Arc;

    use shopmind_store::{FeatureStore, RedisStore};
    use shopmind_testkit::RedisServer;

    #[tokio::test]
    async fn what_recommend_reads() {
        let server = RedisServer::start();
        super::what_recommend_reads(Arc::new(RedisStore::connect(&server.url()).await.unwrap())).await;
    }

    #[tokio::test]
    async fn what_events_do() {
        let server = RedisServer::start();
        super::what_events_do(Arc::new(RedisStore::connect(&server.url()).await.unwrap())).await;
    }

    #[tokio::test]
    async fn any_order_gives_the_same_features() {
        let server = RedisServer::start();
        let store: Arc<dyn FeatureStore> = Arc::new(RedisStore::connect(&server.url()).await.unwrap());
        // One server, five tenants: each order in its own keyspace.
        super::any_order_gives_the_same_features(vec![store; 5]).await;
    }

    #[tokio::test]
    async fn batches_give_the_features_of_one_by_one() {
        let server = RedisServer::start();
        let store: Arc<dyn FeatureStore> = Arc::new(RedisStore::connect(&server.url()).await.unwrap());
        super::batches_give_the_features_of_one_by_one(vec![store; 4]).await;
    }
}
