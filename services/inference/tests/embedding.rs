//! The default recommender family end to end inside inference: an embedding model trained on
//! sequential shopping (item i is followed by item i+1) is published to the registry, loaded and
//! served; its answers are exactly the model's own scores of the user's recent history (the
//! recency weighting it was trained with), the next item in the sequence comes first, and an event
//! applied a moment ago changes the next answer without retraining.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use shopmind_domain::{
    Event, EventId, InteractionKind, ItemId, Payload, SessionId, TenantId, UnixMillis, UserId,
};
use shopmind_features::{FeatureSettings, apply_event};
use shopmind_inference::{Recommender, RecommenderModel, Recommenders};
use shopmind_proto::v1 as pb;
use shopmind_registry::{ActiveChange, MemoryModelStore, ModelKey, ModelStore, Version, VersionInfo};
use shopmind_serving::{PoolOptions, init_runtime};
use shopmind_store::{FeatureStore, MemoryStore};
use shopmind_training::covisit::TrainingInteraction;
use shopmind_training::embedding::{self, EmbeddingConfig};

const T0: i64 = 1_767_225_600_000;
const ITEMS: usize = 24;

fn item(i: usize) -> String {
    format!("i{:02}", i % ITEMS)
}

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
async fn the_served_embedding_model_answers_with_its_own_scores_and_follows_new_events() {
    init_runtime(&shopmind_serving::default_library_path().expect("run scripts/setup.sh")).unwrap();
    let tenant = TenantId::parse("acme").unwrap();

    // 240 shoppers, each walking 8 steps along the sequence from their own starting item.
    let mut interactions = Vec::new();
    for u in 0..240usize {
        for k in 0..8usize {
            interactions.push(TrainingInteraction {
                user: format!("shopper-{u}"),
                item: item(u * 7 + k),
                kind: InteractionKind::View,
                at_ms: T0 + (u * 8 + k) as i64,
            });
        }
    }
    let cfg = EmbeddingConfig { dim: 16, epochs: 20, ..EmbeddingConfig::default() };
    let model = embedding::train(interactions, &cfg);
    let manifest = model.manifest("recommender", "emb-v1", "acme", 0);
    let bytes = model.to_onnx(&manifest);

    let registry = MemoryModelStore::new();
    let key = ModelKey::parse("acme", "recommender").unwrap();
    let version = Version::parse("emb-v1").unwrap();
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
    let models = Arc::new(Recommenders::new(PoolOptions::default()));
    models.apply(&registry, ActiveChange { key, active: Some(active) }).await;
    assert!(matches!(models.get(&tenant).as_deref(), Some(RecommenderModel::Embedding(_))));

    // A new shopper viewed i03 then i04.
    let store: Arc<dyn FeatureStore> = Arc::new(MemoryStore::new());
    let settings = FeatureSettings::default();
    apply_event(&*store, &view(&tenant, 1, "newcomer", &item(3)), &settings).await.unwrap();
    apply_event(&*store, &view(&tenant, 2, "newcomer", &item(4)), &settings).await.unwrap();
    let recommender = Recommender::new(store.clone(), models, 20);
    let request = pb::RecommendRequest {
        tenant: "acme".into(),
        user_id: "newcomer".into(),
        limit: 5,
        exclude_seen: true,
        ..Default::default()
    };
    let answer = recommender.recommend(&request).await.unwrap();
    assert_eq!(answer.model_version, "emb-v1");
    assert_eq!(answer.items.len(), 5);
    assert!(answer.items.iter().all(|i| i.reason == "personalized"), "{answer:?}");

    // Exactly the model's own ranking of the recent history (i03, i04), seen items excluded.
    let index = |id: &str| model.items.iter().position(|x| x == id).unwrap();
    let expected_scores = model.score(&model.recent_history(&[index(&item(3)), index(&item(4))]));
    let mut expected: Vec<(usize, f32)> = expected_scores.iter().copied().enumerate().collect();
    expected.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let expected: Vec<&str> = expected
        .iter()
        .map(|(i, _)| model.items[*i].as_str())
        .filter(|id| *id != item(3) && *id != item(4))
        .take(5)
        .collect();
    let got: Vec<&str> = answer.items.iter().map(|i| i.item_id.as_str()).collect();
    assert_eq!(got, expected);
    for scored in &answer.items {
        let want = expected_scores[index(&scored.item_id)];
        assert!(
            (scored.score - want).abs() < 1e-3,
            "{}: served {} vs model {want}",
            scored.item_id,
            scored.score
        );
    }
    // The sequence's next item leads.
    assert_eq!(got[0], item(5), "{got:?}");

    assert!(!got.contains(&item(16).as_str()), "{got:?}");

    // A view a moment ago moves the answer along, no retraining: what follows it appears.
    apply_event(&*store, &view(&tenant, 3, "newcomer", &item(15)), &settings).await.unwrap();
    let answer = recommender.recommend(&request).await.unwrap();
    let got: Vec<&str> = answer.items.iter().map(|i| i.item_id.as_str()).collect();
    assert!(got.contains(&item(16).as_str()), "{got:?}");
}
