//! Serving a trained embedding model from its ONNX file: batches of histories in, scores and
//! user vectors out, computed by ONNX Runtime.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use prost::Message;

use crate::batch::{BatchSpec, BatchStats, Batcher, PadValue};
use crate::embedding::{
    EMBEDDING_KEY, EmbeddingInfo, INPUT_ITEMS, INPUT_WEIGHTS, ITEM_BIAS, ITEM_EMBEDDINGS, KIND,
    OUTPUT_SCORES, OUTPUT_USER_VECTORS, recency_weights,
};
use crate::error::{ModelError, Result};
use crate::manifest::{Manifest, read_manifest_of_kind};
use crate::onnx::ModelProto;
use crate::runtime::{InputTensor, OutputTensor, PoolOptions, SessionPool};

/// An embedding model loaded into ONNX Runtime.
#[derive(Debug)]
pub struct EmbeddingRecommender {
    manifest: Manifest,
    info: EmbeddingInfo,
    index: HashMap<String, usize>,
    item_embeddings: Vec<f32>,
    item_bias: Vec<f32>,
    batcher: Batcher,
}

/// The batcher's (and the metrics') name of this model.
const METRIC_NAME: &str = "embedding";

/// The outputs of one batch, row-major: `scores` is `batch x items`, `user_vectors` `batch x dim`.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchScores {
    pub batch: usize,
    pub items: usize,
    pub dim: usize,
    pub scores: Vec<f32>,
    pub user_vectors: Vec<f32>,
}

impl BatchScores {
    /// The scores of history `b`.
    pub fn scores_of(&self, b: usize) -> &[f32] {
        self.scores.get(b * self.items..(b + 1) * self.items).unwrap_or(&[])
    }

    /// The user vector of history `b`.
    pub fn user_vector(&self, b: usize) -> &[f32] {
        self.user_vectors.get(b * self.dim..(b + 1) * self.dim).unwrap_or(&[])
    }
}

fn invalid(msg: impl Into<String>) -> ModelError {
    ModelError::InvalidModel(msg.into())
}

impl EmbeddingRecommender {
    /// Loads a model exported by [`crate::EmbeddingModel::to_onnx`]. Checks that the manifest says
    /// `embedding` and lists distinct items, that the [`EmbeddingInfo`] is there, that the item
    /// embedding and bias initializers fit the items, and that the manifest and the graph both
    /// have the `history_items` and `history_weights` inputs and the `scores` and `user_vectors`
    /// outputs. Needs [`crate::init_runtime`].
    pub fn load(bytes: &[u8], opts: &PoolOptions) -> Result<Self> {
        let manifest = read_manifest_of_kind(bytes, KIND)?;
        for name in [INPUT_ITEMS, INPUT_WEIGHTS] {
            if manifest.input(name).is_none() {
                return Err(invalid(format!("the manifest lists no input `{name}`")));
            }
        }
        for name in [OUTPUT_SCORES, OUTPUT_USER_VECTORS] {
            if manifest.output(name).is_none() {
                return Err(invalid(format!("the manifest lists no output `{name}`")));
            }
        }
        let index: HashMap<String, usize> =
            manifest.items.iter().enumerate().map(|(i, item)| (item.clone(), i)).collect();
        if index.len() != manifest.items.len() {
            return Err(invalid("the manifest's item ids are not distinct"));
        }
        if manifest.items.is_empty() {
            return Err(invalid("the model has no items"));
        }

        let model = ModelProto::decode(bytes).map_err(|e| invalid(format!("not an ONNX model: {e}")))?;
        let info =
            model.metadata_props.iter().find(|p| p.key == EMBEDDING_KEY).ok_or_else(|| {
                invalid(format!("no `{EMBEDDING_KEY}` entry in the model's metadata_props"))
            })?;
        let info: EmbeddingInfo = serde_json::from_str(&info.value)
            .map_err(|e| invalid(format!("the `{EMBEDDING_KEY}` entry is not valid: {e}")))?;
        let n = manifest.items.len();
        let initializer = |name: &str, len: usize| -> Result<Vec<f32>> {
            let values = model
                .graph
                .as_ref()
                .and_then(|g| g.initializer.iter().find(|t| t.name == name))
                .and_then(|t| t.f32_values())
                .ok_or_else(|| invalid(format!("the graph has no float initializer `{name}`")))?;
            if values.len() != len {
                return Err(invalid(format!("`{name}` has {} values, expected {len}", values.len())));
            }
            Ok(values)
        };
        let item_embeddings = initializer(ITEM_EMBEDDINGS, n * info.dim)?;
        let item_bias = initializer(ITEM_BIAS, n)?;
        drop(model);

        let pool = SessionPool::load(bytes, opts)?;
        for name in [INPUT_ITEMS, INPUT_WEIGHTS] {
            if !pool.input_names().iter().any(|x| x == name) {
                return Err(invalid(format!("the graph has no input `{name}`")));
            }
        }
        for name in [OUTPUT_SCORES, OUTPUT_USER_VECTORS] {
            if !pool.output_names().iter().any(|x| x == name) {
                return Err(invalid(format!("the graph has no output `{name}`")));
            }
        }
        let spec =
            BatchSpec::new().padded(INPUT_ITEMS, PadValue::I64(0)).padded(INPUT_WEIGHTS, PadValue::F32(0.0));
        let batcher = Batcher::new(METRIC_NAME, Arc::new(pool), spec, opts.batch)?;
        Ok(Self { manifest, info, index, item_embeddings, item_bias, batcher })
    }

    /// [`EmbeddingRecommender::load`] from a file.
    pub fn load_file(path: &Path, opts: &PoolOptions) -> Result<Self> {
        let bytes =
            std::fs::read(path).map_err(|source| ModelError::Io { path: path.to_path_buf(), source })?;
        Self::load(&bytes, opts)
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn info(&self) -> &EmbeddingInfo {
        &self.info
    }

    /// Number of items the model scores.
    pub fn len(&self) -> usize {
        self.manifest.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.manifest.items.is_empty()
    }

    pub fn dim(&self) -> usize {
        self.info.dim
    }

    pub fn index_of(&self, item: &str) -> Option<usize> {
        self.index.get(item).copied()
    }

    pub fn item(&self, index: usize) -> Option<&str> {
        self.manifest.items.get(index).map(String::as_str)
    }

    /// The item embeddings `P`, row-major `items x dim`: the vectors a user vector is dotted with
    /// (for an ANN index; add [`EmbeddingRecommender::item_bias`] to its dot products).
    pub fn item_embeddings(&self) -> &[f32] {
        &self.item_embeddings
    }

    pub fn item_bias(&self) -> &[f32] {
        &self.item_bias
    }

    /// The weighted history for interactions `items` (oldest first) that the model was trained
    /// with: the last `history_len`, weighted `history_decay^r` for the `r`-th most recent.
    pub fn recent_history(&self, items: &[usize]) -> Vec<(usize, f32)> {
        let start = items.len().saturating_sub(self.info.history_len);
        let w = recency_weights(items.len() - start, self.info.history_decay, self.info.history_len);
        items[start..].iter().copied().zip(w).collect()
    }

    /// Scores a batch of weighted histories in one ONNX Runtime run. Histories are padded to the
    /// longest (index 0, weight 0); an empty history scores by the item biases alone. An index out
    /// of range is [`ModelError::InvalidInput`].
    pub async fn score_batch(&self, histories: &[Vec<(usize, f32)>]) -> Result<BatchScores> {
        let n = self.len();
        let dim = self.info.dim;
        let batch = histories.len();
        if batch == 0 {
            return Ok(BatchScores { batch, items: n, dim, scores: Vec::new(), user_vectors: Vec::new() });
        }
        let h = histories.iter().map(Vec::len).max().unwrap_or(0).max(1);
        let mut items = vec![0i64; batch * h];
        let mut weights = vec![0f32; batch * h];
        for (b, history) in histories.iter().enumerate() {
            for (k, &(idx, w)) in history.iter().enumerate() {
                if idx >= n {
                    return Err(ModelError::InvalidInput(format!(
                        "item index {idx} out of range for {n} items"
                    )));
                }
                items[b * h + k] = idx as i64;
                weights[b * h + k] = w;
            }
        }
        for history in histories {
            shopmind_metrics::global().history_length(history.len());
        }
        let outputs = self
            .batcher
            .pool()
            .run(vec![
                (INPUT_ITEMS.to_owned(), InputTensor::I64 { shape: vec![batch, h], data: items }),
                (INPUT_WEIGHTS.to_owned(), InputTensor::F32 { shape: vec![batch, h], data: weights }),
            ])
            .await?;
        let mut scores = None;
        let mut user_vectors = None;
        for (name, out) in outputs {
            let want = match name.as_str() {
                OUTPUT_SCORES => n,
                OUTPUT_USER_VECTORS => dim,
                _ => continue,
            };
            match out {
                OutputTensor::F32 { shape, data } if shape == [batch, want] => {
                    if name == OUTPUT_SCORES {
                        scores = Some(data);
                    } else {
                        user_vectors = Some(data);
                    }
                }
                OutputTensor::F32 { shape, .. } | OutputTensor::I64 { shape, .. } => {
                    return Err(ModelError::Runtime(format!(
                        "`{name}` has shape {shape:?}, expected float32 [{batch}, {want}]"
                    )));
                }
            }
        }
        match (scores, user_vectors) {
            (Some(scores), Some(user_vectors)) => {
                Ok(BatchScores { batch, items: n, dim, scores, user_vectors })
            }
            _ => Err(ModelError::Runtime(format!(
                "the model did not return both `{OUTPUT_SCORES}` and `{OUTPUT_USER_VECTORS}`"
            ))),
        }
    }

    /// Scores one weighted history.
    pub async fn score(&self, history: &[(usize, f32)]) -> Result<Vec<f32>> {
        let out = self.score_batch(&[history.to_vec()]).await?;
        Ok(out.scores)
    }

    /// Scores one weighted history in a micro-batch with other concurrent requests (see
    /// [`crate::batch`]); answered with [`ModelError::DeadlineExceeded`] (and not computed) if
    /// `deadline` passes first, [`ModelError::Overloaded`] if the queue is full. An empty history
    /// scores by the item biases alone. An index out of range is [`ModelError::InvalidInput`].
    pub async fn score_until(&self, history: &[(usize, f32)], deadline: Option<Instant>) -> Result<Vec<f32>> {
        self.score_with_user_until(history, deadline).await.map(|(scores, _)| scores)
    }

    /// [`EmbeddingRecommender::score_until`] with the graph's `user_vectors` output too: (scores of
    /// every item, the user vector `u`, so that `scores[j] = u · P_j + b_j`).
    pub async fn score_with_user_until(
        &self,
        history: &[(usize, f32)],
        deadline: Option<Instant>,
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        let n = self.len();
        let dim = self.info.dim;
        let h = history.len().max(1);
        let mut items = vec![0i64; h];
        let mut weights = vec![0f32; h];
        for (k, &(idx, w)) in history.iter().enumerate() {
            let idx = i64::try_from(idx).ok().filter(|_| idx < n).ok_or_else(|| {
                ModelError::InvalidInput(format!("item index {idx} out of range for {n} items"))
            })?;
            items[k] = idx;
            weights[k] = w;
        }
        shopmind_metrics::global().history_length(history.len());
        let outputs = self
            .batcher
            .run(
                vec![
                    (INPUT_ITEMS.to_owned(), InputTensor::I64 { shape: vec![1, h], data: items }),
                    (INPUT_WEIGHTS.to_owned(), InputTensor::F32 { shape: vec![1, h], data: weights }),
                ],
                deadline,
            )
            .await?;
        let mut scores = None;
        let mut user = None;
        for (name, out) in outputs {
            let (slot, want) = match name.as_str() {
                OUTPUT_SCORES => (&mut scores, n),
                OUTPUT_USER_VECTORS => (&mut user, dim),
                _ => continue,
            };
            match out {
                OutputTensor::F32 { data, .. } if data.len() == want => *slot = Some(data),
                OutputTensor::F32 { shape, .. } | OutputTensor::I64 { shape, .. } => {
                    return Err(ModelError::Runtime(format!(
                        "`{name}` has shape {shape:?}, expected float32 [1, {want}]"
                    )));
                }
            }
        }
        match (scores, user) {
            (Some(scores), Some(user)) => Ok((scores, user)),
            (None, _) => Err(ModelError::Runtime(format!("the model returned no `{OUTPUT_SCORES}`"))),
            (_, None) => Err(ModelError::Runtime(format!("the model returned no `{OUTPUT_USER_VECTORS}`"))),
        }
    }

    /// The batcher's counters.
    pub fn batch_stats(&self) -> BatchStats {
        self.batcher.stats()
    }

    /// Stops taking requests, finishes the queued ones; see [`Batcher::shutdown`].
    pub async fn shutdown(&self) {
        self.batcher.shutdown().await;
    }
}
