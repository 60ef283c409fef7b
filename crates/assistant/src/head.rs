//! The classifier head: multinomial logistic regression (softmax) on sentence embeddings,
//! trained in plain Rust and exported to ONNX.
//!
//! **Training** ([`fit`]): embeddings are standardised per dimension (mean 0, standard deviation
//! 1), then Nesterov's accelerated full-batch gradient descent minimises the mean cross-entropy
//! plus `l2 / 2 * |W|^2` (the bias is not penalised). The step is `1 / L`, with `L` the
//! gradient's Lipschitz constant bound `0.5 * λmax(ZᵀZ / m) + l2` (`Z` the standardised rows with
//! a column of ones; `λmax` by power iteration), so the run needs no tuning and is deterministic.
//! The standardisation is then folded into the weights, so the exported graph is just
//!
//! ```text
//! embeddings [B,d] ─ MatMul(weights [d,k]) ─ Add(bias [k]) ─ logits [B,k] ─ Softmax(axis=1) ─ probabilities [B,k]
//! ```
//!
//! [`IntentHead::probabilities`] is the same computation in plain Rust and f32, the reference the
//! ONNX Runtime output is checked against.

use serde::{Deserialize, Serialize};
use shopmind_onnx::{
    self as onnx, DataType, Dim, Manifest, TensorSpec, TrainingStats, read_manifest_of_kind, read_spec,
};
use shopmind_serving::{InputTensor, OutputTensor, PoolOptions, SessionPool};

use crate::error::{AssistantError, Result};

/// Model role written to [`Manifest::name`].
pub const NAME: &str = "assistant-intents";
/// Model family written to [`Manifest::kind`].
pub const KIND: &str = "intent-softmax";
/// Graph input: one sentence embedding per message, float `[batch, dimension]`.
pub const INPUT_EMBEDDINGS: &str = "embeddings";
/// Graph output: the probability of each intent, float `[batch, intents]`, rows summing to 1.
pub const OUTPUT_PROBABILITIES: &str = "probabilities";
/// The symbolic batch dimension.
pub const BATCH_DIM: &str = "batch";

/// Training parameters of the head.
#[derive(Clone, Debug, PartialEq)]
pub struct HeadConfig {
    /// L2 penalty on the weights of the standardised embeddings.
    pub l2: f64,
    /// Most gradient steps.
    pub max_iter: usize,
    /// Stop when the gradient's largest component is below this.
    pub tolerance: f64,
}

impl Default for HeadConfig {
    fn default() -> Self {
        Self { l2: 1e-2, max_iter: 600, tolerance: 1e-5 }
    }
}

/// What the model file says about its outputs; stored under [`shopmind_onnx::SPEC_KEY`] next to
/// the manifest.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct HeadSpec {
    /// Intent names, in the order of the `probabilities` columns.
    pub labels: Vec<String>,
    /// Length of the embeddings the head takes.
    pub dimension: usize,
}

/// A trained head: `probabilities = softmax(x · weights + bias)`.
#[derive(Clone, Debug, PartialEq)]
pub struct IntentHead {
    pub labels: Vec<String>,
    pub dimension: usize,
    /// Row-major `[dimension, labels]`, the standardisation folded in.
    pub weights: Vec<f32>,
    pub bias: Vec<f32>,
    /// Gradient steps taken.
    pub iterations: usize,
    /// Mean cross-entropy on the training rows at the end (without the penalty).
    pub train_loss: f64,
    /// Training rows.
    pub rows: usize,
}

fn softmax_in_place(z: &mut [f64]) {
    let max = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut sum = 0.0;
    for v in z.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    for v in z.iter_mut() {
        *v /= sum;
    }
}

/// Mean cross-entropy and its gradient at `params` (`[d + 1, k]`, the last row the bias).
fn loss_and_gradient(z: &[f64], y: &[usize], d1: usize, k: usize, params: &[f64], grad: &mut [f64]) -> f64 {
    let m = y.len();
    grad.iter_mut().for_each(|g| *g = 0.0);
    let mut loss = 0.0;
    let mut p = vec![0f64; k];
    for r in 0..m {
        let row = &z[r * d1..(r + 1) * d1];
        p.iter_mut().for_each(|v| *v = 0.0);
        for (j, x) in row.iter().enumerate() {
            if *x != 0.0 {
                let w = &params[j * k..(j + 1) * k];
                for c in 0..k {
                    p[c] += x * w[c];
                }
            }
        }
        softmax_in_place(&mut p);
        loss -= p[y[r]].max(1e-300).ln();
        p[y[r]] -= 1.0;
        for (j, x) in row.iter().enumerate() {
            let g = &mut grad[j * k..(j + 1) * k];
            for c in 0..k {
                g[c] += x * p[c];
            }
        }
    }
    let scale = 1.0 / m as f64;
    grad.iter_mut().for_each(|g| *g *= scale);
    loss * scale
}

/// The largest eigenvalue of `ZᵀZ / m` by power iteration (deterministic start).
fn largest_eigenvalue(z: &[f64], m: usize, d1: usize) -> f64 {
    let mut v = vec![1.0 / (d1 as f64).sqrt(); d1];
    let mut lambda = 0.0;
    let mut zv = vec![0f64; m];
    for _ in 0..100 {
        for r in 0..m {
            zv[r] = z[r * d1..(r + 1) * d1].iter().zip(&v).map(|(a, b)| a * b).sum();
        }
        let mut w = vec![0f64; d1];
        for r in 0..m {
            for (j, x) in z[r * d1..(r + 1) * d1].iter().enumerate() {
                w[j] += x * zv[r];
            }
        }
        w.iter_mut().for_each(|x| *x /= m as f64);
        let norm = w.iter().map(|x| x * x).sum::<f64>().sqrt();
        if norm == 0.0 {
            return 0.0;
        }
        let next = norm;
        v = w.into_iter().map(|x| x / norm).collect();
        if (next - lambda).abs() <= 1e-9 * next {
            return next;
        }
        lambda = next;
    }
    lambda
}

/// Fits the head to `embeddings` (all of length `dimension`) and label indices into `labels`.
/// Deterministic. Errors without rows, when a label has no row, or on non-finite values.
pub fn fit(
    embeddings: &[Vec<f32>],
    targets: &[usize],
    labels: Vec<String>,
    cfg: &HeadConfig,
) -> Result<IntentHead> {
    let m = targets.len();
    let k = labels.len();
    let Some(d) = embeddings.first().map(Vec::len) else {
        return Err(AssistantError::Training("no training rows".into()));
    };
    if m != embeddings.len() || d == 0 || k < 2 {
        return Err(AssistantError::Training(format!(
            "{} embeddings of width {d}, {m} targets, {k} labels",
            embeddings.len()
        )));
    }
    if embeddings.iter().any(|e| e.len() != d || e.iter().any(|v| !v.is_finite())) {
        return Err(AssistantError::Training("an embedding has another width or a non-finite value".into()));
    }
    for (c, label) in labels.iter().enumerate() {
        if !targets.contains(&c) {
            return Err(AssistantError::Training(format!("no training row for `{label}`")));
        }
    }
    if let Some(t) = targets.iter().find(|&&t| t >= k) {
        return Err(AssistantError::Training(format!("target {t} out of {k} labels")));
    }

    let mut mean = vec![0f64; d];
    let mut scale = vec![1f64; d];
    for j in 0..d {
        let mu = embeddings.iter().map(|e| f64::from(e[j])).sum::<f64>() / m as f64;
        let var = embeddings.iter().map(|e| (f64::from(e[j]) - mu).powi(2)).sum::<f64>() / m as f64;
        mean[j] = mu;
        scale[j] = if var.sqrt() > 1e-9 { var.sqrt() } else { 1.0 };
    }
    let d1 = d + 1;
    let mut z = vec![0f64; m * d1];
    for (r, e) in embeddings.iter().enumerate() {
        for j in 0..d {
            z[r * d1 + j] = (f64::from(e[j]) - mean[j]) / scale[j];
        }
        z[r * d1 + d] = 1.0;
    }

    let lipschitz = 0.5 * largest_eigenvalue(&z, m, d1) + cfg.l2;
    let step = 1.0 / lipschitz.max(1e-12);
    let n = d1 * k;
    let mut params = vec![0f64; n];
    let mut previous = params.clone();
    let mut look = params.clone();
    let mut grad = vec![0f64; n];
    let mut iterations = 0;
    let mut t = 1.0f64;
    for _ in 0..cfg.max_iter {
        iterations += 1;
        loss_and_gradient(&z, targets, d1, k, &look, &mut grad);
        for i in 0..d * k {
            grad[i] += cfg.l2 * look[i];
        }
        let largest = grad.iter().fold(0f64, |a, g| a.max(g.abs()));
        for i in 0..n {
            params[i] = look[i] - step * grad[i];
        }
        let t_next = (1.0 + (1.0 + 4.0 * t * t).sqrt()) / 2.0;
        let momentum = (t - 1.0) / t_next;
        for i in 0..n {
            look[i] = params[i] + momentum * (params[i] - previous[i]);
        }
        previous.copy_from_slice(&params);
        t = t_next;
        if !params.iter().all(|p| p.is_finite()) {
            return Err(AssistantError::Training("gradient descent diverged".into()));
        }
        if largest < cfg.tolerance {
            break;
        }
    }
    let train_loss = loss_and_gradient(&z, targets, d1, k, &params, &mut grad);

    // Fold the standardisation: x·(W / scale) + (b - Σ_j mean_j W_j / scale_j).
    let mut weights = vec![0f32; d * k];
    let mut bias: Vec<f64> = params[d * k..].to_vec();
    for j in 0..d {
        for c in 0..k {
            let w = params[j * k + c] / scale[j];
            weights[j * k + c] = w as f32;
            bias[c] -= mean[j] * w;
        }
    }
    Ok(IntentHead {
        labels,
        dimension: d,
        weights,
        bias: bias.into_iter().map(|b| b as f32).collect(),
        iterations,
        train_loss,
        rows: m,
    })
}

impl IntentHead {
    /// The reference computation in plain Rust and f32, the graph's operations in its order:
    /// `logits_c = Σ_j x_j w_jc + b_c`, then a softmax with the maximum subtracted.
    pub fn probabilities(&self, x: &[f32]) -> Vec<f32> {
        let k = self.labels.len();
        let mut logits = vec![0f32; k];
        for (j, v) in x.iter().enumerate().take(self.dimension) {
            for (l, w) in logits.iter_mut().zip(&self.weights[j * k..(j + 1) * k]) {
                *l += v * w;
            }
        }
        for (l, b) in logits.iter_mut().zip(&self.bias) {
            *l += b;
        }
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let exp: Vec<f32> = logits.iter().map(|l| (l - max).exp()).collect();
        let sum: f32 = exp.iter().sum();
        exp.into_iter().map(|e| e / sum).collect()
    }

    /// The manifest [`IntentHead::to_onnx`] embeds.
    pub fn manifest(&self, version: &str, created_at_ms: i64) -> Manifest {
        let (d, k) = (self.dimension.to_string(), self.labels.len().to_string());
        Manifest {
            stats: TrainingStats { interactions: self.rows as u64, ..TrainingStats::default() },
            inputs: vec![TensorSpec::new(INPUT_EMBEDDINGS, "float32", &[BATCH_DIM, &d])],
            outputs: vec![TensorSpec::new(OUTPUT_PROBABILITIES, "float32", &[BATCH_DIM, &k])],
            ..Manifest::new(NAME, KIND, version, "", created_at_ms)
        }
    }

    /// The label names and input width stored under [`shopmind_onnx::SPEC_KEY`].
    pub fn spec(&self) -> HeadSpec {
        HeadSpec { labels: self.labels.clone(), dimension: self.dimension }
    }

    /// Exports the head as ONNX (IR 8, opset 17; graph in the module docs). The manifest
    /// ([`IntentHead::manifest`], with `metrics` added) and the [`HeadSpec`] go in the model's
    /// metadata.
    pub fn to_onnx(&self, version: &str, created_at_ms: i64, metrics: &[(&str, f64)]) -> Vec<u8> {
        self.to_onnx_for("", version, created_at_ms, metrics)
    }

    /// [`IntentHead::to_onnx`] with the manifest naming `tenant`, as the model registry's
    /// `intent_head` of that tenant must.
    pub fn to_onnx_for(
        &self,
        tenant: &str,
        version: &str,
        created_at_ms: i64,
        metrics: &[(&str, f64)],
    ) -> Vec<u8> {
        let mut manifest = self.manifest(version, created_at_ms);
        manifest.tenant = tenant.into();
        manifest.metrics = metrics.iter().map(|(n, v)| ((*n).to_owned(), *v)).collect();
        self.to_onnx_with(&manifest)
    }

    /// [`IntentHead::to_onnx`] with a manifest of the caller's (e.g. one naming the tenant and
    /// the registry's model name, as the trainer publishes it); its kind should stay [`KIND`],
    /// which [`HeadModel::load`] checks.
    pub fn to_onnx_with(&self, manifest: &Manifest) -> Vec<u8> {
        let (d, k) = (self.dimension as i64, self.labels.len() as i64);
        let batch = || Dim::Symbolic(BATCH_DIM.into());
        let graph = onnx::GraphProto {
            name: NAME.into(),
            node: vec![
                onnx::node("MatMul", &[INPUT_EMBEDDINGS, "weights"], &["scores"], vec![]),
                onnx::node("Add", &["scores", "bias"], &["logits"], vec![]),
                onnx::node("Softmax", &["logits"], &[OUTPUT_PROBABILITIES], vec![onnx::attr_int("axis", 1)]),
            ],
            initializer: vec![
                onnx::float_tensor("weights", &[d, k], &self.weights),
                onnx::float_tensor("bias", &[k], &self.bias),
            ],
            input: vec![onnx::tensor_value_info(
                INPUT_EMBEDDINGS,
                DataType::Float,
                &[batch(), Dim::Fixed(d)],
            )],
            output: vec![onnx::tensor_value_info(
                OUTPUT_PROBABILITIES,
                DataType::Float,
                &[batch(), Dim::Fixed(k)],
            )],
            ..Default::default()
        };
        shopmind_onnx::model_file_with_spec(graph, manifest, &self.spec())
    }
}

/// An exported head served from ONNX Runtime.
#[derive(Debug)]
pub struct HeadModel {
    manifest: Manifest,
    spec: HeadSpec,
    pool: SessionPool,
}

impl HeadModel {
    /// Loads a head written by [`IntentHead::to_onnx`]: checks the kind, the spec, and that the
    /// graph has the `embeddings` input and the `probabilities` output. Needs
    /// [`shopmind_serving::init_runtime`].
    pub fn load(bytes: &[u8], opts: &PoolOptions) -> Result<Self> {
        let invalid = |m: String| AssistantError::Model(shopmind_serving::ModelError::InvalidModel(m));
        let manifest = read_manifest_of_kind(bytes, KIND)?;
        let spec: HeadSpec = read_spec(bytes)?;
        if spec.labels.len() < 2 || spec.dimension == 0 {
            return Err(invalid(format!("{} labels, input width {}", spec.labels.len(), spec.dimension)));
        }
        let pool = SessionPool::load(bytes, opts)?;
        if !pool.input_names().iter().any(|n| n == INPUT_EMBEDDINGS)
            || !pool.output_names().iter().any(|n| n == OUTPUT_PROBABILITIES)
        {
            return Err(invalid(format!(
                "the graph lacks the `{INPUT_EMBEDDINGS}` input or the `{OUTPUT_PROBABILITIES}` output"
            )));
        }
        Ok(Self { manifest, spec, pool })
    }

    /// [`HeadModel::load`] from a file.
    pub fn load_file(path: &std::path::Path, opts: &PoolOptions) -> Result<Self> {
        let bytes =
            std::fs::read(path).map_err(|source| AssistantError::Io { path: path.to_path_buf(), source })?;
        Self::load(&bytes, opts)
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Intent names, in the order of the probabilities.
    pub fn labels(&self) -> &[String] {
        &self.spec.labels
    }

    /// Length of the embeddings the head takes.
    pub fn dimension(&self) -> usize {
        self.spec.dimension
    }

    /// The probabilities of a batch of embeddings, one run. An empty batch returns nothing.
    pub async fn probabilities(&self, embeddings: &[Vec<f32>]) -> Result<Vec<Vec<f32>>> {
        let (b, d, k) = (embeddings.len(), self.spec.dimension, self.spec.labels.len());
        if b == 0 {
            return Ok(Vec::new());
        }
        if let Some(r) = embeddings.iter().position(|e| e.len() != d || e.iter().any(|v| !v.is_finite())) {
            return Err(AssistantError::Model(shopmind_serving::ModelError::InvalidInput(format!(
                "embedding {r} is not {d} finite values"
            ))));
        }
        let data: Vec<f32> = embeddings.iter().flatten().copied().collect();
        let out = self
            .pool
            .run(vec![(INPUT_EMBEDDINGS.to_owned(), InputTensor::F32 { shape: vec![b, d], data })])
            .await?;
        match out.into_iter().find(|(n, _)| n == OUTPUT_PROBABILITIES) {
            Some((_, OutputTensor::F32 { data, .. })) if data.len() == b * k => {
                Ok(data.chunks_exact(k).map(<[f32]>::to_vec).collect())
            }
            _ => Err(AssistantError::Model(shopmind_serving::ModelError::Runtime(format!(
                "the head did not return `{OUTPUT_PROBABILITIES}` as float [{b}, {k}]"
            )))),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn blobs() -> (Vec<Vec<f32>>, Vec<usize>) {
        // Three separable clusters in 4 dimensions.
        let centres = [[1.0, 0.0, 0.0, 0.2], [0.0, 1.0, 0.0, 0.2], [0.0, 0.0, 1.0, 0.2]];
        let mut x = Vec::new();
        let mut y = Vec::new();
        let mut state = 1u64;
        for i in 0..60 {
            let c = i % 3;
            let row = centres[c]
                .iter()
                .map(|v| {
                    state = crate::data::splitmix(state);
                    v + ((state >> 11) as f64 / (1u64 << 53) as f64 - 0.5) as f32 * 0.3
                })
                .collect();
            x.push(row);
            y.push(c);
        }
        (x, y)
    }

    #[test]
    fn fits_separable_clusters_deterministically() {
        let (x, y) = blobs();
        let labels = vec!["a".to_owned(), "b".into(), "c".into()];
        let head = fit(&x, &y, labels.clone(), &HeadConfig::default()).unwrap();
        let correct = x
            .iter()
            .zip(&y)
            .filter(|(row, t)| {
                let p = head.probabilities(row);
                let best = (0..3).max_by(|&a, &b| p[a].total_cmp(&p[b])).unwrap();
                best == **t
            })
            .count();
        assert_eq!(correct, 60);
        assert!(head.train_loss < 0.2, "loss {}", head.train_loss);
        let p = head.probabilities(&x[0]);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        assert_eq!(head, fit(&x, &y, labels, &HeadConfig::default()).unwrap());
    }

    #[test]
    fn a_label_without_rows_is_an_error() {
        let (x, y) = blobs();
        let labels = vec!["a".to_owned(), "b".into(), "c".into(), "d".into()];
        let err = fit(&x, &y, labels, &HeadConfig::default()).unwrap_err();
        assert!(err.to_string().contains("`d`"), "{err}");
    }
}
