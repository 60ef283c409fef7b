//! The manifest: what a model file is, what it was trained on, and how to call it.
//!
//! It travels inside the ONNX file, as JSON in `ModelProto.metadata_props` under
//! [`MANIFEST_KEY`], so a model file is self-describing.

use prost::Message;
use serde::{Deserialize, Serialize};

use crate::covisit::TrainingStats;
use crate::error::{ModelError, Result};
use crate::onnx::ModelMetadataView;

/// The `metadata_props` key holding the manifest JSON.
pub const MANIFEST_KEY: &str = "shopmind.manifest";

/// Describes one model file.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Manifest {
    /// The model's role, e.g. `"recommender"`.
    pub name: String,
    /// The model family, e.g. `"covisit"`.
    pub kind: String,
    /// The version of this model file.
    pub version: String,
    /// The tenant whose data trained it.
    pub tenant: String,
    pub created_at_ms: i64,
    /// Item ids; index `i` of every item-shaped tensor is `items[i]`.
    pub items: Vec<String>,
    pub stats: TrainingStats,
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
    /// The version of the feature schema the model's inputs are computed from; 0 for models that
    /// read nothing but the items of recent interactions.
    #[serde(default)]
    pub feature_schema_version: u32,
    /// Offline metrics measured when the model was trained, by name (e.g. `holdout_ndcg_at_10`,
    /// next to the same metric of a baseline such as `holdout_ndcg_at_10_popularity`).
    #[serde(default)]
    pub metrics: std::collections::BTreeMap<String, f64>,
}

/// A graph input or output: name, element type (`"float32"`, `"int64"`) and shape, each dimension
/// a number or a symbolic name chosen at run time.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct TensorSpec {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<String>,
}

impl Manifest {
    /// The input named `name`, if the model declares one.
    pub fn input(&self, name: &str) -> Option<&TensorSpec> {
        self.inputs.iter().find(|t| t.name == name)
    }

    /// The output named `name`, if the model declares one.
    pub fn output(&self, name: &str) -> Option<&TensorSpec> {
        self.outputs.iter().find(|t| t.name == name)
    }
}

/// Reads the manifest out of ONNX model bytes. Only the metadata is decoded; the graph is skipped.
///
/// Bytes that are not an ONNX model, or a model without a manifest, give
/// [`ModelError::InvalidModel`].
pub fn read_manifest(onnx_bytes: &[u8]) -> Result<Manifest> {
    let view = ModelMetadataView::decode(onnx_bytes)
        .map_err(|e| ModelError::InvalidModel(format!("not an ONNX model: {e}")))?;
    let entry = view.metadata_props.iter().find(|p| p.key == MANIFEST_KEY).ok_or_else(|| {
        ModelError::InvalidModel(format!("no `{MANIFEST_KEY}` entry in the model's metadata_props"))
    })?;
    serde_json::from_str(&entry.value).map_err(|e| {
        ModelError::InvalidModel(format!("the `{MANIFEST_KEY}` entry is not a valid manifest: {e}"))
    })
}

/// [`read_manifest`], refusing a model whose manifest names another `kind` than `kind`
/// ([`ModelError::InvalidModel`]): what every loader checks first.
pub fn read_manifest_of_kind(onnx_bytes: &[u8], kind: &str) -> Result<Manifest> {
    let manifest = read_manifest(onnx_bytes)?;
    if manifest.kind != kind {
        return Err(ModelError::InvalidModel(format!(
            "model kind is `{}`, expected `{kind}`",
            manifest.kind
        )));
    }
    Ok(manifest)
}
