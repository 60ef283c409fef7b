//! The exported graph, run by the real ONNX Runtime, agrees with the Rust reference scorer.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shopmind_domain::InteractionKind;
use shopmind_onnx::TrainingStats;
use shopmind_serving::{
    CovisitRecommender, Device, InputTensor, ModelError, OutputTensor, PoolOptions, SessionPool, init_runtime,
};
use shopmind_training::covisit::train;
use shopmind_training::test_support::toy_interactions;
use shopmind_training::{CovisitConfig, CovisitModel, TrainingInteraction};

fn init() {
    init_runtime(&common::onnxruntime_library()).unwrap();
}

/// A seeded random model: `n` items, similarities in [0, 1), zero diagonal.
fn random_model(seed: u64, n: usize) -> CovisitModel {
    common::random_covisit(
        seed,
        n,
        TrainingStats { users: 10, interactions: 100, first_at_ms: 1, last_at_ms: 2 },
    )
}

fn random_history(rng: &mut StdRng, n: usize) -> Vec<(usize, f32)> {
    let len = rng.random_range(1..=20);
    (0..len).map(|_| (rng.random_range(0..n), rng.random_range(0.05f32..2.0))).collect()
}

fn assert_close(got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len());
    for (j, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= 1e-5, "item {j}: onnx {g} vs reference {w}");
    }
}

fn load(model: &CovisitModel, sessions: usize) -> CovisitRecommender {
    let manifest = model.manifest("recommender", "test", "acme", 1);
    let bytes = model.to_onnx(&manifest);
    CovisitRecommender::load(&bytes, &PoolOptions { sessions, intra_threads: 1, ..PoolOptions::default() })
        .unwrap()
}

#[tokio::test]
async fn onnx_scores_match_the_reference() {
    init();
    let model = random_model(7, 50);
    let rec = load(&model, 1);
    assert_eq!(rec.len(), 50);
    assert_eq!(rec.manifest().items, model.items);
    assert_eq!(rec.index_of("sku-042"), Some(42));
    assert_eq!(rec.item(42), Some("sku-042"));
    assert_eq!(rec.item(50), None);

    let mut rng = StdRng::seed_from_u64(99);
    for _ in 0..12 {
        let history = random_history(&mut rng, 50);
        let got = rec.score(&history).await.unwrap();
        assert_close(&got, &model.score(&history));
    }

    // Repeated items add up, in ONNX as in the reference.
    let repeated = [(3, 1.0), (3, 0.5), (17, 2.0), (3, 0.25)];
    let got = rec.score(&repeated).await.unwrap();
    assert_close(&got, &model.score(&repeated));
    assert_close(&got, &model.score(&[(3, 1.75), (17, 2.0)]));
    assert!(got.iter().any(|&s| s > 0.5), "scores should not be trivially zero: {got:?}");
}

#[tokio::test]
async fn empty_and_out_of_range_histories() {
    init();
    let model = random_model(3, 10);
    let rec = load(&model, 1);
    assert_eq!(rec.score(&[]).await.unwrap(), vec![0.0; 10]);
    match rec.score(&[(1, 1.0), (10, 1.0)]).await {
        Err(ModelError::InvalidInput(msg)) => assert!(msg.contains("10"), "{msg}"),
        other => panic!("expected InvalidInput, got {other:?}"),
    }
}

#[tokio::test]
async fn trained_toy_model_recommends_through_onnx() {
    init();
    // Purchases count as views do: the training tests' toy, bought.
    let data =
        toy_interactions().into_iter().map(|e| TrainingInteraction { kind: InteractionKind::Purchase, ..e });
    let model = train(data, &CovisitConfig::default());
    let rec = load(&model, 1);
    let b = rec.index_of("b").unwrap();
    let scores = rec.score(&[(b, 1.0)]).await.unwrap();
    assert_close(&scores, &model.score(&[(b, 1.0)]));
    let best = (0..scores.len()).max_by(|&x, &y| scores[x].total_cmp(&scores[y])).unwrap();
    assert_eq!(rec.item(best), Some("a"));
    assert!((scores[rec.index_of("a").unwrap()] - 2.0 / 6f32.sqrt()).abs() < 1e-6);
    assert_eq!(scores[b], 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_concurrent_calls_share_a_small_pool() {
    init();
    let model = Arc::new(random_model(11, 50));
    let rec = Arc::new(load(&model, 2));
    let mut rng = StdRng::seed_from_u64(5);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..64 {
        let history = random_history(&mut rng, 50);
        let (rec, model) = (rec.clone(), model.clone());
        tasks.spawn(async move {
            let got = rec.score(&history).await.unwrap();
            assert_close(&got, &model.score(&history));
        });
    }
    let mut done = 0;
    while let Some(joined) = tasks.join_next().await {
        joined.unwrap();
        done += 1;
    }
    assert_eq!(done, 64);
}

#[tokio::test]
async fn cancelled_calls_return_their_session() {
    init();
    let model = random_model(13, 30);
    let rec = load(&model, 1);
    // Start and drop runs part-way; the single session must come back every time.
    for _ in 0..8 {
        let fut = rec.score(&[(1, 1.0)]);
        let _ = tokio::time::timeout(std::time::Duration::from_micros(1), fut).await;
    }
    let got = tokio::time::timeout(std::time::Duration::from_secs(30), rec.score(&[(2, 1.0)]))
        .await
        .expect("the pool lost its session")
        .unwrap();
    assert_close(&got, &model.score(&[(2, 1.0)]));
}

#[tokio::test]
async fn session_pool_reports_bad_inputs_as_errors() {
    init();
    let model = random_model(1, 5);
    let bytes = model.to_onnx(&model.manifest("recommender", "v", "t", 0));
    let pool = SessionPool::load(&bytes, &PoolOptions::default()).unwrap();
    assert_eq!(pool.size(), 2);
    assert_eq!(pool.input_names(), ["history_items", "history_weights"]);
    assert_eq!(pool.output_names(), ["scores"]);

    let ok = pool
        .run(vec![
            ("history_items".into(), InputTensor::I64 { shape: vec![1, 1], data: vec![2] }),
            ("history_weights".into(), InputTensor::F32 { shape: vec![1, 1], data: vec![2.0] }),
        ])
        .await
        .unwrap();
    let want: Vec<f32> = model.score(&[(2, 2.0)]);
    assert_eq!(ok, vec![("scores".to_owned(), OutputTensor::F32 { shape: vec![1, 5], data: want })]);

    // Wrong type for an input.
    let err = pool
        .run(vec![
            ("history_items".into(), InputTensor::F32 { shape: vec![1, 1], data: vec![2.0] }),
            ("history_weights".into(), InputTensor::F32 { shape: vec![1, 1], data: vec![2.0] }),
        ])
        .await;
    assert!(matches!(err, Err(ModelError::Runtime(_))), "{err:?}");
    // Shape that does not match the data.
    let err =
        pool.run(vec![("history_items".into(), InputTensor::I64 { shape: vec![3], data: vec![2] })]).await;
    assert!(matches!(err, Err(ModelError::InvalidInput(_))), "{err:?}");
}

#[test]
fn garbage_models_are_rejected() {
    init();
    let opts = PoolOptions::default();
    assert!(matches!(CovisitRecommender::load(b"garbage bytes", &opts), Err(ModelError::InvalidModel(_))));

    // A manifest but a broken graph: ONNX Runtime refuses it, as an error.
    let model = random_model(2, 4);
    let manifest = model.manifest("recommender", "v", "t", 0);
    let mut onnx = {
        use prost::Message;
        shopmind_onnx::ModelProto::decode(model.to_onnx(&manifest).as_slice()).unwrap()
    };
    onnx.graph.as_mut().unwrap().initializer.clear();
    let bytes = prost::Message::encode_to_vec(&onnx);
    assert!(matches!(CovisitRecommender::load(&bytes, &opts), Err(ModelError::Runtime(_))));

    // Another kind of model.
    let mut other = manifest.clone();
    other.kind = "two-tower".into();
    onnx.metadata_props[0].value = serde_json::to_string(&other).unwrap();
    let bytes = prost::Message::encode_to_vec(&onnx);
    assert!(matches!(CovisitRecommender::load(&bytes, &opts), Err(ModelError::InvalidModel(_))));

    // A model of an older export, without the batch dimension.
    let mut old = manifest.clone();
    for input in &mut old.inputs {
        input.shape = vec!["history".into()];
    }
    onnx.metadata_props[0].value = serde_json::to_string(&old).unwrap();
    let bytes = prost::Message::encode_to_vec(&onnx);
    match CovisitRecommender::load(&bytes, &opts) {
        Err(ModelError::InvalidModel(msg)) => assert!(msg.contains("train it again"), "{msg}"),
        other => panic!("expected InvalidModel, got {other:?}"),
    }
}

#[cfg(not(feature = "cuda"))]
#[test]
fn cuda_without_the_feature_is_a_loud_error() {
    init();
    let model = random_model(4, 4);
    let bytes = model.to_onnx(&model.manifest("recommender", "v", "t", 0));
    let opts = PoolOptions { device: Device::Cuda { device_id: 0 }, ..PoolOptions::default() };
    match CovisitRecommender::load(&bytes, &opts) {
        Err(ModelError::Runtime(msg)) => assert!(msg.contains("`cuda` feature"), "{msg}"),
        other => panic!("expected a runtime error, got {other:?}"),
    }
}

/// With the `cuda` feature, on a machine without CUDA (or with a CPU-only ONNX Runtime, as in
/// `.cache/`), asking for the GPU fails at load: no silent fallback to the CPU. On a machine with
/// a GPU and `onnxruntime-gpu`, `SHOPMIND_EXPECT_CUDA=1` makes the test expect the opposite: the
/// model loads on the GPU and scores as the reference does.
#[cfg(feature = "cuda")]
#[tokio::test]
async fn cuda_is_used_or_fails_loudly() {
    init();
    let model = random_model(4, 16);
    let bytes = model.to_onnx(&model.manifest("recommender", "v", "t", 0));
    let opts = PoolOptions { device: Device::Cuda { device_id: 0 }, ..PoolOptions::default() };
    let loaded = CovisitRecommender::load(&bytes, &opts);
    if std::env::var_os("SHOPMIND_EXPECT_CUDA").is_some() {
        let rec = loaded.unwrap();
        let history = [(1, 1.0), (5, 0.5)];
        assert_close(&rec.score(&history).await.unwrap(), &model.score(&history));
    } else {
        match loaded {
            Err(ModelError::Runtime(msg)) => {
                assert!(msg.contains("CUDA"), "{msg}");
                eprintln!("refused as expected: {msg}");
            }
            other => panic!("expected a runtime error, got {other:?}"),
        }
    }
}

#[test]
fn default_library_path_finds_the_workspace_copy() {
    let found = shopmind_serving::default_library_path().expect("no ONNX Runtime library found");
    match std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        Some(p) => assert_eq!(found, std::path::PathBuf::from(p)),
        // Tests run in crates/serving; the library is found from the test executable's ancestors.
        None => {
            assert!(found.ends_with(".cache/onnxruntime/libonnxruntime.so"), "{}", found.display());
            assert_eq!(found.canonicalize().unwrap(), common::onnxruntime_library().canonicalize().unwrap());
        }
    }
}
