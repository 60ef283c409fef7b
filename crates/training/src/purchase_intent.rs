//! Purchase intent: the chance that a shopping session ends in an order, from a row of features
//! of the session and its user at a moment inside it.
//!
//! The rows, their names and their schema version are the feature contract's
//! (`shopmind_features::purchase_intent`): this module takes rows and names and knows nothing of
//! how they are computed. The trainer builds its samples by replaying events through the
//! production feature code; inference computes the same row from a live read.
//!
//! **The model** is a logistic regression on standardised features, fitted by Newton's method
//! (IRLS) with an L2 penalty ([`fit`]). [`PurchaseIntentModel::to_onnx`] exports it with the
//! standardisation inside the graph, and the feature names and schema version in its
//! [`PurchaseIntentSpec`]; the graph returns the probability, the logit and each feature's
//! contribution to the logit (for "why" answers). `shopmind-serving` serves it from ONNX Runtime.

use serde::{Deserialize, Serialize};
use shopmind_onnx::{self as onnx, DataType, Dim, Manifest, TensorSpec, TrainingStats};

use crate::error::{Result, TrainingError};
use crate::linalg::solve_spd;

/// Model role written to [`Manifest::name`].
pub const NAME: &str = "intent";
/// Model family written to [`Manifest::kind`].
pub const KIND: &str = "intent-logistic";
/// Graph input: one feature row per session, float `[batch, n_features]`.
pub const INPUT_FEATURES: &str = "features";
/// Graph output: the probability of an order, float `[batch]`.
pub const OUTPUT_PROBABILITY: &str = "probability";
/// Graph output: the logit, float `[batch]`.
pub const OUTPUT_LOGIT: &str = "logit";
/// Graph output: each feature's contribution to the logit, float `[batch, n_features]`; a row
/// sums to the logit minus the bias.
pub const OUTPUT_CONTRIBUTIONS: &str = "contributions";
/// The symbolic batch dimension.
pub const BATCH_DIM: &str = "batch";

/// Training parameters of the logistic regression.
#[derive(Clone, Debug, PartialEq)]
pub struct PurchaseIntentConfig {
    /// L2 penalty on the weights (of standardised features; the bias is not penalised).
    pub l2: f64,
    /// Most Newton steps.
    pub max_iter: usize,
    /// Stop when no parameter moves more than this in a step.
    pub tolerance: f64,
}

impl Default for PurchaseIntentConfig {
    fn default() -> Self {
        Self { l2: 1.0, max_iter: 50, tolerance: 1e-8 }
    }
}

/// What the model file says about its features; stored under [`shopmind_onnx::SPEC_KEY`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct PurchaseIntentSpec {
    pub feature_schema_version: u32,
    pub features: Vec<String>,
    /// Positive share of the training samples.
    pub base_rate: f64,
}

/// A trained logistic regression: `logit = bias + sum_i w_i * (x_i - mean_i) / scale_i`.
#[derive(Clone, Debug, PartialEq)]
pub struct PurchaseIntentModel {
    pub feature_names: Vec<String>,
    pub feature_schema_version: u32,
    pub mean: Vec<f32>,
    /// Standard deviations (1 for constant features).
    pub scale: Vec<f32>,
    pub weights: Vec<f32>,
    pub bias: f32,
    pub base_rate: f64,
    /// `users`: distinct users; `interactions`: samples; times: first and last cut.
    pub stats: TrainingStats,
    /// Newton steps taken.
    pub iterations: usize,
}

/// A prediction for one row.
#[derive(Clone, Debug, PartialEq)]
pub struct PurchaseIntentPrediction {
    pub probability: f32,
    pub logit: f32,
    /// Per feature, in the model's feature order.
    pub contributions: Vec<f32>,
}

impl PurchaseIntentPrediction {
    /// The `k` features with the largest contributions by magnitude, largest first, named by
    /// `names` (the model's feature names).
    pub fn top<'a>(&self, names: &'a [impl AsRef<str>], k: usize) -> Vec<(&'a str, f32)> {
        let mut pairs: Vec<(&str, f32)> =
            names.iter().map(AsRef::as_ref).zip(self.contributions.iter().copied()).collect();
        pairs.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()).then_with(|| a.0.cmp(b.0)));
        pairs.truncate(k);
        pairs
    }
}

/// Fits a logistic regression to row-major `rows` (`labels.len()` rows of `n` features):
/// features are standardised (mean 0, standard deviation 1; constant features are only
/// centred), then Newton's method minimises the mean log-loss plus `l2 / (2 * rows) * |w|^2`.
/// Deterministic. Errors without rows, without both classes, or on non-finite values.
///
/// The model's `feature_schema_version` is 0 and its `stats` are empty: the caller, who knows
/// where the rows come from, sets both (the trainer: the feature contract's schema version, and
/// the samples' users, count and times).
pub fn fit(
    rows: &[f32],
    n: usize,
    labels: &[bool],
    feature_names: Vec<String>,
    cfg: &PurchaseIntentConfig,
) -> Result<PurchaseIntentModel> {
    let m = labels.len();
    if m == 0 || rows.len() != m * n || feature_names.len() != n {
        return Err(TrainingError::Failed(format!(
            "{} feature values, {m} labels and {} names for {n} features",
            rows.len(),
            feature_names.len()
        )));
    }
    if rows.iter().any(|v| !v.is_finite()) {
        return Err(TrainingError::Failed("a feature value is not finite".into()));
    }
    let positives = labels.iter().filter(|l| **l).count();
    if positives == 0 || positives == m {
        return Err(TrainingError::Failed("the samples have only one class".into()));
    }

    // Standardisation, in f64; stored as f32, and the design matrix is built from the f32
    // values so that training sees exactly what the graph computes.
    let mut mean = vec![0f32; n];
    let mut scale = vec![1f32; n];
    for j in 0..n {
        let mu = (0..m).map(|r| f64::from(rows[r * n + j])).sum::<f64>() / m as f64;
        let var = (0..m).map(|r| (f64::from(rows[r * n + j]) - mu).powi(2)).sum::<f64>() / m as f64;
        mean[j] = mu as f32;
        scale[j] = if var.sqrt() > 1e-9 { var.sqrt() as f32 } else { 1.0 };
    }
    let d = n + 1; // weights, then the bias
    let mut z = vec![0f64; m * d];
    for r in 0..m {
        for j in 0..n {
            z[r * d + j] = f64::from((rows[r * n + j] - mean[j]) / scale[j]);
        }
        z[r * d + n] = 1.0;
    }
    let y: Vec<f64> = labels.iter().map(|l| if *l { 1.0 } else { 0.0 }).collect();

    let mut beta = vec![0f64; d];
    let base = positives as f64 / m as f64;
    beta[n] = (base / (1.0 - base)).ln();
    let mut iterations = 0;
    for _ in 0..cfg.max_iter {
        iterations += 1;
        let mut grad = vec![0f64; d];
        let mut hess = vec![0f64; d * d];
        for r in 0..m {
            let row = &z[r * d..(r + 1) * d];
            let eta: f64 = row.iter().zip(&beta).map(|(a, b)| a * b).sum();
            let p = 1.0 / (1.0 + (-eta).exp());
            let w = (p * (1.0 - p)).max(1e-12);
            for a in 0..d {
                grad[a] += (p - y[r]) * row[a];
                let wa = w * row[a];
                for b in 0..=a {
                    hess[a * d + b] += wa * row[b];
                }
            }
        }
        for a in 0..d {
            for b in 0..a {
                hess[b * d + a] = hess[a * d + b];
            }
        }
        for j in 0..n {
            grad[j] += cfg.l2 * beta[j];
            hess[j * d + j] += cfg.l2;
        }
        hess[n * d + n] += 1e-9;
        let step = solve_spd(&hess, d, &grad, 1)?;
        let mut moved = 0f64;
        for (b, s) in beta.iter_mut().zip(&step) {
            *b -= s;
            moved = moved.max(s.abs());
        }
        if !beta.iter().all(|b| b.is_finite()) {
            return Err(TrainingError::Failed("Newton's method diverged".into()));
        }
        if moved < cfg.tolerance {
            break;
        }
    }
    Ok(PurchaseIntentModel {
        feature_names,
        feature_schema_version: 0,
        mean,
        scale,
        weights: beta[..n].iter().map(|b| *b as f32).collect(),
        bias: beta[n] as f32,
        base_rate: base,
        stats: TrainingStats::default(),
        iterations,
    })
}

impl PurchaseIntentModel {
    pub fn n_features(&self) -> usize {
        self.weights.len()
    }

    /// The reference computation, in plain Rust and f32, the same operations in the same order
    /// as the graph: `c_i = ((x_i - mean_i) / scale_i) * w_i`, `logit = sum_i c_i + bias`,
    /// `p = 1 / (1 + e^-logit)`. Rows shorter than the model are padded with zeros.
    pub fn predict_row(&self, x: &[f32]) -> PurchaseIntentPrediction {
        let contributions: Vec<f32> = (0..self.n_features())
            .map(|i| ((x.get(i).copied().unwrap_or(0.0) - self.mean[i]) / self.scale[i]) * self.weights[i])
            .collect();
        let logit = contributions.iter().sum::<f32>() + self.bias;
        PurchaseIntentPrediction { probability: 1.0 / (1.0 + (-logit).exp()), logit, contributions }
    }

    /// The manifest [`PurchaseIntentModel::to_onnx`] embeds, given the caller's identity fields.
    pub fn manifest(&self, version: &str, tenant: &str, created_at_ms: i64) -> Manifest {
        let n = self.n_features().to_string();
        let float = |name: &str, shape: &[&str]| TensorSpec::new(name, "float32", shape);
        Manifest {
            feature_schema_version: self.feature_schema_version,
            stats: self.stats,
            inputs: vec![float(INPUT_FEATURES, &[BATCH_DIM, &n])],
            outputs: vec![
                float(OUTPUT_PROBABILITY, &[BATCH_DIM]),
                float(OUTPUT_LOGIT, &[BATCH_DIM]),
                float(OUTPUT_CONTRIBUTIONS, &[BATCH_DIM, &n]),
            ],
            ..Manifest::new(NAME, KIND, version, tenant, created_at_ms)
        }
    }

    /// The feature description stored next to the manifest.
    pub fn spec(&self) -> PurchaseIntentSpec {
        PurchaseIntentSpec {
            feature_schema_version: self.feature_schema_version,
            features: self.feature_names.clone(),
            base_rate: self.base_rate,
        }
    }

    /// Exports the model as ONNX (IR 8, opset 17):
    ///
    /// ```text
    /// features [B,n] ─ Sub(mean) ─ Div(scale) ─ Mul(weights) ─ contributions [B,n]
    ///     ─ ReduceSum(axes=[1], keepdims=0) ─ Add(bias) ─ logit [B] ─ Sigmoid ─ probability [B]
    /// ```
    ///
    /// The manifest takes `version`, `tenant` and `created_at_ms` from `manifest`; the rest
    /// describes this model ([`PurchaseIntentModel::manifest`]). The feature names and schema version go
    /// under [`shopmind_onnx::SPEC_KEY`].
    pub fn to_onnx(&self, manifest: &Manifest) -> Vec<u8> {
        let n = self.n_features() as i64;
        let manifest = Manifest {
            metrics: manifest.metrics.clone(),
            ..self.manifest(&manifest.version, &manifest.tenant, manifest.created_at_ms)
        };
        let batch = || Dim::Symbolic(BATCH_DIM.into());
        let graph = onnx::GraphProto {
            name: "intent".into(),
            node: vec![
                onnx::node("Sub", &[INPUT_FEATURES, "mean"], &["centred"], vec![]),
                onnx::node("Div", &["centred", "scale"], &["standardised"], vec![]),
                onnx::node("Mul", &["standardised", "weights"], &[OUTPUT_CONTRIBUTIONS], vec![]),
                onnx::node(
                    "ReduceSum",
                    &[OUTPUT_CONTRIBUTIONS, "feature_axis"],
                    &["weighted_sum"],
                    vec![onnx::attr_int("keepdims", 0)],
                ),
                onnx::node("Add", &["weighted_sum", "bias"], &[OUTPUT_LOGIT], vec![]),
                onnx::node("Sigmoid", &[OUTPUT_LOGIT], &[OUTPUT_PROBABILITY], vec![]),
            ],
            initializer: vec![
                onnx::float_tensor("mean", &[n], &self.mean),
                onnx::float_tensor("scale", &[n], &self.scale),
                onnx::float_tensor("weights", &[n], &self.weights),
                onnx::float_tensor("bias", &[], &[self.bias]),
                onnx::int64_tensor("feature_axis", &[1], &[1]),
            ],
            input: vec![onnx::tensor_value_info(INPUT_FEATURES, DataType::Float, &[batch(), Dim::Fixed(n)])],
            output: vec![
                onnx::tensor_value_info(OUTPUT_PROBABILITY, DataType::Float, &[batch()]),
                onnx::tensor_value_info(OUTPUT_LOGIT, DataType::Float, &[batch()]),
                onnx::tensor_value_info(OUTPUT_CONTRIBUTIONS, DataType::Float, &[batch(), Dim::Fixed(n)]),
            ],
            ..Default::default()
        };
        shopmind_onnx::model_file_with_spec(graph, &manifest, &self.spec())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// Rows from a seeded generator: two informative features and one of noise.
    fn rule_data(m: usize, seed: u64) -> (Vec<f32>, Vec<bool>) {
        let mut state = seed;
        let mut unit = || {
            state = crate::rng::splitmix(state);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut rows = Vec::new();
        let mut labels = Vec::new();
        for _ in 0..m {
            let (a, b, noise) = (unit() * 4.0 - 2.0, unit() * 10.0, unit());
            rows.extend([a as f32, b as f32, noise as f32]);
            // The rule: 2a - 0.5(b - 5) > 0.
            labels.push(2.0 * a - 0.5 * (b - 5.0) > 0.0);
        }
        (rows, labels)
    }

    #[test]
    fn logistic_regression_recovers_a_separable_rule() {
        let (rows, labels) = rule_data(2000, 1);
        let names = vec!["a".into(), "b".into(), "noise".into()];
        let model = fit(
            &rows,
            3,
            &labels,
            names,
            &PurchaseIntentConfig { l2: 1e-3, ..PurchaseIntentConfig::default() },
        )
        .unwrap();
        // Direction of the rule in raw units: w_a / scale_a : w_b / scale_b = 2 : -0.5.
        let raw_a = f64::from(model.weights[0] / model.scale[0]);
        let raw_b = f64::from(model.weights[1] / model.scale[1]);
        let raw_noise = f64::from(model.weights[2] / model.scale[2]);
        assert!(raw_a > 0.0 && raw_b < 0.0, "{raw_a} {raw_b}");
        assert!((raw_b / raw_a + 0.25).abs() < 0.03, "ratio {}", raw_b / raw_a);
        assert!(raw_noise.abs() < 0.05 * raw_a.abs(), "noise weight {raw_noise} vs {raw_a}");
        // It classifies fresh data from the same rule almost perfectly.
        let (test, test_labels) = rule_data(1000, 2);
        let correct = test
            .chunks(3)
            .zip(&test_labels)
            .filter(|(x, y)| (model.predict_row(x).probability > 0.5) == **y)
            .count();
        assert!(correct >= 985, "{correct}/1000");
        // Contributions add up to the logit.
        let p = model.predict_row(&test[..3]);
        assert!((p.contributions.iter().sum::<f32>() + model.bias - p.logit).abs() < 1e-5);
    }

    #[test]
    fn fit_rejects_degenerate_data() {
        let names = || vec!["x".to_string()];
        let cfg = PurchaseIntentConfig::default();
        assert!(matches!(fit(&[], 1, &[], names(), &cfg), Err(TrainingError::Failed(_))));
        assert!(matches!(fit(&[1.0, 2.0], 1, &[true, true], names(), &cfg), Err(TrainingError::Failed(_))));
        assert!(matches!(
            fit(&[1.0, f32::NAN], 1, &[true, false], names(), &cfg),
            Err(TrainingError::Failed(_))
        ));
        // A constant feature gets no weight and does not break the fit.
        let m = fit(&[3.0, 3.0, 3.0, 3.0], 1, &[true, false, false, true], names(), &cfg).unwrap();
        assert_eq!(m.weights, vec![0.0]);
        assert_eq!(m.scale, vec![1.0]);
        assert!(m.bias.abs() < 1e-6);
    }

    #[test]
    fn top_contributions_sort_by_magnitude() {
        let p =
            PurchaseIntentPrediction { probability: 0.5, logit: 0.0, contributions: vec![0.1, -2.0, 0.5] };
        assert_eq!(p.top(&["a", "b", "c"], 2), vec![("b", -2.0), ("c", 0.5)]);
    }
}
