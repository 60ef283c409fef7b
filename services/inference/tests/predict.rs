//! The intent and forecast methods on real NATS, Redis and ONNX Runtime: a tenant without a model
//! gets NOT_FOUND; once versions are promoted, answers come from them (checked against the models'
//! reference computations on the features the store holds); promoting another version swaps it in.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use prost::Message as _;
use shopmind_bus::{Bus, Message, NatsBus};
use shopmind_config::Config;
use shopmind_domain::{
    Event, EventId, ItemId, Money, OrderId, OrderLine, Payload, SessionId, TenantId, UnixMillis, UserId,
};
use shopmind_features::purchase_intent::{self, FEATURE_NAMES, FEATURE_SCHEMA_VERSION, N_FEATURES};
use shopmind_features::{FeatureSettings, apply_event, read_session_and_user_features};
use shopmind_onnx::TrainingStats;
use shopmind_proto::v1 as pb;
use shopmind_registry::{ModelKey, ModelStore, NatsModelStore, Version};
use shopmind_runtime::{Shutdown, topology};
use shopmind_store::{FeatureStore, RedisStore};
use shopmind_testkit::{NatsServer, RedisServer, eventually};
use shopmind_training::demand::{DemandModel, day_of};
use shopmind_training::purchase_intent::PurchaseIntentModel;

const TENANT: &str = "predict-shop";
const WAIT: Duration = Duration::from_secs(60);
const DAY: i64 = 86_400_000;

fn tenant() -> TenantId {
    TenantId::parse(TENANT).unwrap()
}

fn intent_model(bias: f32) -> PurchaseIntentModel {
    PurchaseIntentModel {
        feature_names: FEATURE_NAMES.iter().map(|s| (*s).to_owned()).collect(),
        feature_schema_version: FEATURE_SCHEMA_VERSION,
        mean: vec![0.5; N_FEATURES],
        scale: vec![1.0; N_FEATURES],
        weights: (0..N_FEATURES).map(|i| (i as f32 - 7.0) / 5.0).collect(),
        bias,
        base_rate: 0.2,
        stats: TrainingStats { users: 1, interactions: 2, first_at_ms: 0, last_at_ms: 1 },
        iterations: 1,
    }
}

/// Forecasts the mean of the history for every day (no weights, weekday terms of 1), with an
/// interval of +-1 unit at a level of 1.
fn mean_model() -> DemandModel {
    let (t, h) = (56, 14);
    DemandModel {
        history_days: t,
        horizon: h,
        weights: vec![0.0; t * h],
        weekday_terms: vec![1.0; 7 * h],
        lower_q: vec![-1.0; h],
        upper_q: vec![1.0; h],
        coverage: 0.8,
        stats: TrainingStats { users: 1, interactions: 1, first_at_ms: 0, last_at_ms: 1 },
    }
}

async fn put_and_promote(registry: &dyn ModelStore, model: &str, version: &str, bytes: Vec<u8>) {
    let info = version_info(model, version, &bytes);
    registry.put(info, Bytes::from(bytes)).await.unwrap();
    registry
        .promote(&ModelKey::parse(TENANT, model).unwrap(), &Version::parse(version).unwrap())
        .await
        .unwrap();
}

fn version_info(model: &str, version: &str, bytes: &[u8]) -> shopmind_registry::VersionInfo {
    let m = shopmind_onnx::read_manifest(bytes).unwrap();
    shopmind_registry::VersionInfo {
        key: ModelKey::parse(TENANT, model).unwrap(),
        version: Version::parse(version).unwrap(),
        kind: m.kind,
        created_at_ms: m.created_at_ms,
        items: 0,
        users: m.stats.users,
        interactions: m.stats.interactions,
        size: 0,
    }
}

async fn intent(bus: &dyn Bus, user: &str, session: &str, at: i64) -> pb::intent_reply::Result {
    let req = pb::IntentRequest {
        tenant: TENANT.into(),
        user_id: user.into(),
        session_id: session.into(),
        at_unix_ms: at,
        top_features: 3,
    };
    let subject = topology::rpc_subject(&tenant(), "inference", "intent");
    let reply =
        bus.request(Message::new(subject, req.encode_to_vec()), Duration::from_secs(10)).await.unwrap();
    pb::IntentReply::decode(reply.payload.as_ref()).unwrap().result.unwrap()
}

async fn forecast(bus: &dyn Bus, items: &[&str], horizon: u32, at: i64) -> pb::forecast_reply::Result {
    let req = pb::ForecastRequest {
        tenant: TENANT.into(),
        item_ids: items.iter().map(|s| s.to_string()).collect(),
        horizon_days: horizon,
        at_unix_ms: at,
    };
    let subject = topology::rpc_subject(&tenant(), "inference", "forecast");
    let reply =
        bus.request(Message::new(subject, req.encode_to_vec()), Duration::from_secs(10)).await.unwrap();
    pb::ForecastReply::decode(reply.payload.as_ref()).unwrap().result.unwrap()
}

fn event(id: &str, user: &str, session: Option<&str>, at: i64, payload: Payload) -> Event {
    Event {
        id: EventId::parse(id).unwrap(),
        tenant: tenant(),
        occurred_at: UnixMillis(at),
        user: Some(UserId::parse(user).unwrap()),
        session: session.map(|s| SessionId::parse(s).unwrap()),
        payload,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intent_and_forecast_answer_from_the_promoted_versions_and_swap() {
    let nats = NatsServer::start();
    let redis = RedisServer::start();
    let bus = NatsBus::connect(&nats.url(), "predict-test").await.unwrap();
    let store: Arc<dyn FeatureStore> = Arc::new(RedisStore::connect(&redis.url()).await.unwrap());
    let registry: Arc<dyn ModelStore> = Arc::new(NatsModelStore::open(bus.client().clone()).await.unwrap());

    // A shopper in session s1 viewed two items and put one in the cart; a buyer ordered 2 units of
    // i1 on each of the 28 days before `now`.
    let now = (UnixMillis::now().0 / DAY) * DAY + 12 * 3_600_000;
    let settings = FeatureSettings::default();
    let shopper = [
        event(
            "v1",
            "shopper",
            Some("s1"),
            now - 600_000,
            Payload::ProductViewed { item: ItemId::parse("i1").unwrap() },
        ),
        event(
            "v2",
            "shopper",
            Some("s1"),
            now - 500_000,
            Payload::ProductViewed { item: ItemId::parse("i2").unwrap() },
        ),
        event(
            "c1",
            "shopper",
            Some("s1"),
            now - 400_000,
            Payload::AddedToCart { item: ItemId::parse("i1").unwrap(), quantity: 1, unit_price: None },
        ),
    ];
    for e in &shopper {
        apply_event(&*store, e, &settings).await.unwrap();
    }
    for d in 1..=28 {
        let lines = vec![OrderLine {
            item: ItemId::parse("i1").unwrap(),
            quantity: 2,
            unit_price: Some(Money { amount_minor: 500, currency: "EUR".into() }),
        }];
        let order = Payload::OrderPlaced { order: OrderId::parse(format!("o{d}")).unwrap(), lines };
        apply_event(&*store, &event(&format!("o{d}"), "buyer", None, now - d * DAY, order), &settings)
            .await
            .unwrap();
    }

    let mut config = Config::default();
    config.nats.url = nats.url();
    let shutdown = Shutdown::new();
    let service = tokio::spawn(shopmind_inference::run(
        config,
        Arc::new(bus.clone()),
        store.clone(),
        registry.clone(),
        shutdown.clone(),
    ));

    // No model yet: NOT_FOUND, naming the model.
    let subject = topology::rpc_subject(&tenant(), "inference", "intent");
    eventually(WAIT, "inference answers intent requests", || async {
        bus.request(Message::new(subject.clone(), Vec::<u8>::new()), Duration::from_secs(2)).await.ok()
    })
    .await;
    match intent(&bus, "shopper", "s1", now).await {
        pb::intent_reply::Result::Error(e) => {
            assert_eq!(e.code, pb::ServiceErrorCode::NotFound as i32, "{e:?}");
            assert!(e.message.contains("intent"), "{e:?}");
        }
        other => panic!("{other:?}"),
    }
    match forecast(&bus, &["i1"], 7, now).await {
        pb::forecast_reply::Result::Error(e) => assert_eq!(e.code, pb::ServiceErrorCode::NotFound as i32),
        other => panic!("{other:?}"),
    }
    // Invalid requests name their fields.
    match intent(&bus, "", "", now).await {
        pb::intent_reply::Result::Error(e) => assert_eq!(e.violations[0].field, "user_id"),
        other => panic!("{other:?}"),
    }

    // v1 of both models.
    let (m1, m2) = (intent_model(-0.5), intent_model(1.5));
    put_and_promote(&*registry, "intent", "intent-v1", m1.to_onnx(&m1.manifest("intent-v1", TENANT, 1)))
        .await;
    let demand = mean_model();
    put_and_promote(
        &*registry,
        "demand",
        "demand-v1",
        demand.to_onnx(&demand.manifest("demand-v1", TENANT, 1)),
    )
    .await;
    let answered = |version: &'static str| {
        let bus = bus.clone();
        async move {
            eventually(WAIT, &format!("intent served by {version}"), || async {
                match intent(&bus, "shopper", "s1", now).await {
                    pb::intent_reply::Result::Ok(ok) if ok.model_version == version => Some(ok),
                    _ => None,
                }
            })
            .await
        }
    };
    let got = answered("intent-v1").await;
    let (sf, uf) = read_session_and_user_features(
        &*store,
        &tenant(),
        Some(&SessionId::parse("s1").unwrap()),
        Some(&UserId::parse("shopper").unwrap()),
        &settings,
        UnixMillis(now),
    )
    .await
    .unwrap();
    let row = purchase_intent::purchase_intent_features(&sf, &uf, UnixMillis(now));
    assert_eq!(row[1], (2f32).ln(), "one cart add in the session");
    let want = m1.predict_row(&row);
    assert!((got.probability - want.probability).abs() < 1e-5, "{got:?} vs {want:?}");
    assert_eq!(got.user_id, "shopper");
    let top: Vec<(&str, f32)> = want.top(&m1.feature_names, 3);
    assert_eq!(got.top_features.len(), 3);
    for (g, (name, c)) in got.top_features.iter().zip(&top) {
        assert_eq!(g.name, *name);
        assert!((g.contribution - c).abs() < 1e-5, "{g:?} vs {c}");
        let i = FEATURE_NAMES.iter().position(|n| n == name).unwrap();
        assert_eq!(g.value, row[i]);
    }
    // Only the session: its user is found, and the answer is the same.
    match intent(&bus, "", "s1", now).await {
        pb::intent_reply::Result::Ok(ok) => {
            assert_eq!(ok.user_id, "shopper");
            assert_eq!(ok.probability, got.probability);
        }
        other => panic!("{other:?}"),
    }

    // Forecasts: i1 sold 56 units in the 56 days before today, so the mean model says 1 a day.
    let f = eventually(WAIT, "forecast served by demand-v1", || async {
        match forecast(&bus, &["i1", "never-sold"], 7, now).await {
            pb::forecast_reply::Result::Ok(ok) => Some(ok),
            _ => None,
        }
    })
    .await;
    assert_eq!((f.model_version.as_str(), f.first_day, f.model_horizon_days), ("demand-v1", day_of(now), 14));
    assert!((f.coverage - 0.8).abs() < 1e-6);
    assert_eq!(f.items.iter().map(|i| i.item_id.as_str()).collect::<Vec<_>>(), ["i1", "never-sold"]);
    let i1 = &f.items[0];
    assert_eq!(i1.forecast.len(), 7);
    assert!(i1.forecast.iter().all(|v| (v - 1.0).abs() < 1e-5), "{i1:?}");
    assert!(
        i1.lower.iter().all(|v| v.abs() < 1e-5) && i1.upper.iter().all(|v| (v - 2.0).abs() < 1e-5),
        "{i1:?}"
    );
    assert!(f.items[1].forecast.iter().all(|v| *v == 0.0), "{:?}", f.items[1]);
    match forecast(&bus, &["i1"], 15, now).await {
        pb::forecast_reply::Result::Error(e) => assert_eq!(e.violations[0].field, "horizon_days"),
        other => panic!("{other:?}"),
    }

    // Promoting v2 swaps it in.
    put_and_promote(&*registry, "intent", "intent-v2", m2.to_onnx(&m2.manifest("intent-v2", TENANT, 2)))
        .await;
    let got2 = answered("intent-v2").await;
    assert!((got2.probability - m2.predict_row(&row).probability).abs() < 1e-5);
    assert!(got2.probability > got.probability);

    shutdown.trigger();
    tokio::time::timeout(WAIT, service).await.unwrap().unwrap().unwrap();
}
