//! Serving a trained co-visitation model from its ONNX file.

use std::collections::HashMap;
use std::path::Path;

use crate::covisit::{INPUT_ITEMS, INPUT_WEIGHTS, KIND, OUTPUT_SCORES};
use crate::error::{ModelError, Result};
use crate::manifest::{Manifest, read_manifest};
use crate::runtime::{InputTensor, OutputTensor, PoolOptions, SessionPool};

/// A co-visitation model loaded into ONNX Runtime; scores are computed by the ONNX graph.
#[derive(Debug)]
pub struct CovisitRecommender {
    manifest: Manifest,
    index: HashMap<String, usize>,
    pool: SessionPool,
}

impl CovisitRecommender {
    /// Loads a model exported by [`crate::CovisitModel::to_onnx`]. Checks that the manifest says
    /// `covisit`, lists distinct items, and that both the manifest and the graph have the
    /// `history_items` and `history_weights` inputs and the `scores` output. Needs
    /// [`crate::init_runtime`].
    pub fn load(bytes: &[u8], opts: &PoolOptions) -> Result<Self> {
        let manifest = read_manifest(bytes)?;
        if manifest.kind != KIND {
            return Err(ModelError::InvalidModel(format!(
                "model kind is `{}`, expected `{KIND}`",
                manifest.kind
            )));
        }
        for name in [INPUT_ITEMS, INPUT_WEIGHTS] {
            if manifest.input(name).is_none() {
                return Err(ModelError::InvalidModel(format!("the manifest lists no input `{name}`")));
            }
        }
        if manifest.output(OUTPUT_SCORES).is_none() {
            return Err(ModelError::InvalidModel(format!("the manifest lists no output `{OUTPUT_SCORES}`")));
        }
        let index: HashMap<String, usize> =
            manifest.items.iter().enumerate().map(|(i, item)| (item.clone(), i)).collect();
        if index.len() != manifest.items.len() {
            return Err(ModelError::InvalidModel("the manifest's item ids are not distinct".into()));
        }

        let pool = SessionPool::load(bytes, opts)?;
        for name in [INPUT_ITEMS, INPUT_WEIGHTS] {
            if !pool.input_names().iter().any(|n| n == name) {
                return Err(ModelError::InvalidModel(format!("the graph has no input `{name}`")));
            }
        }
        if !pool.output_names().iter().any(|n| n == OUTPUT_SCORES) {
            return Err(ModelError::InvalidModel(format!("the graph has no output `{OUTPUT_SCORES}`")));
        }
        Ok(Self { manifest, index, pool })
    }

    /// [`CovisitRecommender::load`] from a file.
    pub fn load_file(path: &Path, opts: &PoolOptions) -> Result<Self> {
        let bytes =
            std::fs::read(path).map_err(|source| ModelError::Io { path: path.to_path_buf(), source })?;
        Self::load(&bytes, opts)
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Number of items the model scores.
    pub fn len(&self) -> usize {
        self.manifest.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.manifest.items.is_empty()
    }

    pub fn index_of(&self, item: &str) -> Option<usize> {
        self.index.get(item).copied()
    }

    pub fn item(&self, idx: usize) -> Option<&str> {
        self.manifest.items.get(idx).map(String::as_str)
    }

    /// Scores every item for a history of `(item index, weight)` pairs:
    /// `scores[j] = sum_k w_k * S[idx_k][j]`, computed by ONNX Runtime.
    ///
    /// An empty history scores every item 0 without running the model. An index out of range is
    /// [`ModelError::InvalidInput`]. Repeated items add up.
    pub async fn score(&self, history: &[(usize, f32)]) -> Result<Vec<f32>> {
        let n = self.len();
        if history.is_empty() {
            return Ok(vec![0.0; n]);
        }
        let mut items = Vec::with_capacity(history.len());
        let mut weights = Vec::with_capacity(history.len());
        for &(idx, w) in history {
            let idx = i64::try_from(idx).ok().filter(|_| idx < n).ok_or_else(|| {
                ModelError::InvalidInput(format!("item index {idx} out of range for {n} items"))
            })?;
            items.push(idx);
            weights.push(w);
        }
        let h = history.len();
        shopmind_metrics::global().history_length(h);
        let outputs = self
            .pool
            .run(vec![
                (INPUT_ITEMS.to_owned(), InputTensor::I64 { shape: vec![h], data: items }),
                (INPUT_WEIGHTS.to_owned(), InputTensor::F32 { shape: vec![h], data: weights }),
            ])
            .await?;
        match outputs.into_iter().find(|(name, _)| name == OUTPUT_SCORES) {
            Some((_, OutputTensor::F32 { data, .. })) if data.len() == n => Ok(data),
            Some((_, other)) => {
                let (dtype, shape) = match &other {
                    OutputTensor::F32 { shape, .. } => ("float32", shape),
                    OutputTensor::I64 { shape, .. } => ("int64", shape),
                };
                Err(ModelError::Runtime(format!(
                    "`{OUTPUT_SCORES}` is {dtype} {shape:?}, expected float32 [{n}]"
                )))
            }
            None => Err(ModelError::Runtime(format!("the model returned no `{OUTPUT_SCORES}`"))),
        }
    }
}
