//! Serving a trained co-visitation model from its ONNX file.

use std::path::Path;
use std::time::Instant;

use shopmind_onnx::read_manifest_of_kind;
use shopmind_training::covisit::{INPUT_ITEMS, INPUT_WEIGHTS, KIND, OUTPUT_SCORES};

use crate::batch::{BatchSpec, Outputs, PadValue};
use crate::error::{ModelError, Result};
use crate::recommender::{ItemRecommender, item_index};
use crate::served::read_file;
use crate::session_pool::{InputTensor, OutputTensor, PoolOptions, SessionPool};

/// The model's name in metrics (`model` label) and errors.
pub const METRIC_NAME: &str = KIND;

/// What a co-visitation file adds besides its graph: nothing; the scores are the graph's.
#[derive(Clone, Copy, Debug, Default)]
pub struct CovisitGraph;

/// A co-visitation model loaded into ONNX Runtime; scores are computed by the ONNX graph, for
/// concurrent requests batched together ([`crate::batch`]).
pub type CovisitRecommender = ItemRecommender<CovisitGraph>;

impl ItemRecommender<CovisitGraph> {
    /// Loads a model exported by `shopmind_training::CovisitModel::to_onnx`. Checks that the
    /// manifest says `covisit`, lists distinct items, and that both the manifest and the graph
    /// have the `history_items` and `history_weights` inputs (`[batch, history]`) and the
    /// `scores` output. Requests are batched as `opts.batch` says. Needs [`crate::init_runtime`].
    pub fn load(bytes: &[u8], opts: &PoolOptions) -> Result<Self> {
        let manifest = read_manifest_of_kind(bytes, KIND)?;
        for name in [INPUT_ITEMS, INPUT_WEIGHTS] {
            match manifest.input(name) {
                None => {
                    return Err(ModelError::InvalidModel(format!("the manifest lists no input `{name}`")));
                }
                Some(spec) if spec.shape.len() != 2 => {
                    return Err(ModelError::InvalidModel(format!(
                        "input `{name}` has shape {:?}, expected [batch, history]: the model was \
                         exported by an older shopmind; train it again",
                        spec.shape
                    )));
                }
                Some(_) => {}
            }
        }
        if manifest.output(OUTPUT_SCORES).is_none() {
            return Err(ModelError::InvalidModel(format!("the manifest lists no output `{OUTPUT_SCORES}`")));
        }
        let index = item_index(&manifest)?;

        let pool = SessionPool::load(bytes, opts)?;
        if !pool.output_names().iter().any(|n| n == OUTPUT_SCORES) {
            return Err(ModelError::InvalidModel(format!("the graph has no output `{OUTPUT_SCORES}`")));
        }
        let spec =
            BatchSpec::new().padded(INPUT_ITEMS, PadValue::I64(0)).padded(INPUT_WEIGHTS, PadValue::F32(0.0));
        // Checks that the graph's inputs are exactly these two.
        Self::new(manifest, index, pool, (METRIC_NAME, spec), opts, CovisitGraph)
    }

    /// [`CovisitRecommender::load`] from a file.
    pub fn load_file(path: &Path, opts: &PoolOptions) -> Result<Self> {
        Self::load(&read_file(path)?, opts)
    }

    /// Scores every item for a history of `(item index, weight)` pairs:
    /// `scores[j] = sum_k w_k * S[idx_k][j]`, computed by ONNX Runtime in a batch with other
    /// concurrent requests. [`CovisitRecommender::score_until`] without a deadline.
    pub async fn score(&self, history: &[(usize, f32)]) -> Result<Vec<f32>> {
        self.score_until(history, None).await
    }

    /// [`CovisitRecommender::score`], answered with [`ModelError::DeadlineExceeded`] (and not
    /// computed) if `deadline` passes first.
    ///
    /// An empty history scores every item 0 without running the model. An index out of range is
    /// [`ModelError::InvalidInput`]. Repeated items add up. A full queue is
    /// [`ModelError::Overloaded`].
    pub async fn score_until(&self, history: &[(usize, f32)], deadline: Option<Instant>) -> Result<Vec<f32>> {
        let Some(inputs) = self.inputs(history)? else { return Ok(vec![0.0; self.len()]) };
        let outputs = self.batcher().run(inputs, deadline).await?;
        self.scores(outputs)
    }

    /// Scores one history in a run of its own, bypassing the batcher (for comparisons and
    /// benchmarks; serving uses [`CovisitRecommender::score_until`]).
    pub async fn score_unbatched(&self, history: &[(usize, f32)]) -> Result<Vec<f32>> {
        let Some(inputs) = self.inputs(history)? else { return Ok(vec![0.0; self.len()]) };
        let outputs = self.pool().run(inputs).await?;
        self.scores(outputs)
    }

    /// The graph's inputs for one history, `[1, h]`; `None` for an empty history.
    fn inputs(&self, history: &[(usize, f32)]) -> Result<Option<Vec<(String, InputTensor)>>> {
        if history.is_empty() {
            return Ok(None);
        }
        self.check_items(history.iter().map(|&(i, _)| i))?;
        let items = history.iter().map(|&(i, _)| i as i64).collect();
        let weights = history.iter().map(|&(_, w)| w).collect();
        let h = history.len();
        shopmind_metrics::global().history_length(h);
        Ok(Some(vec![
            (INPUT_ITEMS.to_owned(), InputTensor::I64 { shape: vec![1, h], data: items }),
            (INPUT_WEIGHTS.to_owned(), InputTensor::F32 { shape: vec![1, h], data: weights }),
        ]))
    }

    /// The one row of `scores`.
    fn scores(&self, outputs: Outputs) -> Result<Vec<f32>> {
        let n = self.len();
        match outputs.into_iter().find(|(name, _)| name == OUTPUT_SCORES) {
            Some((_, OutputTensor::F32 { data, .. })) if data.len() == n => Ok(data),
            Some((_, other)) => {
                let (dtype, shape) = match &other {
                    OutputTensor::F32 { shape, .. } => ("float32", shape),
                    OutputTensor::I64 { shape, .. } => ("int64", shape),
                };
                Err(ModelError::Runtime(format!(
                    "`{OUTPUT_SCORES}` is {dtype} {shape:?}, expected float32 [1, {n}]"
                )))
            }
            None => Err(ModelError::Runtime(format!("the model returned no `{OUTPUT_SCORES}`"))),
        }
    }
}
