//! Shared by the integration tests: where the ONNX Runtime library is, and random models.
// Each test binary uses some of these.
#![allow(dead_code)]

use std::path::PathBuf;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shopmind_onnx::TrainingStats;
use shopmind_training::CovisitModel;

/// `ORT_DYLIB_PATH` if set, else `<workspace>/.cache/onnxruntime/libonnxruntime.so`. Panics if
/// the file is missing: these tests need the real runtime and must not be skipped silently.
pub fn onnxruntime_library() -> PathBuf {
    let path = match std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.cache/onnxruntime/libonnxruntime.so"),
    };
    assert!(path.is_file(), "ONNX Runtime library not found at {}; run scripts/setup.sh", path.display());
    path
}

/// A seeded random co-visitation model: `n` items named `sku-000`..., similarities in [0, 1),
/// zero diagonal.
pub fn random_covisit(seed: u64, n: usize, stats: TrainingStats) -> CovisitModel {
    let mut rng = StdRng::seed_from_u64(seed);
    let items = (0..n).map(|i| format!("sku-{i:03}")).collect();
    let mut sim = vec![0f32; n * n];
    for i in 0..n {
        for j in 0..n {
            if i != j {
                sim[i * n + j] = rng.random::<f32>();
            }
        }
    }
    CovisitModel::new(items, sim, stats).unwrap()
}
