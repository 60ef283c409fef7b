//! The popular fill of an unfiltered FOR_YOU page: inference first reads only the page's worth
//! of the tenant's popular items (plus the history's), and reads more when the user's purchases,
//! which are never recommended, leave the page short. Here the user bought the 15 most popular
//! items, more than the first read holds; the pages still fill with the next most popular ones.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use shopmind_config::Config;
use shopmind_domain::{
    Event, EventId, ItemId, OrderId, OrderLine, Payload, SessionId, TenantId, UnixMillis, UserId,
};
use shopmind_features::{FeatureSettings, apply_event};
use shopmind_inference::{RecommendSettings, Recommender, Recommenders};
use shopmind_proto::v1 as pb;
use shopmind_serving::PoolOptions;
use shopmind_store::{FeatureStore, MemoryStore};

const T0: i64 = 1_767_225_600_000;

fn item(i: usize) -> String {
    format!("p{i:02}")
}

fn event(tenant: &TenantId, n: &mut i64, user: &str, payload: Payload) -> Event {
    *n += 1;
    Event {
        id: EventId::parse(format!("e{n}")).unwrap(),
        tenant: tenant.clone(),
        occurred_at: UnixMillis(T0 + *n * 1000),
        user: Some(UserId::parse(user).unwrap()),
        session: Some(SessionId::parse(format!("{user}-s")).unwrap()),
        payload,
    }
}

#[tokio::test]
async fn purchases_beyond_the_first_read_of_popular_items_do_not_leave_the_page_short() {
    let tenant = TenantId::parse("acme").unwrap();
    let store: Arc<dyn FeatureStore> = Arc::new(MemoryStore::new());
    let settings = FeatureSettings::default();
    let mut n = 0;
    let mut events = Vec::new();
    // Item j is viewed by 40 - j shoppers, each viewing nothing else (so no item is another's
    // co-visitation neighbour): p00 is the most popular, p29 the least.
    for j in 0..30 {
        for k in 0..(40 - j) {
            let view = Payload::ProductViewed { item: ItemId::parse(item(j)).unwrap() };
            events.push(event(&tenant, &mut n, &format!("crowd-{j}-{k}"), view));
        }
    }
    // The hoarder bought the 15 most popular items and last looked at the least popular one.
    for j in 0..15 {
        let lines = vec![OrderLine { item: ItemId::parse(item(j)).unwrap(), quantity: 1, unit_price: None }];
        let order = OrderId::parse(format!("o{j}")).unwrap();
        events.push(event(&tenant, &mut n, "hoarder", Payload::OrderPlaced { order, lines }));
    }
    let last = Payload::ProductViewed { item: ItemId::parse(item(29)).unwrap() };
    events.push(event(&tenant, &mut n, "hoarder", last));
    for e in &events {
        apply_event(&*store, e, &settings).await.unwrap();
    }

    // No model: the page is all fill. One history item: the first read holds 5 + 1 + 1 items.
    let mut s = RecommendSettings::from_config(&Config::default());
    s.history_len = 1;
    let recommender =
        Recommender::with_settings(store, Arc::new(Recommenders::new(PoolOptions::default())), s);
    let mut request = pb::RecommendRequest {
        tenant: "acme".into(),
        user_id: "hoarder".into(),
        limit: 5,
        ..Default::default()
    };
    let first = recommender.recommend(&request).await.unwrap();
    let ids = |r: &pb::RecommendResponse| r.items.iter().map(|i| i.item_id.clone()).collect::<Vec<_>>();
    assert!(!first.cold_start);
    assert_eq!(ids(&first), (15..20).map(item).collect::<Vec<_>>(), "the most popular items not bought");
    assert!(first.items.iter().all(|i| i.reason == "popular"), "{first:?}");
    assert!(!first.next_page_token.is_empty(), "more popular items follow");

    request.page_token = first.next_page_token.clone();
    let second = recommender.recommend(&request).await.unwrap();
    assert_eq!(ids(&second), (20..25).map(item).collect::<Vec<_>>());
}
