//! Serving a trained embedding model from its ONNX file: batches of (history, candidate items)
//! in, the candidates' scores and the user vectors out, computed by ONNX Runtime. The user vector
//! is also computed in Rust ([`EmbeddingRecommender::user_vector`], from the history embeddings
//! read at load), so an ANN index can pick the candidates before the ONNX run ranks them.

use std::path::Path;
use std::time::Instant;

use prost::Message;
use shopmind_onnx::{ModelProto, read_manifest_of_kind, read_metadata};
use shopmind_training::embedding::{
    EMBEDDING_KEY, EmbeddingInfo, Factors, HISTORY_EMBEDDINGS, INPUT_CANDIDATES, INPUT_ITEMS, INPUT_WEIGHTS,
    ITEM_BIAS, ITEM_EMBEDDINGS, KIND, LEGACY_OUTPUT_SCORES, OUTPUT_CANDIDATE_SCORES, OUTPUT_USER_VECTORS,
    recency_weights,
};

use crate::batch::{BatchSpec, PadValue};
use crate::error::{ModelError, Result};
use crate::recommender::{ItemRecommender, item_index};
use crate::served::{check_io, read_file};
use crate::session_pool::{InputTensor, OutputTensor, PoolOptions, SessionPool};

/// What an embedding file adds besides its graph.
#[derive(Debug)]
pub struct EmbeddingGraph {
    info: EmbeddingInfo,
    /// `Q`, `P` and `b`, read from the graph's initializers: the user vector of the ANN query is
    /// computed from them in Rust, before the candidates (and the ONNX run) are known.
    factors: Factors,
}

/// An embedding model loaded into ONNX Runtime.
pub type EmbeddingRecommender = ItemRecommender<EmbeddingGraph>;

/// The batcher's (and the metrics') name of this model.
const METRIC_NAME: &str = "embedding";
/// The graph's inputs and outputs, as both the manifest and the graph must list them.
const INPUTS: [&str; 3] = [INPUT_ITEMS, INPUT_WEIGHTS, INPUT_CANDIDATES];
const OUTPUTS: [&str; 2] = [OUTPUT_CANDIDATE_SCORES, OUTPUT_USER_VECTORS];

/// The outputs of one batch, row-major: `scores` is `batch x width` (each row padded to the
/// longest candidate list, `width`), `user_vectors` `batch x dim`.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchScores {
    pub batch: usize,
    /// The padded candidate count of every row.
    pub width: usize,
    pub dim: usize,
    /// The candidate count of each row (its scores are the first `lens[b]` of the row).
    pub lens: Vec<usize>,
    pub scores: Vec<f32>,
    pub user_vectors: Vec<f32>,
}

impl BatchScores {
    /// The scores of row `b`'s candidates, in the order they were given.
    pub fn scores_of(&self, b: usize) -> &[f32] {
        let len = self.lens.get(b).copied().unwrap_or(0);
        self.scores.get(b * self.width..b * self.width + len).unwrap_or(&[])
    }

    /// The user vector of history `b`.
    pub fn user_vector(&self, b: usize) -> &[f32] {
        self.user_vectors.get(b * self.dim..(b + 1) * self.dim).unwrap_or(&[])
    }
}

fn invalid(msg: impl Into<String>) -> ModelError {
    ModelError::InvalidModel(msg.into())
}

/// What an embedding model exported before the graph took candidates is told at load.
fn older_export() -> ModelError {
    invalid(format!(
        "the graph scores every item (`{LEGACY_OUTPUT_SCORES}`) and takes no `{INPUT_CANDIDATES}`: \
         the model was exported by an older shopmind; train it again"
    ))
}

impl ItemRecommender<EmbeddingGraph> {
    /// Loads a model exported by `shopmind_training::EmbeddingModel::to_onnx`. Checks that the
    /// manifest says `embedding` and lists distinct items, that the [`EmbeddingInfo`] is there,
    /// that the history and item embedding and bias initializers fit the items, and that the
    /// manifest and the graph both have the `history_items`, `history_weights` and
    /// `candidate_items` inputs and the `candidate_scores` and `user_vectors` outputs. A file of
    /// the older graph that scored every item is refused with "train it again". Needs
    /// [`crate::init_runtime`].
    pub fn load(bytes: &[u8], opts: &PoolOptions) -> Result<Self> {
        let manifest = read_manifest_of_kind(bytes, KIND)?;
        if manifest.input(INPUT_CANDIDATES).is_none() && manifest.output(LEGACY_OUTPUT_SCORES).is_some() {
            return Err(older_export());
        }
        for name in INPUTS {
            if manifest.input(name).is_none() {
                return Err(invalid(format!("the manifest lists no input `{name}`")));
            }
        }
        for name in OUTPUTS {
            if manifest.output(name).is_none() {
                return Err(invalid(format!("the manifest lists no output `{name}`")));
            }
        }
        let index = item_index(&manifest)?;
        if manifest.items.is_empty() {
            return Err(invalid("the model has no items"));
        }

        let info: EmbeddingInfo = read_metadata(bytes, EMBEDDING_KEY)?;
        if info.dim == 0 {
            return Err(invalid(format!("the `{EMBEDDING_KEY}` entry says dimension 0")));
        }
        let model = ModelProto::decode(bytes).map_err(|e| invalid(format!("not an ONNX model: {e}")))?;
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
        let factors = Factors {
            dim: info.dim,
            history_embeddings: initializer(HISTORY_EMBEDDINGS, n * info.dim)?,
            item_embeddings: initializer(ITEM_EMBEDDINGS, n * info.dim)?,
            item_bias: initializer(ITEM_BIAS, n)?,
        };
        drop(model);

        let pool = SessionPool::load(bytes, opts)?;
        check_io(&manifest, &pool, &INPUTS, &OUTPUTS)?;
        // Padding: history entries (item 0, weight 0) add nothing; padded candidates are item 0,
        // whose scores are cut off again.
        let spec = BatchSpec::new()
            .padded(INPUT_ITEMS, PadValue::I64(0))
            .padded(INPUT_WEIGHTS, PadValue::F32(0.0))
            .padded(INPUT_CANDIDATES, PadValue::I64(0));
        Self::new(manifest, index, pool, (METRIC_NAME, spec), opts, EmbeddingGraph { info, factors })
    }

    /// [`EmbeddingRecommender::load`] from a file.
    pub fn load_file(path: &Path, opts: &PoolOptions) -> Result<Self> {
        Self::load(&read_file(path)?, opts)
    }

    pub fn info(&self) -> &EmbeddingInfo {
        &self.family().info
    }

    pub fn dim(&self) -> usize {
        self.family().info.dim
    }

    /// The item embeddings `P`, row-major `items x dim`: the vectors a user vector is dotted with
    /// (for an ANN index; add [`EmbeddingRecommender::item_bias`] to its dot products).
    pub fn item_embeddings(&self) -> &[f32] {
        &self.family().factors.item_embeddings
    }

    pub fn item_bias(&self) -> &[f32] {
        &self.family().factors.item_bias
    }

    /// Every item index: the candidate list of brute force.
    pub fn all_items(&self) -> Vec<usize> {
        (0..self.len()).collect()
    }

    /// The user vector of a weighted history, computed in Rust exactly as the graph's
    /// `user_vectors` output (the weighted mean of the history embeddings): the query of the ANN
    /// index, known before any ONNX run. An index out of range is [`ModelError::InvalidInput`].
    pub fn user_vector(&self, history: &[(usize, f32)]) -> Result<Vec<f32>> {
        self.check_items(history.iter().map(|&(i, _)| i))?;
        Ok(self.family().factors.user_vector(history))
    }

    /// The weighted history for interactions `items` (oldest first) that the model was trained
    /// with: the last `history_len`, weighted `history_decay^r` for the `r`-th most recent.
    pub fn recent_history(&self, items: &[usize]) -> Vec<(usize, f32)> {
        let start = items.len().saturating_sub(self.family().info.history_len);
        let w = recency_weights(
            items.len() - start,
            self.family().info.history_decay,
            self.family().info.history_len,
        );
        items[start..].iter().copied().zip(w).collect()
    }

    /// Scores `candidates[b]` for history `b`, for a batch, in one ONNX Runtime run (not through
    /// the batcher). Histories are padded to the longest (index 0, weight 0), candidate lists to
    /// the longest (index 0, scores cut off); an empty history scores by the item biases alone. An
    /// index out of range, or not one candidate list per history, is [`ModelError::InvalidInput`].
    pub async fn score_batch(
        &self,
        histories: &[Vec<(usize, f32)>],
        candidates: &[Vec<usize>],
    ) -> Result<BatchScores> {
        let dim = self.family().info.dim;
        let batch = histories.len();
        if candidates.len() != batch {
            return Err(ModelError::InvalidInput(format!(
                "{} candidate lists for {batch} histories",
                candidates.len()
            )));
        }
        let lens: Vec<usize> = candidates.iter().map(Vec::len).collect();
        if batch == 0 {
            return Ok(BatchScores {
                batch,
                width: 1,
                dim,
                lens,
                scores: Vec::new(),
                user_vectors: Vec::new(),
            });
        }
        let h = histories.iter().map(Vec::len).max().unwrap_or(0).max(1);
        let width = lens.iter().copied().max().unwrap_or(0).max(1);
        let mut items = vec![0i64; batch * h];
        let mut weights = vec![0f32; batch * h];
        let mut cands = vec![0i64; batch * width];
        for (b, (history, row)) in histories.iter().zip(candidates).enumerate() {
            self.check_items(history.iter().map(|&(i, _)| i).chain(row.iter().copied()))?;
            for (k, &(idx, w)) in history.iter().enumerate() {
                items[b * h + k] = idx as i64;
                weights[b * h + k] = w;
            }
            for (k, &j) in row.iter().enumerate() {
                cands[b * width + k] = j as i64;
            }
        }
        for history in histories {
            shopmind_metrics::global().history_length(history.len());
        }
        let outputs = self
            .pool()
            .run(vec![
                (INPUT_ITEMS.to_owned(), InputTensor::I64 { shape: vec![batch, h], data: items }),
                (INPUT_WEIGHTS.to_owned(), InputTensor::F32 { shape: vec![batch, h], data: weights }),
                (INPUT_CANDIDATES.to_owned(), InputTensor::I64 { shape: vec![batch, width], data: cands }),
            ])
            .await?;
        let (scores, user_vectors) = take_outputs(outputs, batch, width, dim)?;
        Ok(BatchScores { batch, width, dim, lens, scores, user_vectors })
    }

    /// Scores every item for one weighted history (brute force): [`EmbeddingRecommender::score_batch`]
    /// of one history with [`EmbeddingRecommender::all_items`].
    pub async fn score(&self, history: &[(usize, f32)]) -> Result<Vec<f32>> {
        let out = self.score_batch(&[history.to_vec()], &[self.all_items()]).await?;
        Ok(out.scores)
    }

    /// Scores every item (brute force) in a micro-batch; see
    /// [`EmbeddingRecommender::score_candidates_until`].
    pub async fn score_until(&self, history: &[(usize, f32)], deadline: Option<Instant>) -> Result<Vec<f32>> {
        self.score_candidates_until(history, &self.all_items(), deadline).await.map(|(scores, _)| scores)
    }

    /// The second stage: scores `candidates` (item indices, any order, repeats allowed) for one
    /// weighted history, in a micro-batch with other concurrent requests (see [`crate::batch`]);
    /// returns (the candidates' scores in their order, the graph's user vector `u`), so that
    /// `scores[k] = u · P_{candidates[k]} + b_{candidates[k]}`. Answered with
    /// [`ModelError::DeadlineExceeded`] (and not computed) if `deadline` passes first,
    /// [`ModelError::Overloaded`] if the queue is full. An empty history scores by the item biases
    /// alone. An index out of range is [`ModelError::InvalidInput`].
    pub async fn score_candidates_until(
        &self,
        history: &[(usize, f32)],
        candidates: &[usize],
        deadline: Option<Instant>,
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        let dim = self.family().info.dim;
        self.check_items(history.iter().map(|&(i, _)| i).chain(candidates.iter().copied()))?;
        let h = history.len().max(1);
        let mut items = vec![0i64; h];
        let mut weights = vec![0f32; h];
        for (k, &(idx, w)) in history.iter().enumerate() {
            items[k] = idx as i64;
            weights[k] = w;
        }
        let c = candidates.len().max(1);
        let mut cands = vec![0i64; c];
        for (k, &j) in candidates.iter().enumerate() {
            cands[k] = j as i64;
        }
        shopmind_metrics::global().history_length(history.len());
        let outputs = self
            .batcher()
            .run(
                vec![
                    (INPUT_ITEMS.to_owned(), InputTensor::I64 { shape: vec![1, h], data: items }),
                    (INPUT_WEIGHTS.to_owned(), InputTensor::F32 { shape: vec![1, h], data: weights }),
                    (INPUT_CANDIDATES.to_owned(), InputTensor::I64 { shape: vec![1, c], data: cands }),
                ],
                deadline,
            )
            .await?;
        // The batch pads the candidate lists to its longest: this request's row may be wider.
        let width = match outputs.iter().find(|(name, _)| name == OUTPUT_CANDIDATE_SCORES) {
            Some((_, OutputTensor::F32 { shape, .. })) if shape.len() == 2 && shape[1] >= c => shape[1],
            _ => c,
        };
        let (mut scores, user) = take_outputs(outputs, 1, width, dim)?;
        scores.truncate(candidates.len());
        Ok((scores, user))
    }
}

/// The `candidate_scores` (`[batch, width]`) and `user_vectors` (`[batch, dim]`) of a run.
fn take_outputs(
    outputs: Vec<(String, OutputTensor)>,
    batch: usize,
    width: usize,
    dim: usize,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let mut scores = None;
    let mut user = None;
    for (name, out) in outputs {
        let (slot, want) = match name.as_str() {
            OUTPUT_CANDIDATE_SCORES => (&mut scores, width),
            OUTPUT_USER_VECTORS => (&mut user, dim),
            _ => continue,
        };
        match out {
            OutputTensor::F32 { shape, data } if shape == [batch, want] => *slot = Some(data),
            OutputTensor::F32 { shape, .. } | OutputTensor::I64 { shape, .. } => {
                return Err(ModelError::Runtime(format!(
                    "`{name}` has shape {shape:?}, expected float32 [{batch}, {want}]"
                )));
            }
        }
    }
    match (scores, user) {
        (Some(scores), Some(user)) => Ok((scores, user)),
        (None, _) => Err(ModelError::Runtime(format!("the model returned no `{OUTPUT_CANDIDATE_SCORES}`"))),
        (_, None) => Err(ModelError::Runtime(format!("the model returned no `{OUTPUT_USER_VECTORS}`"))),
    }
}
