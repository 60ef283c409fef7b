//! The exported embedding graph, run by the real ONNX Runtime, agrees with the Rust reference on
//! random models and random batched, padded histories.
#![allow(clippy::unwrap_used)]

mod common;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shopmind_domain::InteractionKind;
use shopmind_models::embedding::{self, EmbeddingConfig, Factors};
use shopmind_models::{
    Device, EmbeddingModel, EmbeddingRecommender, ModelError, PoolOptions, SessionPool, TrainingInteraction,
    TrainingStats, init_runtime,
};

fn init() {
    init_runtime(&common::onnxruntime_library()).unwrap();
}

fn random_model(seed: u64, n: usize, dim: usize) -> EmbeddingModel {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut v = |len: usize| (0..len).map(|_| rng.random_range(-1.0f32..1.0)).collect::<Vec<_>>();
    let factors =
        Factors { dim, history_embeddings: v(n * dim), item_embeddings: v(n * dim), item_bias: v(n) };
    let items = (0..n).map(|i| format!("sku-{i:03}")).collect();
    let cfg = EmbeddingConfig { dim, ..EmbeddingConfig::default() };
    EmbeddingModel::new(
        items,
        factors,
        cfg,
        TrainingStats { users: 3, interactions: 9, first_at_ms: 1, last_at_ms: 2 },
    )
    .unwrap()
}

fn load(model: &EmbeddingModel) -> EmbeddingRecommender {
    let bytes = model.to_onnx(&model.manifest("recommender", "test", "acme", 1));
    EmbeddingRecommender::load(
        &bytes,
        &PoolOptions { sessions: 1, intra_threads: 1, device: Device::Cpu, ..PoolOptions::default() },
    )
    .unwrap()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[tokio::test]
async fn batched_padded_scores_and_user_vectors_match_the_reference() {
    init();
    for (seed, n, dim) in [(1u64, 40usize, 8usize), (2, 300, 64), (3, 7, 1)] {
        let model = random_model(seed, n, dim);
        let rec = load(&model);
        assert_eq!((rec.len(), rec.dim()), (n, dim));
        assert_eq!(rec.item_embeddings(), model.factors.item_embeddings.as_slice());
        assert_eq!(rec.item_bias(), model.factors.item_bias.as_slice());
        let mut rng = StdRng::seed_from_u64(seed + 100);
        for batch in [1usize, 3, 16] {
            // Histories of different lengths (incl. empty), random weights and zero-weight entries:
            // the recommender pads the shorter ones with (0, 0.0).
            let histories: Vec<Vec<(usize, f32)>> = (0..batch)
                .map(|b| {
                    let len = if b == 1 { 0 } else { rng.random_range(1..=30) };
                    (0..len)
                        .map(|_| {
                            let w = if rng.random_bool(0.2) { 0.0 } else { rng.random_range(0.01f32..3.0) };
                            (rng.random_range(0..n), w)
                        })
                        .collect()
                })
                .collect();
            let out = rec.score_batch(&histories).await.unwrap();
            assert_eq!((out.batch, out.items, out.dim), (batch, n, dim));
            for (b, history) in histories.iter().enumerate() {
                let want_u = model.user_vector(history);
                let want = model.score(history);
                let du = max_abs_diff(out.user_vector(b), &want_u);
                let ds = max_abs_diff(out.scores_of(b), &want);
                assert!(du < 1e-4 && ds < 1e-4, "n={n} batch={batch} row {b}: user {du}, scores {ds}");
            }
        }
        // An empty history scores by the biases alone, in ONNX as in Rust.
        assert!(max_abs_diff(&rec.score(&[]).await.unwrap(), &model.factors.item_bias) < 1e-6);
    }
}

#[tokio::test]
async fn a_recent_event_changes_the_answer_without_retraining() {
    init();
    // Users walk two cycles; after "a" comes "b", after "x" comes "y".
    let mut data = Vec::new();
    for u in 0..40 {
        let cycle = if u % 2 == 0 { ["a", "b", "c"] } else { ["x", "y", "z"] };
        for t in 0..9 {
            data.push(TrainingInteraction {
                user: format!("u{u:02}"),
                item: cycle[(u + t) % 3].into(),
                kind: InteractionKind::View,
                at_ms: t as i64,
            });
        }
    }
    let cfg = EmbeddingConfig {
        dim: 8,
        epochs: 30,
        negatives: 5,
        learning_rate: 0.1,
        history_decay: 0.3,
        ..Default::default()
    };
    let model = embedding::train(data, &cfg);
    let rec = load(&model);
    let idx = |s: &str| rec.index_of(s).unwrap();
    let best = |scores: &[f32]| (0..scores.len()).max_by(|&x, &y| scores[x].total_cmp(&scores[y])).unwrap();
    let before = rec.recent_history(&[idx("x"), idx("y"), idx("z"), idx("x")]);
    let after = rec.recent_history(&[idx("x"), idx("y"), idx("z"), idx("x"), idx("a")]);
    let out = rec.score_batch(&[before.clone(), after.clone()]).await.unwrap();
    assert_eq!(rec.item(best(out.scores_of(0))), Some("y"));
    assert_eq!(rec.item(best(out.scores_of(1))), Some("b"));
    assert!(max_abs_diff(out.scores_of(1), &model.score(&after)) < 1e-4);
    assert_eq!(after, model.recent_history(&[idx("x"), idx("y"), idx("z"), idx("x"), idx("a")]));
}

#[tokio::test]
async fn bad_inputs_and_bad_models_are_errors() {
    init();
    let model = random_model(5, 10, 4);
    let rec = load(&model);
    match rec.score_batch(&[vec![(1, 1.0)], vec![(10, 1.0)]]).await {
        Err(ModelError::InvalidInput(msg)) => assert!(msg.contains("10"), "{msg}"),
        other => panic!("expected InvalidInput, got {other:?}"),
    }
    assert_eq!(rec.score_batch(&[]).await.unwrap().batch, 0);

    let opts = PoolOptions::default();
    assert!(matches!(EmbeddingRecommender::load(b"garbage", &opts), Err(ModelError::InvalidModel(_))));
    // A co-visitation model is not an embedding model.
    let cv =
        shopmind_models::CovisitModel::new(vec!["a".into()], vec![0.0], TrainingStats::default()).unwrap();
    let cv_bytes = cv.to_onnx(&cv.manifest("r", "v", "t", 0));
    assert!(matches!(EmbeddingRecommender::load(&cv_bytes, &opts), Err(ModelError::InvalidModel(_))));

    use prost::Message;
    let bytes = model.to_onnx(&model.manifest("r", "v", "t", 0));
    // Without the embedding info entry.
    let mut onnx = shopmind_models::onnx::ModelProto::decode(bytes.as_slice()).unwrap();
    onnx.metadata_props.retain(|p| p.key != embedding::EMBEDDING_KEY);
    assert!(matches!(
        EmbeddingRecommender::load(&onnx.encode_to_vec(), &opts),
        Err(ModelError::InvalidModel(_))
    ));
    // Without the item embeddings.
    let mut onnx = shopmind_models::onnx::ModelProto::decode(bytes.as_slice()).unwrap();
    onnx.graph.as_mut().unwrap().initializer.retain(|t| t.name != embedding::ITEM_EMBEDDINGS);
    assert!(matches!(
        EmbeddingRecommender::load(&onnx.encode_to_vec(), &opts),
        Err(ModelError::InvalidModel(_))
    ));

    // The graph's names, as the session sees them.
    let pool = SessionPool::load(&bytes, &opts).unwrap();
    assert_eq!(pool.input_names(), ["history_items", "history_weights"]);
    assert_eq!(pool.output_names(), ["scores", "user_vectors"]);
}
