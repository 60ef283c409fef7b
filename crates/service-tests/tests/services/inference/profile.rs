//! Customer profiles through the real gateway: events go in with `PublishEvents`, the feature
//! service applies them to Redis from the real NATS stream, and `GetCustomerProfile` (gateway ->
//! `inference.profile`) answers from what it stored: RFM segment, churn risk, top categories,
//! recent activity, cart; NOT_FOUND and INVALID_ARGUMENT.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use shopmind_bus::{Bus, NatsBus};
use shopmind_config::Config;
use shopmind_domain::{ItemId, TenantId, UnixMillis};
use shopmind_features::read_item_features;
use shopmind_proto::v1 as pb;
use shopmind_proto::v1::gateway_client::GatewayClient;
use shopmind_runtime::{Shutdown, connect};
use shopmind_store::{FeatureStore, RedisStore};
use shopmind_testkit::{NatsServer, RedisServer, eventually};
use tonic::transport::Channel;
use tonic_types::StatusExt;

const TENANT: &str = "profile-shop";
const DAY: i64 = 86_400_000;
const WAIT: Duration = Duration::from_secs(60);

struct Shop {
    client: GatewayClient<Channel>,
    shutdown: Shutdown,
    store: Arc<dyn FeatureStore>,
    next_id: usize,
    _servers: (NatsServer, RedisServer),
}

fn eur(minor: i64) -> Option<pb::Money> {
    Some(pb::Money { amount_minor: minor, currency: "EUR".into() })
}

impl Shop {
    async fn start() -> Self {
        let nats = NatsServer::start();
        let redis = RedisServer::start();
        let bus: Arc<dyn Bus> = Arc::new(NatsBus::connect(&nats.url(), "profile-test").await.unwrap());
        let store: Arc<dyn FeatureStore> = Arc::new(RedisStore::connect(&redis.url()).await.unwrap());
        let mut config = Config::default();
        config.nats.url = nats.url();
        config.redis.url = redis.url();
        connect::ensure_streams(&*bus, &config).await.unwrap();
        let shutdown = Shutdown::new();
        tokio::spawn(shopmind_feature::run(config.clone(), bus.clone(), store.clone(), shutdown.clone()));
        let registry: Arc<dyn shopmind_registry::ModelStore> =
            Arc::new(shopmind_registry::MemoryModelStore::new());
        tokio::spawn(shopmind_inference::run(
            config.clone(),
            bus.clone(),
            store.clone(),
            registry,
            shutdown.clone(),
        ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(shopmind_gateway::run(config, bus, listener, shutdown.clone()));
        let client = eventually(Duration::from_secs(10), "the gateway accepts connections", || {
            let endpoint = endpoint.clone();
            async move { GatewayClient::connect(endpoint).await.ok() }
        })
        .await;
        Self { client, shutdown, store, next_id: 0, _servers: (nats, redis) }
    }

    async fn publish(&mut self, events: Vec<(&str, i64, pb::event::Payload)>) {
        let events = events
            .into_iter()
            .map(|(user, at, payload)| {
                self.next_id += 1;
                pb::Event {
                    event_id: format!("e{}", self.next_id),
                    tenant: TENANT.into(),
                    occurred_at: Some(UnixMillis(at).to_proto()),
                    user_id: user.into(),
                    session_id: String::new(),
                    payload: Some(payload),
                }
            })
            .collect::<Vec<_>>();
        let n = events.len() as u32;
        let r = self
            .client
            .publish_events(pb::PublishEventsRequest { tenant: TENANT.into(), events })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.accepted, n, "{r:?}");
    }

    async fn profile(&mut self, user: &str, recent_limit: u32) -> Result<pb::CustomerProfile, tonic::Status> {
        let req = pb::GetCustomerProfileRequest { tenant: TENANT.into(), user_id: user.into(), recent_limit };
        self.client.get_customer_profile(req).await.map(tonic::Response::into_inner)
    }

    /// Waits until the feature service has applied `interactions` interactions of `user`.
    async fn applied(&mut self, user: &str, interactions: usize) -> pb::CustomerProfile {
        let client = self.client.clone();
        eventually(WAIT, &format!("the events of {user} are applied"), || {
            let req = pb::GetCustomerProfileRequest {
                tenant: TENANT.into(),
                user_id: user.into(),
                recent_limit: 100,
            };
            let mut client = client.clone();
            async move {
                let p = client.get_customer_profile(req).await.ok()?.into_inner();
                (p.recent_activity.len() == interactions).then_some(p)
            }
        })
        .await
    }

    /// Waits until the feature service has stored the category of each item.
    async fn catalog_applied(&self, items: &[(&str, &str)]) {
        let tenant = TenantId::parse(TENANT).unwrap();
        for (id, category) in items {
            let item = ItemId::parse(*id).unwrap();
            eventually(WAIT, &format!("the category of {id} is stored"), || {
                let (store, tenant, item) = (self.store.clone(), tenant.clone(), item.clone());
                async move {
                    let f = read_item_features(&*store, &tenant, &item, 0, UnixMillis::now()).await.ok()?;
                    (f.category.as_deref() == Some(*category)).then_some(())
                }
            })
            .await;
        }
    }
}

fn item(id: &str, category: &str) -> pb::event::Payload {
    pb::event::Payload::ItemUpserted(pb::ItemUpserted {
        item_id: id.into(),
        title: format!("{id} title"),
        category_path: vec![category.into()],
        price: eur(1000),
        attributes: Default::default(),
    })
}

fn view(item: &str) -> pb::event::Payload {
    pb::event::Payload::ProductViewed(pb::ProductViewed { item_id: item.into(), source: String::new() })
}

fn cart(item: &str) -> pb::event::Payload {
    pb::event::Payload::AddedToCart(pb::AddedToCart {
        item_id: item.into(),
        quantity: 1,
        unit_price: eur(1000),
    })
}

fn order(id: &str, item: &str, minor: i64) -> pb::event::Payload {
    pb::event::Payload::OrderPlaced(pb::OrderPlaced {
        order_id: id.into(),
        lines: vec![pb::OrderLine { item_id: item.into(), quantity: 1, unit_price: eur(minor) }],
    })
}

/// Orders of `user` at the given days before `now`, one item each, `minor` each.
fn orders<'a>(
    user: &'a str,
    now: i64,
    days_ago: &[i64],
    minor: i64,
) -> Vec<(&'a str, i64, pb::event::Payload)> {
    days_ago.iter().map(|d| (user, now - d * DAY, order(&format!("{user}-o{d}"), "shoe-1", minor))).collect()
}

fn secs(t: &Option<prost_types::Timestamp>) -> i64 {
    t.as_ref().unwrap().seconds
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_report_segment_churn_categories_and_activity() {
    let mut shop = Shop::start().await;
    let now = UnixMillis::now().0;

    // The catalog first: affinity takes the category stored when an interaction is applied.
    let catalog = [("shoe-1", "Shoes"), ("shoe-2", "Shoes"), ("hat-1", "Hats"), ("bag-1", "Bags")];
    shop.publish(catalog.iter().map(|(id, c)| ("", now - 400 * DAY, item(id, c))).collect()).await;
    shop.catalog_applied(&catalog).await;

    // A browser who never ordered: views and a cart, minutes ago.
    let m = 60_000;
    shop.publish(vec![
        ("browser", now - 50 * m, view("shoe-1")),
        ("browser", now - 40 * m, view("bag-1")),
        ("browser", now - 30 * m, view("shoe-2")),
        ("browser", now - 20 * m, cart("hat-1")),
        ("browser", now - 10 * m, view("shoe-1")),
    ])
    .await;
    // A champion: six orders of 100.00 EUR, every five days up to yesterday.
    shop.publish(orders("champ", now, &[26, 21, 16, 11, 6, 1], 10_000)).await;
    // A customer with a rhythm who stopped 50 days ago: at risk.
    shop.publish(orders("drifting", now, &[70, 60, 50], 2_000)).await;
    // A customer who last ordered 200 days ago: hibernating.
    shop.publish(orders("lapsed", now, &[240, 220, 200], 2_000)).await;
    // One order, two days ago: new.
    shop.publish(orders("newbie", now, &[2], 3_000)).await;
    // Two recent orders: promising.
    shop.publish(orders("promising", now, &[9, 4], 3_000)).await;

    let browser = shop.applied("browser", 5).await;
    let champ = shop.applied("champ", 6).await;
    let drifting = shop.applied("drifting", 3).await;
    let lapsed = shop.applied("lapsed", 3).await;
    let newbie = shop.applied("newbie", 1).await;
    let promising = shop.applied("promising", 2).await;

    // Segments and RFM.
    let segments: Vec<&str> = [&browser, &champ, &drifting, &lapsed, &newbie, &promising]
        .iter()
        .map(|p| p.rfm_segment.as_str())
        .collect();
    assert_eq!(segments, ["browser", "champion", "at_risk", "hibernating", "new", "promising"]);
    assert_eq!((browser.recency_days, browser.frequency, browser.monetary_minor), (-1, 0, 0));
    assert_eq!(
        (champ.recency_days, champ.frequency, champ.monetary_minor, champ.currency.as_str()),
        (1, 6, 60_000, "EUR")
    );
    assert_eq!((lapsed.recency_days, lapsed.frequency, lapsed.monetary_minor), (200, 3, 6_000));
    assert_eq!(champ.user_id, "champ");

    // Churn risk: the longer past their rhythm, the higher; a lapsed customer is almost surely gone.
    assert!(champ.churn_risk < 0.1, "{}", champ.churn_risk);
    assert!(drifting.churn_risk > champ.churn_risk, "{} vs {}", drifting.churn_risk, champ.churn_risk);
    assert!(lapsed.churn_risk > drifting.churn_risk, "{} vs {}", lapsed.churn_risk, drifting.churn_risk);
    assert!(lapsed.churn_risk > 0.99, "{}", lapsed.churn_risk);
    assert!(browser.churn_risk < 0.1, "active minutes ago: {}", browser.churn_risk);
    assert!(champ.churn_risk >= 0.0 && lapsed.churn_risk <= 1.0);

    // Top categories by decayed affinity: Shoes 3 views, Hats one cart (2), Bags one view.
    let categories: Vec<(&str, f32)> =
        browser.top_categories.iter().map(|c| (c.category.as_str(), c.score)).collect();
    assert_eq!(categories.iter().map(|c| c.0).collect::<Vec<_>>(), ["Shoes", "Hats", "Bags"]);
    assert!((categories[0].1 - 3.0).abs() < 0.01 && (categories[2].1 - 1.0).abs() < 0.01, "{categories:?}");

    // Recent activity: newest first, cut at the limit; the cart; first and last seen.
    let recent = shop.profile("browser", 3).await.unwrap().recent_activity;
    let got: Vec<(&str, &str, i64)> =
        recent.iter().map(|a| (a.kind.as_str(), a.item_id.as_str(), secs(&a.at))).collect();
    assert_eq!(
        got,
        [
            ("view", "shoe-1", (now - 10 * m).div_euclid(1000)),
            ("cart", "hat-1", (now - 20 * m).div_euclid(1000)),
            ("view", "shoe-2", (now - 30 * m).div_euclid(1000)),
        ]
    );
    assert_eq!(shop.profile("browser", 0).await.unwrap().recent_activity.len(), 5, "default 10, 5 exist");
    assert_eq!(browser.cart_item_ids, ["hat-1"]);
    assert_eq!(secs(&browser.first_seen), (now - 50 * m).div_euclid(1000));
    assert_eq!(secs(&browser.last_seen), (now - 10 * m).div_euclid(1000));
    assert_eq!(secs(&lapsed.first_seen), (now - 240 * DAY).div_euclid(1000));
    assert!(champ.recent_activity.iter().all(|a| a.kind == "purchase" && a.item_id == "shoe-1"));

    // A user nobody saw: NOT_FOUND.
    let e = shop.profile("ghost", 0).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");
    assert!(e.message().contains("ghost"), "{}", e.message());

    // Bad input: INVALID_ARGUMENT naming every field.
    let e = shop.profile("u 1", 101).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    let fields: Vec<String> =
        e.get_details_bad_request().unwrap().field_violations.into_iter().map(|v| v.field).collect();
    assert_eq!(fields, ["user_id", "recent_limit"]);
    let e = shop.profile("champ", 101).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("recent_limit"), "{}", e.message());

    shop.shutdown.trigger();
}
