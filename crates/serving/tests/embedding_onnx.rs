//! The exported embedding graph, run by the real ONNX Runtime, agrees with the Rust reference on
//! random models and random batched, padded histories.
#![allow(clippy::unwrap_used)]

mod common;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shopmind_domain::InteractionKind;
use shopmind_onnx::TrainingStats;
use shopmind_serving::{Device, EmbeddingRecommender, ModelError, PoolOptions, SessionPool, init_runtime};
use shopmind_training::embedding::{self, EmbeddingConfig, Factors};
use shopmind_training::{CovisitModel, EmbeddingModel, TrainingInteraction};

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
async fn batched_padded_candidate_scores_and_user_vectors_match_the_reference() {
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
            // Candidate lists of different lengths (every item, none, repeats, any order): the
            // shorter ones are padded with item 0 and their padding is cut off again. A batch
            // whose rows are all exactly 0..n takes the graph's Gemm branch, any other the Gather.
            let candidates: Vec<Vec<usize>> = (0..batch)
                .map(|b| match b % 4 {
                    0 => (0..n).collect(),
                    2 => Vec::new(),
                    // As wide as the catalog but not in place: the Gather branch, not the Gemm.
                    3 => (0..n).rev().collect(),
                    _ => (0..rng.random_range(1..=n + 5)).map(|_| rng.random_range(0..n)).collect(),
                })
                .collect();
            let out = rec.score_batch(&histories, &candidates).await.unwrap();
            assert_eq!((out.batch, out.dim), (batch, dim));
            assert_eq!(out.width, candidates.iter().map(Vec::len).max().unwrap().max(1));
            for (b, (history, cands)) in histories.iter().zip(&candidates).enumerate() {
                let want_u = model.user_vector(history);
                let want = model.factors.candidate_scores(&want_u, cands);
                assert_eq!(out.scores_of(b).len(), cands.len());
                let du = max_abs_diff(out.user_vector(b), &want_u);
                let ds = max_abs_diff(out.scores_of(b), &want);
                assert!(du < 1e-4 && ds < 1e-4, "n={n} batch={batch} row {b}: user {du}, scores {ds}");
                // The user vector Rust computes (the ANN query) is the graph's.
                let rust_u = rec.user_vector(history).unwrap();
                assert!(max_abs_diff(&rust_u, out.user_vector(b)) < 1e-5, "row {b}");
                if b % 4 == 0 {
                    assert!(max_abs_diff(out.scores_of(b), &model.score(history)) < 1e-4);
                }
            }
        }
        // An empty history scores by the biases alone, in ONNX as in Rust.
        assert!(max_abs_diff(&rec.score(&[]).await.unwrap(), &model.factors.item_bias) < 1e-6);
    }
}

/// A weighted history and its candidates.
type Request = (Vec<(usize, f32)>, Vec<usize>);

#[tokio::test]
async fn concurrent_requests_of_different_candidate_counts_share_a_batch_and_get_their_own_scores() {
    init();
    let (n, dim) = (200, 16);
    let model = random_model(9, n, dim);
    // A batch waits long enough for every request to join it.
    let bytes = model.to_onnx(&model.manifest("recommender", "test", "acme", 1));
    let batch = shopmind_serving::BatchOptions {
        max_batch: 32,
        max_queue_delay: std::time::Duration::from_millis(50),
        queue_capacity: 64,
    };
    let rec = std::sync::Arc::new(
        EmbeddingRecommender::load(
            &bytes,
            &PoolOptions { sessions: 1, intra_threads: 1, batch, ..PoolOptions::default() },
        )
        .unwrap(),
    );
    let requests: Vec<Request> = (0..12usize)
        .map(|r| {
            let history = (0..=r % 5).map(|k| ((r * 7 + k * 13) % n, 1.0 + k as f32)).collect();
            let candidates = (0..r * 17).map(|k| (r * 31 + k * 3) % n).collect();
            (history, candidates)
        })
        .collect();
    let runs: Vec<_> = requests
        .iter()
        .map(|(h, c)| {
            let (rec, h, c) = (rec.clone(), h.clone(), c.clone());
            tokio::spawn(async move { rec.score_candidates_until(&h, &c, None).await })
        })
        .collect();
    for ((history, candidates), run) in requests.iter().zip(runs) {
        let (scores, user) = run.await.unwrap().unwrap();
        let want_u = model.user_vector(history);
        assert_eq!(scores.len(), candidates.len());
        assert!(max_abs_diff(&user, &want_u) < 1e-4);
        assert!(max_abs_diff(&scores, &model.factors.candidate_scores(&want_u, candidates)) < 1e-4);
    }
    let stats = rec.batch_stats();
    assert!(stats.largest_batch > 1, "requests shared a batch: {stats:?}");
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
    let out =
        rec.score_batch(&[before.clone(), after.clone()], &[rec.all_items(), rec.all_items()]).await.unwrap();
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
    let all = || rec.all_items();
    match rec.score_batch(&[vec![(1, 1.0)], vec![(10, 1.0)]], &[all(), all()]).await {
        Err(ModelError::InvalidInput(msg)) => assert!(msg.contains("10"), "{msg}"),
        other => panic!("expected InvalidInput, got {other:?}"),
    }
    // A candidate out of range, or not one candidate list per history.
    match rec.score_candidates_until(&[(1, 1.0)], &[3, 11], None).await {
        Err(ModelError::InvalidInput(msg)) => assert!(msg.contains("11"), "{msg}"),
        other => panic!("expected InvalidInput, got {other:?}"),
    }
    assert!(matches!(rec.score_batch(&[vec![(1, 1.0)]], &[]).await, Err(ModelError::InvalidInput(_))));
    assert!(matches!(rec.user_vector(&[(10, 1.0)]), Err(ModelError::InvalidInput(_))));
    assert_eq!(rec.score_batch(&[], &[]).await.unwrap().batch, 0);

    let opts = PoolOptions::default();
    assert!(matches!(EmbeddingRecommender::load(b"garbage", &opts), Err(ModelError::InvalidModel(_))));
    // A co-visitation model is not an embedding model.
    let cv = CovisitModel::new(vec!["a".into()], vec![0.0], TrainingStats::default()).unwrap();
    let cv_bytes = cv.to_onnx(&cv.manifest("r", "v", "t", 0));
    assert!(matches!(EmbeddingRecommender::load(&cv_bytes, &opts), Err(ModelError::InvalidModel(_))));

    use prost::Message;
    let bytes = model.to_onnx(&model.manifest("r", "v", "t", 0));
    // Without the embedding info entry.
    let mut onnx = shopmind_onnx::ModelProto::decode(bytes.as_slice()).unwrap();
    onnx.metadata_props.retain(|p| p.key != embedding::EMBEDDING_KEY);
    assert!(matches!(
        EmbeddingRecommender::load(&onnx.encode_to_vec(), &opts),
        Err(ModelError::InvalidModel(_))
    ));
    // Without the item embeddings.
    let mut onnx = shopmind_onnx::ModelProto::decode(bytes.as_slice()).unwrap();
    onnx.graph.as_mut().unwrap().initializer.retain(|t| t.name != embedding::ITEM_EMBEDDINGS);
    assert!(matches!(
        EmbeddingRecommender::load(&onnx.encode_to_vec(), &opts),
        Err(ModelError::InvalidModel(_))
    ));

    // A file of the older graph, which scored every item (`scores`) and took no candidates.
    let mut onnx = shopmind_onnx::ModelProto::decode(bytes.as_slice()).unwrap();
    let mut old = shopmind_onnx::read_manifest(&bytes).unwrap();
    old.inputs.retain(|i| i.name != embedding::INPUT_CANDIDATES);
    for output in &mut old.outputs {
        if output.name == embedding::OUTPUT_CANDIDATE_SCORES {
            output.name = "scores".into();
            output.shape = vec!["batch".into(), "10".into()];
        }
    }
    let entry = onnx.metadata_props.iter_mut().find(|p| p.key == shopmind_onnx::MANIFEST_KEY).unwrap();
    entry.value = serde_json::to_string(&old).unwrap();
    match EmbeddingRecommender::load(&onnx.encode_to_vec(), &opts) {
        Err(ModelError::InvalidModel(msg)) => assert!(msg.contains("train it again"), "{msg}"),
        other => panic!("expected InvalidModel, got {other:?}"),
    }

    // The graph's names, as the session sees them.
    let pool = SessionPool::load(&bytes, &opts).unwrap();
    assert_eq!(pool.input_names(), ["history_items", "history_weights", "candidate_items"]);
    assert_eq!(pool.output_names(), ["candidate_scores", "user_vectors"]);
}
