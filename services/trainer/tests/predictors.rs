//! A training round on real NATS (events stream, model registry) trains and publishes the
//! purchase-intent and demand models of a simulated shop, and skips them for a tenant with too
//! little data, which still gets its recommender.

#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use prost::Message as _;
use shopmind_bus::{Bus, Message, NatsBus};
use shopmind_config::Config;
use shopmind_domain::{Event, TenantId, ValidationPolicy};
use shopmind_registry::{ModelKey, ModelStore, NatsModelStore, Version};
use shopmind_runtime::{connect, topology};
use shopmind_simulator::{SimConfig, Simulator};
use shopmind_testkit::NatsServer;

async fn publish(bus: &dyn Bus, events: &[Event]) {
    for e in events {
        let subject = topology::event_subject(&e.tenant, e.kind());
        let id = format!("{}:{}", e.tenant, e.id);
        bus.publish(Message::new(subject, Bytes::from(e.to_proto().encode_to_vec())), Some(&id))
            .await
            .unwrap();
    }
}

fn simulated(tenant: &str, users: usize, days: u32) -> Vec<Event> {
    let cfg = SimConfig {
        seed: 7,
        tenant: tenant.into(),
        users,
        items: 30,
        categories: 4,
        days,
        ..SimConfig::default()
    };
    let policy = ValidationPolicy::stored();
    Simulator::new(cfg).unwrap().map(|w| Event::from_proto(&w, None, &policy).unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_publishes_intent_and_demand_for_a_shop_with_enough_data_and_skips_a_tiny_one() {
    let nats = NatsServer::start();
    let bus = NatsBus::connect(&nats.url(), "trainer-predictors-test").await.unwrap();
    let models = NatsModelStore::open(bus.client().clone()).await.unwrap();
    let mut config = Config::default();
    config.nats.url = nats.url();
    // The recommender is not what this test is about; two passes keep it quick in debug builds.
    config.trainer.embedding_epochs = 2;
    connect::ensure_streams(&bus, &config).await.unwrap();

    let shop = simulated("shop", 30, 90);
    let tiny = simulated("tiny", 3, 5);
    publish(&bus, &shop).await;
    publish(&bus, &tiny).await;

    let mut trainer = shopmind_trainer::Trainer::new();
    let trained = trainer.round(&config, &bus, &models, &|_, _| {}).await.unwrap();
    let mut names: Vec<(String, String)> =
        trained.iter().map(|m| (m.tenant.to_string(), m.model.clone())).collect();
    names.sort();
    assert_eq!(
        names,
        [
            ("shop".to_string(), "demand".to_string()),
            ("shop".into(), "intent".into()),
            ("shop".into(), "recommender".into()),
            ("tiny".into(), "recommender".into()),
        ],
        "{trained:?}"
    );

    for model in ["intent", "demand"] {
        let m = trained.iter().find(|m| m.model == model).unwrap();
        assert!(m.promoted);
        let key = ModelKey::parse("shop", model).unwrap();
        // Active, and the artifact describes itself as what the registry lists.
        assert_eq!(models.active(&key).await.unwrap().unwrap().version.as_str(), m.version);
        let bytes = models.get(&key, &Version::parse(m.version.clone()).unwrap()).await.unwrap();
        let described = shopmind_trainer::version_info_of_onnx(&bytes).unwrap();
        assert_eq!(described.key, key);
        assert_eq!(described.version.as_str(), m.version);
        assert!(m.interactions > 0 && m.users > 0, "{m:?}");
        let listed = models.versions(Some(&TenantId::parse("shop").unwrap())).await.unwrap();
        assert!(listed.iter().any(|v| v.key == key && v.version == described.version));
    }
    let intent = trained.iter().find(|m| m.model == "intent").unwrap();
    assert!(intent.interactions >= config.trainer.intent_min_sessions as u64, "{intent:?}");
    // Both carry offline metrics measured on held-out data (the latest sessions; the last days).
    let auc = intent.metrics.get("holdout_roc_auc").copied().unwrap_or(f64::NAN);
    assert!((0.0..=1.0).contains(&auc) && intent.metrics["holdout_sessions"] >= 1.0, "{intent:?}");
    let demand = trained.iter().find(|m| m.model == "demand").unwrap();
    let mase = demand.metrics.get("holdout_mase").copied().unwrap_or(f64::NAN);
    assert!(mase.is_finite() && mase >= 0.0 && demand.metrics["holdout_windows"] >= 1.0, "{demand:?}");
    // The tiny tenant has neither model.
    for model in ["intent", "demand"] {
        assert!(models.active(&ModelKey::parse("tiny", model).unwrap()).await.unwrap().is_none());
    }

    // Nothing new: nothing trained. New events of the shop: new versions of all three.
    assert!(trainer.round(&config, &bus, &models, &|_, _| {}).await.unwrap().is_empty());
    let more: Vec<Event> = simulated("shop", 30, 90)
        .into_iter()
        .filter(|e| e.user.is_some())
        .take(5)
        .map(|mut e| {
            e.id = shopmind_domain::EventId::parse(format!("again-{}", e.id)).unwrap();
            e
        })
        .collect();
    publish(&bus, &more).await;
    let second = trainer.round(&config, &bus, &models, &|_, _| {}).await.unwrap();
    let mut again: Vec<&str> = second.iter().map(|m| m.model.as_str()).collect();
    again.sort_unstable();
    assert_eq!(again, ["demand", "intent", "recommender"]);
    assert!(second.iter().all(|m| m.tenant.as_str() == "shop"));
    assert_ne!(second.iter().find(|m| m.model == "intent").unwrap().version, intent.version);

    // Switched off, the round trains only recommenders.
    config.trainer.predictors = false;
    publish(
        &bus,
        &simulated("tiny", 3, 5)
            .into_iter()
            .take(3)
            .map(|mut e| {
                e.id = shopmind_domain::EventId::parse(format!("late-{}", e.id)).unwrap();
                e
            })
            .collect::<Vec<_>>(),
    )
    .await;
    let third = trainer.round(&config, &bus, &models, &|_, _| {}).await.unwrap();
    assert!(third.iter().all(|m| m.model == "recommender"), "{third:?}");
}
