//! The caller's deadline reaches the model's batch queue: a request whose deadline has passed is
//! answered DEADLINE_EXCEEDED without being scored; one with time left is scored by the model.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use shopmind_domain::{Event, EventId, ItemId, Payload, SessionId, TenantId, UnixMillis, UserId};
use shopmind_features::{FeatureSettings, apply_event};
use shopmind_inference::{Recommender, Recommenders};
use shopmind_proto::v1 as pb;
use shopmind_registry::{ActiveChange, MemoryModelStore, ModelKey, ModelStore, Version, VersionInfo};
use shopmind_serving::{BatchOptions, PoolOptions, init_runtime};
use shopmind_store::{FeatureStore, MemoryStore};
use shopmind_training::covisit::train;
use shopmind_training::{CovisitConfig, TrainingInteraction};

const T0: i64 = 1_767_225_600_000;

fn view(tenant: &TenantId, n: i64, user: &str, item: &str) -> Event {
    Event {
        id: EventId::parse(format!("e{n}")).unwrap(),
        tenant: tenant.clone(),
        occurred_at: UnixMillis(T0 + n * 1000),
        user: Some(UserId::parse(user).unwrap()),
        session: Some(SessionId::parse(format!("{user}-s")).unwrap()),
        payload: Payload::ProductViewed { item: ItemId::parse(item).unwrap() },
    }
}

#[tokio::test]
async fn deadlines_travel_into_the_batcher() {
    init_runtime(&shopmind_serving::default_library_path().expect("run scripts/setup.sh")).unwrap();
    let tenant = TenantId::parse("acme").unwrap();

    // A model where "b" follows "a".
    let interactions = ["u1", "u2", "u3"].into_iter().flat_map(|u| {
        ["a", "b"].into_iter().enumerate().map(move |(k, item)| TrainingInteraction {
            user: u.into(),
            item: item.into(),
            kind: shopmind_domain::InteractionKind::View,
            at_ms: T0 + k as i64,
        })
    });
    let model = train(interactions, &CovisitConfig::default());
    let manifest = model.manifest("recommender", "v1", "acme", 0);
    let bytes = model.to_onnx(&manifest);
    let key = ModelKey::parse("acme", "recommender").unwrap();
    let version = Version::parse("v1").unwrap();
    let registry = MemoryModelStore::new();
    let info = VersionInfo {
        key: key.clone(),
        version: version.clone(),
        kind: manifest.kind.clone(),
        created_at_ms: 0,
        items: manifest.items.len() as u64,
        users: manifest.stats.users,
        interactions: manifest.stats.interactions,
        size: bytes.len() as u64,
    };
    registry.put(info, bytes.into()).await.unwrap();
    let active = registry.promote(&key, &version).await.unwrap();
    let options = PoolOptions {
        sessions: 1,
        batch: BatchOptions { max_batch: 8, max_queue_delay: Duration::ZERO, queue_capacity: 4 },
        ..PoolOptions::default()
    };
    let models = Arc::new(Recommenders::new(options));
    models.apply(&registry, ActiveChange { key, active: Some(active) }).await;
    let loaded = models.get(&tenant).expect("the model loads");

    // The user viewed "a".
    let store: Arc<dyn FeatureStore> = Arc::new(MemoryStore::new());
    apply_event(&*store, &view(&tenant, 1, "u9", "a"), &FeatureSettings::default()).await.unwrap();
    let recommender = Recommender::new(store, models, 20);
    let request =
        pb::RecommendRequest { tenant: "acme".into(), user_id: "u9".into(), limit: 5, ..Default::default() };

    // Loading warmed the model up with one real batch.
    let warm_up = loaded.batch_stats().batches;
    let late = recommender.recommend_until(&request, Some(Instant::now())).await.unwrap_err();
    assert_eq!(late.code, pb::ServiceErrorCode::DeadlineExceeded as i32, "{late:?}");
    assert_eq!(loaded.batch_stats().batches, warm_up, "a late request is not scored");
    assert_eq!(loaded.batch_stats().rejected_deadline, 1);

    let answer =
        recommender.recommend_until(&request, Some(Instant::now() + Duration::from_secs(30))).await.unwrap();
    assert_eq!(
        answer.items.first().map(|i| (i.item_id.as_str(), i.reason.as_str())),
        Some(("b", "covisited"))
    );
    assert_eq!(loaded.batch_stats().batches, warm_up + 1);
}
