//! The purchase-intent model served from ONNX Runtime: rows of features in (computed by the
//! feature contract, `shopmind_features::purchase_intent`), the probability of an order, the
//! logit and each feature's contribution out.

use std::path::Path;
use std::time::Instant;

use shopmind_training::purchase_intent::{
    INPUT_FEATURES, KIND, OUTPUT_CONTRIBUTIONS, OUTPUT_LOGIT, OUTPUT_PROBABILITY, PurchaseIntentPrediction,
    PurchaseIntentSpec,
};

use crate::error::{ModelError, Result};
use crate::served::{Expected, ServedModel, read_file, take_f32};
use crate::session_pool::{InputTensor, PoolOptions};

/// The model's name in metrics (`model` label) and errors.
pub const METRIC_NAME: &str = "intent";

/// The purchase-intent model loaded into ONNX Runtime.
pub type PurchaseIntentPredictor = ServedModel<PurchaseIntentSpec>;

impl ServedModel<PurchaseIntentSpec> {
    /// Loads a model exported by `shopmind_training::PurchaseIntentModel::to_onnx`. Checks the
    /// manifest's kind, that the model was trained on the feature schema the caller computes
    /// (`feature_schema_version` and `feature_names`, the feature contract's), and that the graph
    /// has the `features` input and the three outputs. Needs [`crate::init_runtime`].
    pub fn load(
        bytes: &[u8],
        opts: &PoolOptions,
        feature_schema_version: u32,
        feature_names: &[&str],
    ) -> Result<Self> {
        let expected = Expected {
            kind: KIND,
            inputs: &[INPUT_FEATURES],
            outputs: &[OUTPUT_PROBABILITY, OUTPUT_LOGIT, OUTPUT_CONTRIBUTIONS],
        };
        Self::load_checked(bytes, opts, METRIC_NAME, expected, |spec: &PurchaseIntentSpec| {
            if spec.feature_schema_version == feature_schema_version && spec.features == feature_names {
                return Ok(());
            }
            Err(ModelError::InvalidModel(format!(
                "the model was trained on feature schema v{} ({} features); this build computes v{} ({} features)",
                spec.feature_schema_version,
                spec.features.len(),
                feature_schema_version,
                feature_names.len()
            )))
        })
    }

    /// [`PurchaseIntentPredictor::load`] from a file.
    pub fn load_file(
        path: &Path,
        opts: &PoolOptions,
        feature_schema_version: u32,
        feature_names: &[&str],
    ) -> Result<Self> {
        Self::load(&read_file(path)?, opts, feature_schema_version, feature_names)
    }

    /// Feature names, in row order.
    pub fn feature_names(&self) -> &[String] {
        &self.spec().features
    }

    /// Predicts a batch of rows in one run. An empty batch returns nothing without running; a
    /// row of another length than the model's features, or with a non-finite value, is
    /// [`ModelError::InvalidInput`].
    pub async fn predict<R: AsRef<[f32]> + Sync>(
        &self,
        batch: &[R],
    ) -> Result<Vec<PurchaseIntentPrediction>> {
        self.predict_until(batch, None).await
    }

    /// [`PurchaseIntentPredictor::predict`] for a caller that waits until `deadline`
    /// ([`crate::SessionPool::run_until`]).
    pub async fn predict_until<R: AsRef<[f32]> + Sync>(
        &self,
        batch: &[R],
        deadline: Option<Instant>,
    ) -> Result<Vec<PurchaseIntentPrediction>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let n = self.feature_names().len();
        let mut data = Vec::with_capacity(batch.len() * n);
        for (r, row) in batch.iter().map(AsRef::as_ref).enumerate() {
            if row.len() != n {
                return Err(ModelError::InvalidInput(format!(
                    "row {r} has {} features, the model reads {n}",
                    row.len()
                )));
            }
            if row.iter().any(|v| !v.is_finite()) {
                return Err(ModelError::InvalidInput(format!("row {r} has a non-finite feature")));
            }
            data.extend_from_slice(row);
        }
        let b = batch.len();
        let inputs = vec![(INPUT_FEATURES.to_owned(), InputTensor::F32 { shape: vec![b, n], data })];
        let mut out = self.run_until(inputs, deadline).await?;
        let probability = take_f32(&mut out, OUTPUT_PROBABILITY, b)?;
        let logit = take_f32(&mut out, OUTPUT_LOGIT, b)?;
        let contributions = take_f32(&mut out, OUTPUT_CONTRIBUTIONS, b * n)?;
        Ok((0..b)
            .map(|r| PurchaseIntentPrediction {
                probability: probability[r],
                logit: logit[r],
                contributions: contributions[r * n..(r + 1) * n].to_vec(),
            })
            .collect())
    }
}
