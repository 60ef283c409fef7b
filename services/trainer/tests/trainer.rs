//! A training round publishes each tenant's model to the registry as a new version, promotes it
//! when `trainer.auto_promote` says so, and prunes old versions (`models.keep_versions`).

#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use prost::Message as _;
use shopmind_bus::{Bus, MemoryBus, Message};
use shopmind_config::Config;
use shopmind_domain::{Event, EventId, ItemId, Payload, TenantId, UnixMillis, UserId};
use shopmind_registry::{MemoryModelStore, ModelKey, ModelStore, Version};
use shopmind_runtime::{connect, topology};

async fn view(bus: &dyn Bus, tenant: &str, id: &str, user: &str, item: &str) {
    let event = Event {
        id: EventId::parse(id).unwrap(),
        tenant: TenantId::parse(tenant).unwrap(),
        occurred_at: UnixMillis(1_767_225_600_000),
        user: Some(UserId::parse(user).unwrap()),
        session: None,
        payload: Payload::ProductViewed { item: ItemId::parse(item).unwrap() },
    };
    let subject = topology::event_subject(&event.tenant, event.kind());
    bus.publish(Message::new(subject, Bytes::from(event.to_proto().encode_to_vec())), Some(id))
        .await
        .unwrap();
}

#[tokio::test]
async fn rounds_publish_versions_promote_by_config_and_prune() {
    let bus = MemoryBus::new();
    let models = MemoryModelStore::new();
    let mut config = Config::default();
    config.models.keep_versions = 2;
    connect::ensure_streams(&bus, &config).await.unwrap();
    for u in 0..3 {
        view(&bus, "acme", &format!("a{u}-1"), &format!("u{u}"), "i1").await;
        view(&bus, "acme", &format!("a{u}-2"), &format!("u{u}"), "i2").await;
    }
    view(&bus, "beta", "b1", "u1", "j1").await;

    let mut trainer = shopmind_trainer::Trainer::new();
    let first = trainer.round(&config, &bus, &models, &|_, _| {}).await.unwrap();
    assert_eq!(first.len(), 2, "one model per tenant: {first:?}");
    let acme = ModelKey::parse("acme", "recommender").unwrap();
    let v1 = first.iter().find(|m| m.tenant.as_str() == "acme").unwrap();
    assert!(v1.promoted);
    assert_eq!((v1.items, v1.users, v1.interactions), (2, 3, 6));
    assert_eq!(models.active(&acme).await.unwrap().unwrap().version.as_str(), v1.version);
    // The artifact describes itself: its manifest matches what the registry lists.
    let bytes = models.get(&acme, &Version::parse(v1.version.clone()).unwrap()).await.unwrap();
    let described = shopmind_trainer::version_info_of_onnx(&bytes).unwrap();
    // Offline metrics in the manifest: each of the three users' latest view (i2) was held out.
    let metrics = shopmind_onnx::read_manifest(&bytes).unwrap().metrics;
    assert_eq!(metrics.get("holdout_users"), Some(&3.0), "{metrics:?}");
    assert_eq!(v1.metrics, metrics);
    for (name, value) in &metrics {
        assert!(name == "holdout_users" || (0.0..=1.0).contains(value), "{name} = {value}");
    }
    let listed = models.versions(Some(&acme.tenant)).await.unwrap();
    assert_eq!(listed, vec![described]);

    // Nothing new: nothing trained.
    assert!(trainer.round(&config, &bus, &models, &|_, _| {}).await.unwrap().is_empty());

    // Without auto-promotion a new version is stored, and the active one stays.
    config.trainer.auto_promote = false;
    view(&bus, "acme", "a9", "u9", "i3").await;
    let second = trainer.round(&config, &bus, &models, &|_, _| {}).await.unwrap();
    assert_eq!(second.len(), 1);
    assert!(!second[0].promoted);
    assert_ne!(second[0].version, v1.version);
    assert_eq!(models.active(&acme).await.unwrap().unwrap().version.as_str(), v1.version);
    assert_eq!(models.versions(Some(&acme.tenant)).await.unwrap().len(), 2);

    // With keep_versions = 2, a third and fourth version prune the oldest unreferenced one, never
    // the active one.
    for n in 0..2 {
        view(&bus, "acme", &format!("more-{n}"), "u7", &format!("k{n}")).await;
        // Versions are named after the training time in milliseconds: let it move on.
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        trainer.round(&config, &bus, &models, &|_, _| {}).await.unwrap();
    }
    let left: Vec<String> = models
        .versions(Some(&acme.tenant))
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.version.to_string())
        .collect();
    assert_eq!(left.len(), 3, "the two newest and the active one: {left:?}");
    assert!(left.contains(&v1.version), "{left:?}");
    assert!(!left.contains(&second[0].version), "the oldest unreferenced one is gone: {left:?}");
}

/// A customer with a tombstone in `SM_ERASURES` is left out of training, stragglers published
/// after the erasure included (docs/PRIVACY.md, "Erasure").
#[tokio::test]
async fn events_of_erased_customers_are_not_trained_on() {
    let bus = MemoryBus::new();
    let models = MemoryModelStore::new();
    let mut config = Config::default();
    config.trainer.holdout_eval = false;
    connect::ensure_streams(&bus, &config).await.unwrap();
    for u in ["alice", "bob", "carol"] {
        view(&bus, "acme", &format!("{u}-1"), u, "i1").await;
        view(&bus, "acme", &format!("{u}-2"), u, "i2").await;
    }
    view(&bus, "acme", "alice-3", "alice", "only-alice").await;
    let acme = TenantId::parse("acme").unwrap();
    let tombstone = shopmind_privacy::tombstone_of(&acme, &UserId::parse("alice").unwrap());
    bus.publish(Message::new(topology::erased_subject(&acme), Bytes::from(tombstone)), None).await.unwrap();

    let mut trainer = shopmind_trainer::Trainer::new();
    let trained = trainer.round(&config, &bus, &models, &|_, _| {}).await.unwrap();
    let model = trained.iter().find(|m| m.model == "recommender").unwrap();
    assert_eq!((model.users, model.interactions, model.items), (2, 4, 2), "{model:?}");
}
