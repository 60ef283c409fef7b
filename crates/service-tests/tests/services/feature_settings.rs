//! The feature settings (`feature.*`) are one contract between the feature service, which writes
//! with them, and every service that reads features. With `feature.affinity_half_life_days`,
//! `feature.recent_items_cap` and `feature.cart_log_cap` away from their defaults, a customer's
//! history goes through the real feature service (NATS, Redis), and each reader is asked through
//! its own serving path what it sees:
//!
//! * the customer profile (`inference.profile`): the affinity scores and the first interaction
//!   kept;
//! * the assistant (`inference.assist`): the top categories of the profile it hands to the
//!   agents when the customer asks for a person;
//! * the notification rules: the features cart abandonment scores its intent on;
//! * intent serving (`inference.intent`, every feature of the row) and the trainer's intent
//!   samples (the same session, cut at the same event): the same row.
//!
//! The expected values come from the history and the configured values alone.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use prost::Message as _;
use shopmind_bus::{Bus, Headers, Message, NatsBus};
use shopmind_config::Config;
use shopmind_domain::{
    CatalogItem, Event, EventId, ItemId, OrderId, OrderLine, Payload, SessionId, TenantId, UnixMillis, UserId,
};
use shopmind_features::purchase_intent::{FEATURE_NAMES, N_FEATURES};
use shopmind_features::{UserFeatures, popularity_weight};
use shopmind_notification::rules::{self, Checked};
use shopmind_notification::seams::IntentScorer;
use shopmind_notification::{ManualClock, Notifier, Seams};
use shopmind_proto::v1 as pb;
use shopmind_registry::{MemoryModelStore, ModelStore};
use shopmind_runtime::snapshot::read_stream;
use shopmind_runtime::topology::{EVENTS_STREAM, NOTIFICATIONS_STREAM};
use shopmind_runtime::{Shutdown, connect, intake, topology};
use shopmind_store::{FeatureStore, RedisStore, StoreError};
use shopmind_testkit::{NatsServer, RedisServer, eventually};
use shopmind_trainer::purchase_intent;
use shopmind_training::PurchaseIntentConfig;

const TENANT: &str = "drift-shop";
const USER: &str = "dana";
const WAIT: Duration = Duration::from_secs(120);
const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

/// Away from the defaults (14 days, 100, 200): the readers on the defaults would see 3 times
/// the affinity of old views, 19 fewer interactions and a cart of 3 items, not 2.
const HALF_LIFE_DAYS: u32 = 2;
const RECENT_CAP: usize = 120;
const CART_LOG_CAP: usize = 2;

fn tenant() -> TenantId {
    TenantId::parse(TENANT).unwrap()
}

fn item(id: &str) -> ItemId {
    ItemId::parse(id).unwrap()
}

/// A customer history: 88 views of boots ten days ago, an order five days ago, 25 views of a
/// tent three days ago, three items put in the cart two hours ago (sessions s1, s0, s2, s3),
/// and one more view an hour ago (s4); only the boots and the tent have a category. 119
/// interactions. The half-life of two days puts the tents first at any time since; a reader
/// decaying with the default's 14 days, the boots.
struct History {
    catalog: Vec<Event>,
    activity: Vec<Event>,
    first_interaction: i64,
    last_cart_change: i64,
    last_view: i64,
}

impl History {
    fn new(now: i64) -> Self {
        let mut next = 0;
        let mut event = |user: Option<&str>, session: Option<&str>, at: i64, payload: Payload| {
            next += 1;
            Event {
                id: EventId::parse(format!("e{next}")).unwrap(),
                tenant: tenant(),
                occurred_at: UnixMillis(at),
                user: user.map(|u| UserId::parse(u).unwrap()),
                session: session.map(|s| SessionId::parse(s).unwrap()),
                payload,
            }
        };
        let listed = |id: &str, category: &str| {
            Payload::ItemUpserted(CatalogItem {
                item: item(id),
                title: format!("Item {id}"),
                category_path: vec![category.into()],
                price: None,
                attributes: Default::default(),
            })
        };
        let view = |id: &str| Payload::ProductViewed { item: item(id) };
        let catalog = vec![
            event(None, None, now - 30 * DAY, listed("sku-boots", "Boots")),
            event(None, None, now - 30 * DAY, listed("sku-tent", "Tents")),
        ];
        let first_interaction = now - 10 * DAY;
        let mut activity = Vec::new();
        for i in 0..88 {
            activity.push(event(Some(USER), Some("s1"), first_interaction + i * MINUTE, view("sku-boots")));
        }
        activity.push(event(Some(USER), Some("s0"), now - 5 * DAY, view("sku-x")));
        let lines = vec![OrderLine { item: item("sku-x"), quantity: 1, unit_price: None }];
        let order = Payload::OrderPlaced { order: OrderId::parse("o1").unwrap(), lines };
        activity.push(event(Some(USER), Some("s0"), now - 5 * DAY + MINUTE, order));
        for i in 0..25 {
            activity.push(event(Some(USER), Some("s2"), now - 3 * DAY + i * MINUTE, view("sku-tent")));
        }
        let mut last_cart_change = 0;
        for (i, id) in ["sku-x", "sku-y", "sku-z"].into_iter().enumerate() {
            last_cart_change = now - 2 * HOUR + i as i64 * 1000;
            let add = Payload::AddedToCart { item: item(id), quantity: 1, unit_price: None };
            activity.push(event(Some(USER), Some("s3"), last_cart_change, add));
        }
        let last_view = now - HOUR;
        activity.push(event(Some(USER), Some("s4"), last_view, view("sku-y")));
        Self { catalog, activity, first_interaction, last_cart_change, last_view }
    }

    fn interactions(&self) -> usize {
        self.activity.iter().map(|e| e.interactions().len()).sum()
    }

    /// Category -> affinity at `at` with the configured half-life, highest first.
    fn affinity(&self, at: i64) -> Vec<(String, f64)> {
        let category = |i: &ItemId| match i.as_str() {
            "sku-boots" => Some("Boots"),
            "sku-tent" => Some("Tents"),
            _ => None,
        };
        let half_life = f64::from(HALF_LIFE_DAYS) * DAY as f64;
        let mut scores: Vec<(String, f64)> = Vec::new();
        for i in self.activity.iter().flat_map(Event::interactions) {
            let Some(c) = category(&i.item) else { continue };
            let score = popularity_weight(i.kind) * 0.5f64.powf((at - i.at.0) as f64 / half_life);
            match scores.iter_mut().find(|(name, _)| name == c) {
                Some((_, total)) => *total += score,
                None => scores.push((c.to_string(), score)),
            }
        }
        scores.sort_by(|a, b| b.1.total_cmp(&a.1));
        scores
    }
}

/// Asserts that `got` (category, score) is `expected` within a relative 1e-3 (the readers decay
/// to their own "now", seconds apart).
fn assert_affinity(reader: &str, got: &[(String, f64)], expected: &[(String, f64)]) {
    let names = |s: &[(String, f64)]| s.iter().map(|(c, _)| c.clone()).collect::<Vec<_>>();
    assert_eq!(names(got), names(expected), "{reader}: categories by affinity, {got:?}");
    for ((c, g), (_, e)) in got.iter().zip(expected) {
        assert!(
            (g - e).abs() <= 1e-3 * e,
            "{reader}: the affinity of {c} is {g}, the feature service wrote {e}"
        );
    }
}

/// Remembers the features the cart-abandonment rule scores, and scores 0.
#[derive(Default)]
struct Recorded(Mutex<Option<UserFeatures>>);

#[async_trait::async_trait]
impl IntentScorer for Recorded {
    async fn intent(
        &self,
        _tenant: &TenantId,
        _user: &UserId,
        features: &UserFeatures,
        _now: UnixMillis,
    ) -> Result<f64, StoreError> {
        *self.0.lock().unwrap() = Some(features.clone());
        Ok(0.0)
    }
}

async fn ask(bus: &dyn Bus, method: &str, request: &impl prost::Message) -> Option<Bytes> {
    let subject = topology::rpc_subject(&tenant(), "inference", method);
    let message = Message::new(subject, request.encode_to_vec());
    Some(bus.request(message, Duration::from_secs(20)).await.ok()?.payload)
}

async fn caught_up(bus: &dyn Bus) {
    eventually(WAIT, "the feature service applied every event", || async {
        bus.consumer_lag(EVENTS_STREAM, shopmind_feature::DURABLE).await.ok()?.is_caught_up().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_reader_reads_what_the_feature_service_writes_with_the_configured_settings() {
    let (nats, redis) = (NatsServer::start(), RedisServer::start());
    let mut config = Config::default();
    config.nats.url = nats.url();
    config.redis.url = redis.url();
    config.feature.affinity_half_life_days = HALF_LIFE_DAYS;
    config.feature.recent_items_cap = RECENT_CAP;
    config.feature.cart_log_cap = CART_LOG_CAP;
    config.assistant.defaults.faq_dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/faq/demo").display().to_string();
    config.notification.model_seams = false;
    config.notification.defaults.rules.cart_abandonment.min_intent = 1.0;
    config.validate().unwrap();
    let bus: Arc<dyn Bus> = Arc::new(NatsBus::connect(&nats.url(), "feature-settings-test").await.unwrap());
    connect::ensure_streams(&*bus, &config).await.unwrap();
    let store: Arc<dyn FeatureStore> = Arc::new(RedisStore::connect(&redis.url()).await.unwrap());
    let registry: Arc<dyn ModelStore> = Arc::new(MemoryModelStore::new());
    let shutdown = Shutdown::new();
    tokio::spawn(shopmind_feature::run(config.clone(), bus.clone(), store.clone(), shutdown.clone()));
    tokio::spawn(shopmind_notification::run(config.clone(), bus.clone(), store.clone(), shutdown.clone()));
    let (c, b, s, r) = (config.clone(), bus.clone(), store.clone(), registry.clone());
    tokio::spawn(shopmind_inference::run(c, b, s, r, shutdown.clone()));

    let now = UnixMillis::now().0;
    let history = History::new(now);
    assert_eq!(history.interactions(), 119);
    // The catalog first: an interaction counts towards the category its item has when applied.
    intake::publish_events(&*bus, &history.catalog, &Headers::new()).await.unwrap();
    caught_up(&*bus).await;
    intake::publish_events(&*bus, &history.activity, &Headers::new()).await.unwrap();
    caught_up(&*bus).await;

    // The customer profile.
    let request =
        pb::GetCustomerProfileRequest { tenant: TENANT.into(), user_id: USER.into(), recent_limit: 0 };
    let reply = eventually(WAIT, "inference answers", || ask(&*bus, "profile", &request)).await;
    let profile = match pb::ProfileReply::decode(reply).unwrap().result.unwrap() {
        pb::profile_reply::Result::Ok(p) => p,
        pb::profile_reply::Result::Error(e) => panic!("{e:?}"),
    };
    let scores: Vec<(String, f64)> =
        profile.top_categories.iter().map(|c| (c.category.clone(), f64::from(c.score))).collect();
    assert_affinity("the profile", &scores, &history.affinity(UnixMillis::now().0));
    let first_seen = profile.first_seen.map(|t| UnixMillis::from_proto(&t).0);
    assert_eq!(first_seen, Some(history.first_interaction), "the profile sees all 119 interactions");

    // The notification rules: what cart abandonment scores.
    let recorded = Arc::new(Recorded::default());
    let seams = Seams { intent: recorded.clone(), ..Seams::fallbacks(store.clone(), 28) };
    let notifier = Notifier::new(config.clone(), bus.clone(), store.clone())
        .with_clock(Arc::new(ManualClock::new(UnixMillis(now))))
        .with_seams(seams);
    let checked = rules::check_cart_idle(&notifier, &tenant(), USER, history.last_cart_change).await.unwrap();
    assert_eq!(checked, Checked::Silent);
    let features = recorded.0.lock().unwrap().take().expect("the rule scored the cart");
    assert_affinity("the cart-abandonment rule", &features.affinity, &history.affinity(now));
    assert_eq!(features.recent.len(), 119, "the cart-abandonment rule sees all 119 interactions");
    assert_eq!(features.cart.len(), CART_LOG_CAP, "{:?}", features.cart);

    // Intent serving and the trainer's samples: the row of session s4 at its view. The model is
    // trained on the samples, as a training round does.
    let samples = purchase_intent::build_samples(
        &[history.catalog.clone(), history.activity.clone()].concat(),
        &shopmind_trainer::intent_sample_options(&config),
        &mut |_| {},
    )
    .await
    .unwrap();
    let trained = samples.iter().find(|s| s.session == "s4").unwrap().features;
    let model = purchase_intent::train(&samples, &PurchaseIntentConfig::default()).unwrap();
    let bytes = model.to_onnx(&model.manifest("intent-drift", TENANT, now));
    let info = shopmind_trainer::version_info_of_onnx(&bytes).unwrap();
    registry.put(info.clone(), Bytes::from(bytes)).await.unwrap();
    registry.promote(&info.key, &info.version).await.unwrap();
    let request = pb::IntentRequest {
        tenant: TENANT.into(),
        user_id: USER.into(),
        session_id: "s4".into(),
        at_unix_ms: history.last_view,
        top_features: N_FEATURES as u32,
    };
    let served = eventually(WAIT, "inference serves the intent model", || async {
        let reply = pb::IntentReply::decode(ask(&*bus, "intent", &request).await?).ok()?;
        match reply.result? {
            pb::intent_reply::Result::Ok(ok) => Some(ok),
            pb::intent_reply::Result::Error(_) => None,
        }
    })
    .await;
    let value = |name: &str| served.top_features.iter().find(|f| f.name == name).map(|f| f.value);
    let served: Vec<Option<f32>> = FEATURE_NAMES.iter().map(|n| value(n)).collect();
    let trained: Vec<Option<f32>> = trained.iter().copied().map(Some).collect();
    assert_eq!(
        served, trained,
        "intent serving and the trainer's sample disagree on the row {FEATURE_NAMES:?}"
    );
    let cart_units = FEATURE_NAMES.iter().position(|n| *n == "user_cart_units").unwrap();
    assert_eq!(served[cart_units], Some((CART_LOG_CAP as f32).ln_1p()), "the cart the feature service kept");

    // The assistant: the profile it hands to the agents.
    let assist = |conversation: &str, user: &str, text: &str| pb::AssistRequest {
        tenant: TENANT.into(),
        conversation_id: conversation.into(),
        user_id: user.into(),
        text: text.into(),
    };
    let human = assist("drift-1", USER, "I want to talk to a real person");
    let answered = eventually(WAIT, "the assistant answers", || async {
        let reply = pb::AssistReply::decode(ask(&*bus, "assist", &human).await?).ok()?;
        match reply.result? {
            pb::assist_reply::Result::Ok(ok) => Some(ok),
            pb::assist_reply::Result::Error(_) => None,
        }
    })
    .await;
    assert!(answered.escalated, "{answered:?}");
    let escalation = eventually(WAIT, "the escalation reaches the agents", || async {
        read_stream(&*bus, NOTIFICATIONS_STREAM).await.ok()?.into_iter().find_map(|m| {
            let n = pb::Notification::decode(m.message.payload).ok()?;
            (n.kind == pb::NotificationKind::SupportEscalation as i32 && n.user_id == USER).then_some(n)
        })
    })
    .await;
    assert_eq!(
        escalation.data.get("profile.top_categories").map(String::as_str),
        Some("Tents, Boots"),
        "the assistant's profile of the customer: {:?}",
        escalation.data
    );
    shutdown.trigger();
}
