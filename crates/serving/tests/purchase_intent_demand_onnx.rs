//! The exported purchase-intent and demand graphs, run by the real ONNX Runtime on random batches,
//! agree with the Rust reference computations; loading checks what the serving code relies on.
#![allow(clippy::unwrap_used)]

mod common;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shopmind_features::purchase_intent::{FEATURE_NAMES, FEATURE_SCHEMA_VERSION, N_FEATURES};
use shopmind_onnx::TrainingStats;
use shopmind_serving::{
    DemandForecaster, Device, ModelError, PoolOptions, PurchaseIntentPredictor, SessionPool, init_runtime,
};
use shopmind_training::demand::{self, DemandModel, HistoryWindow};
use shopmind_training::purchase_intent::{self, PurchaseIntentModel, PurchaseIntentSpec};

fn init() {
    init_runtime(&common::onnxruntime_library()).unwrap();
}

fn opts() -> PoolOptions {
    PoolOptions { sessions: 2, intra_threads: 1, device: Device::Cpu, ..PoolOptions::default() }
}

/// Loads a purchase-intent model for the feature schema this build computes.
fn load_intent(bytes: &[u8]) -> Result<PurchaseIntentPredictor, ModelError> {
    PurchaseIntentPredictor::load(bytes, &opts(), FEATURE_SCHEMA_VERSION, &FEATURE_NAMES)
}

fn close(got: f32, want: f32, what: &str) {
    let tol = 1e-4 * want.abs().max(1.0);
    assert!((got - want).abs() <= tol, "{what}: onnx {got} vs reference {want}");
}

/// A random purchase-intent model on the current feature schema.
fn random_intent(seed: u64) -> PurchaseIntentModel {
    let mut rng = StdRng::seed_from_u64(seed);
    let n = N_FEATURES;
    PurchaseIntentModel {
        feature_names: FEATURE_NAMES.iter().map(|s| (*s).to_owned()).collect(),
        feature_schema_version: FEATURE_SCHEMA_VERSION,
        mean: (0..n).map(|_| rng.random_range(-1.0f32..3.0)).collect(),
        scale: (0..n).map(|_| rng.random_range(0.2f32..4.0)).collect(),
        weights: (0..n).map(|_| rng.random_range(-2.0f32..2.0)).collect(),
        bias: rng.random_range(-1.0f32..1.0),
        base_rate: 0.2,
        stats: TrainingStats { users: 3, interactions: 9, first_at_ms: 1, last_at_ms: 2 },
        iterations: 1,
    }
}

#[tokio::test]
async fn intent_graph_matches_the_reference_on_random_batches() {
    init();
    let model = random_intent(7);
    let bytes = model.to_onnx(&model.manifest("v1", "acme", 5));
    let predictor = load_intent(&bytes).unwrap();
    assert_eq!(predictor.manifest().kind, purchase_intent::KIND);
    assert_eq!(predictor.feature_names(), FEATURE_NAMES);

    let mut rng = StdRng::seed_from_u64(99);
    for batch_size in [1, 2, 17, 64] {
        let batch: Vec<[f32; N_FEATURES]> =
            (0..batch_size).map(|_| std::array::from_fn(|_| rng.random_range(-2.0f32..6.0))).collect();
        let got = predictor.predict(&batch).await.unwrap();
        assert_eq!(got.len(), batch_size);
        for (row, g) in batch.iter().zip(&got) {
            let want = model.predict_row(row);
            close(g.probability, want.probability, "probability");
            close(g.logit, want.logit, "logit");
            assert_eq!(g.contributions.len(), N_FEATURES);
            for (c, w) in g.contributions.iter().zip(&want.contributions) {
                close(*c, *w, "contribution");
            }
            // The contributions explain the logit.
            close(g.contributions.iter().sum::<f32>() + model.bias, g.logit, "sum of contributions");
        }
    }
    // Probabilities are not all alike: the random model separates random rows.
    let spread: Vec<f32> = predictor
        .predict(&[[0.0; N_FEATURES], [5.0; N_FEATURES]])
        .await
        .unwrap()
        .iter()
        .map(|p| p.probability)
        .collect();
    assert!((spread[0] - spread[1]).abs() > 1e-3, "{spread:?}");
    assert!(predictor.predict::<[f32; N_FEATURES]>(&[]).await.unwrap().is_empty());
    let mut bad = [0.0; N_FEATURES];
    bad[3] = f32::NAN;
    assert!(matches!(predictor.predict(&[bad]).await, Err(ModelError::InvalidInput(_))));
}

#[tokio::test]
async fn intent_graph_declares_its_io() {
    init();
    let model = random_intent(1);
    let bytes = model.to_onnx(&model.manifest("v1", "acme", 5));
    let pool = SessionPool::load(&bytes, &opts()).unwrap();
    assert_eq!(pool.input_names(), ["features"]);
    assert_eq!(pool.output_names(), ["probability", "logit", "contributions"]);
    let manifest = shopmind_onnx::read_manifest(&bytes).unwrap();
    assert_eq!(manifest.input("features").unwrap().shape, vec!["batch".to_string(), N_FEATURES.to_string()]);
    let spec: PurchaseIntentSpec = shopmind_onnx::read_spec(&bytes).unwrap();
    assert_eq!(spec.feature_schema_version, FEATURE_SCHEMA_VERSION);
    assert_eq!(spec.features, FEATURE_NAMES);
}

#[test]
fn intent_models_of_another_feature_schema_are_refused() {
    init();
    let mut model = random_intent(3);
    model.feature_schema_version += 1;
    let bytes = model.to_onnx(&model.manifest("v1", "acme", 5));
    match load_intent(&bytes) {
        Err(ModelError::InvalidModel(msg)) => assert!(msg.contains("feature schema"), "{msg}"),
        other => panic!("expected InvalidModel, got {other:?}"),
    }
    let mut renamed = random_intent(3);
    renamed.feature_names[0] = "something_else".into();
    let bytes = renamed.to_onnx(&renamed.manifest("v1", "acme", 5));
    assert!(matches!(load_intent(&bytes), Err(ModelError::InvalidModel(_))));
    // A demand model is not an intent model, and the other way round.
    let d = random_demand(1, 28, 7);
    let bytes = d.to_onnx(&d.manifest("v1", "acme", 5));
    assert!(matches!(load_intent(&bytes), Err(ModelError::InvalidModel(_))));
    let i = random_intent(1);
    let bytes = i.to_onnx(&i.manifest("v1", "acme", 5));
    assert!(matches!(DemandForecaster::load(&bytes, &opts()), Err(ModelError::InvalidModel(_))));
    assert!(matches!(DemandForecaster::load(b"garbage", &opts()), Err(ModelError::InvalidModel(_))));
}

/// A random demand model with `t` days of history and `h` of horizon.
fn random_demand(seed: u64, t: usize, h: usize) -> DemandModel {
    let mut rng = StdRng::seed_from_u64(seed);
    DemandModel {
        history_days: t,
        horizon: h,
        weights: (0..t * h).map(|_| rng.random_range(-0.05f32..0.15)).collect(),
        weekday_terms: (0..7 * h).map(|_| rng.random_range(-0.5f32..0.5)).collect(),
        lower_q: (0..h).map(|_| rng.random_range(-2.0f32..0.0)).collect(),
        upper_q: (0..h).map(|_| rng.random_range(0.0f32..2.0)).collect(),
        coverage: 0.8,
        stats: TrainingStats::default(),
    }
}

#[tokio::test]
async fn demand_graph_matches_the_reference_on_random_batches() {
    init();
    let model = random_demand(11, 56, 14);
    let bytes = model.to_onnx(&model.manifest("v1", "acme", 5));
    let forecaster = DemandForecaster::load(&bytes, &opts()).unwrap();
    assert_eq!((forecaster.history_days(), forecaster.horizon()), (56, 14));
    let pool = SessionPool::load(&bytes, &opts()).unwrap();
    assert_eq!(pool.input_names(), ["history", "first_weekday"]);
    assert_eq!(pool.output_names(), ["forecast", "lower", "upper"]);

    let mut rng = StdRng::seed_from_u64(5);
    let mut positive = 0;
    for batch_size in [1, 3, 32] {
        let batch: Vec<HistoryWindow> = (0..batch_size)
            .map(|r| {
                // Some rows all zeros, some sparse, some busy.
                let rate = [0.0, 0.3, 4.0, 25.0][r % 4];
                let history = (0..56)
                    .map(|_| {
                        if rng.random::<f64>() < 0.7 {
                            (rng.random::<f32>() * 2.0 * rate).round()
                        } else {
                            0.0
                        }
                    })
                    .collect();
                HistoryWindow { history, first_weekday: rng.random_range(0..7) }
            })
            .collect();
        let got = forecaster.forecast(&batch).await.unwrap();
        assert_eq!(got.len(), batch_size);
        for (w, g) in batch.iter().zip(&got) {
            let want = model.forecast_reference(&w.history, w.first_weekday);
            for k in 0..14 {
                close(g.forecast[k], want.forecast[k], "forecast");
                close(g.lower[k], want.lower[k], "lower");
                close(g.upper[k], want.upper[k], "upper");
                assert!(g.lower[k] >= 0.0 && g.lower[k] <= g.forecast[k] && g.forecast[k] <= g.upper[k]);
                if g.forecast[k] > 0.0 {
                    positive += 1;
                }
            }
        }
    }
    assert!(positive > 100, "the random model should forecast demand, {positive} positive values");

    // Bad inputs are refused before ONNX Runtime sees them.
    let short = HistoryWindow { history: vec![1.0; 10], first_weekday: 0 };
    assert!(matches!(forecaster.forecast(&[short]).await, Err(ModelError::InvalidInput(_))));
    let bad_day = HistoryWindow { history: vec![1.0; 56], first_weekday: 7 };
    assert!(matches!(forecaster.forecast(&[bad_day]).await, Err(ModelError::InvalidInput(_))));
    let negative = HistoryWindow { history: vec![-1.0; 56], first_weekday: 0 };
    assert!(matches!(forecaster.forecast(&[negative]).await, Err(ModelError::InvalidInput(_))));

    // From the feature store's (day, units) pairs.
    let pairs = [(20_500, 3), (20_510, 1), (20_520, 7)];
    let got = forecaster.forecast_item(&pairs, 20_530).await.unwrap();
    let w = HistoryWindow::from_demand(&pairs, 20_530, 56);
    assert_eq!(w.first_weekday, demand::weekday(20_530));
    let want = model.forecast_reference(&w.history, w.first_weekday);
    for k in 0..14 {
        close(got.forecast[k], want.forecast[k], "forecast_item");
    }
}
