//! The two stages of recommend on a catalog large enough for the ANN index, on ONNX Runtime:
//! the user vector Rust computes for the ANN query is the graph's `user_vectors`, the graph's
//! `candidate_scores` are exactly `u · P_j + b_j` of the candidates it is given, and the index's
//! answer is the brute-force answer.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use shopmind_domain::{Event, EventId, ItemId, Payload, SessionId, TenantId, UnixMillis, UserId};
use shopmind_features::{FeatureSettings, apply_event};
use shopmind_inference::recommend::ann::{self, AnnOptions};
use shopmind_inference::{Recommender, RecommenderModel, Recommenders, build_ann};
use shopmind_onnx::TrainingStats;
use shopmind_proto::v1 as pb;
use shopmind_registry::{ActiveChange, MemoryModelStore, ModelKey, ModelStore, Version, VersionInfo};
use shopmind_serving::{EmbeddingRecommender, PoolOptions, init_runtime};
use shopmind_store::{FeatureStore, MemoryStore};
use shopmind_training::{EmbeddingConfig, EmbeddingModel, Factors};

const ITEMS: usize = 1500;
const DIM: usize = 16;

/// Deterministic pseudo-random values in [-1, 1) (xorshift).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % 2000) as f32 / 1000.0 - 1.0
        })
        .collect()
}

fn model() -> (EmbeddingModel, Vec<u8>) {
    let items: Vec<String> = (0..ITEMS).map(|i| format!("sku-{i}")).collect();
    let factors = Factors {
        dim: DIM,
        history_embeddings: values(ITEMS * DIM, 3),
        item_embeddings: values(ITEMS * DIM, 5),
        item_bias: values(ITEMS, 7).iter().map(|b| b * 0.3).collect(),
    };
    let config = EmbeddingConfig { dim: DIM, history_len: 20, ..EmbeddingConfig::default() };
    let stats = TrainingStats { users: 1, interactions: 1, first_at_ms: 0, last_at_ms: 0 };
    let model = EmbeddingModel::new(items, factors, config, stats).unwrap();
    let manifest = model.manifest("recommender", "big-v1", "acme", 0);
    let bytes = model.to_onnx(&manifest);
    (model, bytes)
}

#[tokio::test]
async fn the_onnx_candidate_scores_are_the_rust_user_vector_dotted_with_the_item_embeddings_plus_bias() {
    init_runtime(&shopmind_serving::default_library_path().expect("run scripts/setup.sh")).unwrap();
    let (_, bytes) = model();
    let served = EmbeddingRecommender::load(&bytes, &PoolOptions::default()).unwrap();
    let history = served.recent_history(&[10, 20, 30, 1499]);
    // The ANN query is the user vector Rust computes before any ONNX run: the graph's own.
    let rust_user = served.user_vector(&history).unwrap();
    let index = ann::AnnIndex::build(
        served.item_embeddings(),
        served.item_bias(),
        DIM,
        &AnnOptions { min_items: 2, candidates: 50, ef_construction: 100, ef_search: 100 },
    )
    .unwrap();
    let candidates = index.search(&rust_user);
    // 50 found, and the 5 items of the largest norm where the search did not find them.
    assert!((50..=55).contains(&candidates.len()), "{}", candidates.len());
    let (scores, user) = served.score_candidates_until(&history, &candidates, None).await.unwrap();
    assert_eq!((scores.len(), user.len()), (candidates.len(), DIM));
    for (a, b) in rust_user.iter().zip(&user) {
        assert!((a - b).abs() < 1e-5, "Rust {a} vs graph {b}");
    }
    for (&j, s) in candidates.iter().zip(&scores) {
        let product = ann::score(&user, served.item_embeddings(), served.item_bias(), j);
        assert!((s - product).abs() < 1e-4, "item {j}: ONNX {s} vs u·P+b {product}");
    }
    // Brute force: every item is a candidate, and the candidates' scores are theirs.
    let all = served.score_until(&history, None).await.unwrap();
    assert_eq!(all.len(), ITEMS);
    for (&j, s) in candidates.iter().zip(&scores) {
        assert!((all[j] - s).abs() < 1e-5);
    }
}

#[tokio::test]
async fn the_ann_index_answers_as_brute_force_does() {
    init_runtime(&shopmind_serving::default_library_path().expect("run scripts/setup.sh")).unwrap();
    let (_, bytes) = model();
    let registry = MemoryModelStore::new();
    let key = ModelKey::parse("acme", "recommender").unwrap();
    let version = Version::parse("big-v1").unwrap();
    let info = VersionInfo {
        key: key.clone(),
        version: version.clone(),
        kind: "embedding".into(),
        created_at_ms: 0,
        items: ITEMS as u64,
        users: 1,
        interactions: 1,
        size: bytes.len() as u64,
    };
    registry.put(info, bytes.into()).await.unwrap();
    let active = registry.promote(&key, &version).await.unwrap();
    let change = || ActiveChange { key: key.clone(), active: Some(active.clone()) };

    let options = AnnOptions { min_items: 1000, candidates: 100, ef_construction: 100, ef_search: 200 };
    let indexed = Arc::new(Recommenders::with_prepare(PoolOptions::default(), build_ann(options)));
    indexed.apply(&registry, change()).await;
    let brute = Arc::new(Recommenders::new(PoolOptions::default()));
    brute.apply(&registry, change()).await;
    let tenant = TenantId::parse("acme").unwrap();
    assert!(
        matches!(indexed.get(&tenant).as_deref(), Some(RecommenderModel::Embedding(e)) if e.ann.is_some())
    );
    assert!(matches!(brute.get(&tenant).as_deref(), Some(RecommenderModel::Embedding(e)) if e.ann.is_none()));
    // Below `min_items` no index is built.
    let small = AnnOptions { min_items: ITEMS + 1, ..options };
    let unindexed = Recommenders::with_prepare(PoolOptions::default(), build_ann(small));
    unindexed.apply(&registry, change()).await;
    assert!(
        matches!(unindexed.get(&tenant).as_deref(), Some(RecommenderModel::Embedding(e)) if e.ann.is_none())
    );

    let store: Arc<dyn FeatureStore> = Arc::new(MemoryStore::new());
    let mut overlap = 0;
    let users = 10;
    for u in 0..users {
        let user = format!("u{u}");
        for k in 0..3 {
            let event = Event {
                id: EventId::parse(format!("e{u}-{k}")).unwrap(),
                tenant: tenant.clone(),
                occurred_at: UnixMillis(UnixMillis::now().0 - 1000 + k),
                user: Some(UserId::parse(user.clone()).unwrap()),
                session: Some(SessionId::parse(format!("{user}-s")).unwrap()),
                payload: Payload::ProductViewed {
                    item: ItemId::parse(format!("sku-{}", u * 97 + k as usize * 31)).unwrap(),
                },
            };
            apply_event(&*store, &event, &FeatureSettings::default()).await.unwrap();
        }
        let request =
            pb::RecommendRequest { tenant: "acme".into(), user_id: user, limit: 10, ..Default::default() };
        let a = Recommender::new(store.clone(), indexed.clone(), 20).recommend(&request).await.unwrap();
        let b = Recommender::new(store.clone(), brute.clone(), 20).recommend(&request).await.unwrap();
        assert_eq!((a.model_version.as_str(), a.items.len()), ("big-v1", 10));
        let exact: Vec<&str> = b.items.iter().map(|i| i.item_id.as_str()).collect();
        overlap += a.items.iter().filter(|i| exact.contains(&i.item_id.as_str())).count();
        // Whatever the index found is scored exactly as brute force scores it.
        for i in &a.items {
            if let Some(e) = b.items.iter().find(|e| e.item_id == i.item_id) {
                assert!((e.score - i.score).abs() < 1e-5);
            }
        }
    }
    let recall = overlap as f64 / (users * 10) as f64;
    eprintln!("ANN top-10 overlap with brute force, {ITEMS} items: {recall}");
    assert!(recall >= 0.95, "the index's top 10 is brute force's: recall {recall}");
    let exposed = shopmind_metrics::global().encode().unwrap();
    for retrieval in ["ann", "brute_force"] {
        let series =
            format!("shopmind_recommend_answers_total{{scenario=\"for_you\",retrieval=\"{retrieval}\"}}");
        assert!(exposed.contains(&series), "{series} in\n{exposed}");
    }
}
