//! The Recommend API through the real gateway (tonic client) on a real nats-server and
//! redis-server, with the inference service on ONNX Runtime and the feature service consuming
//! the events stream: every scenario, filter, reason code, paging with a diversity cap, cold
//! start (a user without history, an item without interactions) and error.
//!
//! The shop: 24 items in four leaf categories (Apparel > Shoes i00-i05, Apparel > Shirts i06-i11,
//! Books > Fiction i12-i17, Books > Poetry i18-i23), priced 1000 + 100·n, i09 out of stock. The
//! tenant's embedding model learned that shoppers walk the sequence (item n is followed by n+1).
//! Alice viewed i03 then i04; three orders held i00 and i01 together, one i00 and i02; carter has
//! i00 in the cart; pat viewed i08, i09 and bought i10; in the last hour ten shoppers viewed i12
//! and eight i20 (one of them, anon-1, in session anon-1-s).

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use shopmind_bus::{Bus, NatsBus};
use shopmind_config::Config;
use shopmind_domain::{
    CatalogItem, Event, EventId, InteractionKind, ItemId, Money, OrderId, OrderLine, Payload, SessionId,
    TenantId, UnixMillis, UserId,
};
use shopmind_features::{FeatureSettings, apply_event};
use shopmind_proto::v1 as pb;
use shopmind_proto::v1::gateway_client::GatewayClient;
use shopmind_registry::{ModelKey, ModelStore, NatsModelStore, Version, VersionInfo};
use shopmind_runtime::{Shutdown, connect};
use shopmind_store::{FeatureStore, RedisStore};
use shopmind_testkit::{NatsServer, RedisServer, eventually};
use shopmind_training::covisit::TrainingInteraction;
use shopmind_training::embedding::{self, EmbeddingConfig};
use tonic::transport::Channel;

const TENANT: &str = "shop";
const ITEMS: usize = 24;
const WAIT: Duration = Duration::from_secs(60);
const MINUTE: i64 = 60_000;

fn item(n: usize) -> String {
    format!("i{:02}", n % ITEMS)
}

fn category_of(n: usize) -> [&'static str; 2] {
    match n {
        0..=5 => ["Apparel", "Shoes"],
        6..=11 => ["Apparel", "Shirts"],
        12..=17 => ["Books", "Fiction"],
        _ => ["Books", "Poetry"],
    }
}

fn price_of(n: usize) -> i64 {
    1000 + 100 * n as i64
}

/// The model: 240 shoppers, each walking 8 steps along the sequence from their own start.
static MODEL: LazyLock<(Vec<u8>, usize, u64)> = LazyLock::new(|| {
    let mut interactions = Vec::new();
    for u in 0..240usize {
        for k in 0..8usize {
            interactions.push(TrainingInteraction {
                user: format!("shopper-{u}"),
                item: item(u * 7 + k),
                kind: InteractionKind::View,
                at_ms: 1_700_000_000_000 + (u * 8 + k) as i64,
            });
        }
    }
    let cfg = EmbeddingConfig { dim: 16, epochs: 20, ..EmbeddingConfig::default() };
    let model = embedding::train(interactions, &cfg);
    let manifest = model.manifest("recommender", "emb-v1", TENANT, 0);
    (model.to_onnx(&manifest), manifest.items.len(), manifest.stats.interactions)
});

struct Events {
    tenant: TenantId,
    now: i64,
    n: usize,
}

impl Events {
    fn event(&mut self, minutes_ago: i64, user: Option<&str>, payload: Payload) -> Event {
        self.n += 1;
        Event {
            id: EventId::parse(format!("seed-{}", self.n)).unwrap(),
            tenant: self.tenant.clone(),
            occurred_at: UnixMillis(self.now - minutes_ago * MINUTE + self.n as i64),
            user: user.map(|u| UserId::parse(u).unwrap()),
            session: user.map(|u| SessionId::parse(format!("{u}-s")).unwrap()),
            payload,
        }
    }

    fn view(&mut self, minutes_ago: i64, user: &str, item: &str) -> Event {
        self.event(minutes_ago, Some(user), Payload::ProductViewed { item: ItemId::parse(item).unwrap() })
    }

    fn order(&mut self, minutes_ago: i64, user: &str, items: &[&str]) -> Event {
        let lines = items
            .iter()
            .map(|i| OrderLine { item: ItemId::parse(*i).unwrap(), quantity: 1, unit_price: None })
            .collect();
        let order = OrderId::parse(format!("o-{}", self.n)).unwrap();
        self.event(minutes_ago, Some(user), Payload::OrderPlaced { order, lines })
    }

    fn upsert(&mut self, minutes_ago: i64, n: usize, id: &str) -> Event {
        let item = CatalogItem {
            item: ItemId::parse(id).unwrap(),
            title: format!("Item {id}"),
            category_path: category_of(n).iter().map(|c| c.to_string()).collect(),
            price: Some(Money { amount_minor: price_of(n), currency: "EUR".into() }),
            attributes: BTreeMap::new(),
        };
        self.event(minutes_ago, None, Payload::ItemUpserted(item))
    }
}

struct Stack {
    client: GatewayClient<Channel>,
    store: Arc<dyn FeatureStore>,
    shutdown: Shutdown,
    _nats: NatsServer,
    _redis: RedisServer,
}

impl Stack {
    /// NATS, Redis, the gateway, the feature and inference services, the shop's data and its
    /// model (served once this returns).
    async fn start() -> Self {
        shopmind_serving::init_runtime(
            &shopmind_serving::default_library_path().expect("run scripts/setup.sh"),
        )
        .unwrap();
        let nats = NatsServer::start();
        let redis = RedisServer::start();
        let bus = NatsBus::connect(&nats.url(), "recommend-api-test").await.unwrap();
        let bus: Arc<dyn Bus> = Arc::new(bus);
        let store: Arc<dyn FeatureStore> = Arc::new(RedisStore::connect(&redis.url()).await.unwrap());
        let mut config = Config::default();
        config.nats.url = nats.url();
        connect::ensure_streams(&*bus, &config).await.unwrap();

        seed(&*store).await;
        let (bytes, items, interactions) = MODEL.clone();
        let nats_client = NatsBus::connect(&nats.url(), "recommend-api-registry").await.unwrap();
        let registry: Arc<dyn ModelStore> =
            Arc::new(NatsModelStore::open(nats_client.client().clone()).await.unwrap());
        let key = ModelKey::parse(TENANT, "recommender").unwrap();
        let version = Version::parse("emb-v1").unwrap();
        let info = VersionInfo {
            key: key.clone(),
            version: version.clone(),
            kind: "embedding".into(),
            created_at_ms: 0,
            items: items as u64,
            users: 240,
            interactions,
            size: bytes.len() as u64,
        };
        registry.put(info, bytes.into()).await.unwrap();
        registry.promote(&key, &version).await.unwrap();

        let shutdown = Shutdown::new();
        tokio::spawn(shopmind_feature::run(config.clone(), bus.clone(), store.clone(), shutdown.clone()));
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
        let stack = Self { client, store, shutdown, _nats: nats, _redis: redis };
        let c = stack.client.clone();
        eventually(WAIT, "the model serves", || {
            let mut c = c.clone();
            async move {
                let r = c.recommend(for_you("alice")).await.ok()?.into_inner();
                (r.model_version == "emb-v1").then_some(())
            }
        })
        .await;
        stack
    }

    async fn ok(&mut self, req: pb::RecommendRequest) -> pb::RecommendResponse {
        self.client.recommend(req.clone()).await.unwrap_or_else(|e| panic!("{req:?}: {e:?}")).into_inner()
    }

    async fn err(&mut self, req: pb::RecommendRequest) -> tonic::Status {
        self.client.recommend(req.clone()).await.map(|r| panic!("{req:?} answered {r:?}")).unwrap_err()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

/// The shop's catalog and history, applied to the store.
async fn seed(store: &dyn FeatureStore) {
    let settings = FeatureSettings::default();
    let mut e = Events { tenant: TenantId::parse(TENANT).unwrap(), now: UnixMillis::now().0, n: 0 };
    let mut events = Vec::new();
    for n in 0..ITEMS {
        events.push(e.upsert(120, n, &item(n)));
    }
    events.push(e.event(
        110,
        None,
        Payload::InventoryChanged { item: ItemId::parse("i09").unwrap(), available: 0 },
    ));
    for b in 0..3 {
        events.push(e.order(3 * 24 * 60, &format!("buyer-{b}"), &["i00", "i01"]));
    }
    events.push(e.order(3 * 24 * 60, "buyer-3", &["i00", "i02"]));
    for v in 0..10 {
        events.push(e.view(30, &format!("reader-{v}"), "i12"));
    }
    for v in 0..7 {
        events.push(e.view(30, &format!("poet-{v}"), "i20"));
    }
    // A visitor browsed Poetry in session anon-1-s before signing in as someone new.
    events.push(e.view(20, "anon-1", "i20"));
    events.push(e.view(5, "alice", "i03"));
    events.push(e.view(4, "alice", "i04"));
    events.push(e.event(
        3,
        Some("carter"),
        Payload::AddedToCart { item: ItemId::parse("i00").unwrap(), quantity: 1, unit_price: None },
    ));
    events.push(e.view(6, "pat", "i08"));
    events.push(e.view(5, "pat", "i09"));
    events.push(e.order(4, "pat", &["i10"]));
    for event in &events {
        apply_event(store, event, &settings).await.unwrap();
    }
}

fn request(user: &str, scenario: pb::Scenario) -> pb::RecommendRequest {
    pb::RecommendRequest {
        tenant: TENANT.into(),
        user_id: user.into(),
        scenario: scenario as i32,
        ..Default::default()
    }
}

fn for_you(user: &str) -> pb::RecommendRequest {
    request(user, pb::Scenario::ForYou)
}

fn anchored(scenario: pb::Scenario, anchors: &[&str]) -> pb::RecommendRequest {
    pb::RecommendRequest {
        item_ids: anchors.iter().map(|a| a.to_string()).collect(),
        ..request("", scenario)
    }
}

fn ids(r: &pb::RecommendResponse) -> Vec<&str> {
    r.items.iter().map(|i| i.item_id.as_str()).collect()
}

fn number(id: &str) -> usize {
    id.trim_start_matches('i').parse().unwrap()
}

fn codes(item: &pb::ScoredItem) -> Vec<&str> {
    item.reasons.iter().map(|r| r.code.as_str()).collect()
}

#[tokio::test]
async fn for_you_ranks_with_the_model_and_reflects_an_event_of_a_moment_ago() {
    let mut s = Stack::start().await;
    let r = s.ok(for_you("alice")).await;
    assert_eq!(r.scenario, pb::Scenario::ForYou as i32);
    assert_eq!((r.model_version.as_str(), r.cold_start), ("emb-v1", false));
    assert_eq!(r.items.len(), 10);
    assert_eq!(r.items[0].item_id, "i05", "the next item of the sequence first: {:?}", ids(&r));
    assert_eq!(r.items[0].reason, "personalized");
    assert_eq!(r.items[0].category, "Shoes");
    assert!(r.items.windows(2).all(|w| w[0].score >= w[1].score), "ranked by score: {r:?}");
    let mut all = for_you("alice");
    all.limit = 100;
    let position = |r: &pb::RecommendResponse| ids(r).iter().position(|i| *i == "i15");
    let before = position(&s.ok(all.clone()).await).unwrap();
    assert!(before > 3, "i15 follows none of alice's items yet: {before}");

    // Alice views i14 now, through the gateway; the feature service applies it and the next
    // answer follows it, without retraining.
    let view = pb::Event {
        event_id: "live-1".into(),
        tenant: TENANT.into(),
        occurred_at: Some(UnixMillis::now().to_proto()),
        user_id: "alice".into(),
        session_id: "alice-s".into(),
        payload: Some(pb::event::Payload::ProductViewed(pb::ProductViewed {
            item_id: "i14".into(),
            source: String::new(),
        })),
    };
    let published = s
        .client
        .publish_events(pb::PublishEventsRequest { tenant: TENANT.into(), events: vec![view] })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(published.accepted, 1);
    let client = s.client.clone();
    eventually(WAIT, "alice's next answer follows her latest view: i15, which follows i14, moves up", || {
        let (mut c, all) = (client.clone(), all.clone());
        async move {
            let r = c.recommend(all).await.ok()?.into_inner();
            position(&r).filter(|p| *p <= 2).map(drop)
        }
    })
    .await;
}

#[tokio::test]
async fn similar_items_rank_the_anchors_neighbours_and_never_the_anchor() {
    let mut s = Stack::start().await;
    let r = s.ok(anchored(pb::Scenario::SimilarItems, &["i03"])).await;
    assert_eq!(r.scenario, pb::Scenario::SimilarItems as i32);
    assert_eq!(r.model_version, "emb-v1");
    assert!(!ids(&r).contains(&"i03"), "{:?}", ids(&r));
    assert_eq!(r.items[0].item_id, "i04", "{:?}", ids(&r));
    assert!(r.items.iter().all(|i| i.reason == "similar"), "{r:?}");

    // Two anchors: neither is recommended.
    let r = s.ok(anchored(pb::Scenario::SimilarItems, &["i03", "i10"])).await;
    assert!(!ids(&r).contains(&"i03") && !ids(&r).contains(&"i10"));
    assert!(ids(&r).contains(&"i04") || ids(&r).contains(&"i11"), "{:?}", ids(&r));
}

#[tokio::test]
async fn bought_together_answers_from_co_purchases() {
    let mut s = Stack::start().await;
    let mut req = anchored(pb::Scenario::BoughtTogether, &["i00"]);
    req.explain = true;
    let r = s.ok(req).await;
    assert_eq!(r.scenario, pb::Scenario::BoughtTogether as i32);
    assert_eq!(ids(&r), ["i01", "i02"], "by how many orders held both");
    assert!(r.items.iter().all(|i| i.reason == "bought_together"));
    assert_eq!(r.items[0].score, 3.0);
    let why = &r.items[0].reasons[0];
    assert_eq!(
        (why.code.as_str(), why.item_id.as_str(), why.text.as_str()),
        ("bought_with", "i00", "bought with i00")
    );
    // An item nobody bought with anything: an empty answer, not an error.
    let r = s.ok(anchored(pb::Scenario::BoughtTogether, &["i17"])).await;
    assert!(r.items.is_empty(), "{r:?}");
}

#[tokio::test]
async fn trending_for_the_whole_shop_and_within_a_category() {
    let mut s = Stack::start().await;
    let r = s.ok(request("", pb::Scenario::Trending)).await;
    assert_eq!(r.scenario, pb::Scenario::Trending as i32);
    assert_eq!(&ids(&r)[..2], ["i12", "i20"], "the last hour's views outweigh older orders: {r:?}");
    assert!(r.items.iter().all(|i| i.reason == "trending"));
    assert!(r.items.windows(2).all(|w| w[0].score >= w[1].score));

    let mut poetry = request("", pb::Scenario::Trending);
    poetry.category = "Poetry".into();
    poetry.explain = true;
    let r = s.ok(poetry).await;
    assert_eq!(ids(&r), ["i20"], "only Poetry items with any activity");
    let why = &r.items[0].reasons[0];
    assert_eq!((why.code.as_str(), why.category.as_str()), ("trending_in_category", "Poetry"));
    assert_eq!(why.text, "trending in Poetry");

    // Any level of the path: Books holds Fiction and Poetry.
    let mut books = request("", pb::Scenario::Trending);
    books.category = "Books".into();
    let r = s.ok(books).await;
    assert_eq!(ids(&r), ["i12", "i20"]);
}

#[tokio::test]
async fn cart_complement_answers_from_the_cart_and_cold_starts_without_one() {
    let mut s = Stack::start().await;
    let mut req = request("carter", pb::Scenario::CartComplement);
    req.explain = true;
    let r = s.ok(req).await;
    assert_eq!(r.scenario, pb::Scenario::CartComplement as i32);
    assert!(!r.cold_start);
    assert_eq!(&ids(&r)[..2], ["i01", "i02"], "{:?}", ids(&r));
    assert!(!ids(&r).contains(&"i00"), "the cart's items are not complements");
    assert_eq!(r.items[0].reason, "complement");
    let why = r.items[0].reasons.iter().find(|w| w.code == "bought_with").unwrap();
    assert_eq!((why.item_id.as_str(), why.text.as_str()), ("i00", "bought with i00"));

    let r = s.ok(request("nobody", pb::Scenario::CartComplement)).await;
    assert!(r.cold_start, "{r:?}");
    assert_eq!(r.items[0].item_id, "i12");
    assert_eq!(r.items[0].reason, "trending");
}

/// Alice's full ranking (every candidate, one page) with some filter.
async fn alice_with(s: &mut Stack, filter: impl FnOnce(&mut pb::RecommendRequest)) -> Vec<String> {
    let mut req = for_you("alice");
    req.limit = 100;
    filter(&mut req);
    s.ok(req).await.items.into_iter().map(|i| i.item_id).collect()
}

#[tokio::test]
async fn filters_narrow_the_answer() {
    let mut s = Stack::start().await;
    let all = alice_with(&mut s, |_| {}).await;
    assert_eq!(all.len(), ITEMS, "every item is a candidate of a small catalog: {all:?}");

    let shirts = alice_with(&mut s, |r| r.categories = vec!["Shirts".into()]).await;
    assert_eq!(shirts.len(), 6, "{shirts:?}");
    assert!(shirts.iter().all(|i| category_of(number(i))[1] == "Shirts"));
    let books = alice_with(&mut s, |r| r.categories = vec!["Books".into(), "Shoes".into()]).await;
    assert_eq!(books.len(), 18, "any level of the path, any of the categories: {books:?}");

    let priced = alice_with(&mut s, |r| {
        r.min_price_minor = Some(1500);
        r.max_price_minor = Some(1800);
    })
    .await;
    let mut sorted = priced.clone();
    sorted.sort();
    assert_eq!(sorted, ["i05", "i06", "i07", "i08"]);

    assert!(all.contains(&"i09".to_string()));
    let in_stock = alice_with(&mut s, |r| r.in_stock_only = true).await;
    assert!(!in_stock.contains(&"i09".to_string()));
    assert_eq!(in_stock.len(), ITEMS - 1);

    let unseen = alice_with(&mut s, |r| r.exclude_seen = true).await;
    assert!(!unseen.iter().any(|i| i == "i03" || i == "i04"), "{unseen:?}");
    assert_eq!(unseen.len(), ITEMS - 2);
    let excluded = alice_with(&mut s, |r| r.exclude_item_ids = vec!["i05".into(), "i06".into()]).await;
    assert!(!excluded.iter().any(|i| i == "i05" || i == "i06"));
    assert_eq!(excluded.len(), ITEMS - 2);

    // Pat bought i10: never recommended, unless asked for.
    let mut pat = for_you("pat");
    pat.limit = 100;
    let r = s.ok(pat.clone()).await;
    assert!(!ids(&r).contains(&"i10"), "{:?}", ids(&r));
    pat.include_purchased = true;
    let r = s.ok(pat).await;
    assert!(ids(&r).contains(&"i10"), "{:?}", ids(&r));
}

#[tokio::test]
async fn pages_follow_tokens_and_the_diversity_cap_holds_on_each() {
    let mut s = Stack::start().await;
    let mut req = for_you("alice");
    req.limit = 5;
    req.max_per_category = 2;
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let r = s.ok(req.clone()).await;
        pages += 1;
        assert!(r.items.len() <= 5);
        let mut per_category: BTreeMap<&str, usize> = BTreeMap::new();
        for i in &r.items {
            *per_category.entry(i.category.as_str()).or_default() += 1;
        }
        assert!(per_category.values().all(|n| *n <= 2), "page {pages}: {per_category:?}");
        seen.extend(r.items.iter().map(|i| i.item_id.clone()));
        if r.next_page_token.is_empty() {
            break;
        }
        req.page_token = r.next_page_token;
        assert!(pages < 50, "the pages end");
    }
    let distinct: HashSet<&String> = seen.iter().collect();
    assert_eq!(distinct.len(), seen.len(), "no item on two pages: {seen:?}");
    assert_eq!(seen.len(), ITEMS, "every candidate on some page");
    assert!(pages >= 5, "at most five items a page: {pages} pages");

    // Without a cap, the pages cut the one ranking: together they are the answer of one big page.
    let mut whole = for_you("alice");
    whole.limit = 100;
    let whole: Vec<String> = s.ok(whole).await.items.into_iter().map(|i| i.item_id).collect();
    let mut plain = for_you("alice");
    plain.limit = 5;
    let first = s.ok(plain.clone()).await;
    assert_eq!(first.items.len(), 5);
    let mut paged: Vec<String> = Vec::new();
    let mut next = plain.clone();
    loop {
        let r = s.ok(next.clone()).await;
        paged.extend(r.items.into_iter().map(|i| i.item_id));
        if r.next_page_token.is_empty() {
            break;
        }
        next.page_token = r.next_page_token;
    }
    assert_eq!(paged, whole);
    plain.page_token = first.next_page_token.clone();

    // A token is bound to its request.
    plain.limit = 6;
    let e = s.err(plain).await;
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("page_token"), "{}", e.message());
}

#[tokio::test]
async fn cold_start_users_get_trending_and_new_items_are_recommendable_by_their_category() {
    let mut s = Stack::start().await;
    let r = s.ok(for_you("nobody")).await;
    assert!(r.cold_start);
    assert_eq!(r.model_version, "", "no model ranked a user without history");
    assert_eq!(&ids(&r)[..2], ["i12", "i20"]);
    assert!(r.items.iter().all(|i| i.reason == "trending"), "{r:?}");

    // The context of a request (a category filter) steers a cold start.
    let mut poetry = for_you("nobody");
    poetry.categories = vec!["Poetry".into()];
    poetry.explain = true;
    let r = s.ok(poetry).await;
    assert!(r.cold_start);
    assert_eq!(r.items[0].item_id, "i20");
    assert!(r.items.iter().all(|i| i.category == "Poetry"), "{r:?}");
    assert_eq!(codes(&r.items[0])[0], "trending_in_category");

    // Without a category, the session's categories are the context: someone new signs in after
    // browsing Poetry in session anon-1-s.
    let mut signed_in = for_you("newcomer");
    signed_in.session_id = "anon-1-s".into();
    signed_in.explain = true;
    let r = s.ok(signed_in).await;
    assert!(r.cold_start);
    assert_eq!(r.items[0].item_id, "i20", "trending in the session's category first: {:?}", ids(&r));
    let why = &r.items[0].reasons[0];
    assert_eq!((why.code.as_str(), why.category.as_str()), ("trending_in_category", "Poetry"));
    assert_eq!((r.items[1].category.as_str(), r.items[1].reason.as_str()), ("Poetry", "new_item"), "{r:?}");
    assert!(ids(&r).contains(&"i12"), "then the shop's trending items: {:?}", ids(&r));

    // A new shoe arrives: no interactions, unknown to the model.
    let mut e = Events { tenant: TenantId::parse(TENANT).unwrap(), now: UnixMillis::now().0, n: 1000 };
    let new = e.upsert(1, 2, "i99");
    apply_event(&*s.store, &new, &FeatureSettings::default()).await.unwrap();

    let mut req = for_you("alice");
    req.explain = true;
    let r = s.ok(req).await;
    let at = ids(&r).iter().position(|i| *i == "i99").unwrap_or_else(|| panic!("{:?}", ids(&r)));
    assert!(at <= 2, "right after alice's best shoe: {:?}", ids(&r));
    let new_item = &r.items[at];
    assert_eq!((new_item.reason.as_str(), new_item.category.as_str()), ("new_item", "Shoes"));
    assert!(
        new_item
            .reasons
            .iter()
            .any(|w| w.code == "new_in_category" && w.category == "Shoes" && w.text == "new in Shoes"),
        "{new_item:?}"
    );

    let r = s.ok(anchored(pb::Scenario::SimilarItems, &["i03"])).await;
    assert!(ids(&r).contains(&"i99"), "a new item is similar by its category: {:?}", ids(&r));

    // The new item as an anchor: known to the catalog, so not NOT_FOUND; its category answers.
    let r = s.ok(anchored(pb::Scenario::SimilarItems, &["i99"])).await;
    assert!(!r.items.is_empty());
    assert!(r.items.iter().all(|i| i.category == "Shoes"), "{r:?}");
}

#[tokio::test]
async fn explanations_name_the_items_and_categories_behind_each_item() {
    let mut s = Stack::start().await;
    let mut req = for_you("alice");
    req.explain = true;
    let r = s.ok(req).await;
    for item in &r.items {
        assert!(!item.reasons.is_empty(), "{item:?}");
    }
    let first = &r.items[0].reasons[0];
    assert_eq!(first.code, "viewed", "{r:?}");
    assert!(first.item_id == "i03" || first.item_id == "i04", "{first:?}");
    assert_eq!(first.text, format!("viewed {}", first.item_id));
    // Without `explain`, no reasons (the main reason code stays).
    let r = s.ok(for_you("alice")).await;
    assert!(r.items.iter().all(|i| i.reasons.is_empty() && !i.reason.is_empty()));

    // Similar items name their anchor.
    let mut similar = anchored(pb::Scenario::SimilarItems, &["i03"]);
    similar.explain = true;
    let r = s.ok(similar).await;
    let why = &r.items[0].reasons[0];
    assert_eq!(
        (why.code.as_str(), why.item_id.as_str(), why.text.as_str()),
        ("similar_to", "i03", "similar to i03")
    );

    // Popular fill and trending carry their own codes.
    let mut trending = request("", pb::Scenario::Trending);
    trending.explain = true;
    let r = s.ok(trending).await;
    assert_eq!(codes(&r.items[0]), ["trending"]);
}

#[tokio::test]
async fn bad_requests_name_the_field_and_unknown_anchors_are_not_found() {
    let mut s = Stack::start().await;
    let invalid = |field: &'static str| {
        move |e: tonic::Status| {
            assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
            assert!(e.message().contains(field), "{field}: {}", e.message());
        }
    };
    let mut r = for_you("alice");
    r.limit = 101;
    invalid("limit")(s.err(r).await);

    let mut r = for_you("alice");
    r.scenario = 42;
    invalid("scenario")(s.err(r).await);

    invalid("user_id")(s.err(for_you("")).await);
    invalid("user_id")(s.err(request("", pb::Scenario::CartComplement)).await);
    invalid("item_ids")(s.err(request("", pb::Scenario::SimilarItems)).await);
    invalid("item_ids")(s.err(request("", pb::Scenario::BoughtTogether)).await);
    let many: Vec<String> = (0..21).map(item).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    invalid("item_ids")(s.err(anchored(pb::Scenario::SimilarItems, &many)).await);
    invalid("item_ids[1]")(s.err(anchored(pb::Scenario::SimilarItems, &["i01", "bad id"])).await);

    let mut r = for_you("alice");
    r.min_price_minor = Some(2000);
    r.max_price_minor = Some(1000);
    invalid("max_price_minor")(s.err(r).await);

    let mut r = for_you("alice");
    r.categories = vec![String::new()];
    invalid("categories[0]")(s.err(r).await);

    let mut r = for_you("alice");
    r.exclude_item_ids = vec!["bad id".into()];
    invalid("exclude_item_ids[0]")(s.err(r).await);

    let mut r = for_you("alice");
    r.page_token = "not-a-token".into();
    invalid("page_token")(s.err(r).await);

    for scenario in [pb::Scenario::SimilarItems, pb::Scenario::BoughtTogether] {
        let e = s.err(anchored(scenario, &["i01", "no-such-item"])).await;
        assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");
        assert!(e.message().contains("no-such-item"), "{}", e.message());
    }
}
